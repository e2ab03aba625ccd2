"""Checks a training config before any data, model or compilation work.

`check(config, mesh)` raises a one-line error naming the key, the value and the valid
choices for: unknown top-level keys, values of the wrong type or out of range (durations,
lr/wd/clip/label smoothing, schedules, lr/wd mults, lora, mesh, sharding strategy and
rules, seed; see `config_values`), unknown model/tower/evaluator/optax/schedule names,
unknown model config keys and bad model sizes, a model vocabulary smaller than the
tokenizer's, optax kwargs its transform does not take, sharding rules naming axes the
mesh lacks, and a batch size that the devices along the batch axes do not divide.
`train.train` calls it right after building the mesh (the mesh itself is checked by
`sharding.make_mesh`; `config_values.check_mesh_config(config.mesh)` checks its types).
"""
import dataclasses
import importlib
import pkgutil

import inspect
import os

import numpy as np

from big_vision_lite import config_values
from big_vision_lite import registry
from big_vision_lite.config_values import show  # One-line repr of config values.

_DURATIONS = ("steps", "epochs", "examples", "percent")
TOP_KEYS = tuple(sorted({
    "input", "model_name", "model", "model_init", "model_load", "seed", "tokenizer",
    "train_tokenizer", "ensure_shapes", "optax_name", "optax", "lr", "wd", "lr_mults",
    "wd_mults", "grad_clip_norm", "schedule", "label_smoothing", "grad_accum_steps",
    "mesh", "sharding_strategy", "sharding_rules", "lora", "evals", "keep_ckpts",
    "compute_dtype",
    "total_steps", "total_epochs", "total_examples", "stage0", "report"} | {
        f"{name}_{unit}" for name in ("log_training", "ckpt", "keep_ckpt")
        for unit in _DURATIONS}))


def _modules(pkg):
  """Module names of the package `pkg` (a module object)."""
  return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__))


def _check_keys(kind, given, valid):
  for key in given:
    if key not in valid:
      raise registry.unknown_name(kind, key, valid)


def _fields(module_name):
  """Constructor fields of `big_vision_lite.models.<module_name>.Model`."""
  model = importlib.import_module(f"big_vision_lite.models.{module_name}").Model
  return {f.name for f in dataclasses.fields(model)} - {"parent", "name"}


def check_model(config):
  """Model name, tower names and model config keys."""
  name = config.get("model_name", "paligemma")
  models = [m for m in _modules(importlib.import_module("big_vision_lite.models"))
            if m not in ("common", "lora")]
  if name not in models:
    raise registry.unknown_name("config.model_name", name, models)
  model = config.get("model") or {}
  if not hasattr(model, "items"):
    raise ValueError(f"config.model={show(model)} must be a dict of models/{name}.py Model "
                     "kwargs.")
  model = dict(model)
  _check_keys(f"config.model key (of models/{name}.py Model)", model, _fields(name))
  if name != "paligemma":
    return
  for tower, default in (("img", "vit"), ("llm", "gemma")):
    tower_name = model.get(f"{tower}_model", default)
    if not isinstance(tower_name, str) or tower_name not in models:
      raise registry.unknown_name(f"config.model.{tower}_model", tower_name, models)
    sub = model.get(tower) or {}
    if not hasattr(sub, "items"):
      raise ValueError(f"config.model.{tower}={show(sub)} must be a dict of models/"
                       f"{tower_name}.py Model kwargs.")
    _check_keys(f"config.model.{tower} key (of models/{tower_name}.py Model)",
                dict(sub), _fields(tower_name))


_POSITIVE_SIZES = ("width", "depth", "mlp_dim", "num_heads", "num_kv_heads", "head_dim",
                   "vocab_size", "sliding_window", "num_classes")


def _check_tower(kind, module_name, cfg):
  """Sizes, patch size, remat policy and dropout of one model (tower) config."""
  import jax  # pylint: disable=import-outside-toplevel
  for k in _POSITIVE_SIZES:
    if cfg.get(k) is not None:
      config_values.need_int(f"{kind}.{k}", cfg[k], 1)
  patch = cfg.get("patch_size")
  if patch is not None and not (
      isinstance(patch, (list, tuple)) and len(patch) == 2
      and all(config_values.is_int(p) and p >= 1 for p in patch)):
    raise ValueError(f"{kind}.patch_size={show(patch)} must be (height, width) of ints >= 1.")
  policy = cfg.get("remat_policy")
  if policy is not None:
    policies = ["none"] + sorted(n for n in dir(jax.checkpoint_policies)
                                 if not n.startswith("_"))
    if policy not in policies:
      raise registry.unknown_name(f"{kind}.remat_policy", policy, policies)
  if cfg.get("dropout") is not None:
    config_values.need_number(f"{kind}.dropout", cfg["dropout"], 0, 1, hi_open=True)
  model = importlib.import_module(f"big_vision_lite.models.{module_name}").Model
  try:
    sizes = model(**cfg).cfg if isinstance(getattr(model, "cfg", None), property) else cfg
  except (ValueError, KeyError, TypeError) as e:
    msg = " ".join(str(e.args[0] if e.args else e).split())
    raise ValueError(f"{kind} (models/{module_name}.py): {msg}") from None
  return dict(sizes)


