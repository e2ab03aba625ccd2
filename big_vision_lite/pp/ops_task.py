"""Task pp ops: boxes -> `<loc>` strings, masks -> `<loc><seg>` strings, `flip_lr`,
`box_bins`, `label_counts`, `patch_labels`, `patch_merge` and `patch_boxes` (where objects
lie, object counts, per-patch classes and boxes as classifier targets).

Boxes are float32[n, 4] (ymin, xmin, ymax, xmax) normalized to [0, 1]. A coordinate v
becomes bin k = round-half-to-even(v * 1023) clipped to [0, 1023] (the reference bins;
`tf.round` rounds half to even), written `<loc{k:04d}>`.
"""
import numpy as np
import tensorflow as tf

from big_vision_lite.pp import builder
from big_vision_lite.pp.builder import PP_OPS


def _get(data, op, key):
  if key not in data:
    raise KeyError(f"pp op '{op}' needs key {key!r}, the example has {sorted(data)}.")
  return data[key]


def boxes_to_loc_tf(boxes):
  """float32[n, 4] normalized boxes -> tf.string[n] "<locY1><locX1><locY2><locX2>"."""
  boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
  k = tf.cast(tf.clip_by_value(tf.round(boxes * 1023.0), 0, 1023), tf.int32)
  pieces = tf.strings.join(["<loc", tf.strings.as_string(k, width=4, fill="0"), ">"])
  return tf.strings.reduce_join(pieces, axis=-1)


def _join_objects(per_object, data, op, labels_key, sep):
  """tf.string[n] (+ labels) -> one tf.string "obj label ; obj label"."""
  if labels_key is not None:
    labels = _get(data, op, labels_key)
    if labels.dtype != tf.string:
      raise TypeError(f"pp op '{op}': labels {labels_key!r} must be strings, got "
                      f"{labels.dtype.name}; map class ids to names first.")
    per_object = tf.strings.join([per_object, tf.reshape(labels, [-1])], separator=" ")
  return tf.strings.reduce_join(per_object, separator=sep)


@PP_OPS.register("box_to_loc")
def get_box_to_loc(inkey="objects/bbox", outkey="suffix", labels_key=None, sep=" ; "):
  """Writes boxes `data[inkey]` float32[n, 4] (or [4]) as loc tokens into `data[outkey]`.

  With `labels_key` (tf.string[n]) it writes a detection target
  "<loc..>x4 label ; <loc..>x4 label"; without, the boxes joined by `sep`.
  """
  if not isinstance(sep, str):
    raise ValueError(f"pp op 'box_to_loc': sep={sep!r} must be a str, e.g. ' ; '.")

  def _box_to_loc(data):
    data = dict(data)
    per_object = boxes_to_loc_tf(_get(data, "box_to_loc", inkey))
    data[outkey] = _join_objects(per_object, data, "box_to_loc", labels_key, sep)
    return data
  return _box_to_loc


def crop_masks_64(masks, boxes):
  """Crops each mask to its box and resizes it to 64x64 (bilinear, antialiased).

  Box edges in pixels are rounded half-to-even (`round(v * H)`), as big_vision's
  `refcoco_mask2str`, then clamped to the image and to at least one pixel. (The
  reference does not clamp: a slightly negative edge wraps to the last row there.)

  Args:
    masks: [n, H, W] or [n, H, W, 1], float in [0, 1], bool, or uint8 in [0, 255].
    boxes: float32[n, 4] normalized (ymin, xmin, ymax, xmax).

  Returns:
    float32[n, 64, 64] in [0, 1].
  """
  scale = 255.0 if masks.dtype == tf.uint8 else 1.0
  masks = tf.cast(masks, tf.float32) / scale
  if masks.shape.rank == 4:
    masks = masks[..., 0]
  boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
  hw_int = tf.shape(masks)[1:3]
  hw = tf.cast(hw_int, tf.float32)

  def edges(lo, hi, size, size_int):
    lo = tf.clip_by_value(tf.cast(tf.round(lo * size), tf.int32), 0, size_int - 1)
    hi = tf.clip_by_value(tf.cast(tf.round(hi * size), tf.int32), lo + 1, size_int)
    return lo, hi

  def one(args):
    mask, box = args
    y1, y2 = edges(box[0], box[2], hw[0], hw_int[0])
    x1, x2 = edges(box[1], box[3], hw[1], hw_int[1])
    crop = mask[y1:y2, x1:x2, None]
    return tf.image.resize(crop, [64, 64], "bilinear", antialias=True)[..., 0]

  out = tf.map_fn(one, (masks, boxes), fn_output_signature=tf.float32)
  return tf.ensure_shape(tf.clip_by_value(out, 0.0, 1.0), [None, 64, 64])


