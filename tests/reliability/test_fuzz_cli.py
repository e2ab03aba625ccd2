"""Fuzz: the CLIs on bad inputs print one `error: ...` line on stderr, exit 1, no traceback,
and write nothing.

Family `cli`. Most inputs run in-process through `cli.run(main, argv)` (exactly what
`python -m tools.X` runs, minus interpreter start-up); `test_real_processes` runs each
tool once as a real subprocess to check the `__main__` wiring, with a time bound.
"""
import io
import json
import math
import os
import struct
import subprocess
import sys
import zlib

import hypothesis
from hypothesis import strategies as st
import jax
import numpy as np
from PIL import Image
import pytest

from big_vision_lite import checkpoint
from big_vision_lite import cli
from big_vision_lite import tokenizer
from big_vision_lite.models import paligemma
from tests.reliability.fuzz_common import COUNTS, FUZZ, VALID_WORDS
from tools import convert_checkpoint
from tools import make_tokenizer
from tools import predict
from tools import visualize

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUBPROCESS_BOUND_S = 300


def _png(w=6, h=5):
  buf = io.BytesIO()
  Image.new("RGB", (w, h), (9, 99, 199)).save(buf, format="PNG")
  return buf.getvalue()


def _png_header(w, h):
  chunk = b"IHDR" + struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
  return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(
      ">I", zlib.crc32(chunk))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp("cli")
  tok = tokenizer.train_tokenizer(["caption en a cat"] * 8, str(d / "tok.model"), 300)
  (d / "good.png").write_bytes(_png())
  return dict(dir=d, tok=tok, image=str(d / "good.png"))


def run_cli(main, argv, *needles, out=None):
  """Runs a tool's main through `cli.run`; checks exit 1 and one `error:` line."""
  COUNTS["cli"] += 1
  stderr = io.StringIO()
  old, sys.stderr = sys.stderr, stderr
  try:
    with pytest.raises(SystemExit) as info:
      cli.run(main, argv)
  finally:
    sys.stderr = old
  lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
  errors = [line for line in lines if line.startswith("error: ")]
  assert info.value.code == 1, (info.value.code, lines)
  assert len(errors) == 1 and errors[0] == lines[-1], lines
  assert "Traceback" not in stderr.getvalue()
  for needle in needles:
    assert str(needle) in errors[0], (needle, errors[0])
  assert VALID_WORDS.search(errors[0]), errors[0]
  if out is not None:
    assert not os.path.exists(out), f"{out} written despite the error"
  return errors[0]


_IMAGE_BYTES = st.one_of(
    st.binary(max_size=80).filter(lambda b: not b.startswith((b"\x89PNG", b"\xff\xd8",
                                                              b"GIF", b"BM", b"RIFF"))),
    st.integers(1, len(_png()) - 13).map(lambda n: _png()[:n]),  # Cut before IEND.
    st.tuples(st.integers(9000, 60000), st.integers(9000, 60000)).map(
        lambda wh: _png_header(*wh)))


@hypothesis.settings(max_examples=30, **FUZZ)
@hypothesis.given(_IMAGE_BYTES)
def test_fuzz_predict_bad_images(files, raw):
  path = files["dir"] / "bad_image"
  path.write_bytes(raw)
  run_cli(predict.main, ["--ckpt", "/nonexistent.npz", "--tokenizer", files["tok"],
                         "--image", str(path), "--prompt", "caption en"], str(path))


_BAD_LINES = [b"{", b"[1, 2]", b'{"image": "x.png"}', b'{"prompt": "p"}', b"\xff\xfe",
              b'{"image": 3, "prompt": "p"}', b"[" * 5000, b'"just a string"']


@pytest.mark.parametrize("line", _BAD_LINES)
def test_predict_bad_jsonl_items(files, line):
  path = files["dir"] / "items.jsonl"
  path.write_bytes(json.dumps({"image": files["image"], "prompt": "p"}).encode() + b"\n" +
                   line + b"\n")
  run_cli(predict.main, ["--ckpt", "/x.npz", "--tokenizer", files["tok"],
                         "--jsonl", str(path)], f"{path} line 2")


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x00" * 64, b"\n\x05hello"])
def test_predict_bad_tokenizer(files, content):
  path = files["dir"] / "bad.model"
  path.write_bytes(content)
  run_cli(predict.main, ["--ckpt", "/x.npz", "--tokenizer", str(path), "--image",
                         files["image"], "--prompt", "p"], str(path), "SentencePiece")


