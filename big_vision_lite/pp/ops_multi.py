"""pp ops for multiple-choice and multi-image tasks (choices, image stacks, drawn boxes).

Ops: strjoin, getidx, lower, stack_images, draw_bbox, sci_qa_choices_shuffle.

Each op is a factory (called when the pp string is built) returning
`fn(data: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]`.
"""
import string

import tensorflow as tf

from big_vision_lite.pp import builder
from big_vision_lite.pp.builder import PP_OPS

LETTERS = string.ascii_uppercase


def _check_key(op, name, key):
  if not isinstance(key, str) or not key:
    raise ValueError(f"pp op '{op}': {name}={key!r} must be a non-empty str key.")


def _need(data, op, key):
  if key not in data:
    raise KeyError(f"pp op '{op}' needs key {key!r}, the example has {sorted(data)}. Add an "
                   "op that creates it earlier in the pp string, or fix the key name.")
  return data[key]


def _strings(data, op, key, rank=None):
  value = _need(data, op, key)
  if value.dtype != tf.string or (rank is not None and value.shape.rank != rank):
    want = "string" if rank is None else f"string[{', '.join('n' * rank)}]"
    raise ValueError(f"pp op '{op}': {key!r} is {value.dtype.name}{value.shape}; it must be "
                     f"{want}.")
  return value


@PP_OPS.register("strjoin")
def get_strjoin(sep, inkey, outkey):
  """Joins the strings `data[inkey]` string[n] with `sep` into `data[outkey]` (scalar).

  Example: `strjoin(" \\t ", inkey="possible_answers", outkey="ansstr")` gives
  "yes \\t no" for ["yes", "no"] (AI2D / A-OKVQA MC option lists).
  """
  if not isinstance(sep, str):
    raise ValueError(f"pp op 'strjoin': sep={sep!r} must be a str.")
  _check_key("strjoin", "inkey", inkey)
  _check_key("strjoin", "outkey", outkey)

  def _strjoin(data):
    data = dict(data)
    data[outkey] = tf.strings.reduce_join(_strings(data, "strjoin", inkey, 1), separator=sep)
    return data
  return _strjoin


@PP_OPS.register("getidx")
def get_getidx(inkey, index_key, outkey):
  """Sets `data[outkey] = data[inkey][data[index_key]]` (e.g. the correct option's text).

  Args:
    inkey: a tensor [n, ...].
    index_key: an integer scalar in [0, n).
    outkey: where the picked element [...] goes.
  """
  for name, key in (("inkey", inkey), ("index_key", index_key), ("outkey", outkey)):
    _check_key("getidx", name, key)

  def _getidx(data):
    data = dict(data)
    values, index = _need(data, "getidx", inkey), _need(data, "getidx", index_key)
    if values.shape.rank == 0 or index.shape.rank != 0 or not index.dtype.is_integer:
      raise ValueError(f"pp op 'getidx': needs {inkey!r} [n, ...] and an integer scalar "
                       f"{index_key!r}; got {values.dtype.name}{values.shape} and "
                       f"{index.dtype.name}{index.shape}.")
    index = tf.cast(index, tf.int32)
    n = tf.shape(values)[0]
    check = tf.debugging.assert_equal(
        tf.logical_and(index >= 0, index < n), True,
        message=f"pp op 'getidx': {index_key!r} is outside [0, len({inkey!r})).")
    with tf.control_dependencies([check]):
      data[outkey] = tf.gather(values, index)
    return data
  return _getidx


@PP_OPS.register("lower")
def get_lower(key="text"):
  """Lower-cases the strings in `data[key]` (any shape; UTF-8 aware)."""
  _check_key("lower", "key", key)

  def _lower(data):
    data = dict(data)
    data[key] = tf.strings.lower(_strings(data, "lower", key), encoding="utf-8")
    return data
  return _lower


@PP_OPS.register("stack_images")
def get_stack_images(inkeys, outkey="image"):
  """Stacks same-size images into frames: `data[outkey]` [N, H, W, C] (e.g. NLVR2's pair).

  The model folds the N frames into its sequence (N * P image tokens), as for video.
  The inputs are removed (they are usually of a different size than the model's).

  Args:
    inkeys: list of N >= 1 keys, each an image [H, W, C] (resize them first).
    outkey: the stacked images.
  """
  if (not isinstance(inkeys, (list, tuple)) or not inkeys
      or not all(isinstance(k, str) and k for k in inkeys)):
    raise ValueError(f"pp op 'stack_images': inkeys={inkeys!r} must be a non-empty list of "
                     "keys, e.g. ['image_left', 'image_right'].")
  _check_key("stack_images", "outkey", outkey)

  def _stack(data):
    data = dict(data)
    images = [_need(data, "stack_images", k) for k in inkeys]
    for k, im in zip(inkeys, images):
      if im.shape.rank != 3:
        raise ValueError(f"pp op 'stack_images': {k!r} has shape {im.shape}; each image "
                         "must be [H, W, C] (decode it first).")
    if len({im.dtype for im in images}) != 1:
      raise ValueError(f"pp op 'stack_images': {list(inkeys)} differ in dtype "
                       f"{[im.dtype.name for im in images]}; apply the same ops to each.")
    checks = [tf.debugging.assert_equal(
        tf.shape(im), tf.shape(images[0]), message=f"pp op 'stack_images': {k!r} and "
        f"{inkeys[0]!r} differ in size; resize each to the same size first.")
              for k, im in zip(inkeys[1:], images[1:])]
    with tf.control_dependencies(checks):
      stacked = tf.stack(images)
    for k in inkeys:
      del data[k]
    data[outkey] = stacked
    return data
  return _stack


