"""Fuzz: HF PaliGemma folders whose tensors do not fit their config.json.

Family `hf_shapes`: a tiny HF PaliGemma folder (written offline by transformers) with
one tensor of a wrong shape (each kind of tensor, and random reshapes), one dropped or
added, a non-float tensor, or a config.json whose sizes disagree with the tensors.
Each must give a one-line error naming the file, the tensor, its shape, the expected
shape and the config field, and write no output file.
"""
import json
import os
import re

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest
from safetensors.numpy import save_file

from big_vision_lite import cli
from big_vision_lite.hf import convert as hf_convert
from big_vision_lite.hf import io as hf_io
from tests.reliability.fuzz_common import COUNTS, FUZZ, check_error
from tests.test_hf_convert import make_hf_model
from tools import convert_checkpoint

FAMILY = "hf_shapes"
# The config field that an error about a tensor must name (first matching pattern).
_FIELD = [
    (r"patch_embedding\.weight$", "vision_config.patch_size"),
    (r"position_embedding", "vision_config.image_size"),
    (r"multi_modal_projector.*weight$", "projection_dim"),
    (r"multi_modal_projector", "projection_dim"),
    (r"embed_tokens", "text_config.vocab_size"),
    (r"fc1\.", "vision_config.intermediate_size"),
    (r"vision.*", "vision_config.hidden_size"),
    (r"self_attn\.(q|o)_proj", "text_config.num_attention_heads"),
    (r"self_attn\.(k|v)_proj", "text_config.num_key_value_heads"),
    (r"mlp\.", "text_config.intermediate_size"),
    (r".*", "text_config.hidden_size"),
]


def _field(name):
  return next(f for pattern, f in _FIELD if re.search(pattern, name))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  """{kind: (tensors {name: array}, config dict)} of tiny Gemma 1 (MQA) / Gemma 2 models."""
  out = {}
  for kind in ("gemma_mqa", "gemma2_gqa"):
    d = tmp_path_factory.mktemp(kind)
    make_hf_model(kind).save_pretrained(str(d))
    src = hf_io.SafetensorsDir(str(d))
    tensors = {k: np.array(src.get(k)) for k in src.keys()}
    with open(d / "config.json") as f:
      out[kind] = (tensors, json.load(f))
  return out


def _write(directory, tensors, config):
  os.makedirs(directory)
  save_file(tensors, os.path.join(directory, "model.safetensors"))
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config, f)
  return str(directory)


def _check_no_output(family, src, dst, *needles, errors=(ValueError, KeyError)):
  """hf_to_bv(src, dst) gives the one-line error with `needles`, and writes nothing."""
  text = check_error(family, lambda: hf_convert.hf_to_bv(src, dst), *needles,
                     errors=errors)
  assert not os.listdir(os.path.dirname(dst)), os.listdir(os.path.dirname(dst))
  return text


def _wrong_shape(tmp, tensors, config, name, shape):
  """Writes the folder with `name` replaced by an array of `shape`; checks the error."""
  bad = dict(tensors, **{name: np.ones(shape, tensors[name].dtype)})
  src = _write(tmp / "hf", bad, config)
  os.makedirs(tmp / "out")
  return _check_no_output(FAMILY, src, str(tmp / "out" / "a.npz"), f"'{name}'",
                          os.path.join(src, "model.safetensors"), str(tuple(shape)),
                          str(tensors[name].shape), _field(name))


def _one_per_kind(tensors):
  """One name per tensor kind (layer 1 for layer tensors)."""
  return sorted({re.sub(r"\.layers\.\d+\.", ".layers.1.", k) for k in tensors})


@pytest.mark.parametrize("kind", ["gemma_mqa", "gemma2_gqa"])
def test_each_kind_of_tensor_with_a_wrong_shape(folders, tmp_path, kind):
  tensors, config = folders[kind]
  names = _one_per_kind(tensors)
  assert len(names) >= 9 + 16 + 9, names  # Global, SigLIP layer, Gemma layer kinds.
  for i, name in enumerate(names):
    shape = list(tensors[name].shape)
    shape[i % len(shape)] += 1 + i % 3
    _wrong_shape(tmp_path / str(i), tensors, config, name, shape)


