"""Memory benchmarks: per-device state bytes under sharding plans, and fit checks.

`bench_sharding` compares the `fsdp` and `replicate` plans on the simulated devices:
parameter + optimizer bytes per device (from the shardings) and the step time.
`fit_fsdp` shows a model (PaliGemma 3B by default) fits N devices of a given size under
FSDP for several remat policies, from the compiled step's `memory_analysis()` with
abstract inputs (`jax.eval_shape`; no real weights). `fit_finetune` does the same for
the attention-only SGD recipe on one device, beside the analytic estimate of
`flops.finetune_memory`. `fit_scale` compiles the sharded init and the FSDP train step
of PaliGemma 2 10B / 28B for 16 and 64 devices (subsets of the simulated devices).
"""
import jax
import numpy as np

from big_vision_lite.bench import timing
from big_vision_lite.bench import train as bt
from big_vision_lite.bench import flops
from big_vision_lite import sharding

PLANS = {"fsdp": [(".*", "fsdp(axis='data')")], "replicate": [(".*", "replicate")]}
GB = 1e9


def per_device_bytes(tree):
  """Bytes that the most loaded device holds of `tree` (ShapeDtypeStructs with shardings)."""
  total = 0
  for x in jax.tree.leaves(tree):
    shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
    total += int(np.prod(shape)) * np.dtype(x.dtype).itemsize
  return total


def make_data_mesh(devices=None):
  """A one-axis ("data") mesh over `devices` (default all)."""
  return sharding.make_mesh([("data", -1)], devices)


def bench_sharding(model_name, *, batch, res, text_len, iters, remat="nothing_saveable",
                   jit_check=True):
  """The `sharding` sub-command: one row per plan (fsdp, replicate) on all devices.

  The plans' steps are timed in turn within each iteration (median over iterations).
  """
  mesh = make_data_mesh()
  runs = []
  for plan, strategy in PLANS.items():
    step = bt.make_train_step(bt.model_config(model_name, remat=remat), batch=batch,
                              res=res, text_len=text_len, mesh=mesh, strategy=strategy)
    compiled = bt.compile_step(step)
    one, finish = bt.make_runner(step, res=res, text_len=text_len, compiled=compiled)
    one()  # Warm-up.
    runs.append((plan, step, timing.compiled_memory(compiled), one, finish, []))
  for _ in range(iters):
    for *_, one, _, times in runs:
      times.append(timing.time_calls(one, iters=1, warmup=0)["min"])
  rows = []
  for plan, step, mem, _, finish, times in runs:
    r = finish(jit_check)
    step_s = float(np.median(times))
    rows.append(dict(plan=plan, devices=mesh.size,
                     params_mb=per_device_bytes(step["state"]["params"]) / 2**20,
                     opt_mb=per_device_bytes(step["state"]["opt"]) / 2**20,
                     state_mb=per_device_bytes(step["state"]) / 2**20,
                     compiled_peak_mb=mem.get("peak", 0) / 2**20, step_s=step_s,
                     examples_per_s=batch / step_s, compiles=r["compiles"]))
  return dict(rows=rows, config=dict(model=model_name, batch=batch, res=res,
                                     text_len=text_len, remat=remat))


def fit_fsdp(model_name="paligemma-3b", *, batch, res, text_len, device_gb=16.0,
             remats=("nothing_saveable", "dots_with_no_batch_dims_saveable", "none"),
             compute_dtypes=("bfloat16",), scan=True):
  """Compiled per-device memory of the FSDP train step (f32 master weights, Adam).

  Args:
    batch: global batch over all devices of the process.
    device_gb: capacity to compare with (GB, 1e9 bytes).

  Returns:
    dict(rows: one per (remat, compute dtype) with state_gb, temp_gb, peak_gb, fits).
  """
  mesh = make_data_mesh()
  rows = []
  for dtype in compute_dtypes:
    for remat in remats:
      cfg = bt.model_config(model_name, scan=scan, remat=remat, compute_dtype=dtype)
      step = bt.make_train_step(cfg, batch=batch, res=res, text_len=text_len, mesh=mesh,
                                strategy=PLANS["fsdp"], compute_dtype=dtype)
      mem = timing.compiled_memory(bt.compile_step(step))
      rows.append(dict(remat=remat, compute=dtype, devices=mesh.size,
                       state_gb=per_device_bytes(step["state"]) / GB,
                       temp_gb=mem.get("temp", 0) / GB, peak_gb=mem.get("peak", 0) / GB,
                       fits=mem.get("peak", 0) <= device_gb * GB))
  return dict(rows=rows, config=dict(model=model_name, batch=batch, res=res,
                                     text_len=text_len, device_gb=device_gb, scan=scan))


