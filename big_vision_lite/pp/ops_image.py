"""Image pp ops: decode, resize, central_crop, value_range, random_resize, jpeg.

Images are `uint8[H, W, 3]` after `decode`; `resize` keeps the dtype (clip + cast, as the
reference pipeline), `value_range` gives `float32[H, W, 3]`.
"""
import tensorflow as tf

from big_vision_lite.pp import builder
from big_vision_lite.pp.builder import PP_OPS

RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5",
                  "gaussian", "mitchellcubic")


def _size2(op, size):
  """int or (h, w) -> (h, w) of positive ints."""
  if isinstance(size, int) and not isinstance(size, bool):
    size = (size, size)
  if (not isinstance(size, (tuple, list)) or len(size) != 2
      or not all(isinstance(s, int) and s > 0 for s in size)):
    raise ValueError(f"pp op '{op}': size={size!r} must be a positive int or (height, "
                     "width) of positive ints.")
  return tuple(size)


def _image(data, op, key):
  if key not in data:
    raise KeyError(f"pp op '{op}' needs key {key!r}, the example has {sorted(data)}.")
  return data[key]


# Decoding refuses images with more pixels than this (header check before decoding), so a
# small "decompression bomb" file cannot take gigabytes of memory.
MAX_PIXELS = 2**26


def _be_uint32(raw, offset):
  """Big-endian uint32 at byte `offset` of a tf.string, as int64."""
  hi_lo = tf.cast(tf.io.decode_raw(tf.strings.substr(raw, offset, 4), tf.uint16,
                                   little_endian=False), tf.int64)
  return hi_lo[0] * 65536 + hi_lo[1]


def header_pixels(raw):
  """Returns int64 height * width from a PNG, GIF or JPEG header (0 for other formats).

  Args:
    raw: tf.string scalar, encoded image bytes.
  """
  n = tf.strings.length(raw)
  is_png = tf.logical_and(n >= 24, tf.strings.substr(raw, 0, 8, unit="BYTE") ==
                          b"\x89PNG\r\n\x1a\n")
  is_gif = tf.logical_and(n >= 10, tf.strings.substr(raw, 0, 3) == b"GIF")

  def png():
    return _be_uint32(raw, 16) * _be_uint32(raw, 20)

  def gif():
    w_h = tf.cast(tf.io.decode_raw(tf.strings.substr(raw, 6, 4), tf.uint16,
                                   little_endian=True), tf.int64)
    return w_h[0] * w_h[1]

  def jpeg():
    return tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(raw)[:2], tf.int64))

  return tf.case([(is_png, png), (is_gif, gif), (tf.io.is_jpeg(raw), jpeg)],
                 default=lambda: tf.constant(0, tf.int64), exclusive=True)


def decode_image(raw, channels=3, max_pixels=MAX_PIXELS):
  """Decodes encoded bytes (JPEG exactly, with the accurate integer DCT; PNG/GIF/BMP).

  Args:
    raw: tf.string scalar.
    channels: output channels; greyscale is repeated and alpha dropped for 3.
    max_pixels: images whose header gives more pixels fail before decoding.

  Returns:
    uint8[H, W, channels].
  """
  def jpeg():
    return tf.io.decode_jpeg(raw, channels=channels, dct_method="INTEGER_ACCURATE")

  def other():
    return tf.io.decode_image(raw, channels=channels, expand_animations=False)

  check = tf.debugging.assert_less_equal(
      header_pixels(raw), tf.constant(max_pixels, tf.int64),
      message=f"decode: the image header gives more than max_pixels={max_pixels} pixels "
      "(a huge image or a decompression bomb); resize the file or raise "
      "decode(max_pixels=...)")
  with tf.control_dependencies([check]):
    image = tf.cond(tf.io.is_jpeg(raw), jpeg, other)
  image.set_shape([None, None, channels])
  return image


@PP_OPS.register("decode")
def get_decode(key="image", channels=3, max_pixels=MAX_PIXELS):
  """Decodes `data[key]` (encoded bytes) to uint8[H, W, channels]; decoded images pass.

  Images with more than `max_pixels` pixels (by their header) fail before decoding.
  """
  builder.check_choice("decode", "channels", channels, (1, 3))
  if not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1:
    raise ValueError(f"pp op 'decode': max_pixels={max_pixels!r} must be a positive int.")

  def _decode(data):
    data = dict(data)
    image = _image(data, "decode", key)
    if image.dtype == tf.string:
      image = decode_image(image, channels, max_pixels)
    elif image.shape.rank == 3 and image.shape[-1] == 1 and channels == 3:
      image = tf.image.grayscale_to_rgb(image)
    data[key] = image
    return data
  return _decode


def resize_image(image, size, method="bilinear", antialias=False):
  """Resizes image [H, W, C] to size (h, w), keeping the dtype (clipped, cast)."""
  dtype = image.dtype
  out = tf.image.resize(image, size, method=method, antialias=antialias)
  if dtype.is_integer:
    out = tf.clip_by_value(out, dtype.min, dtype.max)
  return tf.cast(out, dtype)


