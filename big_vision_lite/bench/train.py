"""Train-step benchmark: steps/s, examples/s, analytic model FLOPs, MFU, memory.

The step is the trainer's own (`steps.make_loss_fn` + `steps.make_update_fn`, jitted
with the train state donated), built for a model config and a synthetic batch. MFU is
analytic model FLOPs per second (`flops.train_flops`) over the peak of a large matmul of
the same dtype measured in the same process.
"""
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from big_vision_lite.bench import timing
from big_vision_lite.bench import flops
from big_vision_lite import optim
from big_vision_lite import registry
from big_vision_lite import sharding
from big_vision_lite import steps
from big_vision_lite.models import lora as lora_lib
from big_vision_lite.models import paligemma

# Model configs by name (paligemma.Model kwargs without scan/remat, set per run).
MODELS = {
    # ViT S/14 + a Gemma-1-style decoder: the shape the README reports on.
    "bench-small": dict(img=dict(variant="S/14"),
                        llm=dict(width=512, depth=6, mlp_dim=2048, num_heads=8,
                                 num_kv_heads=1, head_dim=64, vocab_size=32768)),
    # Tiny towers for the smoke tests.
    "micro": dict(img=dict(variant="mu", depth=2, mlp_dim=64, patch_size=(14, 14)),
                  llm=dict(variant="gemma_tiny")),
    # PaliGemma 3B (So400m/14 + Gemma 2B, 257152 = 256000 + 1024 loc + 128 seg tokens).
    "paligemma-3b": dict(img=dict(variant="So400m/14"),
                         llm=dict(variant="gemma_2b", vocab_size=257_152)),
    # PaliGemma 2 10B / 28B at 224 px (So400m/14 + Gemma 2 9B / 27B, same vocabulary).
    "paligemma2-10b": dict(img=dict(variant="So400m/14"),
                           llm=dict(variant="gemma2_9b", vocab_size=257_152)),
    "paligemma2-28b": dict(img=dict(variant="So400m/14"),
                           llm=dict(variant="gemma2_27b", vocab_size=257_152)),
}

ADAM = dict(optax_name="scale_by_adam", lr=1e-3)
# The fine-tuning notebook's recipe: plain SGD on the decoder's attention only.
ATTN_SGD = dict(optax_name="identity", lr=0.03,
                schedule=[(r"llm/layers/attn/.*", dict(decay_type="constant")), (".*", None)])


# The layer loop and remat policy the benchmarks use by default, on every backend.
# CPU, measured (README "Benchmarks", 2026-12-05, bench-small, idle machine): both towers
# scanned with remat "nothing_saveable" was the fastest train step in 3 of 4 same-process
# comparisons (unrolled without remat took 1.37-3.2x its time in three, with a heavy,
# slowly settling page-fault load, and 0.90x in one; unrolled + remat and scan without
# remat took 1.8x); it also compiles twice as fast as unrolled layers and decodes
# faster (the unrolled decoder restacks its KV cache every step). GPU/TPU: big_vision's
# defaults, the same layout, not measured here (no accelerator was available); remat
# "nothing_saveable" is also what bounds memory at scale (`memory` sub-command).
DEFAULT_LAYOUT = dict(scan=True, remat="nothing_saveable")


def model_config(name, *, scan=None, remat=None, compute_dtype="float32", attn_impl=None):
  """paligemma.Model kwargs of MODELS[name] with the given layer loop and remat policy.

  scan / remat left None take DEFAULT_LAYOUT (scanned, remat "nothing_saveable").
  compute_dtype "bfloat16" makes both towers compute in bf16 (the loss casts the
  params; see `make_train_step`). attn_impl, when given, is passed to the decoder.
  """
  if name not in MODELS:
    raise registry.unknown_name("benchmark model", name, MODELS)
  scan = DEFAULT_LAYOUT["scan"] if scan is None else scan
  remat = DEFAULT_LAYOUT["remat"] if remat is None else remat
  cfg = MODELS[name]
  img = dict(cfg["img"], pool_type="none", scan=scan, remat_policy=remat)
  llm = dict(cfg["llm"], scan=scan, remat_policy=remat)
  if compute_dtype != "float32":
    img["dtype_mm"] = compute_dtype
    llm["embed_dtype"] = compute_dtype
  if attn_impl is not None:
    llm["attn_impl"] = attn_impl
  return dict(img=img, llm=llm)