def fit_finetune(model_name="paligemma-3b", *, batch=8, res=224, text_len=128,
                 device_gb=16.0, remat="nothing_saveable", scan=True,
                 compute_dtypes=("float32", "bfloat16")):
  """Attention-only SGD fine-tuning on one device: analytic estimate vs compiled step.

  Frozen weights bf16, trained attention weights f32 (the notebook's recipe); the step
  computes in each of `compute_dtypes` (f32: frozen weights are upcast where used).

  On a backend without bf16 matmuls (XLA:CPU) the compiled recipe also holds f32 copies
  of the frozen bf16 weights, made only to upcast them: its temp is that backend's, not
  an accelerator's. So the same step is also compiled with every weight in f32 (nothing
  to upcast): its temp (activations, trainable gradients and workspace, all in f32: an
  upper bound of the bf16-compute temp) plus the recipe's compiled argument bytes is the
  "compiled_bound" checked against `device_gb`.

  Returns:
    dict(estimate (bytes, see flops.finetune_memory), compiled {dtype or "f32_weights":
    bytes}, bound (bytes), fits {dtype / "bound": bool}, rows).
  """
  cfg = bt.model_config(model_name, scan=scan, remat=remat)
  est = flops.finetune_memory(cfg, res=res, text_len=text_len, batch=batch)
  rows = [dict(part=k, estimate_gb=est[k] / GB) for k in
          ("params", "grads", "opt_state", "activations", "total")]
  compiled, fits = {}, {}

  def compile_mem(dtype, frozen_dtype):
    step = bt.make_train_step(bt.model_config(model_name, scan=scan, remat=remat,
                                              compute_dtype=dtype),
                              batch=batch, res=res, text_len=text_len, opt=bt.ATTN_SGD,
                              frozen_dtype=frozen_dtype, compute_dtype=dtype)
    return timing.compiled_memory(bt.compile_step(step))

  for dtype in compute_dtypes:
    mem = compiled[dtype] = compile_mem(dtype, "bfloat16")
    fits[dtype] = mem.get("peak", est["total"]) <= device_gb * GB
    rows += [dict(part=f"compiled_{k}", compute=dtype, compiled_gb=v / GB)
             for k, v in mem.items() if k in ("argument", "temp", "peak")]
  ref = compiled["f32_weights"] = compile_mem("float32", None)
  rows.append(dict(part="compiled_temp", compute="float32, all weights f32",
                   compiled_gb=ref.get("temp", 0) / GB))
  recipe = compiled[compute_dtypes[0]]  # Same arguments for every compute dtype.
  bound = None
  if ref and recipe:
    bound = recipe["argument"] + recipe["output"] - recipe["alias"] + ref["temp"]
    fits["bound"] = bound <= device_gb * GB
    rows.append(dict(part="compiled_bound", compute="recipe args + f32 temp",
                     compiled_gb=bound / GB))
  return dict(rows=rows, estimate=est, compiled=compiled, bound=bound, fits=fits,
              config=dict(model=model_name, batch=batch, res=res, text_len=text_len,
                          device_gb=device_gb, remat=remat))


