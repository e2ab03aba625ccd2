"""Fuzz: bad npz params files and HF safetensors/config.json give one-line errors.

Families: `npz` (load_params + merge_params + layer stacking + dont_load), `hf`
(config.json, safetensors headers and tensor dtypes).
"""
import io
import json
import struct
import warnings
import zipfile

import hypothesis
from hypothesis import strategies as st
import ml_dtypes
import numpy as np
import pytest

from big_vision_lite import checkpoint
from big_vision_lite.hf import io as hf_io
from big_vision_lite.models import common
from big_vision_lite.models import vit
from tests.reliability.fuzz_common import COUNTS, FUZZ, check_error

INIT = {"a": {"w": np.zeros((2, 3), np.float32)}, "b": np.zeros((4,), np.float32)}


def _npy(arr=None, header=None, data=b""):
  """Bytes of a .npy member: `arr`, or a hand-written `header` dict followed by `data`."""
  buf = io.BytesIO()
  if arr is not None:
    np.lib.format.write_array(buf, arr, allow_pickle=False)
  else:
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(data)
  return buf.getvalue()


def _zip(path, members):
  """Writes a zip of [(name, bytes)] (duplicates allowed, as a forged file may have)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # zipfile warns on duplicate names.
    with zipfile.ZipFile(path, "w") as zf:
      for name, data in members:
        zf.writestr(name, data)
  return str(path)


def _load_merge(path):
  return common.merge_params(checkpoint.load_params(path), INIT)


_NON_FLOAT = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"]
_NOT_PARAMS = ["complex64", "complex128", "<U3", "|S5", "|V3", "|V8", "<M8[s]", "<m8[s]",
               [("x", "<f4"), ("y", "<i4")]]


@hypothesis.settings(max_examples=36, **FUZZ)
@hypothesis.given(st.sampled_from(_NON_FLOAT + _NOT_PARAMS), st.sampled_from(["a/w", "b"]),
                  st.booleans())
def test_fuzz_leaf_dtypes(tmp_path_factory, dtype, key, prefixed):
  path = tmp_path_factory.mktemp("npz") / "p.npz"
  shapes = {"a/w": (2, 3), "b": (4,)}
  members = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
  members[key] = np.zeros(shapes[key], np.dtype(dtype))
  prefix = "params/" if prefixed else ""
  _zip(path, [(f"{prefix}{k}.npy", _npy(v)) for k, v in members.items()])
  if dtype in _NON_FLOAT:  # Loads (generic npz), but cannot fill a float param.
    check_error("npz", lambda: _load_merge(str(path)), key, str(np.dtype(dtype)), "float")
  else:
    check_error("npz", lambda: _load_merge(str(path)), f"{prefix}{key}.npy", str(path))


@hypothesis.settings(max_examples=30, **FUZZ)
@hypothesis.given(st.lists(st.integers(1, 2**40), min_size=1, max_size=4),
                  st.sampled_from(["<f4", "<f2", "|V2", "<i8"]), st.integers(0, 64))
def test_fuzz_forged_header_shapes(tmp_path_factory, shape, descr, nbytes):
  """Headers claiming more (or other) data than the member holds: no allocation."""
  itemsize = np.dtype(descr).itemsize
  hypothesis.assume(int(np.prod(shape, dtype=object)) * itemsize != nbytes)
  path = tmp_path_factory.mktemp("npz") / "forged.npz"
  header = {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
  _zip(path, [("a/w.npy", _npy(header=header, data=b"\0" * nbytes))])
  check_error("npz", lambda: checkpoint.load_params(str(path)), "a/w.npy", "header claims",
              str(tuple(shape)))


@hypothesis.settings(max_examples=20, **FUZZ)
@hypothesis.given(st.text(alphabet="abcdefgh/._-", min_size=1, max_size=10).filter(
    lambda n: not n.endswith(".npy") and not n.endswith("/")))
def test_fuzz_members_that_are_not_npy(tmp_path_factory, name):
  path = tmp_path_factory.mktemp("npz") / "p.npz"
  _zip(path, [("a/w.npy", _npy(np.zeros((2, 3), np.float32))), (name, b"hello")])
  check_error("npz", lambda: checkpoint.load_params(str(path)), f"'{name}'", "not a .npy")


@hypothesis.settings(max_examples=30, **FUZZ)
@hypothesis.given(st.binary(max_size=200))
def test_fuzz_random_bytes(tmp_path_factory, data):
  path = tmp_path_factory.mktemp("npz") / "r.npz"
  path.write_bytes(data)
  check_error("npz", lambda: checkpoint.load_params(str(path)), str(path))


@hypothesis.settings(max_examples=25, **FUZZ)
@hypothesis.given(st.floats(0.0, 0.999))
def test_fuzz_truncated_files(tmp_path_factory, frac):
  path = tmp_path_factory.mktemp("npz") / "t.npz"
  checkpoint.save_params(INIT, str(path))
  data = path.read_bytes()
  path.write_bytes(data[:int(frac * len(data))])
  check_error("npz", lambda: checkpoint.load_params(str(path)), str(path))


@pytest.mark.parametrize("members,needles", [
    ([("a/w.npy", np.zeros(2, np.float32)), ("a/w.npy", np.ones(2, np.float32))],
     ["a/w.npy", "appears twice"]),
    ([("a.npy", np.zeros(2, np.float32)), ("a/w.npy", np.zeros(2, np.float32))],
     ["a/w", "nests below a leaf"]),
    ([("a/w.npy", np.zeros(2, np.float32)), ("a.npy", np.zeros(2, np.float32))],
     ["'a'", "both a leaf and a subtree"]),
    ([], ["holds no arrays"]),
])
def test_zip_structure(tmp_path, members, needles):
  path = _zip(tmp_path / "p.npz", [(n, _npy(a)) for n, a in members])
  check_error("npz", lambda: checkpoint.load_params(path), path, *needles)


def test_subtree_paths(tmp_path):
  path = str(tmp_path / "p.npz")
  checkpoint.save_params(INIT, path)
  check_error("npz", lambda: checkpoint.load_params(path + ":a/w"), "'a/w'", "not a subtree")
  check_error("npz", lambda: checkpoint.load_params(path + ":a/x"), "'x'", "Valid: [")
  check_error("npz", lambda: checkpoint.load_params(path + ":c"), "'c'", "['a', 'b']")


_BAD_REGEXES = ["(", "[", "*a", "a{2,1}", "(?P<x", "\\", "a)", "(?<=a+)b", "[z-a]", "+"]


@pytest.mark.parametrize("regex", _BAD_REGEXES)
def test_bad_dont_load_regexes(regex):
  check_error("npz", lambda: common.merge_params({}, INIT, dont_load=[regex]), repr(regex),
              "dont_load")


@hypothesis.settings(max_examples=16, **FUZZ)
@hypothesis.given(st.integers(0, 2), st.sampled_from(["k", "b"]),
                  st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_fuzz_layer_shape_mismatch(layer, key, shape):
  """One layer of a per-layer tree has another shape: the error names layer and key."""
  hypothesis.assume(layer > 0 and tuple(shape) != (2, 2))
  tree = {f"encoderblock_{i}": {"k": np.zeros((2, 2)), "b": np.zeros((2, 2))}
          for i in range(3)}
  tree[f"encoderblock_{layer}"][key] = np.zeros(shape)
  check_error("npz", lambda: common.stack_layers(tree, "encoderblock_", 3),
              f"encoderblock_{layer}/{key}", str(tuple(shape)))


_SCANNED = {"Transformer": {"encoderblock": {"x": np.zeros((1,))}}}
_PER_LAYER = {"Transformer": {"encoderblock_0": {"x": np.zeros(())}}}


@pytest.mark.parametrize("init,params,needles", [
    (_SCANNED, {"Transformer": np.zeros(3)}, ["img/Transformer", "subtree"]),
    (_SCANNED, {"Transformer": {"encoderblock_0": np.zeros(2)}}, ["encoderblock_0",
                                                                  "subtree"]),
    (_PER_LAYER, {"Transformer": {"encoderblock": {"x": np.zeros(())}}}, ["scalars", "x"]),
    (_PER_LAYER, {"Transformer": {"encoderblock": {"x": np.zeros(2), "y": np.zeros(3)}}},
     ["layer axis", "'x': 2"]),
])
def test_leaves_where_subtrees_belong(init, params, needles):
  check_error("npz", lambda: vit.load(init, params), *needles)


# ------------------------------------------------------------------------------- HF


@hypothesis.settings(max_examples=30, **FUZZ)
@hypothesis.given(st.one_of(st.binary(max_size=60),
                            st.sampled_from([b"[1, 2]", b'"x"', b"3", b"null", b"\xff{}",
                                             b"[" * 3000 + b"]" * 3000])))
def test_fuzz_bad_config_json(tmp_path_factory, data):
  try:
    hypothesis.assume(not isinstance(json.loads(data.decode("utf-8")), dict))
  except (UnicodeDecodeError, ValueError, RecursionError):
    pass
  path = tmp_path_factory.mktemp("hf") / "config.json"
  path.write_bytes(data)
  check_error("hf", lambda: hf_io.read_json(str(path)), str(path))


def _safetensors(path, header, data=b""):
  blob = json.dumps(header).encode()
  path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


_HEADER_FAULTS = st.sampled_from([
    ("dtype", "F8"), ("dtype", "f32"), ("dtype", 3), ("shape", [-1, 2]), ("shape", "2x2"),
    ("shape", [2.5]), ("shape", [True]), ("data_offsets", [0]), ("data_offsets", [8, 0]),
    ("data_offsets", [0, 999]), ("data_offsets", [-4, 12]), ("data_offsets", "0-16"),
    ("data_offsets", None), ("shape", [3, 3]), ("dtype", None)])


@hypothesis.settings(max_examples=30, **FUZZ)
@hypothesis.given(_HEADER_FAULTS, st.text(alphabet="abcdefgh._", min_size=1, max_size=12))
def test_fuzz_safetensors_headers(tmp_path_factory, fault, name):
  d = tmp_path_factory.mktemp("st")
  entry = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
  entry[fault[0]] = fault[1]
  _safetensors(d / "model.safetensors", {name: entry}, b"\0" * 16)
  check_error("hf", lambda: hf_io.SafetensorsDir(str(d)), f"'{name}'",
              "model.safetensors")


@pytest.mark.parametrize("arr", [np.zeros((2, 2), np.int32), np.zeros(3, np.int64),
                                 np.zeros(2, np.bool_), np.zeros(4, np.uint8),
                                 np.zeros(2, np.int8), np.zeros(2, np.int16)])
def test_integer_hf_weights_are_refused(tmp_path, arr):
  hf_io.write_safetensors(str(tmp_path), [("w.weight", arr.shape, arr.dtype)],
                          iter([("w.weight", arr)]), 1 << 20)
  src = hf_io.SafetensorsDir(str(tmp_path))
  check_error("hf", lambda: src.get("w.weight", floating=True), "'w.weight'",
              "floating point")
  for ok in (np.float32, ml_dtypes.bfloat16):  # Float weights still load.
    arr_f = np.zeros((2,), ok)
    hf_io.write_safetensors(str(tmp_path / "f"), [("v", (2,), arr_f.dtype)],
                            iter([("v", arr_f)]), 1 << 20)
    assert hf_io.SafetensorsDir(str(tmp_path / "f")).get("v", floating=True).dtype == ok


def test_fuzz_checkpoint_counts():
  assert COUNTS["npz"] >= 36 + 30 + 20 + 30 + 25 + 4 + 3 + 10 + 16 + 4 - 20, COUNTS
  assert COUNTS["hf"] >= 30 + 30 + 6 - 10, COUNTS
