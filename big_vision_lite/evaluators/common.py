"""Builds evaluators from `config.evals` and holds what they share.

Each `config.evals[name]` is a dict:

  type:        module of `big_vision_lite.evaluators` holding an `Evaluator` ("vqav2").
  pred:        key of `predict_fns` ("decode" or "logits"); default "decode".
  pred_kw:     keyword arguments bound to that predict fn (max_decode_len=...).
  data:        dataset config given to `input_pipeline.evaluation`.
  pp_fn:       eval pp string.
  batch_size:  global batch size; defaults to `config.input.batch_size`.
  log_steps | log_percent:  how often to run (exactly one of them).
  ...          any other key is a keyword argument of that `Evaluator`.

`EvaluatorBase` holds the constructor arguments every `Evaluator` takes; each module's
`Evaluator` is a `@dataclasses.dataclass(kw_only=True, eq=False)` subclass adding its
own options (and its own `name` default), so its signature stays explicit and
`from_config` can check config keys against it (`eq=False`: evaluators still compare
and hash by identity).

`make_predict_fns(model, mesh, ...)` builds the "logits" and "decode" predict fns the
trainer and `tools.eval` give to `from_config`. `check_data(config)` builds each
evaluator's data source and pp pipeline once; the trainer calls it at startup, so an
unknown pp op or a missing data file fails before the first training step.

Multi-host: every host evaluates its own share of the data; metrics are computed from
sufficient statistics summed over hosts (`process_sum`), and per-example records are
gathered to every host (`gather_json`) so that host 0 alone writes files.
"""
import dataclasses
import functools
import importlib
import inspect
import json
import os
import pkgutil
from typing import Any, Callable

import flax.linen as nn
import jax
from jax.experimental import multihost_utils
import numpy as np

from big_vision_lite import decode as decode_lib
from big_vision_lite import registry
from big_vision_lite import sharding
from big_vision_lite import steps

# Keys the predict fns need; ground-truth strings never go to the device.
MODEL_KEYS = ("image", "text", "mask_ar", "mask_input", "mask_loss", "_mask")
_RESERVED = ("type", "pred", "pred_kw", "log_steps", "log_percent")


@dataclasses.dataclass(eq=False)
class EvaluatorBase:
  """What every evaluator is built with (subclasses add their options as fields).

  Attributes:
    predict_fn: fn(params, batch) from `make_predict_fns` (with `pred_kw` bound).
    tokenizer: has `to_str(ids, stop_at_eos=True)`.
    data: dataset config given to `input_pipeline.evaluation`.
    pp_fn: eval pp string.
    batch_size: global eval batch size.
    name: the evaluator's name (`config.evals` key); each subclass sets its default.
    workdir: where `{name}_predictions.json` is written (None: no files).
  """
  predict_fn: Callable[..., Any]
  tokenizer: Any
  _: dataclasses.KW_ONLY
  data: Any
  pp_fn: str
  batch_size: int
  name: str
  workdir: str | None = None


def _evaluator_module(type_name):
  """Imports `big_vision_lite.evaluators.<type_name>` and checks it has `Evaluator`."""
  pkg = importlib.import_module("big_vision_lite.evaluators")
  known = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                 if m.name != "common")
  if type_name not in known:
    raise registry.unknown_name("evaluator type", type_name, known)
  module = importlib.import_module(f"big_vision_lite.evaluators.{type_name}")
  if not hasattr(module, "Evaluator"):
    raise KeyError(f"Module big_vision_lite.evaluators.{type_name} has no `Evaluator`; "
                   f"evaluator types with one: {known}")
  return module


def make_predict_fns(model, mesh, *, rules=(), tokenizer=None, compute_dtype=None):
  """{"logits": fn(params, batch), "decode": fn(params, batch, **kw)} for evaluators.

  Args:
    model: the Model (computing in `compute_dtype`).
    mesh: the Mesh; host batches are assembled into global arrays on it.
    rules: config.sharding_rules.
    tokenizer: gives the default `eos_id` of "decode" (1 without one).
    compute_dtype: params are cast to it inside the jitted fns (None: as they are).
  """
  rules = list(rules or ())
  to_global = lambda batch: sharding.global_batch(dict(batch), mesh, rules)
  cast = jax.jit(lambda p: steps.cast_floats(p, compute_dtype))

  @jax.jit
  def _logits(params, batch):
    mask = batch.get("mask_input")
    return model.apply({"params": steps.cast_floats(params, compute_dtype)},
                       batch["image"], batch["text"], batch["mask_ar"],
                       input_mask=None if mask is None else mask > 0, train=False)

  def logits(params, batch):
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      return _logits(params, to_global(batch))

  def decode(params, batch, **kw):
    kw.setdefault("eos_id", tokenizer.eos_id if tokenizer is not None else 1)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      params = params if compute_dtype is None else cast(params)
      return decode_lib.decode(model, params, to_global(batch), **kw)
  return {"logits": logits, "decode": decode}