@PP_OPS.register("resize")
def get_resize(size, method="bilinear", antialias=False, key="image"):
  """Resizes `data[key]` [H, W, C] to `size` (int or (h, w)), keeping its dtype.

  Bilinear without antialiasing unless asked, as big_vision's `resize` (most PaliGemma
  transfer recipes do not ask; the VQA-style ones pass antialias=True). Integer images
  are clipped to their range and cast back (truncating, as the reference).
  """
  size = _size2("resize", size)
  builder.check_choice("resize", "method", method, RESIZE_METHODS)
  builder.check_choice("resize", "antialias", antialias, (True, False))

  def _resize(data):
    data = dict(data)
    data[key] = resize_image(_image(data, "resize", key), size, method, antialias)
    return data
  return _resize


@PP_OPS.register("random_resize")
def get_random_resize(min_size, max_size, method="bilinear", antialias=True, key="image",
                      seed=None):
  """Resizes `data[key]` to a random square side in [min_size, max_size] (inclusive).

  Used as a resolution augmentation before a final `resize`.
  """
  if (not isinstance(min_size, int) or not isinstance(max_size, int)
      or not 0 < min_size <= max_size):
    raise ValueError(f"pp op 'random_resize': need ints 0 < min_size <= max_size, got "
                     f"{min_size!r}, {max_size!r}.")
  builder.check_choice("random_resize", "method", method, RESIZE_METHODS)

  def _random_resize(data):
    data = dict(data)
    side = builder.uniform(data, "random_resize", (), min_size, max_size + 1, tf.int32,
                           seed)
    data[key] = resize_image(_image(data, "random_resize", key), tf.stack([side, side]),
                             method, antialias)
    return data
  return _random_resize


@PP_OPS.register("central_crop")
def get_central_crop(size, key="image"):
  """Crops the central (h, w) window of `data[key]` [H, W, C] (H >= h, W >= w)."""
  h, w = _size2("central_crop", size)

  def _central_crop(data):
    data = dict(data)
    image = _image(data, "central_crop", key)
    shape = tf.shape(image)
    top, left = (shape[0] - h) // 2, (shape[1] - w) // 2
    with tf.control_dependencies([tf.debugging.assert_greater_equal(
        tf.minimum(top, left), 0,
        message=f"pp op 'central_crop': image smaller than crop {(h, w)}; resize first.")]):
      data[key] = tf.image.crop_to_bounding_box(image, top, left, h, w)
    return data
  return _central_crop


@PP_OPS.register("value_range")
def get_value_range(lo, hi, in_min=0, in_max=255, clip_values=False, key="image"):
  """Maps `data[key]` linearly from [in_min, in_max] to [lo, hi] as float32.

  `value_range(-1, 1)` turns uint8 pixels into the [-1, 1] the models expect.
  """
  nums = (lo, hi, in_min, in_max)
  if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in nums):
    raise ValueError(f"pp op 'value_range': lo, hi, in_min, in_max must be numbers, got "
                     f"{nums}.")
  if in_max <= in_min or hi <= lo:
    raise ValueError(f"pp op 'value_range': need in_min < in_max and lo < hi, got "
                     f"in=({in_min}, {in_max}) out=({lo}, {hi}).")

  def _value_range(data):
    data = dict(data)
    x = tf.cast(_image(data, "value_range", key), tf.float32)
    x = (x - in_min) / (in_max - in_min) * (hi - lo) + lo
    if clip_values:
      x = tf.clip_by_value(x, lo, hi)
    data[key] = x
    return data
  return _value_range


@PP_OPS.register("jpeg")
def get_jpeg(quality=95, key="image", seed=None):
  """Re-encodes uint8 `data[key]` as JPEG at `quality` (int, or (lo, hi) random) and decodes.

  A compression-artefact augmentation; the image stays uint8[H, W, 3].
  """
  q = (quality, quality) if isinstance(quality, int) else quality
  if (not isinstance(q, (tuple, list)) or len(q) != 2
      or not all(isinstance(v, int) and 1 <= v <= 100 for v in q) or q[0] > q[1]):
    raise ValueError(f"pp op 'jpeg': quality={quality!r} must be an int in [1, 100] or "
                     "(lo, hi) with 1 <= lo <= hi <= 100.")

  def _jpeg(data):
    data = dict(data)
    image = _image(data, "jpeg", key)
    if image.dtype != tf.uint8:
      raise TypeError(f"pp op 'jpeg' needs uint8 {key!r}, got {image.dtype.name}; put it "
                      "before value_range.")
    if q[0] == q[1]:
      enc = tf.io.encode_jpeg(image, quality=q[0])
    else:
      qual = builder.uniform(data, "jpeg", (), q[0], q[1] + 1, tf.int32, seed)
      enc = tf.raw_ops.EncodeJpegVariableQuality(images=image, quality=qual)
    out = tf.io.decode_jpeg(enc, channels=3, dct_method="INTEGER_ACCURATE")
    data[key] = tf.ensure_shape(out, image.shape)
    return data
  return _jpeg