@PP_OPS.register("mask_to_seg")
def get_mask_to_seg(vqvae_checkpoint, mask_key="objects/mask", box_key="objects/bbox",
                    labels_key=None, outkey="suffix", sep=" ; "):
  """Writes segmentation targets "<loc..>x4<seg..>x16 label ; ..." into `data[outkey]`.

  Each mask is cropped to its box, resized to 64x64 (antialiased) and encoded into 16
  codes by the VQ-VAE (`models.vqvae`, loaded from the local `vqvae_checkpoint` npz when
  the pp string is built).
  """
  from big_vision_lite.models import vqvae  # pylint: disable=import-outside-toplevel
  if not isinstance(vqvae_checkpoint, str):
    raise ValueError(f"pp op 'mask_to_seg': vqvae_checkpoint={vqvae_checkpoint!r} must be "
                     "the local path of vae-oid.npz.")
  params = vqvae.load_vqvae(vqvae_checkpoint)

  def _encode(masks):
    if masks.shape[0] == 0:
      return np.zeros([0, 16], np.int32)
    return np.asarray(vqvae.encode_masks(params, masks), np.int32)

  def _mask_to_seg(data):
    data = dict(data)
    boxes = _get(data, "mask_to_seg", box_key)
    masks = crop_masks_64(_get(data, "mask_to_seg", mask_key), boxes)
    codes = tf.numpy_function(_encode, [masks], tf.int32, stateful=False)
    codes = tf.reshape(codes, [-1, 16])
    seg = tf.strings.join(["<seg", tf.strings.as_string(codes, width=3, fill="0"), ">"])
    per_object = tf.strings.join([boxes_to_loc_tf(boxes),
                                  tf.strings.reduce_join(seg, axis=-1)])
    data[outkey] = _join_objects(per_object, data, "mask_to_seg", labels_key, sep)
    return data
  return _mask_to_seg


@PP_OPS.register("flip_lr")
def get_flip_lr(key="image", boxes_key=None, prob=0.5, seed=None):
  """Flips `data[key]` [H, W, C] left-right with probability `prob`.

  With `boxes_key`, the boxes float32[n, 4] are flipped too (xmin' = 1 - xmax,
  xmax' = 1 - xmin). Random from the example's `_seed` (stateless) or else `seed`.
  """
  if not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
    raise ValueError(f"pp op 'flip_lr': prob={prob!r} must be a number in [0, 1].")

  def _flip_lr(data):
    data = dict(data)
    flip = builder.uniform(data, "flip_lr", (), seed=seed) < prob
    image = _get(data, "flip_lr", key)
    data[key] = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    if boxes_key is not None:
      b = tf.cast(_get(data, "flip_lr", boxes_key), tf.float32)
      flipped = tf.stack([b[..., 0], 1.0 - b[..., 3], b[..., 2], 1.0 - b[..., 1]], -1)
      data[boxes_key] = tf.cond(flip, lambda: flipped, lambda: b)
    return data
  return _flip_lr