def check_data(config):
  """Builds every evaluator's data source and pp pipeline once (nothing is read).

  Raises the source's or pp builder's error, prefixed by `evals.<name>:`, so an unknown
  pp op or a missing data file fails when training starts, not at the first evaluation.
  """
  from big_vision_lite import input_pipeline  # pylint: disable=import-outside-toplevel
  for name, cfg in (config.get("evals") or {}).items():
    cfg = dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
    if "data" not in cfg or "pp_fn" not in cfg:
      continue
    batch_size = cfg.get("batch_size") or (config.get("input") or {}).get("batch_size")
    try:
      input_pipeline.evaluation(cfg["data"], cfg["pp_fn"], batch_size,
                                process_index=jax.process_index(),
                                process_count=jax.process_count())
    except (KeyError, ValueError, TypeError, FileNotFoundError, OSError) as e:
      msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
      raise type(e)(f"evals.{name}: {msg}") from e


def _log_steps(name, cfg, total_steps):
  has = [k for k in ("log_steps", "log_percent") if cfg.get(k) is not None]
  if len(has) != 1:
    raise ValueError(f"evals.{name} sets {has or 'neither'} of log_steps/log_percent; "
                     "set exactly one (e.g. log_percent=1.0 to run once at the end).")
  if has[0] == "log_steps":
    return int(cfg["log_steps"])
  if total_steps is None:
    raise ValueError(f"evals.{name}.log_percent={cfg['log_percent']} needs total_steps; "
                     "pass from_config(..., total_steps=N) or use log_steps.")
  return max(1, int(round(total_steps * float(cfg["log_percent"]))))


def from_config(config, predict_fns, *, tokenizer, write_note=print, workdir=None,
                total_steps=None):
  """Builds every evaluator of `config.evals`.

  Args:
    config: ConfigDict with `evals` (and `input.batch_size` as the default batch size).
    predict_fns: dict name -> fn(params, batch, **pred_kw).
    tokenizer: object with `to_str(ids, stop_at_eos=True)` (may be None for perplexity).
    write_note: callable(str) for progress notes.
    workdir: where evaluators write `{name}_predictions.json` (None: no files).
    total_steps: training length, needed only by `log_percent`.

  Returns:
    list of (name, evaluator, log_steps).
  """
  out = []
  evals = config.get("evals") or {}
  for name, cfg in evals.items():
    cfg = dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
    module = _evaluator_module(cfg.get("type", name))
    pred = cfg.get("pred", "decode")
    if pred not in predict_fns:
      raise KeyError(f"evals.{name}.pred={pred!r} is not a predict fn; "
                     f"known: {sorted(predict_fns)}.")
    predict_fn = functools.partial(predict_fns[pred], **(cfg.get("pred_kw") or {}))
    log_steps = _log_steps(name, cfg, total_steps)
    kw = {k: v for k, v in cfg.items() if k not in _RESERVED}
    if kw.get("batch_size") is None:
      kw["batch_size"] = (config.get("input") or {}).get("batch_size")
    if kw["batch_size"] is None:
      raise ValueError(f"evals.{name}.batch_size is not set and there is no "
                       "config.input.batch_size to default to; set one of them.")
    kw.update(tokenizer=tokenizer, name=name, workdir=workdir)
    sig = inspect.signature(module.Evaluator)
    try:
      sig.bind(predict_fn, **kw)
    except TypeError as e:
      valid = [p for p in sig.parameters if p not in ("predict_fn", "tokenizer", "name",
                                                      "workdir")]
      raise TypeError(f"evals.{name} (type {module.__name__.rsplit('.', 1)[-1]}): {e}. "
                      f"Valid keys: {sorted(valid) + list(_RESERVED)}.") from e
    write_note(f"Building evaluator {name} ({module.__name__})...")
    evaluator = module.Evaluator(predict_fn, **kw)
    out.append((name, evaluator, log_steps))
  return out