def fit_scale(model_name, *, devices, batch_per_device=1, res=224, text_len=128,
              device_gbs=(16.0, 32.0), remat="nothing_saveable", compute_dtype="bfloat16"):
  """Per-device bytes of the sharded init and the FSDP train step on `devices` devices.

  Everything is abstract (ShapeDtypeStructs; nothing allocated): the plan gives the
  state bytes per device (f32 master params + Adam state), and the compiled init
  (`jax.jit(init, out_shardings=...)` then `tx.init`, as the trainer does) and train
  step (scanned layers, `remat`, `compute_dtype` compute) give their temp and peak.
  Loading a checkpoint (`sharded_load`) writes each device's shard straight into the
  same layout: its per-device bytes are the params' state bytes.

  XLA:CPU computes bf16 matmuls in f32, so the bf16 step compiled for the CPU also holds
  f32 copies made only to upcast (see `fit_finetune`). As there, the same step is also
  compiled computing in f32 (activations, gathered weights and workspace all f32: an
  upper bound of the bf16-compute temp); "bound" = the step's arguments + outputs not
  aliased + that f32 temp, and "peak" = the larger of the bound and the init's peak,
  which "fits" compares with each size. The CPU's own bf16 step peak is reported beside.

  Args:
    devices: mesh size (a prefix of the simulated devices; needs that many).
    batch_per_device: examples per device (global batch = this x devices).

  Returns:
    dict(row: params/opt/state bytes, init and step temp/peak, fits per device size).
  """
  if jax.device_count() < devices:
    raise ValueError(f"devices={devices} but only {jax.device_count()} are available; "
                     "start with jax_num_cpu_devices >= that (tools.benchmark --devices).")
  mesh = make_data_mesh(jax.devices()[:devices])
  cfg = bt.model_config(model_name, scan=True, remat=remat, compute_dtype=compute_dtype)
  step = bt.make_train_step(cfg, batch=batch_per_device * devices, res=res,
                            text_len=text_len, mesh=mesh, strategy=PLANS["fsdp"],
                            compute_dtype=compute_dtype)
  shards = jax.tree.map(lambda s: s.sharding, step["state"])
  model = step["model"]

  def init(rng):
    return model.init(rng, jax.numpy.zeros((1, res, res, 3)),
                      jax.numpy.zeros((1, text_len - 1), "int32"),
                      jax.numpy.zeros((1, text_len - 1), "int32"))["params"]

  with jax.set_mesh(mesh):
    init_mem = timing.compiled_memory(jax.jit(init, out_shardings=shards["params"]).lower(
        jax.ShapeDtypeStruct((), jax.random.key(0).dtype)).compile())
    opt_mem = timing.compiled_memory(jax.jit(
        step["tx"].init, out_shardings=shards["opt"]).lower(step["state"]["params"]).compile())
  step_mem = timing.compiled_memory(bt.compile_step(step))
  f32_mem = timing.compiled_memory(bt.compile_step(bt.make_train_step(
      bt.model_config(model_name, scan=True, remat=remat), batch=batch_per_device * devices,
      res=res, text_len=text_len, mesh=mesh, strategy=PLANS["fsdp"])))
  bound = step_mem["argument"] + step_mem["output"] - step_mem["alias"] + f32_mem["temp"]
  params_b = per_device_bytes(step["state"]["params"])
  opt_b = per_device_bytes(step["state"]["opt"])
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(step["state"]["params"]))
  # Init: the random params are made sharded, then the Adam state from them.
  init_peak = max(init_mem.get("peak", 0), params_b + opt_mem.get("peak", 0))
  peak = max(init_peak, bound)
  row = dict(model=model_name, params_b=n / 1e9, devices=devices,
             batch=batch_per_device * devices, params_gb=params_b / GB, opt_gb=opt_b / GB,
             state_gb=(params_b + opt_b) / GB, init_peak_gb=init_peak / GB,
             step_temp_gb=step_mem["temp"] / GB, step_peak_gb=step_mem["peak"] / GB,
             f32_temp_gb=f32_mem["temp"] / GB, bound_gb=bound / GB, peak_gb=peak / GB)
  row.update({f"fits_{g:g}gb": peak <= g * GB for g in device_gbs})
  return dict(row=row, n_params=n, state_bytes=params_b + opt_b, peak_bytes=peak,
              compiled=dict(init=init_mem, opt_init=opt_mem, step=step_mem,
                            step_f32=f32_mem))