def _object_names(data, op, keys):
  """tf.string[n]: each object's values of `keys` joined with a space."""
  parts = []
  for k in keys:
    v = tf.reshape(_get(data, op, k), [-1])
    if v.dtype != tf.string:
      raise TypeError(f"pp op '{op}': {k!r} is {v.dtype.name}; it must hold strings "
                      "(class names).")
    parts.append(v)
  return tf.strings.join(parts, separator=" ") if len(parts) > 1 else parts[0]


def _class_match(names, classes, op, keys, skip=()):
  """bool[n, C] of names == classes; a name outside `classes` and `skip` is an error.

  The rows of names in `skip` (objects to leave out, e.g. "" for "no word") are all False.
  """
  match = tf.equal(names[:, None], tf.constant(list(classes))[None, :])
  known = tf.reduce_any(match, axis=1)
  if skip:
    known |= tf.reduce_any(tf.equal(names[:, None], tf.constant(list(skip))[None, :]), 1)
  valid = f" (or one of skip={list(skip)})" if skip else ""
  tf.debugging.Assert(
      tf.reduce_all(known),
      [f"pp op '{op}': a label of {'+'.join(keys)} is not one of {list(classes)}{valid}:",
       names], summarize=20)
  return match


def _check_classes(op, inkey, classes, skip=()):
  if (not isinstance(skip, (list, tuple)) or not all(isinstance(v, str) for v in skip)
      or set(skip) & set(classes if isinstance(classes, (list, tuple)) else ())):
    raise ValueError(f"pp op '{op}': skip={skip!r} must be a list of strings that are "
                     "not classes.")
  keys = (inkey,) if isinstance(inkey, str) else tuple(inkey)
  if not keys or not all(isinstance(k, str) for k in keys):
    raise ValueError(f"pp op '{op}': key(s) {inkey!r} must be a key or a list of keys.")
  if (not isinstance(classes, (list, tuple)) or not classes
      or not all(isinstance(c, str) and c for c in classes)
      or len(set(classes)) != len(classes)):
    raise ValueError(f"pp op '{op}': classes={classes!r} must be a non-empty list "
                     "of distinct non-empty strings.")
  return keys


@PP_OPS.register("label_counts")
def get_label_counts(inkey, classes, max_count, outkey="labels", skip=()):
  """How many objects of each class: float32[len(classes) * (max_count + 1)] one-hots.

  Entry `c * (max_count + 1) + k` is 1 when class `classes[c]` occurs k times among the
  objects (counts above `max_count` count as `max_count`), so each class holds exactly one
  positive: the labels of a multi-label image classifier that has to count and tell the
  classes apart (stage 0's "objects" targets). With several keys (e.g.
  `('objects/color', 'objects/label')`), each object's values are joined with a space
  ("red circle") before matching. A label that is not in `classes` or `skip` is an error.

  Args:
    inkey: key, or list of keys, of tf.string[n] (or scalar) per-object values.
    classes: non-empty list of distinct class names.
    max_count: int >= 1.
    outkey: key of the float32 labels.
    skip: labels of objects left out (e.g. `skip=('',)` with `inkey='word'`: an image
      without a word counts no word).
  """
  keys = _check_classes("label_counts", inkey, classes, skip)
  if isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 1:
    raise ValueError(f"pp op 'label_counts': max_count={max_count!r} must be an int >= 1.")

  def _label_counts(data):
    data = dict(data)
    names = _object_names(data, "label_counts", keys)
    match = _class_match(names, classes, "label_counts", keys, skip)  # [n, C]
    counts = tf.minimum(tf.reduce_sum(tf.cast(match, tf.int32), axis=0), max_count)
    data[outkey] = tf.reshape(tf.one_hot(counts, max_count + 1, dtype=tf.float32), [-1])
    return data
  return _label_counts


