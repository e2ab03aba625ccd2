"""Bad-data fuzzing of the JSONL source + training/eval pipelines.

Every input is either processed correctly (checked against an independent expectation),
skipped and counted under `skip_errors`, or a fatal error naming the row and the field or
pp op. Never a hang (an all-failing source raises), never a silent wrong example.
"""
import io
import json
import math
import re

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from big_vision_lite import input_pipeline
from big_vision_lite.pp import builder
from big_vision_lite import tokenizer as tl

L = 24  # text_len
RES = 8
RGB = (200, 100, 50)
CORPUS = ["caption en", "what is the color", "a red square", "Zürich ü 42", "\n"] * 8


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory):
  return tl.train_tokenizer(CORPUS, str(tmp_path_factory.mktemp("tok") / "t.model"), 300)


@pytest.fixture(scope="module")
def tok(tok_path):
  return tl.Tokenizer(tok_path)


def _encode(img, fmt, **kw):
  buf = io.BytesIO()
  img.save(buf, format=fmt, **kw)
  return buf.getvalue()


def _big_png():
  Image.MAX_IMAGE_PIXELS = None
  return _encode(Image.new("L", (10_000, 10_000), 0), "PNG")  # 100M px, ~100 kB.


GOOD = {  # name -> (bytes factory, tolerance of pixel values vs PIL's decode)
    "rgb.png": (lambda: _encode(Image.new("RGB", (6, 5), RGB), "PNG"), 0),
    "grey.png": (lambda: _encode(Image.new("L", (6, 5), 77), "PNG"), 0),
    "rgba.png": (lambda: _encode(Image.new("RGBA", (6, 5), RGB + (0,)), "PNG"), 0),
    "palette.png": (lambda: _encode(Image.new("RGB", (6, 5), RGB).convert("P"), "PNG"), 0),
    "cmyk.jpg": (lambda: _encode(Image.new("CMYK", (6, 5), (0, 255, 255, 0)), "JPEG",
                                 quality=100), 2),
    "grey.jpg": (lambda: _encode(Image.new("L", (6, 5), 77), "JPEG", quality=100), 2),
    "rgb.jpg": (lambda: _encode(Image.new("RGB", (6, 5), RGB), "JPEG", quality=100), 3),
    "big.png": (lambda: _encode(Image.new("RGB", (900, 700), RGB), "PNG"), 0),
    "rgb.gif": (lambda: _encode(Image.new("RGB", (6, 5), RGB), "GIF"), 0),
    "rgb.bmp": (lambda: _encode(Image.new("RGB", (6, 5), RGB), "BMP"), 0),
}
EXPECTED = {}  # name -> RGB pixel, filled by the image_dir fixture.
BAD = {  # name -> (bytes factory, regex of the error)
    "truncated.png": (lambda: GOOD["rgb.png"][0]()[:40], "Invalid PNG|PNG"),
    "truncated.jpg": (lambda: GOOD["rgb.jpg"][0]()[:300], "JPEG"),
    "zero.png": (lambda: b"", "empty"),
    "garbage.png": (lambda: b"this is not an image at all" * 3, "format|image"),
    "bad_header.png": (lambda: b"\x89PNG\r\n\x1a\n" + bytes(range(200)), "PNG|max_pixels"),
    "bomb.png": (_big_png, "max_pixels"),
}


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("imgs")
  (d / "sub").mkdir()
  for name, spec in list(GOOD.items()) + list(BAD.items()):
    (d / name).write_bytes(spec[0]())
  for name in GOOD:  # The reference decode: PIL, RGB (solid images: any pixel).
    EXPECTED[name] = Image.open(d / name).convert("RGB").getpixel((0, 0))
  (d.parent / "outside.png").write_bytes(GOOD["rgb.png"][0]())
  return d


def _write(d, rows, name="data.jsonl"):
  with open(d / name, "w", encoding="utf-8") as f:
    for r in rows:
      f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
  return str(d / name)


def _pp(tok_path):
  return (f"decode|resize({RES})|value_range(-1, 1)|"
          f"combine_and_keep_train({L}, model={tok_path!r})")


def _data(fname):
  return dict(name="jsonl", fname=fname, fopen_keys=["image"])


def _expected_text(tok, prefix, suffix):
  ids = tok.encode(prefix, bos=True) + tok.encode("\n") + tok.encode(suffix, eos=True)
  return ids