def master_config(model_cfg):
  """`model_cfg` without compute-dtype overrides: the f32 model that holds the params."""
  return dict(img={k: v for k, v in model_cfg["img"].items() if k != "dtype_mm"},
              llm={k: v for k, v in model_cfg["llm"].items() if k != "embed_dtype"})


def fake_batch(batch, res, text_len, prefix_len=None, seed=0):
  """Synthetic training rows: image f32[B, res, res, 3], text/mask_* int32[B, L].

  The first `prefix_len` tokens (default L // 2) are the prefix (mask_ar 0, no loss).
  """
  rng = np.random.RandomState(seed)
  prefix_len = text_len // 2 if prefix_len is None else prefix_len
  suffix = (np.arange(text_len) >= prefix_len).astype(np.int32)
  rows = np.broadcast_to(suffix, (batch, text_len))
  return dict(image=rng.uniform(-1, 1, (batch, res, res, 3)).astype(np.float32),
              text=rng.randint(3, 250, (batch, text_len)).astype(np.int32),
              mask_ar=rows.copy(), mask_loss=rows.copy(),
              mask_input=np.ones((batch, text_len), np.int32))


def make_train_step(model_cfg, *, batch, res, text_len, opt=None, compute_dtype="float32",
                    frozen_dtype=None, mesh=None, strategy=(), total_steps=1000, lora=None):
  """Builds the jitted train step and the abstract train state.

  Args:
    model_cfg: paligemma.Model kwargs (see `model_config`).
    batch, res, text_len: batch shape (global batch when `mesh` is given).
    opt: optimizer config dict (optim keys; default ADAM).
    compute_dtype: "bfloat16" computes in bf16 from the (f32) master params: the loss
      casts them, so gradients and updates stay f32. Frozen params enter the loss
      through `stop_gradient`.
    frozen_dtype: dtype of the frozen params (e.g. "bfloat16"); default: f32 like all.
    mesh, strategy: shard the state with the `sharding_strategy` plan over `mesh`
      (the batch over all mesh axes); None: one device.
    lora: optional `config.lora` dict (rank, alpha, targets, ...): the state holds the
      adapters (as in the trainer) and the model params are the constant base.

  Returns:
    dict(update (jitted, donates the state), state (ShapeDtypeStructs, shardings set),
    base (the LoRA base params' ShapeDtypeStructs, or None), batch (ShapeDtypeStructs),
    model, tx, rules, lora).
  """
  config = ml_collections.ConfigDict(dict(opt or ADAM))
  model = paligemma.Model(**model_cfg)
  init_cfg = master_config(model_cfg)
  shapes = base = flops.param_shapes(init_cfg, res=res)
  if lora:
    shapes = jax.eval_shape(lambda r: lora_lib.init(r, base, **lora), jax.random.key(7))
  else:
    base = None
  mask = optim.trainable_mask(config, shapes)
  if frozen_dtype:
    shapes = jax.tree.map(lambda s, m: s if m else jax.ShapeDtypeStruct(s.shape, frozen_dtype),
                          shapes, mask)
  tx, _ = optim.make(config, shapes, total_steps)
  rules = [(sharding.ACT_BATCH, tuple(mesh.axis_names))] if mesh is not None else []
  # The trainer's loss: frozen params through stop_gradient (inside a scanned layer loop
  # XLA cannot drop their gradients afterwards), params cast to the compute dtype.
  loss = steps.make_loss_fn(model, rules=rules, frozen_mask=mask, lora_cfg=lora,
                            compute_dtype=None if compute_dtype == "float32" else compute_dtype)
  update = steps.make_update_fn(loss, tx, trainable_mask=mask)
  state = {"params": shapes, "opt": jax.eval_shape(tx.init, shapes)}
  b = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                   fake_batch(batch, res, text_len))
  if mesh is None:
    return dict(update=jax.jit(update, donate_argnums=(0,)), state=state, batch=b,
                base=base, model=paligemma.Model(**init_cfg), tx=tx, rules=rules,
                mesh=None, lora=lora)
  plan = sharding.make_plan(shapes, list(strategy), mesh)
  if base is not None:
    base = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        base, sharding.to_shardings(
                            sharding.make_plan(base, list(strategy), mesh), mesh))
  shards = {"params": sharding.to_shardings(plan, mesh), "opt": sharding.to_shardings(
      sharding.opt_state_plan(tx, state["opt"], plan), mesh)}
  state = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                       state, shards)
  bsh = jax.sharding.NamedSharding(mesh, sharding.batch_spec(mesh, rules))
  b = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=bsh), b)
  repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  jitted = jax.jit(update, donate_argnums=(0,), out_shardings=(shards, repl))
  return dict(update=jitted, state=state, base=base, batch=b,
              model=paligemma.Model(**init_cfg), tx=tx, rules=rules, mesh=mesh, lora=lora)


