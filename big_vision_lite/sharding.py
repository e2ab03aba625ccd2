"""Mesh creation, logical axis names, and regex -> tactic sharding plans.

Model code names activation axes only through the constants below (never the string
literals); `sharding_rules` in a config map them to mesh axes, e.g.
`[("act_batch", "data")]`, and are applied with flax's `nn.logical_axis_rules`.

Parameters (and the optimizer state that mirrors them) are sharded by a plan:
`sharding_strategy = [(regex, tactic), ...]`, where the regex is matched (`re.fullmatch`)
against param paths joined by "/" (`llm/layers/attn/q_einsum/w`) and the first match
wins; unmatched params are replicated. Tactics are named calls resolved through
`SHARDING_TACTICS` ("replicate", "fsdp(axis='data')", "shard_dim(dim=0, axis='model')").
"""
import re

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

from big_vision_lite.registry import Registry

# Logical axis names of activations.
ACT_BATCH = "act_batch"   # B
ACT_LEN = "act_len"       # T / S / P
ACT_EMBED = "act_embed"   # D
ACT_HEADS = "act_heads"   # N / K
ACT_MLP = "act_mlp"       # F
ACT_VOCAB = "act_vocab"   # V

SHARDING_TACTICS = Registry("sharding tactic")


def make_mesh(mesh_cfg, devices=None):
  """Builds a Mesh from `[(axis_name, size), ...]`; one size may be -1 (the rest).

  Args:
    mesh_cfg: sequence of (name, size) pairs, e.g. `[("data", -1)]` or
      `[("data", 2), ("model", 4)]`.
    devices: the devices to use (default: all of `jax.devices()`).
  Returns:
    a `jax.sharding.Mesh` from `jax.make_mesh` (devices ordered by the physical
    topology on TPU/GPU) with Auto axis types (sharding follows the plan and the
    logical-axis constraints, not explicit per-op specs).
  """
  devices = np.asarray(jax.devices() if devices is None else devices)
  names = tuple(str(n) for n, _ in mesh_cfg)
  sizes = [int(s) for _, s in mesh_cfg]
  if not names or len(set(names)) != len(names):
    raise ValueError(f"mesh={list(mesh_cfg)} must name each axis once, e.g. "
                     "[('data', -1)] or [('data', 2), ('model', 4)].")
  if sizes.count(-1) > 1:
    raise ValueError(f"mesh={list(mesh_cfg)} has more than one -1 size; at most one "
                     "axis can take the remaining devices.")
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if devices.size % known:
      raise ValueError(f"mesh={list(mesh_cfg)}: {devices.size} devices are not "
                       f"divisible by the fixed axis sizes (product {known}).")
    sizes[sizes.index(-1)] = devices.size // known
  if int(np.prod(sizes)) != devices.size:
    raise ValueError(f"mesh={list(mesh_cfg)} needs {int(np.prod(sizes))} devices but "
                     f"{devices.size} are available; use -1 for one axis size.")
  return jax.make_mesh(tuple(sizes), names, devices=list(devices.reshape(-1)),
                       axis_types=(jax.sharding.AxisType.Auto,) * len(names))


def tree_paths(tree):
  """Returns a tree of the same structure whose leaves are "a/b/c" path strings."""
  def name(path):
    parts = []
    for k in path:
      for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
          parts.append(str(getattr(k, attr)))
          break
      else:
        parts.append(str(k))
    return "/".join(parts)
  return jax.tree_util.tree_map_with_path(lambda p, _: name(p), tree)


def first_match(rules, path, what):
  """Returns the index of the first `(regex, ...)` rule that fullmatches `path`, or None."""
  for i, rule in enumerate(rules):
    try:
      if re.fullmatch(rule[0], path):
        return i
    except re.error as e:
      raise ValueError(f"Bad regex {rule[0]!r} in {what}: {e}.") from e
  return None


@SHARDING_TACTICS.register("replicate")
def replicate():
  """Every device holds the whole array."""
  return lambda shape, mesh: P()


