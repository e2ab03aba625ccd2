"""big_vision npz params I/O: round trip, bfloat16, subtrees, prefixes, clear errors."""
import os

import ml_dtypes
import numpy as np
import pytest

from big_vision_lite import checkpoint
from big_vision_lite.models import common


def _tree():
  return {"img": {"head": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)},
                  "pos_embedding": np.ones((1, 4, 2), ml_dtypes.bfloat16) * 1.5},
          "llm": {"final_norm": {"scale": np.array([0.5, -2.0], ml_dtypes.bfloat16)}}}


def test_flatten_unflatten():
  flat = checkpoint.flatten(_tree())
  assert sorted(flat) == ["img/head/kernel", "img/pos_embedding", "llm/final_norm/scale"]
  back = checkpoint.unflatten(flat)
  assert back["img"]["head"]["kernel"] is flat["img/head/kernel"]


def test_round_trip_bf16_and_subtree(tmp_path):
  path = str(tmp_path / "p.npz")
  checkpoint.save_params(_tree(), path)
  assert os.listdir(tmp_path) == ["p.npz"]  # No temporary file left behind.
  with np.load(path, allow_pickle=False) as npz:
    assert npz["llm/final_norm/scale"].dtype == np.dtype("V2")  # big_vision's storage.
  loaded = checkpoint.load_params(path)
  scale = loaded["llm"]["final_norm"]["scale"]
  assert scale.dtype == ml_dtypes.bfloat16
  np.testing.assert_array_equal(scale.astype(np.float32), [0.5, -2.0])
  np.testing.assert_array_equal(loaded["img"]["head"]["kernel"], _tree()["img"]["head"]["kernel"])
  img = checkpoint.load_params(f"{path}:img")
  assert sorted(img) == ["head", "pos_embedding"]
  assert checkpoint.load_params(f"{path}:img/head")["kernel"].shape == (2, 3)
  with pytest.raises(KeyError, match=r"Unknown params key 'vit'\. .*Valid: \['img', 'llm'\]\. "
                     r"\(subtree 'vit' not found"):
    checkpoint.load_params(f"{path}:vit")


def test_params_prefix_is_stripped(tmp_path):
  path = str(tmp_path / "p.npz")
  np.savez(path, **{"params/img/head/kernel": np.zeros((2, 3), np.float32)})
  assert checkpoint.load_params(path)["img"]["head"]["kernel"].shape == (2, 3)


def test_errors_name_the_file(tmp_path):
  missing = str(tmp_path / "nope.npz")
  with pytest.raises(FileNotFoundError, match="nope.npz' .*does not exist"):
    checkpoint.load_params(missing)
  corrupt = tmp_path / "bad.npz"
  corrupt.write_bytes(b"not a zip file at all")
  with pytest.raises(ValueError, match="Could not read params file .*bad.npz"):
    checkpoint.load_params(str(corrupt))
  pickled = str(tmp_path / "obj.npz")
  np.savez(pickled, a=np.array([{"x": 1}], dtype=object))
  with pytest.raises(ValueError, match="obj.npz.*pickled objects are never loaded"):
    checkpoint.load_params(pickled)


def test_merge_params():
  init = {"a": {"w": np.zeros((2,))}, "b": np.ones((3,))}
  merged = common.merge_params({"a": {"w": np.full((2,), 5.0)}}, init, dont_load=["b"])
  np.testing.assert_array_equal(merged["a"]["w"], [5.0, 5.0])
  assert merged["b"] is init["b"]
  with pytest.raises(ValueError, match=r"Missing .*\['b'\]. Unused .*\['c'\]"):
    common.merge_params({"a": {"w": np.zeros(2)}, "c": np.zeros(1)}, init)
  with pytest.raises(ValueError, match=r"wrong shapes: \['a/w: checkpoint \(3,\) != model"):
    common.merge_params({"a": {"w": np.zeros(3)}}, init, dont_load=["b"])
  with pytest.raises(ValueError, match="Bad dont_load regex"):
    common.merge_params({}, init, dont_load=["("])
