"""Value checks of training config entries: types and ranges, one line per error.

`check_values(config)` is called by `config_check.check` before any work. Every error
names the key, the value received and what is valid, e.g.
`config.total_steps=-3 must be an int >= 1 (got -3).`.
"""
import math
import re

from big_vision_lite import registry

_DURATION_NAMES = ("total", "log_training", "ckpt", "keep_ckpt")
LORA_KEYS = ("rank", "alpha", "targets", "dropout")
SCHEDULE_NUMBERS = {  # key -> (lower bound, upper bound or None, integer?)
    "warmup_steps": (0, None, True), "warmup_percent": (0, 1, False),
    "min_lr": (0, 1, False), "linear_end": (0, 1, False), "timescale": (1e-12, None, False)}


def show(v):
  """repr of a config value on one line (ConfigDicts as plain dicts)."""
  if hasattr(v, "to_dict"):
    v = v.to_dict()
  return " ".join(repr(v).split())


def is_int(v):
  return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
  return (isinstance(v, (int, float)) and not isinstance(v, bool)
          and math.isfinite(v))


def need_int(key, v, lo=1, hi=None):
  if not is_int(v) or v < lo or (hi is not None and v > hi):
    rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
    raise ValueError(f"{key}={show(v)} must be an int {rng} (got {type(v).__name__} {show(v)}).")


def need_number(key, v, lo=None, hi=None, lo_open=False, hi_open=False):
  """A finite int/float within [lo, hi] (open ends where asked)."""
  ok = is_number(v)
  if ok and lo is not None:
    ok = v > lo if lo_open else v >= lo
  if ok and hi is not None:
    ok = v < hi if hi_open else v <= hi
  if not ok:
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    rng = f"in {left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
    raise ValueError(f"{key}={show(v)} must be a finite number {rng} (got "
                     f"{type(v).__name__} {show(v)}).")


def need_regex(key, v):
  if not isinstance(v, str):
    raise ValueError(f"{key}={show(v)} must be a regex string (got {type(v).__name__}).")
  try:
    re.compile(v)
  except re.error as e:
    raise ValueError(f"{key}={show(v)} is not a valid regex: {e}.") from None


def need_pairs(key, v, what):
  """A list/tuple of 2-tuples `[(regex, <what>), ...]` (not a dict)."""
  if hasattr(v, "items"):
    raise ValueError(f"{key} is a dict {show(dict(v))}; it must be a list of (regex, {what}) "
                     f"pairs, e.g. {[tuple(x) for x in dict(v).items()][:2]!r}.")
  if not isinstance(v, (list, tuple)) or not all(
      isinstance(p, (list, tuple)) and len(p) == 2 for p in v):
    raise ValueError(f"{key}={show(v)} must be a list of (regex, {what}) pairs.")
  for i, (rx, _) in enumerate(v):
    need_regex(f"{key}[{i}] regex", rx)
  return v


def check_durations(config):
  for name in _DURATION_NAMES:
    for unit in ("steps", "examples"):
      v = config.get(f"{name}_{unit}")
      if v is not None:  # total_steps=0: an evaluation-only run (no training step).
        need_int(f"config.{name}_{unit}", v, 0 if (name, unit) == ("total", "steps") else 1)
    v = config.get(f"{name}_epochs")
    if v is not None:
      need_number(f"config.{name}_epochs", v, 0, lo_open=True)
    v = config.get(f"{name}_percent")
    if v is not None:
      need_number(f"config.{name}_percent", v, 0, 1, lo_open=True)
  if config.get("keep_ckpts") is not None:
    need_int("config.keep_ckpts", config.get("keep_ckpts"), 1)
  need_int("config.grad_accum_steps", config.get("grad_accum_steps", 1), 1)
  need_int("config.seed", config.get("seed", 0), 0, 2**32 - 1)


def check_schedule_dict(key, sched, total_steps):
  if not hasattr(sched, "items"):
    raise ValueError(f"{key}={show(sched)} must be a dict (decay_type, warmup_steps, ...) or "
                     "None (frozen).")
  sched = dict(sched)
  for k, (lo, hi, integer) in SCHEDULE_NUMBERS.items():
    if k not in sched:
      continue
    if integer:
      need_int(f"{key}.{k}", sched[k], lo)
    else:
      need_number(f"{key}.{k}", sched[k], lo, hi)
  warmup = sched.get("warmup_steps")
  if is_int(total_steps) and is_int(warmup) and warmup >= total_steps > 1:
    raise ValueError(f"{key}.warmup_steps={warmup} must be < total_steps={total_steps} "
                     "(the run would never reach the peak lr).")


