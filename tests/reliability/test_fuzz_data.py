"""Fuzz: bad JSONL rows, input configs and image bytes: one-line errors or counted skips.

Families: `jsonl` (DataSource on generated bad rows: the error names file, line and key),
`pipeline` (config.input values), `image` (decode of bad/forged/bomb bytes; the first
line of TF's error is what the pipeline reports), `skip` (bad images under
skip_errors=True are dropped and counted exactly).
"""
import io
import json
import os
import struct
import zlib

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from big_vision_lite import input_pipeline
from big_vision_lite import tokenizer as tl
from big_vision_lite.datasets import jsonl
from big_vision_lite.pp import ops_image
from tests.reliability.fuzz_common import COUNTS, FUZZ, check_error, check_skip

GOOD_ROW = {"image": "a.png", "prefix": "caption en", "suffix": "red", "n": 3,
            "objects": {"bbox": [[0.1, 0.2, 0.3, 0.4]], "label": ["cat"]}}
_NAME = st.text(alphabet="abcdefghij", min_size=1, max_size=5)


def _bad_row(kind, draw_value):
  """(line text, needles) of one bad row of `kind`."""
  row = json.loads(json.dumps(GOOD_ROW))
  if kind == "utf8":
    return json.dumps(row).replace("red", "r\udcffd").encode("utf-8", "surrogateescape"), \
        ["not UTF-8"]
  if kind == "deep":
    depth = draw_value
    return (b'{"prefix": ' + b"[" * depth + b"1" + b"]" * depth + b"}"), ["nested"]
  if kind == "huge_int":
    row["n"] = draw_value
    return json.dumps(row).encode(), ["key 'n'", "int64"]
  if kind == "surrogate":
    return json.dumps(row).replace("red", f"r\\ud{draw_value:03x}d").encode(), \
        ["key 'suffix'", "surrogate"]
  if kind == "nan":
    return json.dumps(row).replace('"n": 3', f'"n": {draw_value}').encode(), \
        [draw_value, "not a finite number"]
  if kind == "f32":
    row["n"] = draw_value
    return json.dumps(row).encode(), ["key 'n'", "float32"]
  if kind == "clash":
    row["objects/" + draw_value] = 1
    row["objects"][draw_value] = 2
    return json.dumps(row).encode(), [f"'objects/{draw_value}'", "flatten"]
  if kind == "null":
    row["suffix"] = None
    return json.dumps(row).encode(), ["key 'suffix'", "None"]
  if kind == "ragged":
    row["objects"]["bbox"] = [[0.1, 0.2, 0.3, 0.4], [0.5] * draw_value]
    return json.dumps(row).encode(), ["bbox", "equal-length"]
  if kind == "type_change":
    row["n"] = "three"
    return json.dumps(row).encode(), ["key 'n'", "first row"]
  if kind == "missing_key":
    del row[draw_value]
    return json.dumps(row).encode(), ["keys differ", f"missing ['{draw_value}']"]
  if kind == "bad_json":
    text = json.dumps(row)
    return text[:draw_value % len(text)].encode() + b"\x01", ["invalid JSON"]
  if kind == "not_object":
    return json.dumps(draw_value).encode(), ["expected a JSON object"]
  raise AssertionError(kind)


_KINDS = {
    "utf8": st.none(), "deep": st.integers(33, 5000), "surrogate": st.integers(0x800, 0xfff),
    "huge_int": st.one_of(st.integers(2**63, 2**200), st.integers(-2**200, -2**63 - 1)),
    "nan": st.sampled_from(["NaN", "Infinity", "-Infinity"]),
    "f32": st.floats(3.5e38, 1e308), "clash": st.sampled_from(["bbox", "label"]),
    "null": st.none(), "ragged": st.integers(1, 6).filter(lambda n: n != 4),
    "type_change": st.none(), "missing_key": st.sampled_from(sorted(GOOD_ROW)),
    "bad_json": st.integers(0, 200),
    "not_object": st.one_of(st.lists(st.integers(), max_size=2), st.integers(), st.text(
        max_size=3)),
}


@hypothesis.settings(max_examples=130, **FUZZ)
@hypothesis.given(st.sampled_from(sorted(_KINDS)).flatmap(
    lambda k: st.tuples(st.just(k), _KINDS[k])), st.integers(1, 3), st.integers(0, 2))
def test_fuzz_bad_jsonl_rows(tmp_path_factory, kind_value, position, blanks):
  kind, value = kind_value
  if kind in ("type_change", "missing_key"):
    position = max(position, 2)  # Differences are judged against the first row.
  d = tmp_path_factory.mktemp("jsonl")
  (d / "a.png").write_bytes(b"x")
  line, needles = _bad_row(kind, value)
  good = json.dumps(GOOD_ROW).encode()
  lines = [good] * 3
  lines.insert(position - 1, line)
  fname = d / "data.jsonl"
  fname.write_bytes(b"\n" * blanks + b"\n".join(lines) + b"\n")
  check_error("jsonl", lambda: jsonl.DataSource(str(fname), fopen_keys=["image"]),
              f"{fname} line {position + blanks}", *needles)


