r"""Trains (or fine-tunes) a model from a config: `train(config, workdir) -> dict`.

  python -m big_vision_lite.train --config transfers/forkme.py:res=224 \
      --workdir /tmp/run [--config.total_steps=100] [--distributed] [--verbosity=0]

`train` reads top to bottom in big_vision's order: mesh (`jax.make_mesh`, topology
aware) -> data -> param shapes (`jax.eval_shape`, nothing allocated) -> shardings (the
`sharding_strategy` plan) -> the train state: resumed from the workdir's newest
checkpoint if there is one, else `model_init` loaded straight into the sharded layout
(each device reads only its shard of the file), else a sharded init -> the jitted
update -> evaluators (their data and pp are checked here) -> the loop.

The loop never waits for the device between log steps: the metrics of each step stay
on the device until a log, checkpoint or evaluation step, where they are fetched at once
and checked (a NaN/Inf loss or param norm stops training, naming the first bad step and
the steps since the last check; no bad checkpoint is written). While a step runs, a
worker thread (`prefetch.Prefetcher`) reads the next batch from the input pipeline and
places it on the devices; it is asked for it once the step's checkpoint decision is made
and the data position read, so checkpoints hold the position of the batches consumed.
The step's RNG key is folded in inside the jitted update. A stop request is seen
at a step boundary: SIGTERM in one process, JAX's preemption sync point
(`multihost_utils.reached_preemption_sync_point`, the same step on every host) in many;
it saves a checkpoint and returns. With LoRA the merged params are built only when an
evaluator runs and at the end. `compute_dtype="bfloat16"` computes the forward and
backward passes in bf16 from f32 master params (gradients and optimizer state f32).

Restarting the same command in the same workdir resumes from the latest checkpoint
(params, optimizer state, data position, RNG), bit-identically. See `optim.py` for the
optimizer keys, `sharding.py` for `mesh`, `sharding_strategy`, `sharding_rules`,
`durations.py` for the run length and periods, `models/lora.py` for `lora`.
"""
import itertools
import json
import os
import signal
import threading

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np

from big_vision_lite import cli
from big_vision_lite import config_check
from big_vision_lite import config_values
from big_vision_lite import durations
from big_vision_lite import metrics_log
from big_vision_lite import models
from big_vision_lite import optim
from big_vision_lite import prefetch
from big_vision_lite import report
from big_vision_lite import resume
from big_vision_lite import sharded_load
from big_vision_lite import sharding
from big_vision_lite import stage0
from big_vision_lite import steps
from big_vision_lite.models import lora as lora_lib

TRAIN_KEYS = ("image", "text", "mask_ar", "mask_loss", "mask_input")


def make_mesh(config):
  """The device mesh of `config.mesh` (default: one "data" axis over all devices)."""
  mesh_cfg = config.get("mesh", [("data", -1)])
  config_values.check_mesh_config(mesh_cfg)  # One-line error before JAX sees it.
  return sharding.make_mesh(mesh_cfg)


def prepare(config):
  """Startup data/tokenizer generation requested by the config (host 0 only)."""
  if jax.process_index() == 0:
    if config.get("ensure_shapes"):
      from big_vision_lite.datasets import shapes  # pylint: disable=import-outside-toplevel
      shapes.ensure_shapes(**dict(config.ensure_shapes))
    if config.get("train_tokenizer"):
      kw = dict(config.train_tokenizer)
      if not os.path.exists(kw["out_path"]):
        from big_vision_lite import tokenizer  # pylint: disable=import-outside-toplevel
        lines = [l.rstrip("\n") for f in kw.pop("corpus_files")
                 for l in open(f, encoding="utf-8")]
        tokenizer.train_tokenizer(lines, **kw)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("prepare")


def init_fn(model, batch):
  """`rng -> params` of `model` for inputs shaped like `batch` (rows of one example)."""
  ex = {k: jnp.zeros((1,) + np.shape(batch[k])[1:], np.asarray(batch[k]).dtype)
        for k in ("image", "text", "mask_ar")}
  return lambda rng: model.init(rng, ex["image"], ex["text"][:, :-1],
                                ex["mask_ar"][:, :-1])["params"]


def with_shardings(shapes, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      shapes, shardings)


def model_params(config, model_mod, abstract, init, rng):
  """Params laid out as `abstract`: `model_init` loaded shard by shard, else sharded init."""
  shardings = jax.tree.map(lambda x: x.sharding, abstract)
  if not config.get("model_init"):
    return jax.jit(init, out_shardings=shardings)(rng)
  plain = lambda x: x.to_dict() if hasattr(x, "to_dict") else x
  load_kw = plain(config.get("model_load", {}))
  if set(load_kw) - {"dont_load"}:
    raise ValueError(f"config.model_load keys {sorted(load_kw)}; valid: ['dont_load'].")
  return sharded_load.load(model_mod, abstract, plain(config.model_init),
                           plain(config.get("model", {})), load_kw.get("dont_load", ()),
                           lambda: init(rng))


