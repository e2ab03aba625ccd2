"""Loop-overhead benchmark: the real `train()` loop vs the bare compiled step.

`bench_loop` runs `train.train` on the tiny shapes data (`configs/tiny.py`, generated
on first use) with a benchmark model (`bench.train.MODELS`), logging every
`log_every` steps, and reads the loop's own step rate from its `metrics.jsonl`
(`steps_per_sec` of each log interval after the first, so compilation and the first
steps are excluded; each interval spans the loop's real host work: batches from the
input pipeline, global batch assembly, the metric sync and writes of the log step).
The bare step is the same update (`bench.train.make_train_step`: same model,
optimizer, shardings, batch shape, LoRA or not) on one batch already on the devices,
with its RNG keys made beforehand, dispatched `log_every` times back to back and synced
once, as the loop does between log steps. Each repetition runs both, without and with
LoRA, in turn; the overhead is the median over repetitions of loop step time / bare
step time - 1.
"""
import json
import os
import shutil
import time

import jax
import numpy as np

from big_vision_lite.bench import train as bt
from big_vision_lite import models
from big_vision_lite import train

LORA = dict(rank=8, alpha=16.0, targets="llm/layers/(attn|mlp)/.*")


def loop_config(model_name, *, data_dir, batch, res, text_len, total_steps, log_every,
                lora, scan=True, remat="nothing_saveable", compute_dtype="float32"):
  """The tiny trainer config with the benchmark model `model_name`; no checkpoints."""
  from configs import common, tiny  # pylint: disable=import-outside-toplevel
  c = tiny.get_config(f"data_dir={data_dir},batch_size={batch},res={res},"
                      f"text_len={text_len},total_steps={total_steps}")
  model = bt.model_config(model_name, scan=scan, remat=remat)
  vocab = tiny.TOKENIZER_BASE_VOCAB + common.NUM_LOC_SEG
  model["llm"]["vocab_size"] = max(model["llm"].get("vocab_size", 0), vocab)
  c.model = model
  c.log_training_steps = log_every
  c.ckpt_steps = None  # Only the final save, after the last timed interval.
  if compute_dtype != "float32":
    c.compute_dtype = compute_dtype
  if lora:
    c.lora = dict(lora)
  return c


def _loop_step_s(workdir):
  """Median seconds per step of the log intervals after the first (from metrics.jsonl)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rates = [r["steps_per_sec"] for r in map(json.loads, f) if "steps_per_sec" in r]
  if len(rates) < 2:
    raise ValueError(f"{workdir}/metrics.jsonl has {len(rates)} timed log intervals; "
                     "the loop benchmark needs at least 2 (logs >= 2).")
  return float(np.median([1.0 / r for r in rates[1:]]))


def _bare_runner(config, *, batch, res, text_len, steps):
  """`run()` -> seconds per step of `steps` back-to-back bare steps (one sync)."""
  opt = {k: config[k] for k in ("optax_name", "lr", "wd", "grad_clip_norm", "schedule")
         if config.get(k) is not None}
  opt["schedule"] = dict(opt.get("schedule", {}))
  compute = config.get("compute_dtype") or "float32"
  model = models.model_kwargs("paligemma", config.model, compute)  # As the trainer's.
  step = bt.make_train_step(
      model, batch=batch, res=res, text_len=text_len, opt=opt, compute_dtype=compute,
      mesh=train.make_mesh(config), strategy=config.sharding_strategy,
      total_steps=config.total_steps, lora=dict(config.lora) if config.get("lora") else None)
  state, base = bt.init_state(step, res, text_len), None
  if step["lora"]:
    state, base = state
  data = bt.place_batch(step, bt.fake_batch(batch, res, text_len))
  box = {"state": state}
  keys = [jax.random.key(i) for i in range(steps)]  # Made once: no host op in the timing.

  def run():
    t0 = time.perf_counter()
    for key in keys:
      box["state"], m = bt.call_step(step, box["state"], data, key, base=base)
    jax.block_until_ready(m)
    return (time.perf_counter() - t0) / steps
  run()  # Compile and first steps.
  return run


def bench_loop(model_name, *, batch, res, text_len, reps=3, log_every=10, logs=3,
               data_dir, workdir, scan=True, remat="nothing_saveable",
               compute_dtype="float32"):
  """The `train --loop` sub-mode: loop vs bare step time, without and with LoRA.

  Args:
    log_every: steps per log interval (the loop syncs once per interval).
    logs: timed log intervals per run (one more, untimed, holds compile + first step).
    data_dir: the shapes data and tokenizer (made on first use).
    workdir: scratch folder for the runs (emptied before each run).

  Returns:
    dict(rows: one per variant with loop_step_s, bare_step_s, overhead (fraction),
    per-repetition times).
  """
  total = log_every * (logs + 1)
  kw = dict(data_dir=data_dir, batch=batch, res=res, text_len=text_len, total_steps=total,
            log_every=log_every, scan=scan, remat=remat, compute_dtype=compute_dtype)
  variants = {"full": None, "lora": LORA}
  configs = {v: loop_config(model_name, lora=l, **kw) for v, l in variants.items()}
  bare = {v: _bare_runner(c, batch=batch, res=res, text_len=text_len, steps=log_every)
          for v, c in configs.items()}
  times = {v: {"loop": [], "bare": []} for v in variants}
  for rep in range(reps):
    for v, c in configs.items():
      wd = os.path.join(workdir, f"{v}_{rep}")
      shutil.rmtree(wd, ignore_errors=True)
      train.train(c, wd)
      times[v]["loop"].append(_loop_step_s(wd))
      times[v]["bare"].append(float(np.median([bare[v]() for _ in range(logs)])))
      shutil.rmtree(wd, ignore_errors=True)
  rows = []
  for v, t in times.items():
    ratios = [l / b for l, b in zip(t["loop"], t["bare"])]
    rows.append(dict(variant=v, loop_step_s=float(np.median(t["loop"])),
                     bare_step_s=float(np.median(t["bare"])),
                     overhead=float(np.median(ratios)) - 1.0,
                     loop_times=t["loop"], bare_times=t["bare"]))
  return dict(rows=rows, config=dict(model=model_name, batch=batch, res=res,
                                     text_len=text_len, reps=reps, log_every=log_every,
                                     logs=logs, scan=scan, remat=remat,
                                     compute_dtype=compute_dtype, lora=LORA))
