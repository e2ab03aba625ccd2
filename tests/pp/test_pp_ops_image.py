"""Tests of decode, resize, central_crop, value_range, random_resize and jpeg."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from big_vision_lite.pp import builder


def encode(arr, fmt, **kw):
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, fmt, **kw)
  return buf.getvalue()


def photo(h=45, w=61, seed=0):
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:h, :w]
  base = np.stack([x * 4, y * 5, (x + y) * 2], -1) % 256
  return np.clip(base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def run(pp, **ex):
  return builder.get_preprocess_fn(pp)({k: tf.constant(v) for k, v in ex.items()})


@pytest.mark.parametrize("subsampling", [0, 2])
def test_decode_jpeg_equals_pil_exactly(subsampling):
  raw = encode(photo(), "JPEG", quality=75, subsampling=subsampling)
  got = run("decode", image=raw)["image"].numpy()
  want = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
  assert got.dtype == np.uint8 and got.shape == (45, 61, 3)
  np.testing.assert_array_equal(got, want)


def test_decode_grey_and_alpha_png_to_rgb():
  grey = photo()[..., 0]
  got = run("decode", image=encode(grey, "PNG"))["image"].numpy()
  np.testing.assert_array_equal(got, np.repeat(grey[..., None], 3, -1))
  rgba = np.concatenate([photo(), np.full((45, 61, 1), 7, np.uint8)], -1)
  got = run("decode", image=encode(rgba, "PNG"))["image"].numpy()
  np.testing.assert_array_equal(got, rgba[..., :3])


def test_decode_grey_jpeg_and_decoded_input():
  raw = encode(photo()[..., 1], "JPEG")
  got = run("decode", image=raw)["image"].numpy()
  want = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
  np.testing.assert_array_equal(got, want)
  got = run("decode", image=np.zeros((4, 5, 1), np.uint8))["image"]
  assert got.shape == (4, 5, 3)


def test_decode_in_tf_data_has_static_channels():
  raw = encode(photo(), "PNG")
  ds = tf.data.Dataset.from_tensors({"image": raw}).map(builder.get_preprocess_fn("decode"))
  assert ds.element_spec["image"].shape.as_list() == [None, None, 3]


def test_resize_default_is_plain_bilinear_like_big_vision():
  """big_vision's resize antialiases only when asked: halving [0, 100, 200, 250] samples
  at pixel centres 0.5 and 2.5 -> [50, 225] (an antialiased filter would blend 3 rows)."""
  img = np.array([0, 100, 200, 250], np.uint8)[:, None, None] * np.ones((1, 1, 3), np.uint8)
  got = run("resize((2, 1))", image=img)["image"].numpy()
  np.testing.assert_array_equal(got[:, 0, 0], [50, 225])
  aa = run("resize((2, 1), antialias=True)", image=img)["image"].numpy()
  assert aa[0, 0, 0] != 50


def test_resize_antialiased_bilinear_keeps_dtype():
  img = photo(64, 64)
  got = run("resize(16, antialias=True)", image=img)["image"].numpy()
  want = tf.image.resize(img, (16, 16), "bilinear", antialias=True).numpy()
  assert got.dtype == np.uint8 and got.shape == (16, 16, 3)
  np.testing.assert_array_equal(got, np.clip(want, 0, 255).astype(np.uint8))
  with pytest.raises(ValueError, match="antialias 'yes'. .*Valid: "):
    builder.get_preprocess_fn("resize(8, antialias='yes')")
  plain = run("resize((8, 12), antialias=False)", image=img)["image"]
  assert plain.shape == (8, 12, 3)
  flt = run("resize(16, antialias=True, key='x')", x=img.astype(np.float32))["x"].numpy()
  np.testing.assert_allclose(flt, want, atol=1e-4)


def test_resize_then_value_range_reference_pipeline():
  raw = encode(photo(), "JPEG")
  out = run("decode|resize(32)|value_range(-1, 1)", image=raw)["image"].numpy()
  assert out.dtype == np.float32 and out.shape == (32, 32, 3)
  assert out.min() >= -1 and out.max() <= 1


def test_value_range():
  out = run("value_range(-1, 1)", image=np.array([0, 51, 255], np.uint8))["image"].numpy()
  np.testing.assert_allclose(out, [-1, -0.6, 1], atol=1e-6)
  out = run("value_range(0, 1, in_min=-1, in_max=1, clip_values=True)",
            image=np.array([-3.0, 0.0]))["image"].numpy()
  np.testing.assert_allclose(out, [0, 0.5])
  with pytest.raises(ValueError, match="must be numbers"):
    builder.get_preprocess_fn("value_range('a', 1)")
  with pytest.raises(ValueError, match="need in_min < in_max"):
    builder.get_preprocess_fn("value_range(1, -1)")


def test_central_crop():
  img = np.arange(6 * 8 * 1).reshape(6, 8, 1)
  out = run("central_crop((2, 4))", image=img)["image"].numpy()
  np.testing.assert_array_equal(out, img[2:4, 2:6])
  with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than crop"):
    run("central_crop(10)", image=img)
  with pytest.raises(ValueError, match=r"size=\(0, 2\) must be a positive int"):
    builder.get_preprocess_fn("central_crop((0, 2))")


def test_random_resize_range_and_seed():
  fn = builder.get_preprocess_fn("random_resize(8, 12)")
  sizes = set()
  for i in range(12):
    ex = {"image": tf.constant(photo(32, 32)), "_seed": tf.constant([i, 0])}
    out = fn(ex)["image"]
    assert out.shape[0] == out.shape[1] and 8 <= out.shape[0] <= 12
    assert fn(ex)["image"].shape == out.shape
    sizes.add(out.shape[0])
  assert len(sizes) > 1
  with pytest.raises(ValueError, match="0 < min_size <= max_size"):
    builder.get_preprocess_fn("random_resize(12, 8)")


def test_jpeg_reencode():
  img = photo()
  out = run("jpeg(quality=50)", image=img)["image"].numpy()
  raw = tf.io.encode_jpeg(img, quality=50)
  want = tf.io.decode_jpeg(raw, dct_method="INTEGER_ACCURATE").numpy()
  np.testing.assert_array_equal(out, want)
  out = run("jpeg(quality=(20, 90))", image=img, _seed=[1, 2])["image"]
  assert out.shape == img.shape
  with pytest.raises(ValueError, match="quality=101"):
    builder.get_preprocess_fn("jpeg(quality=101)")
  with pytest.raises(TypeError, match="put it before value_range"):
    run("value_range(-1, 1)|jpeg", image=img)
