"""Functional LoRA on the param tree: W_eff = W + alpha / rank * (A @ B) in W's layout.

`config.lora = dict(rank=8, alpha=16.0, targets="llm/layers/(attn|mlp)/.*", dropout=0.0)`
selects weights by a regex over param paths joined by "/" (the same namespace as
schedules and sharding). For each selected weight the adapter holds
`lora_a: f32[*batch, I, r]` (random normal / sqrt(I)) and `lora_b: f32[*batch, r, O]`
(zeros, so training starts from the base model), where the weight's axes are grouped
into batch axes (e.g. the k/v axis of `kv_einsum`, a scanned layer axis), input axes
(contracted with the activations) and output axes. The model code is unchanged: the
train step builds the effective params with `merge` inside the jitted function, and
only the adapters are differentiated and updated; base weights stay frozen.

Dropout: classic LoRA drops the adapter's input activations. Here the adapter is
merged into the weight, so dropout masks the rows of A (the input features) with one
Bernoulli mask per weight and step, scaled by 1/(1-p): the same as dropping those
input features of the adapter path for every token of that step.

Layouts (big_vision names; leading extra dims, e.g. a scanned layer axis, are batch):
  Dense `kernel` [I, O]; ViT `query|key|value/kernel` [D, N, H]; `out/kernel` [N, H, D];
  `q_einsum/w` [N, D, H]; `kv_einsum/w` [2, K, D, H]; `qkv_einsum/w` [3, N, D, H];
  `attn_vec_einsum/w` [N, H, D]; `gating_einsum` [2, D, F]; `linear` [F, D].
"""
import math
import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from big_vision_lite import sharding

# name -> (batch axes, input axes, output axes) of the unscanned weight.
_LAYOUTS = {
    "kernel": ((), (0,), (1,)),
    "attn_kernel": ((), (0,), (1, 2)),
    "out_kernel": ((), (0, 1), (2,)),
    "q_einsum": ((), (1,), (0, 2)),
    "kv_einsum": ((0,), (2,), (1, 3)),
    "qkv_einsum": ((0,), (2,), (1, 3)),
    "attn_vec_einsum": ((), (0, 1), (2,)),
    "gating_einsum": ((0,), (1,), (2,)),
    "linear": ((), (0,), (1,)),
}


def _kind(path, ndim):
  """The layout name of weight `path`, or None for non-matrix params (scale, bias)."""
  parts = path.split("/")
  name = parts[-1] if parts[-1] != "w" else parts[-2]
  if name == "kernel" and len(parts) > 1 and parts[-2] in ("query", "key", "value"):
    name = "attn_kernel"
  elif name == "kernel" and len(parts) > 1 and parts[-2] == "out" and ndim >= 3:
    name = "out_kernel"
  return name if name in _LAYOUTS else None


def layout(path, ndim):
  """Returns (batch, in, out) axis tuples of weight `path` with `ndim` dims."""
  name = _kind(path, ndim)
  if name is None:
    raise ValueError(f"LoRA target {path!r} has no known layout; LoRA applies to "
                     f"weights named {sorted(_LAYOUTS)}. Narrow `lora.targets`.")
  batch, ins, outs = _LAYOUTS[name]
  lead = ndim - (len(batch) + len(ins) + len(outs))
  if lead < 0:
    raise ValueError(f"LoRA target {path!r} has {ndim} dims, fewer than its layout "
                     f"{_LAYOUTS[name]} needs.")
  sh = lambda axes: tuple(a + lead for a in axes)
  return tuple(range(lead)) + sh(batch), sh(ins), sh(outs)


def select(params, targets):
  """Tree of bools: True for the weight matrices `targets` (a regex) selects.

  Only weights with a known layout (see the module docstring) can be selected; other
  params matching the regex (norm scales, biases, embeddings) are left alone.
  """
  def one(path, x):
    return bool(re.fullmatch(targets, path)) and _kind(path, x.ndim) is not None
  return jax.tree.map(one, sharding.tree_paths(params), params)


def init(rng, params, *, rank, targets, **_):
  """Returns the adapter tree: `{path...: {"lora_a": A, "lora_b": B}}` for each target.

  Args:
    rng: PRNG key. params: the base params (arrays or ShapeDtypeStructs).
    rank: int, the adapter rank r. targets: regex over "/"-joined param paths.
  """
  sel = select(params, targets)
  flat = [(p, x) for p, x, s in zip(jax.tree.leaves(sharding.tree_paths(params)),
                                     jax.tree.leaves(params), jax.tree.leaves(sel)) if s]
  if not flat:
    raise ValueError(f"lora.targets={targets!r} selects no weight; param paths look "
                     f"like {jax.tree.leaves(sharding.tree_paths(params))[:4]}.")
  out = {}
  for i, (path, x) in enumerate(flat):
    batch, ins, outs = layout(path, x.ndim)
    bshape = tuple(x.shape[a] for a in batch)
    n_in = math.prod(x.shape[a] for a in ins)
    n_out = math.prod(x.shape[a] for a in outs)
    a = jax.random.normal(jax.random.fold_in(rng, i), bshape + (n_in, rank), jnp.float32)
    node = out
    for k in path.split("/")[:-1]:
      node = node.setdefault(k, {})
    node[path.split("/")[-1]] = {"lora_a": a / math.sqrt(n_in),
                                 "lora_b": jnp.zeros(bshape + (rank, n_out), jnp.float32)}
  return out


def _delta(path, w, ab, scale, mask):
  batch, ins, outs = layout(path, w.ndim)
  a = ab["lora_a"] if mask is None else ab["lora_a"] * mask
  d = jnp.matmul(a, ab["lora_b"]) * scale          # [*batch, I, O]
  grouped = batch + ins + outs
  d = d.reshape(tuple(w.shape[i] for i in grouped))
  return jnp.transpose(d, np.argsort(grouped)).astype(w.dtype)


def merge(params, lora, *, rank, alpha, dropout=0.0, rng=None, **_):
  """Returns params with every adapted weight replaced by W + alpha/rank * A @ B.

  Args:
    params: base params. lora: the tree from `init`.
    rank, alpha: LoRA rank and scale numerator.
    dropout: drop probability of A's input features (needs `rng`); 0 at eval/export.
    rng: PRNG key for dropout.
  """
  scale = alpha / rank
  flat_lora = {}
  def collect(path, leaf):
    flat_lora[path] = leaf
  jax.tree.map(collect, sharding.tree_paths(lora), lora)
  def one(path, w):
    if f"{path}/lora_a" not in flat_lora:
      return w
    ab = {k: flat_lora[f"{path}/{k}"] for k in ("lora_a", "lora_b")}
    mask = None
    if dropout and rng is not None:
      key = jax.random.fold_in(rng, zlib.crc32(path.encode()) % (2**31))
      keep = jax.random.bernoulli(key, 1.0 - dropout, ab["lora_a"].shape[:-1] + (1,))
      mask = keep.astype(jnp.float32) / (1.0 - dropout)
    return w + _delta(path, w, ab, scale, mask)
  return jax.tree.map(one, sharding.tree_paths(params), params)