def lora_merge_fn(config, base_shardings):
  """Jitted `(base, adapters) -> merged params` (no dropout), or None without LoRA."""
  if not config.get("lora"):
    return None
  cfg = {k: v for k, v in dict(config.lora).items() if k != "dropout"}
  return jax.jit(lambda base, l: lora_lib.merge(base, l, **cfg), out_shardings=base_shardings)


def _sigterm_event():
  """An Event set by SIGTERM (one process, main thread) and its cleanup."""
  event = threading.Event()
  if jax.process_count() > 1 or threading.current_thread() is not threading.main_thread():
    return event, lambda: None  # Many processes: JAX's preemption service catches it.
  old = signal.signal(signal.SIGTERM, lambda *_: event.set())
  return event, lambda: signal.signal(signal.SIGTERM, old)


def _stop_requested(event, stop, step):
  """SIGTERM / preemption notice / `stop(step)`; the same answer on every host."""
  if stop is not None and stop(step):
    return True
  if jax.process_count() > 1:
    return multihost_utils.reached_preemption_sync_point(step)
  return event.is_set()


def _fetch_metrics(pending, last_good, ckpt, workdir):
  """Device metrics of the steps since the last fetch -> host; raises on NaN/Inf.

  Returns (losses {step: loss}, metrics of the last step, last finite step).
  """
  host = jax.device_get([m for _, m in pending])
  losses = {}
  for (step, _), m in zip(pending, host):
    loss, pnorm = float(m["loss"]), float(m["param_norm"])
    if not (np.isfinite(loss) and np.isfinite(pnorm)):
      ckpt.wait()
      raise FloatingPointError(
          f"Loss {loss} / param norm {pnorm} at step {step}; finite up to step {last_good} "
          f"(non-finite in steps ({last_good}, {pending[-1][0]}]). Training stopped; the "
          f"last good checkpoint (step {ckpt.latest_step()}) is kept in {workdir}/"
          "checkpoints. Lower `lr`, set `grad_clip_norm`, or check the data.")
    losses[step], last_good = loss, step
  pending.clear()
  return losses, {k: float(v) for k, v in host[-1].items()}, last_good