@PP_OPS.register("box_bins")
def get_box_bins(names, axis="x", inkey="objects/bbox", outkey="objects/bin"):
  """Where each box's centre lies along `axis`: tf.string[n], one of `names`.

  The [0, 1] range of the axis is cut into len(names) equal bins (a centre on a border
  goes to the upper bin); e.g. `box_bins(names=('left', 'right'))` then
  `label_counts(inkey=('objects/label', 'objects/bin'), ...)` counts "circle left":
  image-level classifier targets that keep where the objects are (stage 0's "objects").

  Args:
    names: two or more distinct non-empty bin names, from the low end (left / top).
    axis: "x" (columns) or "y" (rows).
    inkey: float32[n, 4] normalized (ymin, xmin, ymax, xmax) boxes.
    outkey: key of the tf.string[n] bin names.
  """
  if (not isinstance(names, (list, tuple)) or len(names) < 2
      or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names)):
    raise ValueError(f"pp op 'box_bins': names={names!r} must be two or more distinct "
                     "non-empty strings.")
  if axis not in ("x", "y"):
    raise ValueError(f"pp op 'box_bins': axis={axis!r} must be 'x' or 'y'.")
  lo = 1 if axis == "x" else 0

  def _box_bins(data):
    data = dict(data)
    boxes = tf.reshape(tf.cast(_get(data, "box_bins", inkey), tf.float32), [-1, 4])
    centre = (boxes[:, lo] + boxes[:, lo + 2]) / 2
    k = tf.clip_by_value(tf.cast(tf.floor(centre * len(names)), tf.int32), 0,
                         len(names) - 1)
    data[outkey] = tf.gather(tf.constant(list(names)), k)
    return data
  return _box_bins


def _patch_centres(op, grid):
  """(cy, cx) float32[grid * grid]: patch centres in token order (rows, then columns)."""
  if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
    raise ValueError(f"pp op '{op}': grid={grid!r} must be an int >= 1.")
  centres = (np.arange(grid, dtype=np.float32) + 0.5) / grid
  return [tf.constant(v.reshape(-1)) for v in np.meshgrid(centres, centres, indexing="ij")]


def _first_box(boxes, cy, cx, valid=None):
  """int32[P]: per patch, the index of the first box holding its centre; n when none."""
  inside = ((boxes[None, :, 0] <= cy[:, None]) & (cy[:, None] <= boxes[None, :, 2])
            & (boxes[None, :, 1] <= cx[:, None]) & (cx[:, None] <= boxes[None, :, 3]))
  if valid is not None:
    inside &= valid[None, :]
  # A last column that always holds: patches outside every box pick it.
  inside = tf.concat([tf.cast(inside, tf.int32), tf.ones_like(cy[:, None], tf.int32)], 1)
  return tf.argmax(inside, axis=1, output_type=tf.int32)


@PP_OPS.register("patch_labels")
def get_patch_labels(grid, classes, boxes_key="objects/bbox", labels_key="objects/label",
                     outkey="patch_labels", skip=()):
  """Which object covers each patch: float32[grid * grid, 1 + len(classes)] one-hots.

  Row `i * grid + j` (the ViT's token order: rows top to bottom, then columns) is the
  one-hot of the class of the first box that holds the centre of patch (i, j) of a
  `grid` x `grid` split of the image, or of 0 ("none") when no box does: dense targets
  that make an image tower's tokens know what lies under them (stage 0's "objects").
  Several `labels_key` keys are joined per object with a space, as in `label_counts`.

  Args:
    grid: int >= 1, patches per side (e.g. res // patch size).
    classes: non-empty list of distinct class names.
    boxes_key: float32[n, 4] (or [4]: one object) normalized (ymin, xmin, ymax, xmax).
    labels_key: key, or list of keys, of tf.string[n] (or scalar) per-object values.
    outkey: key of the float32 labels.
    skip: labels of objects that cover nothing (e.g. `('',)` for `labels_key='word'`).
  """
  keys = _check_classes("patch_labels", labels_key, classes, skip)
  cy, cx = _patch_centres("patch_labels", grid)

  def _patch_labels(data):
    data = dict(data)
    boxes = tf.reshape(tf.cast(_get(data, "patch_labels", boxes_key), tf.float32), [-1, 4])
    names = _object_names(data, "patch_labels", keys)
    match = tf.cast(_class_match(names, classes, "patch_labels", keys, skip), tf.int32)
    cls = tf.argmax(match, axis=1, output_type=tf.int32) + 1  # [n]
    # Skipped objects cover nothing; patches outside every box get class 0.
    first = _first_box(boxes, cy, cx, valid=tf.reduce_max(match, axis=1) > 0)
    label = tf.gather(tf.concat([cls, [0]], 0), first)
    data[outkey] = tf.one_hot(label, len(classes) + 1, dtype=tf.float32)
    return data
  return _patch_labels


