r"""Trains (or fine-tunes) a model from a config: `train(config, workdir) -> dict`.

  python -m big_vision_lite.train --config transfers/forkme.py:res=224 \
      --workdir /tmp/run [--config.total_steps=100] [--distributed]

Restarting the same command in the same workdir resumes from the latest checkpoint
(params, optimizer state, data position, RNG), bit-identically. SIGTERM saves a
checkpoint and returns. See `big_vision_lite/optim.py` for the optimizer keys,
`sharding.py` for `mesh`, `sharding_strategy`, `sharding_rules`, and
`models/lora.py` for `lora`.
"""
import json
import os
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np

from big_vision_lite import config_check
from big_vision_lite import optim
from big_vision_lite import report
from big_vision_lite import stage0
from big_vision_lite import sharding
from big_vision_lite import steps as steps_lib
from big_vision_lite import train_setup
from big_vision_lite.models import lora as lora_lib

TRAIN_KEYS = ("image", "text", "mask_ar", "mask_loss", "mask_input")


def make_mesh(config):
  """The device mesh of `config.mesh` (default: one "data" axis over all devices)."""
  return sharding.make_mesh(config.get("mesh", [("data", -1)]))


def _place(tree, shardings):
  """Host numpy tree -> global arrays laid out by `shardings` (works multi-host)."""
  return jax.tree.map(
      lambda x, s: jax.make_array_from_callback(np.shape(x), s, lambda i: np.asarray(x)[i]),
      tree, shardings)


def init_train_state(config, model_mod, model, mesh, batch, total_steps, rng):
  """Builds the sharded train state, the constant base params and the optimizer.

  Args:
    batch: one local batch (numpy; only shapes are used).
  Returns:
    dict(state={"params", "opt"}, base (None or LoRA base params), tx, sched_fns,
    shardings (of state), base_shardings, mask (trainable bools)).
  """
  ex = {k: jnp.zeros((1,) + np.shape(batch[k])[1:], np.asarray(batch[k]).dtype)
        for k in ("image", "text", "mask_ar")}
  init = lambda r: model.init(r, ex["image"], ex["text"][:, :-1],
                              ex["mask_ar"][:, :-1])["params"]
  strategy = config.get("sharding_strategy", [(".*", "replicate")])
  shapes = jax.eval_shape(init, rng)
  plan = sharding.to_shardings(sharding.make_plan(shapes, strategy, mesh), mesh)
  if config.get("model_init"):
    host = jax.device_get(jax.jit(init)(rng))
    plain = lambda x: x.to_dict() if hasattr(x, "to_dict") else x
    host = model_mod.load(host, plain(config.model_init), plain(config.get("model")),
                          **plain(config.get("model_load", {})))
    params = _place(host, plan)
  else:
    params = jax.jit(init, out_shardings=plan)(rng)
  base, base_shardings, lora_cfg = None, None, config.get("lora")
  if lora_cfg:
    base, base_shardings = params, plan
    lora_shapes = jax.eval_shape(
        lambda r: lora_lib.init(r, shapes, **lora_cfg), jax.random.fold_in(rng, 7))
    plan = sharding.to_shardings(sharding.make_plan(lora_shapes, strategy, mesh), mesh)
    params = jax.jit(lambda r: lora_lib.init(r, shapes, **lora_cfg),
                     out_shardings=plan)(jax.random.fold_in(rng, 7))
  tx, sched_fns = optim.make(config, params, total_steps)
  opt_plan = sharding.opt_state_plan(tx, jax.eval_shape(tx.init, params),
                                     sharding.make_plan(params, strategy, mesh))
  opt_shardings = sharding.to_shardings(opt_plan, mesh)
  opt = jax.jit(tx.init, out_shardings=opt_shardings)(params)
  return dict(state={"params": params, "opt": opt}, base=base, tx=tx,
              sched_fns=sched_fns, base_shardings=base_shardings,
              shardings={"params": plan, "opt": opt_shardings},
              mask=optim.trainable_mask(config, params))