@pytest.mark.parametrize("content", [b"", b"\n", b"  \n\n \t\n"])
def test_empty_jsonl(tmp_path, content):
  fname = tmp_path / "e.jsonl"
  fname.write_bytes(content)
  check_error("jsonl", lambda: jsonl.DataSource(str(fname)), str(fname), "no rows")


@pytest.mark.parametrize("make_link", ["file", "dir", "chain", "abs", "dotdot"])
def test_paths_leaving_the_base_dir(tmp_path, make_link):
  base, outside = tmp_path / "base", tmp_path / "outside"
  base.mkdir()
  outside.mkdir()
  (outside / "secret.png").write_bytes(b"secret")
  value = "img.png"
  if make_link == "file":
    os.symlink(outside / "secret.png", base / "img.png")
  elif make_link == "dir":
    os.symlink(outside, base / "sub")
    value = "sub/secret.png"
  elif make_link == "chain":
    os.symlink(outside / "secret.png", base / "hop")
    os.symlink(base / "hop", base / "img.png")
  elif make_link == "abs":
    value = str(outside / "secret.png")
  else:
    value = "../outside/secret.png"
  fname = base / "d.jsonl"
  fname.write_text(json.dumps({"image": value}) + "\n")
  check_error("jsonl", lambda: jsonl.DataSource(str(fname), fopen_keys=["image"]),
              "line 1", repr(value), "outside the base dir")


_INPUT_FAULTS = {
    "batch_size": st.one_of(st.integers(-10**6, 0), st.floats(0.5, 9.5), st.just("8"),
                            st.just(True)),
    "prefetch": st.one_of(st.integers(-10**6, -1), st.floats(0.5, 9.5), st.just("2")),
    "shuffle_buffer_size": st.one_of(st.integers(-10**6, 0), st.just(2.5)),
    "skip_errors": st.sampled_from(["yes", 1, 0, None]),
    "seed": st.one_of(st.integers(-10**9, -1), st.just(2.5), st.just("0")),
}


@hypothesis.settings(max_examples=50, **FUZZ)
@hypothesis.given(st.sampled_from(sorted(_INPUT_FAULTS)).flatmap(
    lambda k: st.tuples(st.just(k), _INPUT_FAULTS[k])))
def test_fuzz_input_config_values(key_value):
  key, value = key_value
  cfg = dict(data=dict(name="jsonl", fname="/nonexistent/never_read.jsonl"), pp="decode",
             batch_size=8)
  seed = 0
  if key == "seed":
    seed = value
  else:
    cfg[key] = value
  check_error("pipeline", lambda: input_pipeline.training(cfg, seed=seed), key, repr(value))


@pytest.mark.parametrize("data,needles", [
    ("jsonl", ["config.input.data='jsonl'", "must be a dict"]),
    ({"a": float("nan")}, ["input.data['a']", "nan"]),
    ({"a": -1.0}, ["input.data['a']", "-1.0"]),
    ({"a": "x"}, ["input.data['a']", "'x'"]),
    ({"a": True}, ["input.data['a']", "True"]),
    ({"a": 1.0}, ["'a' has no config"]),
])
def test_bad_mixtures(data, needles):
  cfg = dict(data=data, pp="decode", batch_size=8)
  check_error("pipeline", lambda: input_pipeline.training(cfg, seed=0), *needles)


# ---------------------------------------------------------------------------- images


def _png_header(w, h):
  ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
  chunk = b"IHDR" + ihdr
  return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk +
          struct.pack(">I", zlib.crc32(chunk)))


