"""What `train.train` sets up before the loop: flags, data, durations, evaluators.

Durations (big_vision names): `total_steps|total_epochs|total_examples` (exactly one),
and for `log_training` (default: 5% of the run), `ckpt` (periodic checkpoints; a final
one is always written) and `keep_ckpt` (checkpoints at multiples of it are kept for
good) at most one of `_steps|_epochs|_examples|_percent`. `keep_ckpts` (default 1) is how
many recent checkpoints are kept. Startup preparation (`ensure_shapes`, `train_tokenizer` config
keys) runs here, on host 0, never at config import.
"""
import difflib
import importlib
import itertools
import os
import pkgutil

import flax.linen as nn
import jax

from big_vision_lite import metrics_log
from big_vision_lite import resume
from big_vision_lite import sharding

_UNITS = ("steps", "epochs", "examples", "percent")


def define_flags():
  """Defines the CLI flags (called by `train`'s `__main__` only)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  config_flags.DEFINE_config_file("config", None, "Config file (path.py:arg).",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Output folder; re-running in it resumes.")
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first.")
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0 "
                      "(--distributed; default: auto-detected by JAX on clusters).")
  flags.DEFINE_integer("num_processes", None, "Number of processes (--distributed).")
  flags.DEFINE_integer("process_id", None, "This process's index (--distributed).")
  flags.mark_flags_as_required(["config", "workdir"])


def init_distributed(coordinator_address=None, num_processes=None, process_id=None):
  """jax.distributed.initialize(); CPU hosts talk through gloo collectives."""
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def get_model_module(name):
  """`config.model_name` -> the module `big_vision_lite.models.<name>` (Model, load)."""
  pkg = importlib.import_module("big_vision_lite.models")
  known = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__))
  if name not in known:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"Unknown model_name {name!r}.{hint} Known: {known}")
  module = importlib.import_module(f"big_vision_lite.models.{name}")
  for attr in ("Model", "load"):
    if not hasattr(module, attr):
      raise ValueError(f"big_vision_lite.models.{name} has no `{attr}`; a model module "
                       "must define `Model` and `load`.")
  return module


def duration(config, name, *, total_steps, batch_size, n_train, default=None):
  """Steps for duration `name` from `{name}_{steps|epochs|examples|percent}`."""
  set_ = [u for u in _UNITS if config.get(f"{name}_{u}") is not None]
  if len(set_) > 1:
    raise ValueError(f"Config sets {[f'{name}_{u}' for u in set_]}; set exactly one "
                     f"of {[f'{name}_{u}' for u in _UNITS]}.")
  if not set_:
    return default
  unit, v = set_[0], config.get(f"{name}_{set_[0]}")
  if unit == "steps":
    return int(v)
  if unit == "examples":
    return max(1, int(round(v / batch_size)))
  if unit == "percent":
    if total_steps is None:
      raise ValueError(f"{name}_percent needs total_steps.")
    return max(1, int(round(v * total_steps)))
  if not n_train:
    raise ValueError(f"{name}_epochs={v} needs the dataset size, which this input "
                     f"does not report; use {name}_steps or {name}_examples.")
  return max(1, int(round(v * n_train / batch_size)))


def total_steps(config, batch_size, n_train):
  set_ = [u for u in ("steps", "epochs", "examples")
          if config.get(f"total_{u}") is not None]
  if len(set_) != 1:
    raise ValueError(f"Config sets {[f'total_{u}' for u in set_] or 'none'} of "
                     "total_steps|total_epochs|total_examples; set exactly one.")
  return duration(config, "total", total_steps=None, batch_size=batch_size,
                  n_train=n_train)


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
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices("prepare")


def counts(data):
  return dict(data.counts()) if hasattr(data, "counts") else {}


def data_state(data):
  return data.get_state()


def setup(config, workdir):
  """Everything before the train state: returns a dict (see `train.train`)."""
  os.makedirs(workdir, exist_ok=True)
  prepare(config)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  model_mod = get_model_module(config.get("model_name", "paligemma"))
  from big_vision_lite import input_pipeline  # pylint: disable=import-outside-toplevel
  data = input_pipeline.training(config.input, seed=config.get("seed", 0),
                                 process_index=jax.process_index(),
                                 process_count=jax.process_count())
  bs = config.input.batch_size
  n_train = getattr(data, "total_examples", None)
  total = total_steps(config, bs, n_train)
  kw = dict(total_steps=total, batch_size=bs, n_train=n_train)
  durations = {"log": duration(config, "log_training", default=max(1, total // 20), **kw),
               "ckpt": duration(config, "ckpt", **kw),
               "keep": duration(config, "keep_ckpt", **kw)}
  ckpt = resume.Checkpointer(workdir, keep=config.get("keep_ckpts", 1),
                             keep_period=durations["keep"])
  # The checkpoint (and its data position) is restored by `resume_from_checkpoint`.
  step, rng = 0, jax.random.key(config.get("seed", 0))
  it = iter(data)
  first = next(it)
  writer = metrics_log.MetricsWriter(workdir, total_steps=total, batch_size=bs,
                                     enabled=jax.process_index() == 0,
                                     resume_step=ckpt.latest_step() or 0)
  return dict(workdir=workdir, model_mod=model_mod, model=model_mod.Model(**config.get("model", {})),
              data=data, iter=itertools.chain([first], it), first=first, total_steps=total,
              durations=durations, ckpt=ckpt, step=step, rng=rng, writer=writer)


def resume_from_checkpoint(run, abstract_state):
  """Restores the newest readable checkpoint into `run` (step, rng, data position).

  Returns the restored train state, or None (no checkpoint: `run` is unchanged).
  """
  restored = run["ckpt"].restore_latest(abstract_state, write_note=run["writer"].write_note)
  if restored is None:
    return None
  run["step"], state, data_state, run["rng"] = restored
  run["data"].set_state(data_state)
  run["iter"] = iter(run["data"])
  run["writer"].drop_after(run["step"])  # Older than the newest on disk after a fallback.
  return state


def make_predict_fns(config, model, mesh, tokenizer):
  """{"logits": fn(params, batch), "decode": fn(params, batch, **kw)} for evaluators."""
  rules = config.get("sharding_rules", ())
  def to_global(batch):
    return sharding.global_batch({k: v for k, v in batch.items()}, mesh, rules)

  @jax.jit
  def _logits(params, batch):
    mask = batch.get("mask_input")
    return model.apply({"params": params}, batch["image"], batch["text"],
                       batch["mask_ar"], input_mask=None if mask is None else mask > 0,
                       train=False)

  def logits(params, batch):
    with jax.set_mesh(mesh), nn.logical_axis_rules(list(rules or ())):
      return _logits(params, to_global(batch))

  def decode(params, batch, **kw):
    from big_vision_lite import decode as decode_lib  # pylint: disable=import-outside-toplevel
    if "eos_id" not in kw:
      kw["eos_id"] = tokenizer.eos_id if tokenizer is not None else 1
    with jax.set_mesh(mesh), nn.logical_axis_rules(list(rules or ())):
      return decode_lib.decode(model, params, to_global(batch), **kw)
  return {"logits": logits, "decode": decode}


def make_evaluators(config, run, workdir, mesh):
  """Evaluators of `config.evals` via `evaluators.common.from_config`."""
  if not config.get("evals"):
    return []
  from big_vision_lite.evaluators import common  # pylint: disable=import-outside-toplevel
  tok = None
  if config.get("tokenizer"):
    from big_vision_lite import tokenizer  # pylint: disable=import-outside-toplevel
    tok = tokenizer.Tokenizer(config.tokenizer)
  fns = make_predict_fns(config, run["model"], mesh, tok)
  return common.from_config(config, fns, tokenizer=tok, workdir=workdir,
                            total_steps=run["total_steps"],
                            write_note=run["writer"].write_note
                            if jax.process_index() == 0 else (lambda _: None))