def make_update_fn(config, model, ts, mesh):
  """Jitted `update(state, base, batch, rng) -> (state, metrics)`; donates the state."""
  lora_cfg = dict(config.lora) if config.get("lora") else None
  loss_fn = steps_lib.make_loss_fn(
      model, label_smoothing=config.get("label_smoothing", 0.0), lora_cfg=lora_cfg,
      rules=config.get("sharding_rules", ()))
  update = steps_lib.make_update_fn(loss_fn, ts["tx"], trainable_mask=ts["mask"],
                                    accum=config.get("grad_accum_steps", 1))
  repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return jax.jit(update, donate_argnums=(0,), out_shardings=(ts["shardings"], repl))


def eval_params_fn(config, ts):
  """Returns `() -> params for evaluation` (LoRA adapters merged in, no dropout)."""
  if not config.get("lora"):
    return lambda: ts["state"]["params"]
  cfg = {k: v for k, v in dict(config.lora).items() if k != "dropout"}
  merge = jax.jit(lambda base, l: lora_lib.merge(base, l, **cfg),
                  out_shardings=ts["base_shardings"])
  return lambda: merge(ts["base"], ts["state"]["params"])


def run_evals(evaluators, params, step, writer, *, final):
  """Runs the evaluators due at `step` (all of them when `final`); returns metrics."""
  out = {}
  for name, evaluator, log_steps in evaluators:
    if not (final or (log_steps and step % log_steps == 0)):
      continue
    metrics = dict(evaluator.run(params))
    writer.write(step, metrics, prefix=name)
    out.update({f"{name}/{k}": v for k, v in metrics.items()})
  return out


def _sigterm_event():
  """An Event set by SIGTERM (when called from the main thread) and its cleanup."""
  event = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    return event, lambda: None
  old = signal.signal(signal.SIGTERM, lambda *_: event.set())
  return event, lambda: signal.signal(signal.SIGTERM, old)


def _should_stop(event, stop, step):
  flag = bool(event.is_set() or (stop is not None and stop(step)))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    flag = bool(np.any(multihost_utils.process_allgather(np.int32(flag))))
  return flag


def _check_finite(m, step, last_good, ckpt, workdir):
  """Raises when the loss or the updated params are NaN/Inf (nothing bad is saved)."""
  loss, pnorm = float(m["loss"]), float(m["param_norm"])
  if np.isfinite(loss) and np.isfinite(pnorm):
    return step
  ckpt.wait()
  latest = ckpt.latest_step()
  raise FloatingPointError(
      f"Loss {loss} / param norm {pnorm} at step {step}; finite up to step {last_good} "
      f"(non-finite in steps ({last_good}, {step}]). Training stopped; the last good checkpoint "
      f"(step {latest}) is kept in {workdir}/checkpoints. Lower `lr`, set "
      "`grad_clip_norm`, or check the data.")


def _log_train(run, ts, step, m):
  """Writes the train metrics of `step` (m: device metrics of that step)."""
  m = {k: float(v) for k, v in jax.device_get(m).items()}
  fns = ts["sched_fns"]
  m.update({f"lr/{k}" if len(fns) > 1 else "lr": float(f(step - 1)) for k, f in fns.items()})
  m.update({f"examples_seen/{k}": v for k, v in train_setup.counts(run["data"]).items()})
  return run["writer"].write(step, m)


def _save(run, ts, step):
  run["ckpt"].save(step, ts["state"], data_state=train_setup.data_state(run["data"]),
                   rng=run["rng"])


