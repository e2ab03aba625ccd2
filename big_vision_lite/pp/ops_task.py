"""Task pp ops: boxes -> `<loc>` strings, masks -> `<loc><seg>` strings, `flip_lr`.

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
