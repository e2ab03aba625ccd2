"""Builds the optax optimizer from a config: schedules, frozen groups, lr/wd mults, clip.

All regexes use one namespace: param paths joined by "/" (`llm/layers/attn/q_einsum/w`),
matched with `re.fullmatch`; the first matching rule wins.

Config keys (big_vision names):
  optax_name: an optax transform without a learning rate (`scale_by_adam`,
    `scale_by_lion`, `scale_by_rms`, `trace` (SGD momentum), `identity` (plain SGD)).
  optax: kwargs for it, e.g. `dict(b2=0.95)`.
  lr: base learning rate; wd: decoupled weight decay (not multiplied by lr).
  lr_mults / wd_mults: `[(regex, mult), ...]`; unmatched lr mult 1, unmatched wd mult 0.
  grad_clip_norm: clip the global norm of the trainable gradients.
  schedule: one dict, or `[(regex, dict or None), ...]`; None freezes the matched params
    (no optimizer state, no updates); every param must match one entry.
    Schedule dict: `decay_type` in cosine|linear|rsqrt|constant (default cosine),
    `warmup_steps` or `warmup_percent`, `linear_end` (linear, default 0),
    `min_lr` (fraction of the peak at the end for cosine, default 0),
    `timescale` (rsqrt, default 10_000).

The update of a trainable param p with gradient direction u (after the base transform):
  p <- p - sched(t) * (lr * lr_mult * u + wd * wd_mult * p)
"""
import inspect

import jax
import jax.numpy as jnp
import optax

from big_vision_lite import registry
from big_vision_lite import sharding

DEFAULT_WD_MULTS = ((".*/(kernel|w|gating_einsum|linear|input_embedding)$", 1.0),)
FROZEN = "frozen"


def make_schedule(sched, total_steps):
  """Returns a function step -> multiplier in [0, 1] (the lr shape, peak 1)."""
  sched = dict(sched or {})
  known = {"decay_type", "warmup_steps", "warmup_percent", "linear_end", "min_lr",
           "timescale"}
  for key in sorted(set(sched) - known):
    raise registry.unknown_name("schedule key", key, known)
  if "warmup_steps" in sched and "warmup_percent" in sched:
    raise ValueError(f"schedule {sched} sets both warmup_steps and warmup_percent; "
                     "keep one.")
  warmup = int(sched.get("warmup_steps", round(sched.get("warmup_percent", 0.0) *
                                                total_steps)))
  decay = sched.get("decay_type", "cosine")
  kinds = ("cosine", "linear", "rsqrt", "constant")
  if decay not in kinds:
    raise registry.unknown_name("schedule decay_type", decay, kinds)

  def fn(step):
    step = jnp.asarray(step, jnp.float32)
    frac = jnp.clip((step - warmup) / max(total_steps - warmup, 1), 0.0, 1.0)
    if decay == "cosine":
      lo = sched.get("min_lr", 0.0)
      m = lo + (1.0 - lo) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    elif decay == "linear":
      m = 1.0 + (sched.get("linear_end", 0.0) - 1.0) * frac
    elif decay == "rsqrt":
      ts = sched.get("timescale", 10_000)
      m = jax.lax.rsqrt(jnp.maximum(step - warmup + ts, 1.0) / ts)
    else:
      m = jnp.ones_like(step)
    if warmup:
      m = m * jnp.minimum(1.0, (step + 1.0) / warmup)
    return m
  return fn


def schedule_rules(config):
  """The `[(regex, dict or None)]` list that `config.schedule` stands for."""
  sched = config.get("schedule", {})
  if sched is None or hasattr(sched, "items"):
    return [(".*", None if sched is None else dict(sched))]
  return [(rx, None if s is None else dict(s)) for rx, s in sched]


