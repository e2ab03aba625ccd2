"""Checkpoint precisions: float32, bfloat16 and float16 checkpoints load into a model
computing in any of those dtypes, and `tools/convert_checkpoint.py --dtype` writes each.

Released PaliGemma checkpoints come in float32 (`.npz`), bfloat16 (`.b16.npz`, stored
as 2-byte void) and float16 (converted from Hugging Face). The model's init tree sets
the precision: `load` casts every loaded leaf to it.
"""
import json
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from big_vision_lite import checkpoint
from big_vision_lite.models import paligemma
from tools import convert_checkpoint

DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16),
          "float16": np.dtype(np.float16)}
# Max |logit error| / max |logit| against float32 of each compute dtype (8 / 11 bits).
REL_TOL = {"float32": 1e-5, "bfloat16": 0.1, "float16": 0.02}
RES, T = 28, 6


def model_cfg(compute):
  """A tiny PaliGemma computing in `compute` (ViT matmuls and Gemma activations)."""
  return dict(img=dict(variant="mu", patch_size=(14, 14), dtype_mm=compute),
              llm=dict(variant="gemma_tiny", embed_dtype=compute, scan=False))


def _inputs():
  rng = np.random.default_rng(1)
  image = jnp.asarray(rng.uniform(-1, 1, (2, RES, RES, 3)), jnp.float32)
  text = jnp.asarray(rng.integers(4, 300, (2, T)), jnp.int32)
  mask_ar = jnp.asarray([[0, 0, 0, 1, 1, 1]] * 2, jnp.int32)
  return image, text, mask_ar


def param_shapes(compute):
  """The model's params as ShapeDtypeStructs of dtype `compute` (nothing allocated)."""
  model = paligemma.Model(**model_cfg(compute))
  shapes = jax.eval_shape(model.init, jax.random.key(0), *_inputs())["params"]
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, DTYPES[compute]), shapes)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
  """{dtype: npz path} of one random tiny model saved in each precision, + f32 params."""
  d = tmp_path_factory.mktemp("precisions")
  rng = np.random.default_rng(0)
  params = jax.tree.map(
      lambda s: (rng.standard_normal(s.shape) * 0.2).astype(np.float32),
      param_shapes("float32"))
  paths = {}
  for name, dtype in DTYPES.items():
    paths[name] = str(d / f"tiny.{name}.npz")
    checkpoint.save_params(jax.tree.map(lambda x, dt=dtype: x.astype(dt), params),
                           paths[name])
  return paths, params


@pytest.fixture(scope="module")
def logits_fn():
  """`fn(compute, params) -> float32[2, T, V] logits`, one compilation per dtype."""
  jitted = {}

  def fn(compute, params):
    if compute not in jitted:
      model = paligemma.Model(**model_cfg(compute))
      jitted[compute] = jax.jit(lambda p, *x: model.apply({"params": p}, *x)[0])
    return np.asarray(jitted[compute](params, *_inputs()))
  return fn


def test_checkpoint_files_keep_their_dtype(ckpts):
  paths, _ = ckpts
  for name, path in paths.items():
    with np.load(path) as f:
      stored = {f[k].dtype for k in f.files}
    assert stored == {np.dtype("V2") if name == "bfloat16" else DTYPES[name]}
    loaded = checkpoint.flatten(checkpoint.load_params(path))
    assert {v.dtype for v in loaded.values()} == {DTYPES[name]}


@pytest.mark.parametrize("compute", list(DTYPES))
def test_any_checkpoint_into_any_compute_dtype(ckpts, logits_fn, compute):
  paths, params32 = ckpts
  ref = logits_fn("float32", params32)
  scale = np.abs(ref).max()
  for ckpt_dtype, path in paths.items():
    params = paligemma.load(param_shapes(compute), path, model_cfg(compute))
    leaf_dtypes = {x.dtype for x in jax.tree.leaves(params)}
    assert leaf_dtypes == {DTYPES[compute]}, (ckpt_dtype, compute, leaf_dtypes)
    logits = logits_fn(compute, params)
    assert logits.dtype == np.float32 and np.all(np.isfinite(logits))
    # The checkpoint's rounding and the compute dtype's both count.
    tol = max(REL_TOL[compute], REL_TOL[ckpt_dtype])
    err = np.abs(logits - ref).max() / scale
    assert err <= tol, (ckpt_dtype, compute, err)


def test_float32_training_params_from_half_checkpoints(ckpts):
  """A float32 init (the trainer's) gets float32 params from a bfloat16 release."""
  paths, params32 = ckpts
  init = jax.tree.map(lambda x: np.zeros(x.shape, np.float32), params32)
  params = paligemma.load(init, paths["bfloat16"], model_cfg("float32"))
  flat, ref = checkpoint.flatten(params), checkpoint.flatten(params32)
  for k, v in flat.items():
    assert v.dtype == np.float32
    np.testing.assert_array_equal(v, ref[k].astype(ml_dtypes.bfloat16).astype(np.float32))


def _safetensors_dtypes(directory):
  dtypes = set()
  for fname in os.listdir(directory):
    if fname.endswith(".safetensors"):
      with open(os.path.join(directory, fname), "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
      dtypes |= {v["dtype"] for k, v in header.items() if k != "__metadata__"}
  return dtypes


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_convert_checkpoint_writes_each_dtype(ckpts, logits_fn, dtype, tmp_path, capsys):
  """npz -> npz, npz -> HF and HF -> npz with --dtype; the results load and agree."""
  paths, params32 = ckpts
  npz = str(tmp_path / f"cast.{dtype}.npz")
  convert_checkpoint.main([paths["float32"], npz, "--dtype", dtype])
  with np.load(npz) as f:
    assert {f[k].dtype for k in f.files} == {
        np.dtype("V2") if dtype == "bfloat16" else DTYPES[dtype]}
  hf = str(tmp_path / "hf")
  convert_checkpoint.main([paths["float32"], hf, "--dtype", dtype])
  assert _safetensors_dtypes(hf) == {{"float32": "F32", "bfloat16": "BF16",
                                      "float16": "F16"}[dtype]}
  back = str(tmp_path / "back.npz")
  convert_checkpoint.main([hf, back, "--dtype", dtype])
  capsys.readouterr()
  ref = logits_fn("float32", params32)
  for path in (npz, back):
    loaded = checkpoint.flatten(checkpoint.load_params(path))
    assert {v.dtype for v in loaded.values()} == {DTYPES[dtype]}
    params = paligemma.load(param_shapes("float32"), path, model_cfg("float32"))
    err = np.abs(logits_fn("float32", params) - ref).max() / np.abs(ref).max()
    assert err <= REL_TOL[dtype], (path, err)


def test_convert_checkpoint_npz_errors(ckpts, tmp_path):
  paths, _ = ckpts
  with pytest.raises(ValueError, match=r"npz -> npz .* no --hf_config .*they are for npz -> HF"):
    convert_checkpoint.main([paths["float32"], str(tmp_path / "x.npz"), "--hf_config",
                             "c.json"])