def _loop(config, run, ts, update, evaluators, mesh, stop):
  """The training loop; returns (step, losses, last train metrics, evals, stopped)."""
  event, restore_signal = _sigterm_event()
  step, last_good, losses, train_m, evals = run["step"], run["step"], {}, {}, {}
  total, durations = run["total_steps"], run["durations"]
  rules = config.get("sharding_rules", ())
  try:
    run["writer"].start(step)
    while step < total:
      local = next(run["iter"])
      batch = sharding.global_batch({k: local[k] for k in TRAIN_KEYS if k in local},
                                    mesh, rules)
      with jax.set_mesh(mesh):
        ts["state"], m = update(ts["state"], ts["base"], batch,
                                jax.random.fold_in(run["rng"], step))
      step += 1
      losses[step] = float(m["loss"])
      last_good = _check_finite(m, step, last_good, run["ckpt"], run["workdir"])
      if step % durations["log"] == 0 or step == total:
        train_m = _log_train(run, ts, step, m)
      if _should_stop(event, stop, step):
        _save(run, ts, step)
        return step, losses, train_m, evals, True
      if durations["ckpt"] and step % durations["ckpt"] == 0:
        _save(run, ts, step)
      if step < total:
        evals.update(run_evals(evaluators, run["eval_params"](), step, run["writer"],
                               final=False))
    if run["ckpt"].latest_step() != step:
      _save(run, ts, step)
    evals.update(run_evals(evaluators, run["eval_params"](), step, run["writer"],
                           final=True))
    return step, losses, train_m, evals, False
  finally:
    restore_signal()


def restore_params(config, workdir):
  """Returns `(eval params, step)` of the latest checkpoint in `workdir` (LoRA merged)."""
  mesh = make_mesh(config)
  run = train_setup.setup(config, workdir)
  try:
    step = run["ckpt"].latest_step()
    if not step:
      raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints; train first.")
    ts = init_train_state(config, run["model_mod"], run["model"], mesh, run["first"],
                          run["total_steps"], run["rng"])
    ts["state"] = run["ckpt"].restore_state(step, jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        ts["state"], ts["shardings"]))
    return eval_params_fn(config, ts)(), step
  finally:
    run["ckpt"].close()
    run["writer"].close()


def train(config, workdir, *, stop=None):
  """Trains per `config`, writing into `workdir`; returns a dict of results.

  Args:
    config: ml_collections.ConfigDict (see the module docstring).
    workdir: output folder (created); re-running in it resumes.
    stop: optional `fn(step) -> bool` polled after every step; True saves a checkpoint
      and returns early (as SIGTERM does).
  Returns:
    dict(step, losses {step: loss} of the steps run now, train (last logged metrics),
    evals {"name/metric": value}, params (eval params: LoRA merged), stopped (bool)).
  """
  mesh = make_mesh(config)
  config_check.check(config, mesh)
  run = train_setup.setup(config, workdir)
  # Demo hook 1/2: an optional stage-0 (SigLIP image-text pre-training of the image tower,
  # `config.stage0`) runs once, after data preparation; model_init then loads its ViT.
  config = stage0.init_from_stage0(config, workdir, mesh)
  ts = init_train_state(config, run["model_mod"], run["model"], mesh, run["first"],
                        run["total_steps"], run["rng"])
  state = train_setup.resume_from_checkpoint(run, jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      ts["state"], ts["shardings"]))
  ts["state"] = ts["state"] if state is None else state
  run["eval_params"] = eval_params_fn(config, ts)
  update = make_update_fn(config, run["model"], ts, mesh)
  try:
    evaluators = train_setup.make_evaluators(config, run, workdir, mesh)
    step, losses, train_m, evals, stopped = _loop(config, run, ts, update, evaluators,
                                                  mesh, stop)
  finally:
    run["ckpt"].close()
    run["writer"].close()
  # Demo hook 2/2: pictures of the run (`config.report`), once training has finished.
  if config.get("report") and not stopped and jax.process_index() == 0:
    report.write(config.report, workdir)
  return dict(step=step, losses=losses, train=train_m, evals=evals,
              params=run["eval_params"](), stopped=stopped)


def main(argv):
  """Parses flags and calls `train` (see the module docstring)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  del argv
  f = flags.FLAGS
  if f.distributed:
    train_setup.init_distributed(f.coordinator_address, f.num_processes, f.process_id)
  os.makedirs(f.workdir, exist_ok=True)
  result = train(f.config, f.workdir)
  if jax.process_index() == 0:
    print(json.dumps({"step": result["step"], "stopped": result["stopped"],
                      **result.get("evals", {})}))


if __name__ == "__main__":
  train_setup.define_flags()
  from absl import app  # pylint: disable=g-import-not-at-top
  app.run(main)