def init_state(step, res, text_len, seed=0):
  """Real train state (random init) laid out as `step["state"]` says.

  With LoRA, returns `(state, base params)`; else the state alone.
  """
  model = step["model"]
  def init(rng, like):
    p = model.init(rng, jnp.zeros((1, res, res, 3)), jnp.zeros((1, text_len - 1), jnp.int32),
                   jnp.zeros((1, text_len - 1), jnp.int32))["params"]
    return jax.tree.map(lambda x, s: x.astype(s.dtype), p, like)
  def place(fn, like):
    out = None if step["mesh"] is None else jax.tree.map(lambda s: s.sharding, like)
    return jax.jit(fn, out_shardings=out)
  rng = jax.random.key(seed)
  if step["lora"]:
    base = place(lambda r: init(r, step["base"]), step["base"])(rng)
    params = place(lambda r: lora_lib.init(r, step["base"], **step["lora"]),
                   step["state"]["params"])(jax.random.fold_in(rng, 7))
  else:
    base, params = None, place(lambda r: init(r, step["state"]["params"]),
                               step["state"]["params"])(rng)
  state = {"params": params, "opt": place(step["tx"].init, step["state"]["opt"])(params)}
  return (state, base) if step["lora"] else state


def place_batch(step, batch):
  """numpy batch -> device arrays with the step's batch shardings."""
  return jax.tree.map(lambda x, s: jax.device_put(x, getattr(s, "sharding", None)),
                      {k: batch[k] for k in step["batch"]}, step["batch"])


def call_step(step, state, batch, rng, fn=None, base=None):
  """Runs the step's update (or the compiled `fn`) on one batch, under the step's mesh."""
  fn = fn or step["update"]
  if step["mesh"] is None:
    return fn(state, base, batch, rng)
  with jax.set_mesh(step["mesh"]):
    return fn(state, base, batch, rng)


def compile_step(step):
  """Compiles the step for its abstract state and batch (no real arrays needed)."""
  args = (step["state"], step["base"], step["batch"], jax.random.key(0))
  if step["mesh"] is None:
    return step["update"].lower(*args).compile()
  with jax.set_mesh(step["mesh"]):
    return step["update"].lower(*args).compile()


def make_runner(step, *, res, text_len, compiled=None):
  """Real state and batch for `step`; returns `(one, finish)`.

  `one()` runs one step and blocks; `finish(jit_check)` returns dict(compiles, donated,
  loss): with jit_check, 2 more steps go through the jitted function and `compiles` is
  its number of compiled entries (1 = no recompilation across steps).

  Args:
    compiled: the step compiled ahead of time (`compile_step`); run instead of the
      jitted function (saves a second compile).
  """
  state, base = init_state(step, res, text_len), None
  if step["lora"]:
    state, base = state
  batch = place_batch(step, fake_batch(step["batch"]["text"].shape[0], res, text_len))
  box = {"state": state, "m": None}
  first_leaf = jax.tree.leaves(state)[0]

  def one():
    box["state"], box["m"] = call_step(step, box["state"], batch, jax.random.key(1), compiled,
                                   base)
    jax.block_until_ready(box["m"])

  def finish(jit_check):
    compiles = None
    if jit_check:
      for i in range(2):
        box["state"], box["m"] = call_step(step, box["state"], batch, jax.random.key(i),
                                       base=base)
      compiles = step["update"]._cache_size()  # pylint: disable=protected-access
    return dict(compiles=compiles, donated=bool(first_leaf.is_deleted()),
                loss=float(box["m"]["loss"]))
  return one, finish


