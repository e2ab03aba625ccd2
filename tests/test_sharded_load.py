"""Loading a checkpoint straight into the sharded layout; the FSDP memory bounds at scale."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from big_vision_lite import checkpoint
from big_vision_lite import sharded_load
from big_vision_lite import sharding
from big_vision_lite import train
from big_vision_lite.models import paligemma
from configs import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup():
  c = tiny.get_config()
  model = paligemma.Model(**c.model)
  z = np.zeros((1, 24), np.int32)
  init = train.init_fn(model, {"image": np.zeros((1, 28, 28, 3), np.float32), "text": z,
                               "mask_ar": z})
  shapes = jax.eval_shape(init, jax.random.key(0))
  mesh = train.make_mesh(c)
  plan = sharding.to_shardings(sharding.make_plan(shapes, c.sharding_strategy, mesh), mesh)
  return c, init, train.with_shardings(shapes, plan)


def test_npz_array_reads_slices_and_casts(tmp_path):
  x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
  checkpoint.save_params({"a": {"b": x.astype(ml_dtypes.bfloat16)}, "c": x}, str(tmp_path / "p.npz"))
  tree = sharded_load.open_npz(str(tmp_path / "p.npz"))
  b = tree["a"]["b"]
  assert b.shape == (2, 3, 4) and b.dtype == ml_dtypes.bfloat16
  np.testing.assert_array_equal(b[1, :, 2:], x[1, :, 2:].astype(ml_dtypes.bfloat16))
  np.testing.assert_array_equal(b.astype(np.float32)[:, 1], x[:, 1])
  np.testing.assert_array_equal(np.asarray(tree["c"]), x)
  assert sharded_load.open_npz(str(tmp_path / "p.npz:a"))["b"].shape == (2, 3, 4)
  with pytest.raises(KeyError, match=r"Unknown params key 'z'\. .*Valid: .*subtree 'z' not found"):
    sharded_load.open_npz(str(tmp_path / "p.npz:z"))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    sharded_load.open_npz(str(tmp_path / "nope.npz"))


def test_sharded_load_equals_host_load_and_keeps_dont_load_from_init(tmp_path):
  c, init, abstract = _setup()
  host = jax.device_get(jax.jit(init)(jax.random.key(5)))
  bf16 = jax.tree.map(lambda x: np.asarray(x).astype(ml_dtypes.bfloat16), host)
  checkpoint.save_params(bf16, str(tmp_path / "w.npz"))
  params = sharded_load.load(paligemma, abstract, str(tmp_path / "w.npz"), c.model,
                             ("img/head/.*",), lambda: init(jax.random.key(0)))
  ref = paligemma.load(jax.device_get(jax.jit(init)(jax.random.key(0))),
                       str(tmp_path / "w.npz"), c.model, ("img/head/.*",))
  flat, want = checkpoint.flatten(params), checkpoint.flatten(ref)
  assert flat.keys() == want.keys()
  for k, v in flat.items():
    assert v.dtype == jnp.float32 and v.sharding == checkpoint.flatten(abstract)[k].sharding
    np.testing.assert_array_equal(np.asarray(v), np.asarray(want[k], np.float32), err_msg=k)
  head = jax.device_get(jax.jit(init)(jax.random.key(0)))["img"]["head"]["kernel"]
  np.testing.assert_array_equal(np.asarray(params["img"]["head"]["kernel"]), head)
  del bf16["img"]["head"]
  checkpoint.save_params(bf16, str(tmp_path / "headless.npz"))
  with pytest.raises(ValueError, match=r"Missing .*'head/bias', 'head/kernel'"):
    sharded_load.load(paligemma, abstract, str(tmp_path / "headless.npz"), c.model, (),
                      None)


@pytest.mark.slow
def test_fsdp_320m_params_from_npz_stays_within_one_eighth(tmp_path):
  """So400m / Gemma-2B widths, 2 layers each (~320M params), FSDP over 8 CPU devices.

  Bounds: a device holds at most 1/8 of the bytes it must (params during init and load;
  params + momentum after a step) + 5% + 64 MiB (small leaves whose dims 8 does not
  divide stay replicated; the batch and metrics). The host's peak RSS during the load
  grows by at most the checkpoint's size + the largest leaf + 256 MiB: on this CPU
  backend the 8 devices' buffers are host memory and hold exactly the checkpoint's
  bytes (float32 file into float32 params); reading the file itself adds one leaf.
  A load through the whole host tree (or a full init on one device first) needs 2-3x.
  """
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  p = subprocess.run([sys.executable, os.path.join(REPO, "tests", "scale_run.py"),
                      str(tmp_path)], env=env, cwd=REPO, capture_output=True, text=True,
                     timeout=1500)
  assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
  r = json.loads(p.stdout.split("RESULT ", 1)[1].splitlines()[0])
  assert 300e6 < r["n_params"] < 500e6, r["n_params"]
  margin = lambda need: need / 8 * 1.05 + 64 * 2**20
  assert r["init_device_peak"] <= margin(r["params_bytes"]), r
  assert r["load_device_peak"] <= margin(r["params_bytes"]), r
  assert r["n_placed"] >= 20, r  # Every param went through the sharded placement.
  for peak in r["step_device_peaks"]:
    assert peak <= margin(2 * r["params_bytes"]), r  # Params + momentum.
  growth = r["rss_peak_load"] - r["rss_before_load"]
  assert growth <= r["ckpt_bytes"] + r["largest_leaf"] + 256 * 2**20, r
  assert np.isfinite(r["losses"]).all() and np.isfinite(r["evals"]["val/perplexity"]), r
  assert r["finite"]