def _forged(fmt, w, h):
  """A tiny file whose header claims w x h pixels."""
  if fmt == "png":
    return _png_header(w, h)
  if fmt == "gif":
    return b"GIF89a" + struct.pack("<HH", w % 65536, h % 65536) + b"\0" * 8
  if fmt == "bmp":
    return b"BM" + b"\0" * 12 + struct.pack("<Iii", 40, w, -h) + b"\0" * 24
  if fmt == "vp8x":
    return (b"RIFF\0\0\0\0WEBPVP8X" + b"\x0a\0\0\0" + b"\0" * 4 +
            (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little") + b"\0" * 8)
  if fmt == "vp8l":
    bits = (w - 1) | ((h - 1) << 14)
    return b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f" + struct.pack("<I", bits) + b"\0" * 8
  raise AssertionError(fmt)


_LIMITS = {"png": 2**31 - 1, "gif": 65535, "bmp": 2**31 - 1, "vp8x": 2**24, "vp8l": 2**14}


def _decode_error(raw):
  """The one-line message the pipeline reports for decoding `raw` (or None)."""
  try:
    ops_image.decode_image(tf.constant(raw))
  except tf.errors.OpError as e:
    return input_pipeline._clean(e.message)  # pylint: disable=protected-access
  return None


@hypothesis.settings(max_examples=40, **FUZZ)
@hypothesis.given(st.sampled_from(sorted(_LIMITS)).flatmap(lambda f: st.tuples(
    st.just(f), st.integers(1, _LIMITS[f]), st.integers(1, _LIMITS[f]))))
def test_fuzz_forged_size_headers_fail_before_decoding(fmt_w_h):
  fmt, w, h = fmt_w_h
  hypothesis.assume(w * h > ops_image.MAX_PIXELS)
  def run():
    msg = _decode_error(_forged(fmt, w, h))
    raise ValueError(msg)
  check_error("image", run, "decode:", "max_pixels")


@hypothesis.settings(max_examples=40, **FUZZ)
@hypothesis.given(st.one_of(
    st.binary(max_size=64).filter(lambda b: not b.startswith(
        (b"\x89PNG", b"GIF", b"BM", b"RIFF", b"\xff\xd8"))),
    st.sampled_from([b"II*\x00" + b"\0" * 40, b"MM\x00*" + b"\0" * 40, b"P6\n7 5\n255\n",
                     b"\xff\x0a" + b"\0" * 40, b"\0\0\0\x0cJXL \r\n\x87\n" + b"\0" * 20,
                     b"\0\0\x01\0\x01\0" + b"\0" * 30, b""])))
def test_fuzz_unknown_formats_refused(raw):
  def run():
    raise ValueError(_decode_error(raw))
  check_error("image", run, "decode:", "not a JPEG, PNG, GIF, BMP or WebP")


def _encode(img, fmt, **kw):
  buf = io.BytesIO()
  img.save(buf, format=fmt, **kw)
  return buf.getvalue()


BAD_IMAGES = {
    "tiff": lambda: _encode(Image.new("RGB", (6, 5)), "TIFF"),
    "ppm": lambda: _encode(Image.new("RGB", (6, 5)), "PPM"),
    "empty": lambda: b"",
    "text": lambda: b"not an image",
    "webp_bomb": lambda: _forged("vp8x", 9000, 9000),
    "bmp_bomb": lambda: _forged("bmp", 9000, 9000),
    "gif_bomb": lambda: _forged("gif", 9000, 9000),
    "png_bomb": lambda: _forged("png", 20000, 20000),
    "truncated_png": lambda: _encode(Image.new("RGB", (6, 5), (9, 9, 9)), "PNG")[:45],
    "truncated_jpg": lambda: _encode(Image.new("RGB", (6, 5), (9, 9, 9)), "JPEG")[:200],
}


def test_bad_images_are_skipped_and_counted(tmp_path):
  """skip_errors=True: every bad image row is dropped and counted, good rows pass."""
  tok = tl.train_tokenizer(["caption en red"] * 4, str(tmp_path / "t.model"), 300)
  good = _encode(Image.new("RGB", (6, 5), (200, 10, 10)), "PNG")
  (tmp_path / "good.png").write_bytes(good)
  rows = []
  for name, make in BAD_IMAGES.items():
    (tmp_path / f"{name}.img").write_bytes(make())
    rows += [{"image": f"{name}.img"}, {"image": "good.png"}]
  fname = tmp_path / "d.jsonl"
  fname.write_text("".join(json.dumps(dict(r, prefix="caption en", suffix="red")) + "\n"
                           for r in rows))
  cfg = dict(data=dict(name="jsonl", fname=str(fname), fopen_keys=["image"]),
             pp=f"decode|resize(8)|value_range(-1, 1)|combine_and_keep_train(16, "
                f"model={tok!r})", batch_size=len(BAD_IMAGES), skip_errors=True,
             shuffle_buffer_size=1)
  data = input_pipeline.training(cfg, seed=0)
  epochs = 4
  for _ in range(epochs):  # One batch = the good rows of one epoch.
    batch = next(data)
    np.testing.assert_allclose((batch["image"][:, 0, 0] + 1) * 127.5,
                               np.tile([[200, 10, 10]], (len(BAD_IMAGES), 1)), atol=1)
  assert data.counts() == {"jsonl": epochs * len(BAD_IMAGES)}
  n = len(BAD_IMAGES)
  check_skip("skip", data.skipped()["jsonl"], (epochs - 1) * n, epochs * n, n_inputs=n)


def test_fuzz_data_counts():
  assert COUNTS["jsonl"] >= 130 + 3 + 5, COUNTS
  assert COUNTS["pipeline"] >= 50 + 6, COUNTS
  assert COUNTS["image"] >= 80, COUNTS
  assert COUNTS["skip"] >= len(BAD_IMAGES), COUNTS