@pytest.mark.parametrize("content", [None, b"", b"PK\x03\x04 truncated zip"])
def test_predict_bad_checkpoint(files, content):
  path = files["dir"] / "bad.npz"
  if content is None:
    path = files["dir"] / "missing.npz"
  else:
    path.write_bytes(content)
  run_cli(predict.main, ["--ckpt", str(path), "--tokenizer", files["tok"], "--image",
                         files["image"], "--prompt", "p"], str(path))


def test_predict_vocab_mismatch(files):
  n = tokenizer.Tokenizer(files["tok"]).vocab_size
  model = paligemma.Model(img=dict(variant="mu/14", scan=True),
                          llm=dict(variant="gemma_tiny", vocab_size=n - 5, scan=True))
  shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 28, 28, 3), np.float32),
                          np.zeros((1, 4), np.int32), np.zeros((1, 4), np.int32))
  params = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes["params"])
  ckpt = str(files["dir"] / "small_vocab.npz")
  checkpoint.save_params(params, ckpt)
  run_cli(predict.main, ["--ckpt", ckpt, "--tokenizer", files["tok"], "--image",
                         files["image"], "--prompt", "p"], f"{n - 5} rows", str(n))


@hypothesis.settings(max_examples=20, **FUZZ)
@hypothesis.given(st.sampled_from(["--res", "--text_len", "--max_decode_len", "--batch_size",
                                   "--model_cfg"]),
                  st.one_of(st.integers(-10**6, 0).map(str), st.sampled_from(
                      ["x", "1.5", "", "[1]", "{", "null"])))
def test_fuzz_predict_bad_flag_values(files, flag, value):
  """argparse usage errors: exit 2, the last stderr line names the flag and what is valid."""
  COUNTS["cli"] += 1
  stderr = io.StringIO()
  old, sys.stderr = sys.stderr, stderr
  try:
    with pytest.raises(SystemExit) as info:
      cli.run(predict.main, ["--ckpt", "x", "--tokenizer", files["tok"], "--image",
                             files["image"], "--prompt", "p", flag, value])
  finally:
    sys.stderr = old
  last = stderr.getvalue().strip().splitlines()[-1]
  assert info.value.code == 2 and "Traceback" not in stderr.getvalue()
  assert f"argument {flag}" in last and ("valid" in last or "invalid" in last), last


_BOX = st.one_of(
    st.lists(st.floats(0, 10), min_size=0, max_size=6).filter(lambda b: len(b) != 4),
    st.tuples(st.floats(3, 5), st.floats(0, 1), st.floats(0, 1), st.floats(2, 3)).map(list),
    st.lists(st.sampled_from([math.nan, math.inf, -math.inf, "1", None, True]),
             min_size=4, max_size=4),
    st.lists(st.floats(1e9, 1e300), min_size=4, max_size=4).map(sorted).map(
        lambda b: [b[0], b[1], b[2], b[3]]))


@hypothesis.settings(max_examples=30, **FUZZ)
@hypothesis.given(_BOX)
def test_fuzz_visualize_bad_boxes(files, box):
  pred = files["dir"] / "pred.jsonl"
  rec = {"answer": "", "objects": [{"label": "cat", "box": box}], "invalid": []}
  pred.write_text(json.dumps(rec) + "\n")
  out = str(files["dir"] / "never.png")
  run_cli(visualize.main, ["--image", files["image"], "--pred", str(pred), "--out", out],
          f"{pred} line 1 object 0", "box", out=out)


_RLE = st.one_of(
    st.fixed_dictionaries({"size": st.just([5, 6]), "counts": st.lists(
        st.integers(-10**13, 10**13), min_size=1, max_size=4)}).filter(
            lambda r: sum(r["counts"]) != 30 or min(r["counts"]) < 0),
    st.fixed_dictionaries({"size": st.lists(st.integers(-3, 9), max_size=3),
                           "counts": st.just([30])}).filter(lambda r: r["size"] != [5, 6]),
    st.just({"counts": [30]}), st.just("rle"))


@hypothesis.settings(max_examples=30, **FUZZ)
@hypothesis.given(_RLE)
def test_fuzz_visualize_bad_masks(files, rle):
  pred = files["dir"] / "pred.jsonl"
  rec = {"objects": [{"label": "cat", "box": [0, 0, 2, 2], "mask": rle}], "invalid": []}
  pred.write_text(json.dumps(rec) + "\n")
  out = str(files["dir"] / "never.png")
  run_cli(visualize.main, ["--image", files["image"], "--pred", str(pred), "--out", out],
          "object 0", out=out)


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b"\xff", b'{"objects": 3}',
                                     b'{"objects": [3]}', b'{"objects": [{"box": [0, 0, 1, 1], '
                                     b'"label": 7}]}', b"NaN"])