def param_labels(config, params):
  """Tree of labels: "frozen" or "sched_{i}" (index into schedule_rules)."""
  rules = schedule_rules(config)
  def label(path):
    i = sharding.first_match(rules, path, "schedule")
    if i is None:
      raise ValueError(
          f"Param {path!r} matches no `schedule` regex {[r for r, _ in rules]}. Add a "
          "catch-all entry, e.g. ('.*', None) to freeze the rest or ('.*', dict(...)).")
    return FROZEN if rules[i][1] is None else f"sched_{i}"
  return jax.tree.map(label, sharding.tree_paths(params))


def mults(rules, params, default):
  """Tree of floats: the mult of the first `(regex, mult)` rule matching each path."""
  rules = list(rules or ())
  def one(path):
    i = sharding.first_match(rules, path, "mults")
    return default if i is None else float(rules[i][1])
  return jax.tree.map(one, sharding.tree_paths(params))


def base_transform(config):
  """The optax transform named by `config.optax_name` (no learning rate inside)."""
  name = config.get("optax_name", "scale_by_adam")
  factory = getattr(optax, name, None)
  if factory is None or not callable(factory):
    raise ValueError(f"optax_name={name!r} is not an optax function; use e.g. "
                     "'scale_by_adam', 'scale_by_lion', 'trace' or 'identity'.")
  if "learning_rate" in inspect.signature(factory).parameters:
    raise ValueError(f"optax_name={name!r} takes a learning rate; use the transform "
                     f"without one (e.g. 'scale_by_adam' for 'adam', 'trace' or "
                     "'identity' for 'sgd'): lr and schedules come from `lr`/`schedule`.")
  return factory(**dict(config.get("optax", {})))


def _scale_and_decay(lr_tree, wd_tree, sched_fn):
  """u, p -> -sched(t) * (lr_mult*lr*u + wd_mult*wd*p), with a step counter."""
  def init(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates, state, params=None):
    m = sched_fn(state.count)
    def one(u, lr, wd, p):
      if isinstance(u, optax.MaskedNode):
        return u
      out = lr * u
      if wd:
        out = out + wd * p.astype(u.dtype)
      return (-m * out).astype(u.dtype)
    updates = jax.tree.map(one, updates, lr_tree, wd_tree, params,
                           is_leaf=lambda x: isinstance(x, optax.MaskedNode))
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))
  return optax.GradientTransformation(init, update)


def make(config, params, total_steps):
  """Returns `(tx, sched_fns)` for `params` (arrays or ShapeDtypeStructs).

  `sched_fns` maps each trainable label to `step -> learning rate` (for logging).
  """
  labels = param_labels(config, params)
  used = sorted(set(jax.tree.leaves(labels)))
  rules = schedule_rules(config)
  lr = float(config.get("lr", 1e-3))
  wd = float(config.get("wd", 0.0))
  lr_tree = jax.tree.map(lambda m: lr * m, mults(config.get("lr_mults"), params, 1.0))
  wd_rules = config.get("wd_mults", DEFAULT_WD_MULTS)
  wd_tree = jax.tree.map(lambda m: wd * m, mults(wd_rules, params, 0.0))
  transforms, sched_fns = {FROZEN: optax.set_to_zero()}, {}
  for label in used:
    if label == FROZEN:
      continue
    fn = make_schedule(rules[int(label.split("_")[1])][1], total_steps)
    sched_fns[label] = (lambda f: lambda s: lr * f(s))(fn)
    transforms[label] = optax.chain(base_transform(config),
                                    _scale_and_decay(lr_tree, wd_tree, fn))
  trainable = jax.tree.map(lambda l: "frozen" if l == FROZEN else "train", labels)
  chain = [optax.multi_transform({FROZEN: optax.set_to_zero(),
                                  "train": optax.identity()}, trainable)]
  if config.get("grad_clip_norm"):
    chain.append(optax.clip_by_global_norm(float(config.grad_clip_norm)))
  chain.append(optax.multi_transform(transforms, labels))
  return optax.chain(*chain), sched_fns


def trainable_mask(config, params):
  """Tree of bools: True where the param is trained."""
  return jax.tree.map(lambda l: l != FROZEN, param_labels(config, params))
