"""Run by tests/test_sharded_load.py in a fresh process (clean peak-RSS accounting).

  python tests/scale_run.py WORKDIR  ->  prints one JSON line of measurements

Builds a ~320M-param PaliGemma (So400m/14 and Gemma-2B widths, 2 layers each, 32k
vocab), writes a big_vision `.npz` of it leaf by leaf (float32, never all in memory),
then trains 2 steps with FSDP on 8 simulated CPU devices from it and evaluates. Records
the most bytes any device holds in live buffers after the sharded init, after every
param placed by the load, and after each step; and the host peak RSS during the load.
"""
import gc
import json
import os
import sys
import zipfile

import jax

jax.config.update("jax_num_cpu_devices", 8)

import numpy as np  # pylint: disable=wrong-import-position

from big_vision_lite import checkpoint  # pylint: disable=wrong-import-position
from big_vision_lite import sharded_load  # pylint: disable=wrong-import-position
from big_vision_lite import sharding  # pylint: disable=wrong-import-position
from big_vision_lite import train  # pylint: disable=wrong-import-position
from big_vision_lite.models import paligemma  # pylint: disable=wrong-import-position
from configs import common  # pylint: disable=wrong-import-position
from configs import tiny  # pylint: disable=wrong-import-position

MODEL = dict(img=dict(variant="So400m/14", depth=2, scan=True, remat_policy="none"),
             llm=dict(variant="gemma_2b", depth=2, vocab_size=32_768, scan=True,
                      remat_policy="none"))


def _status(field):
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field):
        return int(line.split()[1]) * 1024
  raise KeyError(field)


def device_peak():
  """Bytes of live jax buffers on the most loaded device."""
  gc.collect()  # Only arrays still referenced count.
  per, seen = {}, set()
  for x in jax.live_arrays():  # A global array and its per-device arrays share buffers.
    if x.is_deleted():  # Donated to the step.
      continue
    for s in x.addressable_shards:
      try:
        key = (s.device, s.data.unsafe_buffer_pointer())
      except jax.errors.JaxRuntimeError:  # A per-device view of a donated array.
        continue
      if key not in seen:
        seen.add(key)
        per[s.device] = per.get(s.device, 0) + s.data.nbytes
  return max(per.values()) if per else 0


def write_npz(path, shapes):
  """A big_vision npz (uncompressed, float32) written one leaf at a time."""
  rng = np.random.default_rng(0)
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
    for key, s in checkpoint.flatten(shapes).items():
      x = (rng.standard_normal(s.shape, np.float32) * 0.02).astype(np.float32)
      with zf.open(key + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, x)
      del x


def main(workdir):
  c = tiny.get_config(f"data_dir={workdir}/data,total_steps=2,text_len=12")
  c.model = common.paligemma_model(img=MODEL["img"], llm=MODEL["llm"],
                                   vocab_size=MODEL["llm"]["vocab_size"])
  c.optax_name, c.optax, c.wd = "trace", dict(decay=0.9), 0.0
  c.ckpt_steps = None  # Only the final checkpoint: no async save in flight during steps.
  c.evals = {"val": dict(type="perplexity", pred="logits", log_percent=1.0, batch_size=8,
                         data=dict(c.input.caption.data, split="validation"),
                         pp_fn=c.input.caption.pp)}
  train.prepare(c)
  model = paligemma.Model(**c.model)
  batch = {"image": np.zeros((1, 28, 28, 3), np.float32),
           "text": np.zeros((1, 12), np.int32), "mask_ar": np.zeros((1, 12), np.int32)}
  init = train.init_fn(model, batch)
  shapes = jax.eval_shape(init, jax.random.key(0))
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  largest = max(int(np.prod(x.shape)) * 4 for x in jax.tree.leaves(shapes))
  out = dict(n_params=n_params, params_bytes=n_params * 4, largest_leaf=largest)

  # Sharded init (no model_init): the peak device holds its shard only.
  mesh = train.make_mesh(c)
  plan = sharding.to_shardings(sharding.make_plan(shapes, c.sharding_strategy, mesh), mesh)
  params = train.model_params(c, None, train.with_shardings(shapes, plan), init,
                              jax.random.key(0))
  out["init_device_peak"] = device_peak()
  del params

  path = os.path.join(workdir, "ckpt.npz")
  write_npz(path, shapes)
  out["ckpt_bytes"] = os.path.getsize(path)
  c.model_init = path

  load_peaks, place = [], jax.make_array_from_callback
  def placed(*a, **kw):
    x = place(*a, **kw)
    load_peaks.append(device_peak())
    return x
  real_load = sharded_load.load
  def load(*a, **kw):
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")  # Resets VmHWM (the peak RSS) to the current RSS.
    out["rss_before_load"] = _status("VmRSS")
    jax.make_array_from_callback = placed
    try:
      return real_load(*a, **kw)
    finally:
      jax.make_array_from_callback = place
      out["rss_peak_load"] = _status("VmHWM")
  sharded_load.load = load
  step_peaks = []
  def stop(step):
    del step
    step_peaks.append(device_peak())
    return False
  result = train.train(c, os.path.join(workdir, "run"), stop=stop)
  out.update(load_device_peak=max(load_peaks), step_device_peaks=step_peaks,
             n_placed=len(load_peaks), evals=result["evals"],
             losses=list(result["losses"].values()))
  got = np.asarray(jax.device_get(result["params"]["img"]["head"]["bias"]))
  out["finite"] = bool(np.isfinite(got).all())
  print("RESULT " + json.dumps(out))


if __name__ == "__main__":
  main(sys.argv[1])