_RESHAPES = st.sampled_from(["grow", "shrink", "zero", "drop_axis", "add_axis",
                             "reverse", "flatten"])


def _reshape(shape, how, axis, by):
  shape = list(shape)
  axis %= len(shape)
  if how in ("grow", "shrink", "zero"):
    shape[axis] = {"grow": shape[axis] + by, "shrink": max(shape[axis] - by, 1),
                   "zero": 0}[how]
  elif how == "drop_axis":
    del shape[axis]
  elif how == "add_axis":
    shape.insert(axis, by)
  elif how == "reverse":
    shape.reverse()
  else:
    shape = [int(np.prod(shape))]
  return tuple(shape)


@hypothesis.settings(max_examples=40, **FUZZ)
@hypothesis.given(st.data(), _RESHAPES, st.integers(0, 3), st.integers(1, 4),
                  st.sampled_from(["gemma_mqa", "gemma2_gqa"]))
def test_fuzz_random_reshapes(folders, tmp_path_factory, data, how, axis, by, kind):
  tensors, config = folders[kind]
  name = data.draw(st.sampled_from(sorted(tensors)))
  shape = _reshape(tensors[name].shape, how, axis, by)
  hypothesis.assume(shape != tensors[name].shape)
  _wrong_shape(tmp_path_factory.mktemp("fz"), tensors, config, name, shape)


@pytest.mark.parametrize("kind", ["gemma_mqa", "gemma2_gqa"])
def test_each_kind_of_tensor_missing(folders, tmp_path, kind):
  tensors, config = folders[kind]
  for i, name in enumerate(_one_per_kind(tensors)):
    src = _write(tmp_path / str(i), {k: v for k, v in tensors.items() if k != name}, config)
    os.makedirs(tmp_path / f"out{i}")
    canon = hf_convert.canonical_name(name)
    _check_no_output(FAMILY, src, str(tmp_path / f"out{i}" / "a.npz"),
                     f"Missing tensor '{canon}'", str(tensors[name].shape), _field(name))


_EXTRA = [
    ("model.language_model.layers.2.mlp.up_proj.weight", "text_config.num_hidden_layers=2"),
    ("model.vision_tower.vision_model.encoder.layers.7.mlp.fc1.bias",
     "vision_config.num_hidden_layers=2"),
    ("model.language_model.layers.0.self_attn.q_proj.bias", "not expected"),
    ("model.vision_tower.vision_model.head.probe", "not expected"),
    ("model.multi_modal_projector.linear.scale", "not expected"),
    ("model.vision_tower.vision_model.embeddings.patch_embedding.weight.bak", "not expected"),
    ("text_encoder.weight", "known prefixes"),
]


@pytest.mark.parametrize("name,needle", _EXTRA)
def test_added_tensor(folders, tmp_path, name, needle):
  tensors, config = folders["gemma_mqa"]
  src = _write(tmp_path / "hf", dict(tensors, **{name: np.ones(4, np.float32)}), config)
  os.makedirs(tmp_path / "out")
  _check_no_output(FAMILY, src, str(tmp_path / "out" / "a.npz"), f"'{name}'",
                   os.path.join(src, "model.safetensors"), needle)


@pytest.mark.parametrize("dtype", [np.int32, np.int8, np.bool_, np.uint8])
def test_non_float_tensor_refused_before_writing(folders, tmp_path, dtype):
  tensors, config = folders["gemma_mqa"]
  name = "language_model.model.layers.1.mlp.down_proj.weight"
  bad = dict(tensors, **{name: tensors[name].astype(dtype)})
  src = _write(tmp_path / "hf", bad, config)
  os.makedirs(tmp_path / "out")
  _check_no_output(FAMILY, src, str(tmp_path / "out" / "a.npz"), f"'{name}'",
                   "floating point")