@SHARDING_TACTICS.register("fsdp")
def fsdp(axis="data", min_size_to_shard_mb=0):
  """Shards the largest dimension divisible by the mesh axis (or axes) size.

  Args:
    axis: mesh axis name or tuple of names to shard over.
    min_size_to_shard_mb: arrays smaller than this stay replicated.
  """
  axes = (axis,) if isinstance(axis, str) else tuple(axis)

  def spec(shape, mesh):
    for a in axes:
      if a not in mesh.shape:
        raise ValueError(f"fsdp(axis={axis!r}): mesh has no axis {a!r}; mesh axes: "
                         f"{tuple(mesh.shape)}.")
    n = int(np.prod([mesh.shape[a] for a in axes]))
    if np.prod(shape) * 4 < min_size_to_shard_mb * 2**20 or n == 1:
      return P()
    for d in sorted(range(len(shape)), key=lambda i: (-shape[i], i)):
      if shape[d] % n == 0:
        parts = [None] * len(shape)
        parts[d] = axes[0] if len(axes) == 1 else axes
        return P(*parts)
    return P()
  return spec


@SHARDING_TACTICS.register("shard_dim")
def shard_dim(dim, axis):
  """Shards dimension `dim` (negative counts from the end) over mesh axis `axis`."""
  def spec(shape, mesh):
    if axis not in mesh.shape:
      raise ValueError(f"shard_dim(axis={axis!r}): mesh axes are {tuple(mesh.shape)}.")
    d = dim % len(shape) if shape else 0
    if not shape or shape[d] % mesh.shape[axis]:
      return P()
    parts = [None] * len(shape)
    parts[d] = axis
    return P(*parts)
  return spec


def make_plan(shapes, strategy, mesh):
  """Returns a tree of PartitionSpecs for `shapes` (a tree with `.shape` leaves).

  Args:
    shapes: params (arrays or ShapeDtypeStructs).
    strategy: `[(regex, tactic_string), ...]`; first fullmatch wins, else replicate.
    mesh: the Mesh the tactics may use.
  """
  tactics = [(rx, SHARDING_TACTICS.call(t)) for rx, t in (strategy or ())]
  def one(path, x):
    i = first_match(tactics, path, "sharding_strategy")
    return P() if i is None else tactics[i][1](tuple(x.shape), mesh)
  return jax.tree.map(one, tree_paths(shapes), shapes)


def plan_to_strings(plan):
  """Flattens a plan to `{"path": "PartitionSpec(...)"}` (for golden tests and logs)."""
  return {p: str(s) for p, s in zip(
      jax.tree.leaves(tree_paths(plan), is_leaf=lambda x: isinstance(x, P)),
      jax.tree.leaves(plan, is_leaf=lambda x: isinstance(x, P)))}


def opt_state_plan(tx, opt_shapes, params_plan):
  """Mirrors the params plan onto the optimizer state; other leaves are replicated."""
  return optax.tree_map_params(
      tx, lambda v, spec: v if isinstance(v, optax.MaskedNode) else spec,
      opt_shapes, params_plan, transform_non_params=lambda _: P(),
      is_leaf=lambda x: isinstance(x, (P, optax.MaskedNode)))


def to_shardings(plan, mesh):
  """PartitionSpec tree -> NamedSharding tree."""
  return jax.tree.map(lambda s: NamedSharding(mesh, s), plan,
                      is_leaf=lambda x: isinstance(x, P))


def batch_spec(mesh, rules):
  """PartitionSpec for the batch dim: the mesh axes that `rules` give ACT_BATCH.

  Defaults to all mesh axes when `rules` says nothing about ACT_BATCH.
  """
  for name, axes in rules or ():
    if name == ACT_BATCH:
      return P(axes)
  return P(tuple(mesh.axis_names))


def global_batch(local_batch, mesh, rules):
  """Assembles the global batch from this host's numpy rows (leading dim split)."""
  sharding = NamedSharding(mesh, batch_spec(mesh, rules))
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local_batch)
