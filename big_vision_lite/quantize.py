"""Weight-only storage formats for decoding: bfloat16 and int8 (per-channel scales).

A batch-1 decode step reads every decoder weight once per token, so its latency is set
by the bytes it streams. `quantize_params` stores the Gemma matmul weights (attention,
MLP and the tied embedding) in fewer bytes; norms and the image tower stay as they are:

  "bfloat16": the weight cast to bf16 (half the bytes of f32);
  "int8":     `QArray(values int8, scale f32)` with one absmax scale per output channel
              (a quarter of the bytes), w ~= values * scale.

The Gemma modules multiply through `einsum` / `embed_rows` here, which leave float32 x
float32 (and bf16 x bf16) products exactly as `jnp.einsum` computes them. For an f32
activation and a stored bf16 / int8 weight, the weight is dequantised to bf16 inside the
jitted step (XLA fuses the convert and scale into one elementwise pass) and the product
runs on bf16 operands with f32 accumulation, so the f32 copy of the weights is never
materialised; activations between matmuls stay f32. The logit drift against the f32
model is measured by `tools/benchmark.py decode` and bounded in the tests.
"""
import dataclasses
import re

import jax
import jax.numpy as jnp

from big_vision_lite import registry
from big_vision_lite import sharding
from big_vision_lite.models import lora

FORMATS = ("float32", "bfloat16", "int8")
# Decoder weights a decode step multiplies with (paths inside the llm params).
_MATMULS = r"(.*/)?layers/.*(einsum/w|gating_einsum|linear)"
_EMBEDDING = r"(.*/)?embedder/input_embedding"


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class QArray:
  """An int8 weight with float32 scales: w ~= values * scale.

  Attributes:
    values: int8[*shape].
    scale: float32, broadcastable to `values` (size 1 on the contracted axes).
  """
  values: jax.Array
  scale: jax.Array

  @property
  def shape(self):
    return self.values.shape

  @property
  def ndim(self):
    return self.values.ndim

  def __getitem__(self, i):
    """Integer index of a leading axis (e.g. `gating_einsum[0]`)."""
    return QArray(self.values[i], self.scale[i])

  def dequantize(self, dtype=jnp.float32):
    return (self.values.astype(jnp.float32) * self.scale).astype(dtype)


def quantize_int8(w, contract_axes):
  """w float[...] -> QArray with symmetric absmax scales over `contract_axes`."""
  w = jnp.asarray(w, jnp.float32)
  scale = jnp.max(jnp.abs(w), axis=tuple(contract_axes), keepdims=True) / 127.0
  scale = jnp.where(scale > 0, scale, 1.0)
  return QArray(jnp.round(w / scale).astype(jnp.int8), scale)


def _contract_axes(path, ndim):
  if re.fullmatch(_EMBEDDING, path):
    return (ndim - 1,)  # [V, D]: D is contracted by the logits, one scale per token row.
  return lora.layout(path, ndim)[1]


def quantize_params(params, weights):
  """Stores the decoder's matmul weights of `params` in format `weights`.

  Args:
    params: PaliGemma params (with `llm/`) or Gemma params (nested dict of arrays).
    weights: one of FORMATS ("float32" returns `params` unchanged).

  Returns:
    the same tree with those leaves replaced by bf16 arrays or `QArray`s.
  """
  if weights not in FORMATS:
    raise registry.unknown_name("weights format", weights, FORMATS)
  if weights == "float32":
    return params

  def one(path, x):
    if not (re.fullmatch(_MATMULS, path) or re.fullmatch(_EMBEDDING, path)):
      return x
    if path.startswith("img/"):
      return x
    if weights == "bfloat16":
      return jnp.asarray(x, jnp.bfloat16)
    return quantize_int8(x, _contract_axes(path, x.ndim))
  return jax.tree.map(one, sharding.tree_paths(params), params)


def nbytes(params):
  """Bytes of all leaves of `params` (QArray values and scales included)."""
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))


def _low_precision(x, w):
  """(x, w) as bf16 operands when `w` is stored in fewer bytes than `x`, else None."""
  if isinstance(w, QArray):
    return x.astype(jnp.bfloat16), w.dequantize(jnp.bfloat16)
  if w.dtype == jnp.bfloat16 and x.dtype == jnp.float32:
    return x.astype(jnp.bfloat16), w
  return None


def einsum(eqn, x, w):
  """`jnp.einsum(eqn, x, w)` for a stored weight `w` (array or QArray).

  A bf16 / int8 weight with an f32 activation multiplies bf16 operands with f32
  accumulation and returns f32; other dtype pairs are `jnp.einsum` unchanged.
  """
  low = _low_precision(x, w)
  if low is None:
    return jnp.einsum(eqn, x, w)
  return jnp.einsum(eqn, *low, preferred_element_type=jnp.float32)


def dot(x, w):
  """`jnp.dot(x, w)` for a stored weight `w` (array or QArray), with `einsum`'s rule."""
  low = _low_precision(x, w)
  if low is None:
    return jnp.dot(x, w)
  return jnp.dot(*low, preferred_element_type=jnp.float32)


def project_rows(table, rows):
  """rows float[R, D] times an embedding table [V, D] (array or QArray) -> float[V, R].

  The table is the left operand, contracted on its minor dim, so XLA:CPU reads it in
  place instead of materialising its [D, V] transpose. An int8 table's per-row scale is
  applied to the product (its int8 -> bf16 conversion is exact).
  """
  dims = (((1,), (1,)), ((), ()))
  if isinstance(table, QArray):
    y = jax.lax.dot_general(table.values.astype(jnp.bfloat16), rows.astype(jnp.bfloat16),
                            dims, preferred_element_type=jnp.float32)
    return y * table.scale
  if table.dtype == jnp.bfloat16 and rows.dtype == jnp.float32:
    return jax.lax.dot_general(table, rows.astype(jnp.bfloat16), dims,
                               preferred_element_type=jnp.float32)
  dtype = jnp.result_type(rows, table)
  return jax.lax.dot_general(table.astype(dtype), rows.astype(dtype), dims)


def embed_rows(table, tokens):
  """Rows `tokens` (int[...]) of an embedding table (array or QArray) -> float[..., D]."""
  if isinstance(table, QArray):
    return table.values[(tokens,)].astype(jnp.float32) * table.scale[(tokens,)]
  return table[(tokens,)]