# (config path, value, needles): sizes that disagree with the tensors, or are invalid.
_CONFIGS = [
    ("text_config.vocab_size", 301, ["'language_model.model.embed_tokens.weight'",
                                     "(300, 64)", "(301, 64)", "text_config.vocab_size=301"]),
    ("text_config.hidden_size", 48, ["text_config.hidden_size=48", "(300, 48)"]),
    ("text_config.intermediate_size", 96, ["text_config.intermediate_size=96", "mlp"]),
    ("text_config.num_attention_heads", 2, ["o_proj", "num_attention_heads=2"]),
    ("text_config.num_key_value_heads", 2, ["k_proj", "num_key_value_heads=2"]),
    ("text_config.head_dim", 8, ["head_dim=8"]),
    ("text_config.num_hidden_layers", 3, ["Missing tensor", "layers.2."]),
    ("text_config.num_hidden_layers", 1, ["layers.1.", "num_hidden_layers=1"]),
    ("vision_config.num_hidden_layers", 1, ["encoder.layers.1.", "num_hidden_layers=1"]),
    ("vision_config.hidden_size", 48, ["vision_config.hidden_size=48"]),
    ("vision_config.intermediate_size", 32, ["fc1", "vision_config.intermediate_size=32"]),
    ("vision_config.patch_size", 7, ["patch_embedding", "vision_config.patch_size=7"]),
    ("vision_config.image_size", 42, ["position_embedding", "(9, 32)", "image_size=42"]),
    ("vision_config.num_channels", 1, ["patch_embedding", "num_channels=1"]),
    ("projection_dim", 32, ["multi_modal_projector", "projection_dim=32"]),
    ("text_config.hidden_size", 0, ["text_config.hidden_size=0", "positive integer"]),
    ("text_config.vocab_size", -5, ["text_config.vocab_size=-5", "positive integer"]),
    ("vision_config.patch_size", 0, ["vision_config.patch_size=0", "positive integer"]),
    ("text_config.num_key_value_heads", 3, ["num_attention_heads=4", "num_key_value_heads=3"]),
    ("vision_config.num_attention_heads", 3, ["hidden_size=32", "num_attention_heads=3"]),
    ("vision_config.image_size", 10, ["image_size=10", "patch_size=14"]),
]


@pytest.mark.parametrize("path,value,needles", _CONFIGS)
def test_config_sizes_that_disagree_with_the_tensors(folders, tmp_path, path, value,
                                                     needles):
  tensors, config = folders["gemma_mqa"]
  config = json.loads(json.dumps(config))
  *parents, last = path.split(".")
  node = config
  for p in parents:
    node = node[p]
  node[last] = value
  src = _write(tmp_path / "hf", tensors, config)
  os.makedirs(tmp_path / "out")
  _check_no_output(FAMILY, src, str(tmp_path / "out" / "a.npz"), *needles)


def test_cli_reports_one_error_line(folders, tmp_path, capsys):
  tensors, config = folders["gemma_mqa"]
  name = "language_model.model.layers.0.self_attn.k_proj.weight"
  src = _write(tmp_path / "hf", dict(tensors, **{name: np.ones((32, 64), np.float32)}),
               config)
  os.makedirs(tmp_path / "out")
  with pytest.raises(SystemExit) as exit_info:
    cli.run(convert_checkpoint.main, [src, str(tmp_path / "out" / "a.npz")])
  assert exit_info.value.code == cli.EXIT_ERROR
  captured = capsys.readouterr()
  lines = captured.err.splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: Tensor '{name}' in "), lines
  assert "(32, 64)" in lines[0] and "(16, 64)" in lines[0], lines[0]
  assert "num_key_value_heads=1 * head_dim=16" in lines[0], lines[0]
  assert "Traceback" not in captured.err + captured.out
  assert not os.listdir(tmp_path / "out")
  COUNTS[FAMILY] += 1


def test_fuzz_hf_shapes_counts():
  kinds = 34 + 36  # Tensor kinds of the Gemma 1 and Gemma 2 folders.
  assert COUNTS[FAMILY] >= kinds + 40 + kinds + len(_EXTRA) + 4 + len(_CONFIGS) + 1 - 10, (
      COUNTS)