def _check_example(tok, ex, row):
  """The pipeline output of one row equals what the row says (no silent corruption)."""
  ids = _expected_text(tok, row["prefix"], row["suffix"])
  n_real = int(ex["mask_input"].sum())
  if len(ids) <= L:
    np.testing.assert_array_equal(ex["text"], ids + [0] * (L - len(ids)))
    assert n_real == len(ids)
  else:  # Truncated: BOS first, sep and EOS kept, flagged.
    assert ex["text"][0] == tok.bos_id and ex["text"][n_real - 1] == tok.eos_id
    assert n_real == L and int(ex["_truncated"]) == 1
  assert ex["mask_loss"].sum() >= 1
  assert ex["image"].shape == (RES, RES, 3)
  pix = (ex["image"][0, 0] + 1) * 127.5
  np.testing.assert_allclose(pix, EXPECTED[row["image"]], atol=GOOD[row["image"]][1] + 1)


def _eval_examples(fname, pp, n):
  ev = input_pipeline.evaluation(_data(fname), pp, n)
  batch = next(iter(ev))
  return [{k: v[i] for k, v in batch.items()} for i in range(n)]


def test_good_images_processed_correctly(image_dir, tok, tok_path):
  rows = [{"image": name, "prefix": "caption en", "suffix": "a red square"}
          for name in sorted(GOOD)]
  fname = _write(image_dir, rows, "good.jsonl")
  for ex, row in zip(_eval_examples(fname, _pp(tok_path), len(rows)), rows):
    _check_example(tok, ex, row)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_image_bytes_fail_decode_clearly(image_dir, name):
  decode = builder.get_preprocess_fn("decode")
  with pytest.raises(tf.errors.InvalidArgumentError, match=BAD[name][1]):
    decode({"image": tf.constant((image_dir / name).read_bytes())})


def test_bad_images_fatal_naming_row_or_skipped_and_counted(image_dir, tok_path):
  rows = [{"image": "rgb.png", "prefix": f"p{i}", "suffix": "s"} for i in range(16)]
  for i, name in enumerate(sorted(BAD)):
    rows[2 * i + 1]["image"] = name  # Rows 1, 3, ..., 11 bad; 10 good rows.
  fname = _write(image_dir, rows, "bad.jsonl")
  cfg = dict(batch_size=5, data=_data(fname), pp=_pp(tok_path), shuffle_buffer_size=4)
  with pytest.raises(ValueError, match=r"row 1 \(.*bad\.jsonl line 2\) failed in pp op "
                     rf"'decode'.*({BAD[sorted(BAD)[0]][1]})"):
    next(input_pipeline.training(cfg, seed=0))
  it = input_pipeline.training(dict(cfg, skip_errors=True), seed=0)
  batches = [next(it) for _ in range(10)]  # 50 good rows: 5 epochs of 10.
  assert it.counts() == {"jsonl": 50}
  assert 5 * len(BAD) - len(BAD) <= it.skipped()["jsonl"] <= 5 * len(BAD) + len(BAD)
  for b in batches:
    assert np.isfinite(b["image"]).all() and b["image"].shape == (5, RES, RES, 3)


def test_all_rows_failing_with_skip_errors_raises_instead_of_hanging(image_dir, tok_path):
  rows = [{"image": n, "prefix": "p", "suffix": "s"} for n in ("zero.png", "garbage.png")]
  cfg = dict(batch_size=2, data=_data(_write(image_dir, rows, "allbad.jsonl")),
             pp=_pp(tok_path), skip_errors=True, shuffle_buffer_size=2)
  with pytest.raises(ValueError, match=r"rows in a row failed with skip_errors=True; every "
                     r"row fails.*row 0 \(.*line 1\) failed in pp op 'decode'"):
    next(input_pipeline.training(cfg, seed=0))


@pytest.mark.parametrize("path,error", [
    ("../outside.png", r"line 2 key 'image': path '\.\./outside\.png' .* outside the base"),
    ("sub/../../outside.png", r"line 2 key 'image': path .* outside the base dir"),
    ("/etc/passwd", r"line 2 key 'image': path '/etc/passwd' .* outside the base dir"),
    ("missing.png", r"line 2 key 'image': file 'missing\.png' .* does not exist"),
    ("sub", r"line 2 key 'image': file 'sub' .* not a file"),
    (7, r"line 2 key 'image': expected str .*got int"),
])
def test_bad_paths_fail_at_build_naming_line_and_key(image_dir, path, error):
  rows = [{"image": "rgb.png", "prefix": "p"}, {"image": path, "prefix": "q"}]
  with pytest.raises((ValueError, TypeError, FileNotFoundError), match=error):
    input_pipeline.evaluation(_data(_write(image_dir, rows, "paths.jsonl")), "keep('x')", 2)