def run_evals(evaluators, params_fn, step, writer, *, final):
  """Runs the evaluators due at `step` (all when `final`); params built only if one is."""
  due = [(n, e) for n, e, every in evaluators if final or (every and step % every == 0)]
  params, out = params_fn() if due else None, {}
  for name, evaluator in due:
    metrics = dict(evaluator.run(params))
    writer.write(step, metrics, prefix=name)
    out.update({f"{name}/{k}": v for k, v in metrics.items()})
  return out


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
  # Mesh; the config is checked before anything is written or computed.
  mesh = make_mesh(config)
  config_check.check(config, mesh)
  os.makedirs(workdir, exist_ok=True)
  prepare(config)
  # An optional stage 0 (`config.stage0`: SigLIP image-text training of the image tower,
  # once per workdir) returns a config whose model_init loads that ViT.
  config = stage0.init_from_stage0(config, workdir, mesh)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  name, rules = config.get("model_name", "paligemma"), config.get("sharding_rules", ())
  compute_dtype = config.get("compute_dtype")
  model_mod = models.get_module(name)
  model = model_mod.Model(**models.model_kwargs(name, config.get("model")))
  compute_model = model_mod.Model(**models.model_kwargs(name, config.get("model"),
                                                        compute_dtype))

  # Data, run length and periods.
  from big_vision_lite import input_pipeline  # pylint: disable=import-outside-toplevel
  data = input_pipeline.training(config.input, seed=config.get("seed", 0),
                                 process_index=jax.process_index(),
                                 process_count=jax.process_count())
  batch_size, n_train = config.input.batch_size, getattr(data, "total_examples", None)
  total = durations.total_steps(config, batch_size, n_train)
  kw = dict(total_steps=total, batch_size=batch_size, n_train=n_train)
  log_every = durations.duration(config, "log_training", default=max(1, total // 20), **kw)
  ckpt_every = durations.duration(config, "ckpt", **kw)
  ckpt = resume.Checkpointer(workdir, keep=config.get("keep_ckpts", 1),
                             keep_period=durations.duration(config, "keep_ckpt", **kw))
  writer = metrics_log.MetricsWriter(workdir, total_steps=total, batch_size=batch_size,
                                     enabled=jax.process_index() == 0,
                                     resume_step=ckpt.latest_step() or 0)
  first_batch = next(data)  # Shapes only; the data position is restored below if resuming.

  # Param shapes and shardings (nothing allocated).
  rng = jax.random.key(config.get("seed", 0))
  init = init_fn(model, first_batch)
  strategy = config.get("sharding_strategy", [(".*", "replicate")])
  param_shapes = jax.eval_shape(init, rng)
  param_shardings = sharding.to_shardings(
      sharding.make_plan(param_shapes, strategy, mesh), mesh)
  trainable_shapes, trainable_shardings = param_shapes, param_shardings
  lora_init = lambda r: lora_lib.init(r, param_shapes, **config.lora)
  if config.get("lora"):
    trainable_shapes = jax.eval_shape(lora_init, jax.random.fold_in(rng, 7))
    trainable_shardings = sharding.to_shardings(
        sharding.make_plan(trainable_shapes, strategy, mesh), mesh)
  tx, sched_fns = optim.make(config, trainable_shapes, total)
  trainable_mask = optim.trainable_mask(config, trainable_shapes)
  opt_shardings = sharding.to_shardings(sharding.opt_state_plan(
      tx, jax.eval_shape(tx.init, trainable_shapes),
      sharding.make_plan(trainable_shapes, strategy, mesh)), mesh)
  state_shardings = {"params": trainable_shardings, "opt": opt_shardings}
  abstract_state = {"params": with_shardings(trainable_shapes, trainable_shardings),
                    "opt": with_shardings(jax.eval_shape(tx.init, trainable_shapes),
                                          opt_shardings)}

  # Train state: resume, else load `model_init` into the shardings, else sharded init.
  base_params = None
  if config.get("lora"):  # The constant base: loaded (or initialised) in both cases.
    base_params = model_params(config, model_mod,
                               with_shardings(param_shapes, param_shardings), init, rng)
  restored = ckpt.restore_latest(abstract_state, write_note=writer.write_note)
  if restored is not None:
    step, state, data_state, rng = restored
    writer.write_note(f"Restoring checkpoint from {ckpt.directory}/{step}: resuming.")
    data.set_state(data_state)
    writer.drop_after(step)  # Older than the newest on disk after a fallback.
    batches = data
  else:
    step, batches = 0, itertools.chain([first_batch], data)
    if config.get("lora"):
      params = jax.jit(lora_init, out_shardings=trainable_shardings)(
          jax.random.fold_in(rng, 7))
    else:
      params = model_params(config, model_mod, abstract_state["params"], init, rng)
    state = {"params": params,
             "opt": jax.jit(tx.init, out_shardings=opt_shardings)(params)}
  del first_batch

  # The update function (donates the state; metrics stay on the device).
  loss_fn = steps.make_loss_fn(
      compute_model, label_smoothing=config.get("label_smoothing", 0.0),
      lora_cfg=dict(config.lora) if config.get("lora") else None, rules=rules,
      frozen_mask=trainable_mask, compute_dtype=compute_dtype)
  update_fn = steps.make_update_fn(loss_fn, tx, trainable_mask=trainable_mask,
                                   accum=config.get("grad_accum_steps", 1))
  update = jax.jit(  # The step's key is folded in on the device (no host op per step).
      lambda state, base, batch, rng, step: update_fn(state, base, batch,
                                                      jax.random.fold_in(rng, step)),
      donate_argnums=(0,), out_shardings=(
          state_shardings, jax.sharding.NamedSharding(mesh, sharding.P())))
  merge = lora_merge_fn(config, param_shardings)
  eval_params = (lambda: merge(base_params, state["params"])) if merge else (
      lambda: state["params"])

  # Evaluators (their data sources and pp strings are checked now, before step 1).
  evaluators = []
  if config.get("evals"):
    from big_vision_lite.evaluators import common  # pylint: disable=import-outside-toplevel
    common.check_data(config)
    tok = None
    if config.get("tokenizer"):
      from big_vision_lite import tokenizer  # pylint: disable=import-outside-toplevel
      tok = tokenizer.Tokenizer(config.tokenizer)
    predict_fns = common.make_predict_fns(compute_model, mesh, rules=rules, tokenizer=tok,
                                          compute_dtype=compute_dtype)
    evaluators = common.from_config(
        config, predict_fns, tokenizer=tok, workdir=workdir, total_steps=total,
        write_note=writer.write_note if jax.process_index() == 0 else (lambda _: None))

  # The loop. A worker thread reads the next batch and places it on the devices while
  # the current step runs; it is asked for it only after the step's data position is
  # read (for a checkpoint), so that position is the one of the batches consumed.
  def next_batch():
    local = next(batches)
    return (sharding.global_batch({k: local[k] for k in TRAIN_KEYS if k in local}, mesh,
                                  rules), data.counts())
  prefetcher = prefetch.Prefetcher(next_batch)
  event, restore_signal = _sigterm_event()
  pending, losses, train_metrics, evals = [], {}, {}, {}
  last_good, stopped = step, False
  try:
    writer.start(step)
    if step < total:
      prefetcher.request()
    while step < total:
      batch, seen = prefetcher.get()  # `seen`: examples per source up to this batch.
      with jax.set_mesh(mesh):
        state, metrics = update(state, base_params, batch, rng, step)
      step += 1
      pending.append((step, metrics))
      stopped = _stop_requested(event, stop, step)
      do_log = step % log_every == 0 or step == total
      do_ckpt = stopped or (ckpt_every and step % ckpt_every == 0) or step == total
      do_eval = step < total and any(e and step % e == 0 for *_, e in evaluators)
      data_state = data.get_state() if do_ckpt else None  # Before the next batch is read.
      if step < total and not stopped:
        prefetcher.request()  # Made while this step runs on the devices.
      if do_log or do_ckpt or do_eval:
        new_losses, last_metrics, last_good = _fetch_metrics(pending, last_good, ckpt,
                                                             workdir)
        losses.update(new_losses)
      if do_log:
        last_metrics.update({f"lr/{k}" if len(sched_fns) > 1 else "lr": float(f(step - 1))
                             for k, f in sched_fns.items()})
        last_metrics.update({f"examples_seen/{k}": v for k, v in seen.items()})
        train_metrics = writer.write(step, last_metrics)
      if do_ckpt:  # A step resuming fell back past (unreadable) is saved again.
        ckpt.save(step, state, data_state=data_state, rng=rng)
      if stopped:
        break
      if do_eval:
        evals.update(run_evals(evaluators, eval_params, step, writer, final=False))
    if not stopped:
      evals.update(run_evals(evaluators, eval_params, step, writer, final=True))
  finally:
    prefetcher.close()
    restore_signal()
    ckpt.close()
    writer.close()
  if config.get("report") and not stopped and jax.process_index() == 0:
    report.write(config.report, workdir)  # Pictures of the run (loss curves, predictions).
  return dict(step=step, losses=losses, train=train_metrics, evals=evals,
              params=eval_params(), stopped=stopped)


EXAMPLES = (
    "python -m big_vision_lite.train --config configs/demo.py --workdir workdirs/demo",
    "python -m big_vision_lite.train --config transfers/forkme.py:res=224 \\\n"
    "      --workdir /tmp/run --config.total_steps=100 --verbosity=0",
    "python -m big_vision_lite.train --config configs/tiny.py --workdir /tmp/tiny \\\n"
    "      --distributed --coordinator_address=10.0.0.1:1234 --num_processes=2 "
    "--process_id=0",
)


def add_flags(p):
  """Adds the trainer's flags to the argparse parser `p` (also used by tools/eval.py)."""
  cli.add_config_flag(p)
  p.add_argument("--workdir", required=True,
                 help="Output folder; re-running in it resumes.")
  p.add_argument("--distributed", action="store_true",
                 help="Call jax.distributed.initialize() first.")
  p.add_argument("--coordinator_address", help="host:port of process 0 (--distributed; "
                 "default: auto-detected by JAX on clusters).")
  p.add_argument("--num_processes", type=int,
                 help="Number of processes (--distributed).")
  p.add_argument("--process_id", type=int, help="This process's index (--distributed).")
  p.add_argument("--verbosity", type=int, help="absl logging level (0: INFO of orbax and "
                 "absl; default: warnings only).")


def setup_process(args):
  """CLI process setup: quiet logs (unless --verbosity is given), jax.distributed."""
  from absl import logging  # pylint: disable=import-outside-toplevel
  if args.verbosity is None:  # INFO (orbax, absl) only when asked for.
    logging.set_verbosity(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  else:
    logging.set_verbosity(args.verbosity)
  if args.distributed:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts.
    jax.distributed.initialize(coordinator_address=args.coordinator_address,
                               num_processes=args.num_processes, process_id=args.process_id)


def main(argv):
  """Parses the flags and calls `train`; errors print one line (see `cli.run`)."""
  p = cli.parser(__doc__, EXAMPLES, prog="python -m big_vision_lite.train")
  add_flags(p)
  args = cli.parse(p, argv)
  setup_process(args)
  result = train(args.config, args.workdir)
  if jax.process_index() == 0:
    print(json.dumps({"step": result["step"], "stopped": result["stopped"],
                      **result.get("evals", {})}))


if __name__ == "__main__":
  cli.run(main)