def eval_batches(data, pp_fn, batch_size):
  """Yields this host's padded eval batches (dicts of numpy arrays with `_mask`)."""
  # Imported here: evaluators are importable without tf.data being loaded.
  from big_vision_lite import input_pipeline  # pylint: disable=import-outside-toplevel
  return input_pipeline.evaluation(
      data, pp_fn, batch_size,
      process_index=jax.process_index(), process_count=jax.process_count())


def local_rows(x):
  """Returns this host's rows of `x` (numpy or a global jax.Array) as numpy."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    shards = {}
    for s in x.addressable_shards:
      shards.setdefault(s.index[0].start or 0, np.asarray(s.data))
    return np.concatenate([shards[k] for k in sorted(shards)], axis=0)
  return np.asarray(x)


def to_py(x):
  """Turns ground-truth values into Python: bytes -> str, scalars -> int/float, string
  arrays -> (nested) lists of str; numeric arrays (boxes, masks) stay numpy arrays."""
  if isinstance(x, bytes):
    return x.decode("utf-8")
  if isinstance(x, np.ndarray):
    if not x.ndim:
      return to_py(x.item())
    return [to_py(v) for v in x.tolist()] if x.dtype.kind in "OSU" else x
  if isinstance(x, (list, tuple)):
    return [to_py(v) for v in x]
  if isinstance(x, np.generic):
    return x.item()
  return x


def nonempty(texts):
  """Drops the "" entries that batching pads variable-length string lists with."""
  return [t for t in texts if t != ""]


def decoded_examples(predict_fn, params, tokenizer, batches, keep=()):
  """Runs `predict_fn` over `batches`; yields (ground truth dict, predicted text).

  Args:
    predict_fn: fn(params, batch) -> dict with `tokens` int32[B, Tdec].
    params: model params.
    tokenizer: has `to_str(ids, stop_at_eos=True)`.
    batches: iterable of dicts of numpy arrays with `_mask` bool[B].
    keep: ground-truth keys copied (via `to_py`) into the yielded dict.
  """
  for batch in batches:
    model_batch = {k: v for k, v in batch.items() if k in MODEL_KEYS}
    tokens = local_rows(predict_fn(params, model_batch)["tokens"])
    for i in np.flatnonzero(np.asarray(batch["_mask"])):
      gt = {k: to_py(batch[k][i]) for k in keep if k in batch}
      yield gt, tokenizer.to_str(tokens[i].tolist(), stop_at_eos=True)


def process_sum(tree):
  """Sums a pytree of numbers over all hosts (float64 on host; exact for counts)."""
  leaves, treedef = jax.tree.flatten(tree)
  vec = np.asarray(leaves, np.float64).reshape(-1)
  if jax.process_count() > 1:
    vec = np.asarray(multihost_utils.process_allgather(vec)).sum(axis=0)
  return jax.tree.unflatten(treedef, [float(v) for v in vec])


def gather_json(records):
  """Returns the concatenation over hosts (in host order) of JSON-able `records`."""
  if jax.process_count() == 1:
    return list(records)
  data = np.frombuffer(json.dumps(list(records)).encode("utf-8"), np.uint8)
  lengths = np.asarray(multihost_utils.process_allgather(np.int64(data.size)))
  padded = np.zeros(int(lengths.max()), np.uint8)
  padded[:data.size] = data
  every = np.asarray(multihost_utils.process_allgather(padded))
  out = []
  for row, n in zip(every, lengths.reshape(-1)):
    out.extend(json.loads(bytes(row[:int(n)]).decode("utf-8")))
  return out


def predictions_path(workdir, name):
  """`{workdir}/{name}_predictions.json`, with "/" in `name` ("vqa/val") written as "_"."""
  return os.path.join(workdir, f"{name.replace('/', '_')}_predictions.json")


def write_json(workdir, name, records):
  """Host 0 writes `predictions_path(workdir, name)` atomically; returns the path."""
  if workdir is None or jax.process_index() != 0:
    return None
  path = predictions_path(workdir, name)
  os.makedirs(os.path.dirname(path), exist_ok=True)  # Names may hold "/" (vqav2/minival).
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(records, f, ensure_ascii=False, indent=1)
  os.replace(tmp, path)
  return path