def _xla_flops(compiled):
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def xla_flops(model_name, *, batch, res, text_len, scan):
  """XLA cost_analysis FLOPs of the train step (remat off) compiled with `scan`."""
  cfg = model_config(model_name, scan=scan, remat="none")
  return _xla_flops(compile_step(make_train_step(cfg, batch=batch, res=res,
                                                 text_len=text_len)))


def bench_train(model_name, *, batch, res, text_len, iters, remats=("nothing_saveable", "none"),
                scan=None, compute_dtype="float32", xla_check=True, peak_n=2048,
                jit_check=True):
  """The `train` sub-command: one row per remat policy, plus the FLOPs cross-check.

  The rows' steps and the matmul peak are timed in turn within each iteration, and MFU
  is the median over iterations of (model FLOPs / step time) / that iteration's peak,
  so a changing machine load affects the rows and the peak alike.

  Returns:
    dict(rows, flops (analytic parts), xla_check, peaks (GFLOP/s per iteration)).
    scan None takes DEFAULT_LAYOUT's.
  """
  scan = DEFAULT_LAYOUT["scan"] if scan is None else scan
  fl = flops.train_flops(model_config(model_name), res=res, text_len=text_len, batch=batch)
  runners, xla = [], {}
  for remat in remats:
    cfg = model_config(model_name, scan=scan, remat=remat, compute_dtype=compute_dtype)
    step = make_train_step(cfg, batch=batch, res=res, text_len=text_len,
                           compute_dtype=compute_dtype)
    compiled = compile_step(step)
    if remat == "none" and compute_dtype == "float32":
      xla[scan] = _xla_flops(compiled)
    one, finish = make_runner(step, res=res, text_len=text_len, compiled=compiled)
    t0 = time.perf_counter()
    one()  # Warm-up (first call of the executable).
    first = time.perf_counter() - t0
    runners.append((remat, timing.compiled_memory(compiled), one, finish, first))
  times, peaks = [[] for _ in runners], []
  for _ in range(iters):
    peaks.append(timing.matmul_peak(compute_dtype, n=peak_n, iters=2)["flops_per_s"])
    for i, (_, _, one, _, _) in enumerate(runners):
      times[i].append(timing.time_calls(one, iters=1, warmup=0)["min"])
  rows = []
  for i, (remat, mem, _, finish, first) in enumerate(runners):
    r = finish(jit_check and i == 0)  # One jit check suffices.
    step_s = float(np.median(times[i]))
    mfu = float(np.median([fl["train"] / t / p for t, p in zip(times[i], peaks)]))
    rows.append(dict(
        remat=remat, scan=scan, dtype=compute_dtype, step_s=step_s,
        steps_per_s=1.0 / step_s, examples_per_s=batch / step_s,
        model_gflop=fl["train"] / 1e9, achieved_gflops=fl["train"] / step_s / 1e9,
        peak_gflops=float(np.median(peaks)) / 1e9, mfu=mfu,
        compiled_peak_mb=mem.get("peak", 0) / 2**20, temp_mb=mem.get("temp", 0) / 2**20,
        host_peak_rss_mb=timing.host_rss()["peak_rss_bytes"] / 2**20,
        device_peak_mb=(timing.device_peak_memory() or 0) / 2**20,
        compiles=r["compiles"], donated=r["donated"], loss=r["loss"], first_step_s=first))
  check = {}
  if xla_check:
    for s in (False, True):
      if s not in xla:
        xla[s] = xla_flops(model_name, scan=s, batch=batch, res=res, text_len=text_len)
    check = dict(analytic_gflop=fl["train"] / 1e9, xla_unrolled_gflop=xla[False] / 1e9,
                 xla_scanned_gflop=xla[True] / 1e9,
                 unrolled_over_analytic=xla[False] / fl["train"],
                 scanned_over_analytic=xla[True] / fl["train"])
  return dict(rows=rows, flops=fl, xla_check=check, peaks=[p / 1e9 for p in peaks],
              config=dict(model=model_name, batch=batch, res=res, text_len=text_len))