@pytest.mark.parametrize("line,error", [
    ("{not json", r"line 2: invalid JSON"),
    ("[1, 2]", r"line 2: expected a JSON object per line, got list"),
    ('{"image": "rgb.png"}', r"line 2: keys differ.*missing \['prefix', 'suffix'\]"),
    ('{"image": "rgb.png", "prefix": "a", "suffix": "b", "x": 1}',
     r"line 2: keys differ.*unexpected \['x'\]"),
    ('{"image": "rgb.png", "prefix": null, "suffix": "b"}', r"line 2 key 'prefix'.*no null"),
    ('{"image": "rgb.png", "prefix": 3, "suffix": "b"}',
     r"line 2 key 'prefix': expected str .*got int"),
    ('{"image": "rgb.png", "prefix": {"a": 1}, "suffix": "b"}', r"line 2 key 'prefix'"),
])
def test_malformed_rows_fail_at_build_naming_line_and_key(image_dir, line, error):
  rows = [{"image": "rgb.png", "prefix": "p", "suffix": "s"}, line]
  with pytest.raises((ValueError, TypeError, KeyError), match=error):
    input_pipeline.evaluation(_data(_write(image_dir, rows, "rows.jsonl")), "keep('x')", 2)


@pytest.mark.parametrize("prefix,error", [
    (7, r"'prefix' must be a string or a list of token ids .*got int64"),
    (0.5, r"'prefix' must be a string or a list of token ids .*got float"),
    (True, r"'prefix' must be a string or a list of token ids .*got bool"),
    ([99999], r"token ids of 'prefix' exceed the vocab"),
    ([-3], r"negative token ids in 'prefix'"),
    (["a", "b"], r"'prefix' must be one string"),
])
def test_wrong_field_types_never_become_silent_token_ids(image_dir, tok_path, prefix, error):
  rows = [{"image": "rgb.png", "prefix": prefix, "suffix": "s"}]
  fname = _write(image_dir, rows, "types.jsonl")
  with pytest.raises((TypeError, ValueError), match=error):
    _eval_examples(fname, _pp(tok_path), 1)


TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\n\n", "ü" * 600, "😀 \u200b\u202e rtl", "<loc0005><seg017>",
                     "a\x00b", "\\n", "x" * 5000, "Zürich 42"]))
VALUE = st.one_of(TEXT, TEXT, TEXT, st.integers(-5, 5), st.floats(allow_nan=False),
                  st.booleans(), st.none(), st.lists(st.text(max_size=3), max_size=2))
IMAGE = st.sampled_from(sorted(GOOD)[:4] * 3 + ["missing.png", "../outside.png", "zero.png",
                                                5])
ROW = st.fixed_dictionaries({"image": IMAGE, "prefix": VALUE, "suffix": VALUE},
                            optional={"extra": st.integers()})


@hypothesis.settings(deadline=None, max_examples=10, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(rows=st.lists(ROW, min_size=1, max_size=4))
def test_fuzz_rows(image_dir, tok, tok_path, rows):
  fname = _write(image_dir, rows, "fuzz.jsonl")
  pp = _pp(tok_path)
  try:
    examples = _eval_examples(fname, pp, len(rows))
  except (KeyError, TypeError, FileNotFoundError, ValueError) as e:
    msg = str(e)
    at_build = re.search(r"fuzz\.jsonl(:| line \d+).*(key|JSON)", msg)
    at_run = re.search(r"row (\d+) \(.*fuzz\.jsonl line \d+\) failed (in pp op '|while)",
                       msg) or "pp op 'combine_and_keep_train" in msg
    assert at_build or at_run, msg
    return
  for ex, row in zip(examples, rows):  # Success: every row must be reproduced exactly.
    assert isinstance(row["prefix"], str) and isinstance(row["suffix"], str), (row, ex)
    assert row["image"] in GOOD, row
    _check_example(tok, ex, row)


def test_long_and_unicode_text_round_trips(image_dir, tok, tok_path):
  rows = [{"image": "rgb.png", "prefix": p, "suffix": s} for p, s in [
      ("", ""), ("ü" * 3, "😀"), ("x" * 3000, "short"), ("short", "y" * 3000),
      ("a\x00b", "\u202e")]]
  fname = _write(image_dir, rows, "text.jsonl")
  for ex, row in zip(_eval_examples(fname, _pp(tok_path), len(rows)), rows):
    _check_example(tok, ex, row)
  assert math.isfinite(float(ex["image"].sum()))