def _check_vocab(config, llm_sizes):
  """The model's vocabulary must hold every id of the tokenizer (when it exists now)."""
  path, vocab = config.get("tokenizer"), llm_sizes.get("vocab_size")
  if not isinstance(path, str) or not os.path.isfile(path) or vocab is None:
    return
  from big_vision_lite import tokenizer  # pylint: disable=import-outside-toplevel
  n = tokenizer.Tokenizer(path).vocab_size
  if vocab < n:
    raise ValueError(f"config.model.llm vocab_size={vocab} is smaller than the "
                     f"{n} pieces of config.tokenizer {path!r}; set vocab_size >= {n} "
                     "(ids past the embedding would be silently clamped).")


def check_model_values(config):
  """Sizes of the model (and its towers) and the vocabulary vs the tokenizer."""
  name = config.get("model_name", "paligemma")
  model = dict(config.get("model") or {})
  if name != "paligemma":
    _check_tower("config.model", name, model)
    return
  sizes = {}
  for tower, default in (("img", "vit"), ("llm", "gemma")):
    sub = model.get(tower) or {}
    if not hasattr(sub, "items"):
      raise ValueError(f"config.model.{tower}={show(sub)} must be a dict of models/"
                       f"{model.get(f'{tower}_model', default)}.py Model kwargs.")
    sizes[tower] = _check_tower(f"config.model.{tower}",
                                model.get(f"{tower}_model", default), dict(sub))
  _check_vocab(config, sizes["llm"])


def check_optimizer(config):
  """optax_name and schedule names (the optimizer itself is built later)."""
  import optax  # pylint: disable=import-outside-toplevel
  from big_vision_lite import optim  # pylint: disable=import-outside-toplevel
  name = config.get("optax_name", "scale_by_adam")
  if not callable(getattr(optax, str(name), None)):
    transforms = [n for n in dir(optax) if n.startswith("scale_by_")] + ["trace", "identity"]
    raise registry.unknown_name("config.optax_name", name, transforms)
  kwargs = dict(config.get("optax") or {})
  signature = inspect.signature(getattr(optax, name))
  for k, v in kwargs.items():
    default = getattr(signature.parameters.get(k), "default", None)
    if isinstance(default, bool) and not isinstance(v, bool):
      raise ValueError(f"config.optax.{k}={show(v)} must be a bool (optax.{name} default "
                       f"{default!r}).")
    if (isinstance(default, (int, float)) and not isinstance(default, bool)
        and not config_values.is_number(v)):
      raise ValueError(f"config.optax.{k}={show(v)} must be a finite number (optax.{name} "
                       f"default {default!r}).")
  try:
    signature.bind(**kwargs)
    getattr(optax, name)(**kwargs)
  except (TypeError, ValueError) as e:
    params = list(signature.parameters)
    raise ValueError(f"config.optax={show(kwargs)} does not fit optax.{name}: {e}. Valid "
                     f"keys: {params}.") from None
  for _, sched in optim.schedule_rules(config):
    if sched is not None:
      optim.make_schedule(sched, total_steps=100)


def check_evals(config):
  types = [t for t in _modules(importlib.import_module("big_vision_lite.evaluators"))
           if t != "common"]
  for name, cfg in dict(config.get("evals") or {}).items():
    kind = dict(cfg).get("type", name)
    if kind not in types:
      raise registry.unknown_name(f"evaluator type of config.evals.{name}", kind, types)


def check_sharding(config, mesh):
  """Sharding rules name mesh axes; the batch axes divide the batch size."""
  axes = tuple(mesh.axis_names)
  batch_axes = axes
  for logical, target in config.get("sharding_rules") or ():
    targets = target if isinstance(target, (tuple, list)) else (target,)
    for t in targets:
      if t is not None and t not in axes:
        raise ValueError(f"config.sharding_rules maps {logical!r} to mesh axis {t!r}, "
                         f"which config.mesh lacks. Valid: {list(axes)}.")
    if logical == "act_batch":
      batch_axes = tuple(t for t in targets if t is not None)
  n = int(np.prod([mesh.shape[a] for a in batch_axes]))
  batch_size = config.input.get("batch_size") if "input" in config else None
  if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
    raise ValueError(f"config.input.batch_size={batch_size!r} must be a positive int "
                     f"(a multiple of {n}, the devices along the batch axes {batch_axes}).")
  accum = config.get("grad_accum_steps", 1)
  if batch_size % (n * accum):
    raise ValueError(
        f"config.input.batch_size={batch_size} is not divisible by {n * accum} = "
        f"{n} devices along the batch axes {batch_axes} (mesh {dict(mesh.shape)}) x "
        f"grad_accum_steps={accum}. Valid: a multiple of {n * accum}, e.g. "
        f"{max(1, round(batch_size / (n * accum))) * n * accum}.")


def check(config, mesh):
  """Raises ValueError (one line: key, value, valid choices) for a bad config."""
  _check_keys("config key", config.keys(), TOP_KEYS)
  config_values.check_values(config)
  dtypes = (None, "float32", "bfloat16", "float16")
  if config.get("compute_dtype") not in dtypes:
    raise registry.unknown_name("config.compute_dtype", config.get("compute_dtype"), dtypes,
                                context="(params stay float32; this is the compute dtype)")
  check_model(config)
  check_model_values(config)
  check_optimizer(config)
  check_evals(config)
  check_sharding(config, mesh)