@PP_OPS.register("patch_merge")
def get_patch_merge(inkeys, outkey="patch_labels"):
  """Merges per-patch one-hots float32[P, 1 + K_i] into float32[P, 1 + sum(K_i)].

  Each patch takes the class of the first input (in `inkeys` order) that puts it in a
  class other than 0 ("none"), numbered after the classes of the inputs before it; 0
  when none does. E.g. `patch_labels` of the shapes and `patch_labels` of the drawn word
  (outkeys 'p_obj', 'p_word'), then `patch_merge(inkeys=('p_obj', 'p_word'))`: per token,
  which shape or which word lies under it.
  """
  if (isinstance(inkeys, str) or not isinstance(inkeys, (list, tuple)) or len(inkeys) < 2
      or not all(isinstance(k, str) for k in inkeys)):
    raise ValueError(f"pp op 'patch_merge': inkeys={inkeys!r} must be a list of two or "
                     "more keys.")

  def _patch_merge(data):
    data = dict(data)
    label, offset = None, 0
    for k in inkeys:
      onehot = _get(data, "patch_merge", k)
      if onehot.shape.rank != 2 or onehot.shape[-1] is None or onehot.shape[-1] < 2:
        raise ValueError(f"pp op 'patch_merge': {k!r} has shape {onehot.shape}; it must "
                         "be float32[P, 1 + K] one-hots (pp op `patch_labels`).")
      idx = tf.argmax(onehot, axis=-1, output_type=tf.int32)
      idx = tf.where(idx > 0, idx + offset, 0)
      label = idx if label is None else tf.where(label > 0, label, idx)
      offset += int(onehot.shape[-1]) - 1
    data[outkey] = tf.one_hot(label, offset + 1, dtype=tf.float32)
    return data
  return _patch_merge


@PP_OPS.register("patch_boxes")
def get_patch_boxes(grid, boxes_key="objects/bbox", outkey="patch_boxes"):
  """Where the box over each patch ends: float32[grid * grid, 5] per-token box targets.

  Row `i * grid + j` (the ViT's token order) is (1, top, left, bottom, right) for the
  first box that holds the centre of patch (i, j) (the box `patch_labels` picks): the
  distances from that centre up, left, down and right to the box's edges, in image
  units; (0, 0, 0, 0, 0) when no box does. Dense regression targets (as in FCOS) that
  make an image tower's tokens know the extent of the object under them, not only its
  class: what a detector reads boxes from.

  Args:
    grid: int >= 1, patches per side (e.g. res // patch size).
    boxes_key: float32[n, 4] (or [4]) normalized (ymin, xmin, ymax, xmax) boxes.
    outkey: key of the float32 targets.
  """
  cy, cx = _patch_centres("patch_boxes", grid)

  def _patch_boxes(data):
    data = dict(data)
    boxes = tf.reshape(tf.cast(_get(data, "patch_boxes", boxes_key), tf.float32), [-1, 4])
    first = _first_box(boxes, cy, cx)  # [P]; n: no box.
    box = tf.gather(tf.concat([boxes, tf.zeros([1, 4])], 0), first)  # [P, 4]
    hit = tf.cast(first < tf.shape(boxes)[0], tf.float32)
    dist = tf.stack([cy - box[:, 0], cx - box[:, 1], box[:, 2] - cy, box[:, 3] - cx], 1)
    data[outkey] = tf.concat([hit[:, None], dist * hit[:, None]], 1)
    return data
  return _patch_boxes