def check_optimizer_values(config):
  lr = config.get("lr", 1e-3)
  need_number("config.lr", lr, 0)  # 0: evaluation-only configs.
  need_number("config.wd", config.get("wd", 0.0), 0)
  clip = config.get("grad_clip_norm")
  if clip is not None:
    need_number("config.grad_clip_norm", clip, 0)
  need_number("config.label_smoothing", config.get("label_smoothing", 0.0), 0, 1,
              hi_open=True)
  for name in ("lr_mults", "wd_mults"):
    rules = config.get(name)
    if rules is None:
      continue
    for i, (_, mult) in enumerate(need_pairs(f"config.{name}", rules, "mult")):
      need_number(f"config.{name}[{i}] mult", mult, 0)
  optax_kw = config.get("optax", {})
  if not hasattr(optax_kw, "items"):
    raise ValueError(f"config.optax={show(optax_kw)} must be a dict of keyword arguments of "
                     f"config.optax_name.")
  sched = config.get("schedule", {})
  total = config.get("total_steps")
  if sched is None or hasattr(sched, "items"):
    if sched is not None:
      check_schedule_dict("config.schedule", sched, total)
    return
  for i, (_, s) in enumerate(need_pairs("config.schedule", sched, "dict or None")):
    if s is not None:
      check_schedule_dict(f"config.schedule[{i}]", s, total)


def check_lora(config):
  lora = config.get("lora")
  if not lora:
    return
  if not hasattr(lora, "items"):
    raise ValueError(f"config.lora={show(lora)} must be a dict with keys {LORA_KEYS}.")
  lora = dict(lora)
  unknown = sorted(set(lora) - set(LORA_KEYS))
  missing = sorted({"rank", "alpha", "targets"} - set(lora))
  if unknown or missing:
    raise ValueError(f"config.lora keys: unknown {unknown}, missing {missing}; valid: "
                     f"{LORA_KEYS} (rank, alpha and targets are required).")
  need_int("config.lora.rank", lora["rank"], 1)
  need_number("config.lora.alpha", lora["alpha"], 0, lo_open=True)
  need_regex("config.lora.targets", lora["targets"])
  need_number("config.lora.dropout", lora.get("dropout", 0.0), 0, 1, hi_open=True)


def check_mesh_config(mesh_cfg):
  """`[(axis_name, size), ...]`: unique str names, int sizes >= 1 or -1 (one axis)."""
  ok = isinstance(mesh_cfg, (list, tuple)) and len(mesh_cfg) > 0 and all(
      isinstance(a, (list, tuple)) and len(a) == 2 and isinstance(a[0], str) and a[0]
      and is_int(a[1]) and (a[1] >= 1 or a[1] == -1) for a in mesh_cfg)
  if not ok:
    raise ValueError(f"config.mesh={show(mesh_cfg)} must be a non-empty list of (axis name "
                     "str, size int >= 1 or -1) pairs, e.g. [('data', -1)] or "
                     "[('data', 2), ('model', 4)].")


def check_strategy(config):
  from big_vision_lite import sharding  # pylint: disable=import-outside-toplevel
  strategy = config.get("sharding_strategy")
  if strategy is None:
    return
  for i, (_, tactic) in enumerate(need_pairs("config.sharding_strategy", strategy,
                                             "tactic string")):
    if not isinstance(tactic, str):
      raise ValueError(f"config.sharding_strategy[{i}] tactic {show(tactic)} must be a string "
                       f"like 'fsdp(axis=\"data\")'; known: "
                       f"{sorted(sharding.SHARDING_TACTICS.names())}.")
    try:
      sharding.SHARDING_TACTICS.call(tactic)
    except Exception as e:  # pylint: disable=broad-except
      msg = " ".join(str(e.args[0] if e.args else e).split())
      if not isinstance(e, registry.UnknownNameError):  # That one lists the tactics already.
        msg += f". Valid tactics: {sorted(sharding.SHARDING_TACTICS.names())}."
      raise ValueError(f"config.sharding_strategy[{i}] tactic {show(tactic)}: {msg}") from None


def check_rules(config):
  from big_vision_lite import sharding  # pylint: disable=import-outside-toplevel
  rules = config.get("sharding_rules")
  if rules is None:
    return
  logical = sorted(getattr(sharding, n) for n in dir(sharding) if n.startswith("ACT_"))
  if hasattr(rules, "items") or not isinstance(rules, (list, tuple)) or not all(
      isinstance(r, (list, tuple)) and len(r) == 2 for r in rules):
    raise ValueError(f"config.sharding_rules={show(rules)} must be a list of (logical axis, "
                     f"mesh axis or tuple of them or None) pairs; logical axes: {logical}.")
  for name, target in rules:
    if name not in logical:
      raise ValueError(f"config.sharding_rules names logical axis {show(name)}, which no model "
                       f"code uses. Valid: {logical}.")
    targets = target if isinstance(target, (list, tuple)) else (target,)
    if not all(t is None or isinstance(t, str) for t in targets):
      raise ValueError(f"config.sharding_rules maps {show(name)} to {show(target)}; valid: a mesh "
                       "axis name, a tuple of them, or None.")


def check_values(config):
  check_durations(config)
  check_optimizer_values(config)
  check_lora(config)
  if config.get("mesh") is not None:
    check_mesh_config(config.get("mesh"))
  check_strategy(config)
  check_rules(config)