@PP_OPS.register("draw_bbox")
def get_draw_bbox(image_key="image", bbox_key="bbox", color=(255, 0, 0)):
  """Draws the box `data[bbox_key]` into the image as a 1-pixel outline (WidgetCap).

  Args:
    image_key: image [H, W, 3] (any dtype; kept), drawn where it has its final size.
    bbox_key: float[4] or float[1, 4]: (ymin, xmin, ymax, xmax) in [0, 1].
    color: RGB in the image's value range (default red for uint8 pixels).
  """
  _check_key("draw_bbox", "image_key", image_key)
  _check_key("draw_bbox", "bbox_key", bbox_key)
  if (not isinstance(color, (list, tuple)) or len(color) != 3
      or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in color)):
    raise ValueError(f"pp op 'draw_bbox': color={color!r} must be 3 numbers (R, G, B).")

  def _draw(data):
    data = dict(data)
    image, box = _need(data, "draw_bbox", image_key), _need(data, "draw_bbox", bbox_key)
    if image.shape.rank != 3 or box.shape.num_elements() not in (None, 4):
      raise ValueError(f"pp op 'draw_bbox': needs image [H, W, 3] and one box [4]; got "
                       f"{image_key!r} {image.shape} and {bbox_key!r} {box.shape}.")
    boxes = tf.reshape(tf.cast(box, tf.float32), [1, 1, 4])
    colors = tf.constant([color], tf.float32)  # [1, 3]
    drawn = tf.image.draw_bounding_boxes(tf.cast(image, tf.float32)[None], boxes, colors)[0]
    data[image_key] = tf.cast(drawn, image.dtype)
    return data
  return _draw


@PP_OPS.register("sci_qa_choices_shuffle")
def get_sci_qa_choices_shuffle(choice_str_inkey="choices", ans_inkey="answer",
                               indexed_choices_outkey="indexed_choices",
                               indexed_answer_outkey="indexed_answer", seed=None):
  """Shuffles the options per example and letters them: "(A) x, (B) y" and "B".

  Random from the example's `_seed` (stateless) or else from `seed`.

  Args:
    choice_str_inkey: the options string[n], 1 <= n <= 26.
    ans_inkey: integer scalar, the correct option's index in the unshuffled list.
    indexed_choices_outkey: "(A) <option>, (B) <option>, ..." in the shuffled order.
    indexed_answer_outkey: the correct option's letter after shuffling, e.g. "B".
    seed: int op seed, used only when the example has no `_seed`.
  """
  op = "sci_qa_choices_shuffle"
  for name, key in (("choice_str_inkey", choice_str_inkey), ("ans_inkey", ans_inkey),
                    ("indexed_choices_outkey", indexed_choices_outkey),
                    ("indexed_answer_outkey", indexed_answer_outkey)):
    _check_key(op, name, key)
  if seed is not None and not isinstance(seed, int):
    raise ValueError(f"pp op '{op}': seed={seed!r} must be an int or None.")

  def _shuffle(data):
    data = dict(data)
    choices = _strings(data, op, choice_str_inkey, 1)
    answer = _need(data, op, ans_inkey)
    if answer.shape.rank != 0 or not answer.dtype.is_integer:
      raise ValueError(f"pp op '{op}': {ans_inkey!r} must be an integer scalar (the correct "
                       f"option's index), got {answer.dtype.name}{answer.shape}.")
    n = tf.shape(choices)[0]
    checks = [
        tf.debugging.assert_equal(tf.logical_and(n >= 1, n <= len(LETTERS)), True,
                                  message=f"pp op '{op}': needs 1 to 26 options."),
        tf.debugging.assert_equal(
            tf.logical_and(answer >= 0, tf.cast(answer, tf.int32) < n), True,
            message=f"pp op '{op}': {ans_inkey!r} is outside [0, number of options)."),
    ]
    with tf.control_dependencies(checks):
      keys = builder.uniform(data, op, tf.shape(choices), seed=seed)
    perm = tf.argsort(keys)  # perm[i]: the original index of the option shown at i.
    letters = tf.constant(list(LETTERS))[:n]
    data[indexed_choices_outkey] = tf.strings.reduce_join(
        tf.strings.join(["(" + letters + ")", tf.gather(choices, perm)], separator=" "),
        separator=", ")
    pos = tf.argmax(tf.cast(tf.equal(perm, tf.cast(answer, perm.dtype)), tf.int32))
    data[indexed_answer_outkey] = tf.gather(letters, pos)
    return data
  return _shuffle
