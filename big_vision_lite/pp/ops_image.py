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


def _le_uint(raw, offset, nbytes):
  """Little-endian unsigned int of `nbytes` bytes at `offset` of a tf.string, as int64."""
  b = tf.cast(tf.io.decode_raw(tf.strings.substr(raw, offset, nbytes), tf.uint8), tf.int64)
  return tf.reduce_sum(b * tf.constant([256**i for i in range(nbytes)], tf.int64))


def header_pixels(raw):
  """Returns int64 height * width from a JPEG, PNG, GIF, BMP or WebP header.

  Other formats (and headers too short to hold the size) give -1: `decode_image`
  refuses them, so no format can bypass the pixel limit.

  Args:
    raw: tf.string scalar, encoded image bytes.
  """
  n = tf.strings.length(raw)
  jpeg_raw = raw
  # Zero padding keeps every header read in range; the length checks use the real `n`.
  raw = tf.strings.join([raw, tf.constant(b"\0" * 32)])

  def starts(prefix, offset=0, min_len=0):
    return tf.logical_and(n >= max(min_len, offset + len(prefix)),
                          tf.strings.substr(raw, offset, len(prefix)) == prefix)

  is_png = starts(b"\x89PNG\r\n\x1a\n", min_len=24)
  is_gif = starts(b"GIF", min_len=10)
  is_bmp = starts(b"BM", min_len=26)
  is_webp = tf.logical_and(starts(b"RIFF", min_len=30), starts(b"WEBP", 8))

  def png():
    return _be_uint32(raw, 16) * _be_uint32(raw, 20)

  def gif():
    return _le_uint(raw, 6, 2) * _le_uint(raw, 8, 2)

  def bmp():  # BITMAPCOREHEADER (12 bytes): uint16 sizes; later headers: int32 sizes.
    core = tf.equal(_le_uint(raw, 14, 4), 12)
    def signed(v):
      return tf.abs(tf.where(v >= 2**31, v - 2**32, v))  # Negative height: top-down.
    return tf.cond(core, lambda: _le_uint(raw, 18, 2) * _le_uint(raw, 20, 2),
                   lambda: signed(_le_uint(raw, 18, 4)) * signed(_le_uint(raw, 22, 4)))

  def webp():
    chunk = tf.strings.substr(raw, 12, 4)
    def vp8x():  # Canvas width - 1 and height - 1, 24 bits each.
      return (_le_uint(raw, 24, 3) + 1) * (_le_uint(raw, 27, 3) + 1)
    def vp8l():  # 14-bit width - 1, 14-bit height - 1 after the 0x2f signature.
      bits = _le_uint(raw, 21, 4)
      return (bits % 2**14 + 1) * ((bits // 2**14) % 2**14 + 1)
    def vp8():  # Lossy key frame: 14-bit width and height after the start code.
      return (_le_uint(raw, 26, 2) % 2**14) * (_le_uint(raw, 28, 2) % 2**14)
    return tf.case([(tf.equal(chunk, b"VP8X"), vp8x), (tf.equal(chunk, b"VP8L"), vp8l),
                    (tf.equal(chunk, b"VP8 "), vp8)],
                   default=lambda: tf.constant(-1, tf.int64), exclusive=True)

  def jpeg():
    return tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(jpeg_raw)[:2], tf.int64))

  return tf.case([(is_png, png), (is_gif, gif), (is_bmp, bmp), (is_webp, webp),
                  (tf.io.is_jpeg(jpeg_raw), jpeg)],
                 default=lambda: tf.constant(-1, tf.int64), exclusive=True)


def decode_image(raw, channels=3, max_pixels=MAX_PIXELS):
  """Decodes encoded bytes (JPEG exactly, with the accurate integer DCT; PNG/GIF/BMP/WebP).

  Args:
    raw: tf.string scalar.
    channels: output channels; greyscale is repeated and alpha dropped for 3.
    max_pixels: images whose header gives more pixels fail before decoding; formats
      whose header size the check cannot read (anything but JPEG, PNG, GIF, BMP,
      WebP) fail too.

  Returns:
    uint8[H, W, channels].
  """
  def jpeg():
    return tf.io.decode_jpeg(raw, channels=channels, dct_method="INTEGER_ACCURATE")

  def other():
    return tf.io.decode_image(raw, channels=channels, expand_animations=False)

  pixels = header_pixels(raw)
  known = tf.debugging.assert_greater_equal(
      pixels, tf.constant(0, tf.int64),
      message="decode: not a JPEG, PNG, GIF, BMP or WebP image (unknown or truncated "
      "header, or an empty file); valid: those formats, whose header size is checked "
      "before decoding")
  with tf.control_dependencies([known]):
    check = tf.debugging.assert_less_equal(
        pixels, tf.constant(max_pixels, tf.int64),
        message=f"decode: the image header gives more than max_pixels={max_pixels} pixels "
        "(a huge image or a decompression bomb); resize the file or raise "
        "decode(max_pixels=...)")
  with tf.control_dependencies([known, check]):
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