def test_visualize_malformed_prediction_files(files, content):
  pred = files["dir"] / "pred.jsonl"
  pred.write_bytes(content + b"\n")
  out = str(files["dir"] / "never.png")
  run_cli(visualize.main, ["--image", files["image"], "--pred", str(pred), "--out", out],
          str(pred), out=out)


@pytest.mark.parametrize("raw", [b"", b"text", _png_header(20000, 20000)])
def test_visualize_bad_images(files, raw):
  path = files["dir"] / "v.img"
  path.write_bytes(raw)
  out = str(files["dir"] / "never.png")
  run_cli(visualize.main, ["--image", str(path), "--answer", "x", "--out", out], str(path),
          out=out)


@pytest.mark.parametrize("content", [b"", b"{", b"[1]", b"\xff\xfe{}", b"[" * 5000])
def test_convert_bad_config_json(files, content):
  d = files["dir"] / "hf"
  d.mkdir(exist_ok=True)
  (d / "config.json").write_bytes(content)
  out = str(files["dir"] / "never.npz")
  run_cli(convert_checkpoint.main, [str(d), out], "config.json", out=out)


def test_convert_bad_sources(files):
  out = str(files["dir"] / "never.npz")
  run_cli(convert_checkpoint.main, [str(files["dir"] / "nope"), out], "nope", out=out)
  npz = str(files["dir"] / "p.npz")
  checkpoint.save_params({"a": np.zeros(2, np.float32)}, npz)
  run_cli(convert_checkpoint.main, [npz, out], "--dtype", out=out)


@pytest.mark.parametrize("case", ["garbage_model", "empty_corpus", "binary_corpus",
                                  "missing_corpus"])
def test_make_tokenizer_bad_inputs(files, case):
  d = files["dir"]
  out = str(d / "never.model")
  if case == "garbage_model":
    (d / "g.model").write_bytes(b"garbage")
    argv, needle = ["extend", "--input", str(d / "g.model"), "--output", out], "g.model"
  else:
    corpus = d / f"{case}.txt"
    if case != "missing_corpus":
      corpus.write_bytes(b"" if case == "empty_corpus" else b"caption \xff\xfe\n")
    argv = ["train", "--corpus", str(corpus), "--output", out]
    needle = "empty corpus" if case == "empty_corpus" else str(corpus)
  run_cli(make_tokenizer.main, argv, needle, out=out)


def _untracked():
  out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO,
                       capture_output=True, text=True, check=True).stdout
  return set(out.splitlines())


def test_real_processes(tmp_path, files):
  """`python -m tools.X` on bad inputs: one error line, exit 1, nothing written."""
  (tmp_path / "empty.png").write_bytes(b"")
  (tmp_path / "pred.jsonl").write_text('{"objects": [{"box": [1, 2], "label": "x"}]}\n')
  (tmp_path / "hf").mkdir()
  (tmp_path / "hf" / "config.json").write_text("{not json")
  (tmp_path / "bad.model").write_bytes(b"garbage")
  runs = [
      (["tools.predict", "--ckpt", "x.npz", "--tokenizer", files["tok"], "--image",
        "empty.png", "--prompt", "p"], "empty.png"),
      (["tools.visualize", "--image", files["image"], "--pred", "pred.jsonl", "--out",
        "out.png"], "pred.jsonl line 1 object 0"),
      (["tools.convert_checkpoint", "hf", "out.npz"], "config.json"),
      (["tools.make_tokenizer", "extend", "--input", "bad.model", "--output", "out.model"],
       "bad.model"),
  ]
  before_repo, before_dir = _untracked(), set(os.listdir(tmp_path))
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  for argv, needle in runs:
    COUNTS["cli"] += 1
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=SUBPROCESS_BOUND_S)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, (argv, proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[-1].startswith("error: ") and needle in lines[-1], lines[-3:]
    assert sum(line.startswith("error: ") for line in lines) == 1, lines
  assert set(os.listdir(tmp_path)) == before_dir  # No outputs, no stray files.
  assert _untracked() == before_repo  # Nothing written into the repository either.
  # --traceback restores the full trace for bug reports.
  proc = subprocess.run([sys.executable, "-m", "tools.make_tokenizer", "extend", "--input",
                         "bad.model", "--output", "out.model", "--traceback"], cwd=tmp_path,
                        env=env, capture_output=True, text=True, timeout=SUBPROCESS_BOUND_S)
  assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_fuzz_cli_counts():
  assert COUNTS["cli"] >= 30 + 8 + 4 + 3 + 1 + 20 + 30 + 30 + 8 + 3 + 5 + 2 + 4 + 4, COUNTS
