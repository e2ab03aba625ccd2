"""Gemma 1 and Gemma 2 decoders with a functional (explicit pytree) KV cache.

Einsum letters:
  B batch, T query length, S key/value length (cache size when decoding), D width,
  N query heads, K key/value heads, G query heads per kv head (N = K * G), H head dim,
  F mlp hidden, V vocab, L layers.

Params (big_vision names; scan=True stacks layers with the layer axis first under
`layers/`, unscanned layers are `layers/{i}/`):
  embedder/input_embedding [V, D] (tied with the output projection),
  layers/{pre_attention_norm, pre_ffw_norm, post_attention_norm, post_ffw_norm}/scale [D],
  layers/attn/q_einsum/w [N, D, H] and kv_einsum/w [2, K, D, H]   (K < N: MQA/GQA),
  layers/attn/qkv_einsum/w [3, N, D, H]                             (K == N: MHA),
  layers/attn/attn_vec_einsum/w [N, H, D], layers/mlp/gating_einsum [2, D, F],
  layers/mlp/linear [F, D], final_norm/scale [D].

Gemma 2 adds post-attention/post-ffw norms and tanh soft-caps on attention logits (50) and
final logits (30). Like big_vision (which trained PaliGemma 2), the variants attend fully;
`sliding_window=4096` restores the Gemma 2 LM's window on even layers (0, 2, ...), as in
transformers' Gemma2 `layer_types`. The window keeps key j for query i iff
|pos_i - pos_j| < window (ANDed with the attention mask, as the gemma reference does).
A soft-cap or window of 0 (or None) is off.

Queries are scaled by a rule, not a number, so the scale follows explicit size overrides:
`query_pre_attn_norm="rsqrt_head_dim"` (head_dim**-0.5) or "rsqrt_emb_per_head"
((width // num_heads)**-0.5, Gemma 2 27B), as in big_vision; an explicit
`query_pre_attn_scalar` s (scale s**-0.5, as transformers' config) overrides the rule.
"""
import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from big_vision_lite import quantize
from big_vision_lite import registry
from big_vision_lite.models import common
from big_vision_lite.sharding import ACT_BATCH, ACT_EMBED, ACT_LEN

ARCH_KEYS = ("width", "depth", "mlp_dim", "num_heads", "num_kv_heads", "head_dim",
             "vocab_size", "norm_eps", "query_pre_attn_norm", "query_pre_attn_scalar",
             "post_norms", "attn_logits_softcap", "final_logits_softcap", "sliding_window")
QUERY_NORMS = ("rsqrt_head_dim", "rsqrt_emb_per_head")
_BIG_NEG = -2.3819763e38


# Defaults shared by every variant of a family; a variant adds its sizes.
_GEMMA1 = dict(vocab_size=256_000, norm_eps=1e-6, query_pre_attn_norm="rsqrt_head_dim",
               post_norms=False, attn_logits_softcap=None, final_logits_softcap=None,
               sliding_window=None)
_GEMMA2 = dict(_GEMMA1, post_norms=True, attn_logits_softcap=50.0, final_logits_softcap=30.0)

_VARIANTS = {
    "gemma_2b": dict(width=2048, depth=18, mlp_dim=16_384, num_heads=8, num_kv_heads=1,
                     head_dim=256, **_GEMMA1),
    "gemma_7b": dict(width=3072, depth=28, mlp_dim=24_576, num_heads=16, num_kv_heads=16,
                     head_dim=256, **_GEMMA1),
    "gemma2_2b": dict(width=2304, depth=26, mlp_dim=9216, num_heads=8, num_kv_heads=4,
                      head_dim=256, **_GEMMA2),
    "gemma2_9b": dict(width=3584, depth=42, mlp_dim=14_336, num_heads=16, num_kv_heads=8,
                      head_dim=256, **_GEMMA2),
    # 27B scales queries by (width / num_heads)**-0.5 = 144**-0.5, not head_dim**-0.5.
    "gemma2_27b": dict(width=4608, depth=46, mlp_dim=36_864, num_heads=32, num_kv_heads=16,
                       head_dim=128, **dict(_GEMMA2, query_pre_attn_norm="rsqrt_emb_per_head")),
    "gemma_tiny": dict(width=64, depth=2, mlp_dim=128, num_heads=4, num_kv_heads=1,
                       head_dim=16, **dict(_GEMMA1, vocab_size=300)),
    "gemma2_tiny": dict(width=64, depth=2, mlp_dim=128, num_heads=4, num_kv_heads=2,
                        head_dim=16, **dict(_GEMMA2, vocab_size=300)),
}


def get_config(variant):
  """Architecture of a Gemma variant as a ConfigDict (keys: see `ARCH_KEYS`)."""
  if variant not in _VARIANTS:
    raise registry.unknown_name("Gemma variant", variant, _VARIANTS)
  return ml_collections.ConfigDict(dict(variant=variant, **_VARIANTS[variant]))


def resolve_config(cfg):
  """Architecture dict with defaults and derived values filled in.

  `query_pre_attn_scalar` follows `query_pre_attn_norm` and the (possibly overridden)
  sizes unless given; soft-caps and window of 0 become None (off).
  """
  cfg = dict(cfg)
  missing = [k for k in ARCH_KEYS[:7] if cfg.get(k) is None]
  if missing:
    raise ValueError(f"Gemma needs {missing}: pass variant= (one of {sorted(_VARIANTS)}) "
                     "or set them explicitly.")
  defaults = dict(norm_eps=1e-6, query_pre_attn_norm="rsqrt_head_dim", post_norms=False)
  cfg = {**defaults, **{k: v for k, v in cfg.items() if v is not None}}
  if cfg["query_pre_attn_norm"] not in QUERY_NORMS:
    raise registry.unknown_name("query_pre_attn_norm", cfg["query_pre_attn_norm"],
                                QUERY_NORMS, context="(or set query_pre_attn_scalar)")
  if cfg.get("query_pre_attn_scalar") is None:
    cfg["query_pre_attn_scalar"] = (
        cfg["head_dim"] if cfg["query_pre_attn_norm"] == "rsqrt_head_dim"
        else cfg["width"] // cfg["num_heads"])
  for k in ("attn_logits_softcap", "final_logits_softcap", "sliding_window"):
    cfg[k] = cfg.get(k) or None
  if cfg["num_heads"] % cfg["num_kv_heads"]:
    raise ValueError(f"num_heads={cfg['num_heads']} must be a multiple of "
                     f"num_kv_heads={cfg['num_kv_heads']}.")
  return cfg


def apply_rope(x, positions, max_wavelength=10_000):
  """Rotary embedding on halves of the head dim: x [B, T, N, H], positions int[B, T]."""
  freq = (2.0 / x.shape[-1]) * jnp.arange(x.shape[-1] // 2)
  radians = positions[..., None, None].astype(jnp.float32) / (max_wavelength**freq)
  sin, cos = jnp.sin(radians), jnp.cos(radians)
  x1, x2 = jnp.split(x, 2, axis=-1)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def _fan_in(in_axis, out_axis):
  return nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal",
                                          in_axis=in_axis, out_axis=out_axis)


class Einsum(nn.Module):
  """Holds one weight `w` of `shape` and applies `einsum(eqn, x, w)`.

  `w` may be stored in bf16 or int8 for decoding (`quantize.quantize_params`).
  """
  shape: tuple[int, ...]
  in_axis: tuple[int, ...]
  out_axis: tuple[int, ...]

  @nn.compact
  def __call__(self, eqn, x):
    w = self.param("w", _fan_in(self.in_axis, self.out_axis), self.shape)
    return quantize.einsum(eqn, x, w)


class RMSNorm(nn.Module):
  """x float[..., D] -> x / rms(x) * (1 + scale); `scale` starts at zero."""
  eps: float = 1e-6

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.initializers.zeros_init(), (x.shape[-1],))
    var = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(var + self.eps) * (1 + scale)


class Embedder(nn.Module):
  """Tied embedding: encode int32[B, T] -> [B, T, D] * sqrt(D); decode [..., D] -> [..., V]."""
  vocab_size: int
  width: int

  def setup(self):
    self.input_embedding = self.param(
        "input_embedding",
        nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=1, out_axis=0),
        (self.vocab_size, self.width))

  def encode(self, tokens):
    x = quantize.embed_rows(self.input_embedding, tokens)
    return x * jnp.sqrt(self.width).astype(x.dtype)

  def decode(self, x):
    """x: float[..., D] -> float[..., V] (the tied output projection)."""
    # The table is read in place (no [D, V] transpose per call; see project_rows).
    y = quantize.project_rows(self.input_embedding, x.reshape(-1, x.shape[-1]))  # [V, B*T]
    return y.T.reshape(x.shape[:-1] + (y.shape[0],))


class Attention(nn.Module):
  """Multi-query / grouped-query / multi-head attention with optional cache write."""
  num_heads: int
  num_kv_heads: int
  width: int
  head_dim: int
  query_pre_attn_scalar: float
  softcap: float | None = None
  impl: str = "reference"

  @nn.compact
  def __call__(self, x, positions, mask, kv_cache=None, cache_idx=None):
    """x [B, T, D]; positions int[B, T]; mask bool[B, T, S]; kv_cache (k, v) [B, S, K, H]."""
    n, k_heads, d, h = self.num_heads, self.num_kv_heads, self.width, self.head_dim
    if n == k_heads:
      q, k, v = Einsum((3, n, d, h), (2,), (0, 1, 3), name="qkv_einsum")("BTD,3NDH->3BTNH", x)
    else:
      q = Einsum((n, d, h), (1,), (0, 2), name="q_einsum")("BTD,NDH->BTNH", x)
      k, v = Einsum((2, k_heads, d, h), (2,), (0, 1, 3), name="kv_einsum")(
          "BSD,2KDH->2BSKH", x)
    q = apply_rope(q, positions) * self.query_pre_attn_scalar**-0.5
    k = apply_rope(k, positions)
    if kv_cache is not None:  # Write the new entries at the shared cache index.
      k_cache, v_cache = kv_cache
      k = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), (0, cache_idx, 0, 0))
      v = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), (0, cache_idx, 0, 0))
    b, t = q.shape[:2]
    if self.impl != "reference":  # Fused kernel; q is already scaled.
      encoded = jax.nn.dot_product_attention(
          q, k.astype(q.dtype), v.astype(q.dtype), mask=mask[:, None], scale=1.0,
          implementation=self.impl)
      out = Einsum((n, h, d), (0, 1), (2,), name="attn_vec_einsum")("BTNH,NHD->BTD", encoded)
      return out, (k, v)
    q = jnp.reshape(q, (b, t, k_heads, n // k_heads, h))  # [B, T, K, G, H]
    logits = jnp.einsum("BTKGH,BSKH->BKGTS", q, k.astype(q.dtype)).astype(jnp.float32)
    if self.softcap:
      logits = jnp.tanh(logits / self.softcap) * self.softcap
    logits = jnp.where(mask[:, None, None, :, :], logits, _BIG_NEG)
    probs = jax.nn.softmax(logits, axis=-1).astype(q.dtype)
    encoded = jnp.einsum("BKGTS,BSKH->BTKGH", probs, v.astype(q.dtype))
    encoded = jnp.reshape(encoded, (b, t, n, h))  # [B, T, N, H]
    out = Einsum((n, h, d), (0, 1), (2,), name="attn_vec_einsum")("BTNH,NHD->BTD", encoded)
    return out, (k, v)


class FeedForward(nn.Module):
  """Gated tanh-GELU MLP: (gelu(x W0) * (x W1)) W_linear."""
  width: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x):
    w_gating = self.param("gating_einsum", _fan_in((1,), (0, 2)), (2, self.width, self.mlp_dim))
    gate = nn.gelu(quantize.dot(x, w_gating[0]), approximate=True)
    w_linear = self.param("linear", _fan_in((0,), (1,)), (self.mlp_dim, self.width))
    return quantize.dot(gate * quantize.dot(x, w_gating[1]), w_linear)


@dataclasses.dataclass(frozen=True)
class BlockConfig:
  """What one decoder layer is: sizes, norms, soft-cap, window, dropout, attention kernel.

  Frozen (hashable), so it is a static field of `Block`; `Model.block_config` builds it
  from the resolved architecture (`resolve_config`).
  """
  width: int
  mlp_dim: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  query_pre_attn_scalar: float
  norm_eps: float = 1e-6
  post_norms: bool = False
  attn_logits_softcap: float | None = None
  sliding_window: int | None = None
  dropout: float = 0.0
  dropout_bdims: tuple[int, ...] = ()
  attn_impl: str = "reference"


class LayerInputs(NamedTuple):
  """Per-call arrays every layer sees (broadcast over the layer scan).

  positions: int32[B, T] of the new tokens; kv_positions: int32[B, S] of the keys;
  mask: bool[B, T, S]; cache_idx: int32[] slot where the new keys go when decoding
  into a cache, else None.
  """
  positions: jax.Array
  kv_positions: jax.Array
  mask: jax.Array
  cache_idx: jax.Array | None = None


class Block(nn.Module):
  """One decoder layer; `__call__(x, xs, inputs)` fits nn.scan (carry x, per-layer xs).

  Attributes:
    config: the layer's `BlockConfig`.
    deterministic: False enables dropout.
    keep_kv: return this layer's (k, v) (to build or extend a KV cache).
  """
  config: BlockConfig
  deterministic: bool = True
  keep_kv: bool = False

  @nn.compact
  def __call__(self, x, xs, inputs):
    """x [B, T, D]; xs = (layer index, kv cache of this layer or None); inputs: LayerInputs.

    Returns (x, (k, v) or None).
    """
    cfg = self.config
    layer_idx, kv_cache = xs
    mask = inputs.mask
    carry_dtype = x.dtype  # f32 params with a bf16 stream: the scan carry keeps bf16.
    if cfg.sliding_window:
      dist = jnp.abs(inputs.positions[:, :, None] - inputs.kv_positions[:, None, :])
      local = (layer_idx % 2) == 0
      mask = mask & ((dist < cfg.sliding_window) | jnp.logical_not(local))
    x = nn.with_logical_constraint(x, (ACT_BATCH, ACT_LEN, ACT_EMBED))
    drop = nn.Dropout(cfg.dropout, cfg.dropout_bdims, deterministic=self.deterministic)
    y = RMSNorm(cfg.norm_eps, name="pre_attention_norm")(x)
    y, kv = Attention(cfg.num_heads, cfg.num_kv_heads, cfg.width, cfg.head_dim,
                      cfg.query_pre_attn_scalar, cfg.attn_logits_softcap, cfg.attn_impl,
                      name="attn")(y, inputs.positions, mask, kv_cache, inputs.cache_idx)
    if cfg.post_norms:
      y = RMSNorm(cfg.norm_eps, name="post_attention_norm")(y)
    x = x + drop(y)
    y = RMSNorm(cfg.norm_eps, name="pre_ffw_norm")(x)
    y = FeedForward(cfg.width, cfg.mlp_dim, name="mlp")(y)
    if cfg.post_norms:
      y = RMSNorm(cfg.norm_eps, name="post_ffw_norm")(y)
    out = (x + drop(y)).astype(carry_dtype)
    return out, (kv if self.keep_kv else None)


class Model(nn.Module):
  """Gemma decoder; `variant` (see get_config) sets the architecture, fields override.

  Soft-caps and the sliding window are disabled by passing 0 for them. Layers are
  scanned with remat "nothing_saveable" by default, as big_vision's Gemma variants (and
  its PaliGemma wrapper) are, so a big_vision config builds the same param tree; pass
  `scan=False` for per-layer params `layers/{i}`. Every layer is a `Block` of
  `block_config`; dropout and whether layers return their keys/values are fields of the
  `Block`, so neither nn.scan nor nn.remat needs static arguments. `attn_impl`:
  "reference" (einsum + softmax, every backend and feature) or "xla" / "cudnn"
  (`jax.nn.dot_product_attention`, no attention soft-cap).
  """
  variant: str | None = None
  width: int | None = None
  depth: int | None = None
  mlp_dim: int | None = None
  num_heads: int | None = None
  num_kv_heads: int | None = None
  head_dim: int | None = None
  vocab_size: int | None = None
  norm_eps: float | None = None
  query_pre_attn_norm: str | None = None
  query_pre_attn_scalar: float | None = None
  post_norms: bool | None = None
  attn_logits_softcap: float | None = None
  final_logits_softcap: float | None = None
  sliding_window: int | None = None
  dropout: float = 0.0
  dropout_bdims: tuple[int, ...] = ()
  cache_dtype: str | None = None
  embed_dtype: str = "float32"
  scan: bool = True
  remat_policy: str = "nothing_saveable"
  attn_impl: str = "reference"

  @property
  def cfg(self):
    """Architecture dict: the variant's values, overridden by explicit fields."""
    cfg = get_config(self.variant).to_dict() if self.variant else {}
    for k in ARCH_KEYS:
      if getattr(self, k) is not None:
        cfg[k] = getattr(self, k)
    return resolve_config({k: v for k, v in cfg.items() if k != "variant"})

  @property
  def block_config(self):
    """The `BlockConfig` of every layer."""
    cfg = self.cfg
    return BlockConfig(**{f.name: cfg[f.name] for f in dataclasses.fields(BlockConfig)
                          if f.name in cfg},
                       dropout=self.dropout, dropout_bdims=tuple(self.dropout_bdims),
                       attn_impl=self.attn_impl)

  def setup(self):
    cfg = self.cfg
    impls = ("reference", "xla", "cudnn")
    if self.attn_impl not in impls:
      raise registry.unknown_name("attn_impl", self.attn_impl, impls, context="('reference' "
                                  "is the einsum path for any backend, 'xla'/'cudnn' use "
                                  "jax.nn.dot_product_attention)")
    if self.attn_impl != "reference" and cfg["attn_logits_softcap"]:
      raise ValueError(f"attn_impl={self.attn_impl!r} has no attention soft-cap; use "
                       "attn_impl='reference' or attn_logits_softcap=0.")
    self.embedder = Embedder(cfg["vocab_size"], cfg["width"])
    self.final_norm = RMSNorm(cfg["norm_eps"])

  def embed_tokens(self, tokens):
    """tokens: int32[B, T] -> float[B, T, D] (embed_dtype), scaled by sqrt(D)."""
    return self.embedder.encode(tokens).astype(self.embed_dtype)

  def compute_logits(self, pre_logits):
    """pre_logits: float[..., D] -> float32[..., V] (final soft-cap applied)."""
    logits = self.embedder.decode(pre_logits).astype(jnp.float32)
    if cap := self.cfg["final_logits_softcap"]:
      logits = jnp.tanh(logits / cap) * cap
    return logits

  @nn.compact
  def _layers(self, x, inputs, caches, *, deterministic, keep_kv):
    """All layers (params under `layers/`) + final norm: x [B, T, D] -> (x, stacked kv)."""
    depth = self.cfg["depth"]
    block = Block
    if self.remat_policy != "none":
      block = nn.remat(Block, prevent_cse=not self.scan,
                       policy=getattr(jax.checkpoint_policies, self.remat_policy))
    kw = dict(config=self.block_config, deterministic=deterministic, keep_kv=keep_kv)
    if self.scan:
      layers = nn.scan(
          block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
          in_axes=(0, nn.broadcast), length=depth)(name="layers", **kw)
    else:
      layers = common.Unrolled(block, depth, kw, name="layers")
    x, kv = layers(x.astype(self.embed_dtype), (jnp.arange(depth), caches), inputs)
    return self.final_norm(x), kv

  def encode(self, x, positions, mask, deterministic=True):
    """Decoder layers + final norm: x float[B, T, D] -> pre_logits float[B, T, D].

    positions: int32[B, T]; mask: bool[B, T, T]; deterministic=False enables dropout.
    """
    b, t, _ = x.shape
    if positions.shape != (b, t) or mask.shape != (b, t, t):
      raise ValueError(f"positions {positions.shape} must be {(b, t)} and mask {mask.shape} "
                       f"must be {(b, t, t)} for inputs of length {t}.")
    return self._layers(x, LayerInputs(positions, positions, mask), None,
                        deterministic=deterministic, keep_kv=False)[0]

  def __call__(self, tokens, *, embedded_prefix=None, positions=None, mask=None,
               deterministic=True):
    """Full forward pass.

    Args:
      tokens: int32[B, T2] or None; embedded and appended to `embedded_prefix`.
      embedded_prefix: optional float[B, T1, D], used as is (no sqrt(D) scaling).
      positions: int32[B, T] (T = T1 + T2); default 0..T-1.
      mask: bool[B, T, T] attention mask; default causal.
      deterministic: False enables dropout.

    Returns:
      (logits float32[B, T, V], out) with out["pre_logits"] float[B, T, D].
    """
    xs = [] if embedded_prefix is None else [embedded_prefix]
    if tokens is not None:
      xs.append(self.embed_tokens(tokens))
    x = jnp.concatenate([a.astype(self.embed_dtype) for a in xs], axis=1)
    b, t, _ = x.shape
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    if mask is None:
      mask = jnp.broadcast_to(jnp.tril(jnp.ones((t, t), bool)), (b, t, t))
    pre_logits = self.encode(x, positions, mask, deterministic)
    logits = self.compute_logits(pre_logits)
    return logits, {"pre_logits": pre_logits, "logits": logits}

  def prefill_cache(self, x, positions, mask, input_mask, cache_size):
    """Runs the prompt and returns its KV cache.

    Args:
      x: float[B, T, D] embedded prompt (right-padded).
      positions: int32[B, T]; mask: bool[B, T, T]; input_mask: bool[B, T] valid tokens.
      cache_size: S >= T, slots for the prompt plus all decode steps.

    Returns:
      (pre_logits float[B, T, D], cache): cache is a dict of k, v [L, B, S, K, H],
      valid bool[B, S], pos int32[B, S], next_pos int32[B], idx int32[] (next slot).
    """
    b, t, _ = x.shape
    if cache_size < t:
      raise ValueError(f"cache_size={cache_size} is smaller than the prompt length {t}; "
                       "it must count prompt (incl. image) tokens plus decode steps.")
    pre_logits, (k, v) = self._layers(x, LayerInputs(positions, positions, mask), None,
                                      deterministic=True, keep_kv=True)
    dtype = self.cache_dtype or k.dtype
    pad = ((0, 0), (0, 0), (0, cache_size - t), (0, 0), (0, 0))
    cache = dict(
        k=jnp.pad(k, pad).astype(dtype), v=jnp.pad(v, pad).astype(dtype),
        valid=jnp.pad(input_mask.astype(bool), ((0, 0), (0, cache_size - t))),
        pos=jnp.pad(positions.astype(jnp.int32), ((0, 0), (0, cache_size - t))),
        next_pos=jnp.max(jnp.where(input_mask, positions, -1), axis=1).astype(jnp.int32) + 1,
        idx=jnp.asarray(t, jnp.int32))
    return pre_logits, cache

  def extend_cache(self, x, cache):
    """One decode step for all examples; x: float[B, 1, D] -> (pre_logits [B, 1, D], cache).

    The step is written at the shared slot cache["idx"]; each example continues at its
    own position cache["next_pos"]. Steps past cache_size are undefined (the slot index
    clamps), so size the cache for all decode steps.
    """
    b = x.shape[0]
    idx, pos = cache["idx"], cache["next_pos"][:, None]
    valid = jax.lax.dynamic_update_slice(cache["valid"], jnp.ones((b, 1), bool), (0, idx))
    kv_pos = jax.lax.dynamic_update_slice(cache["pos"], pos, (0, idx))
    pre_logits, (k, v) = self._layers(x, LayerInputs(pos, kv_pos, valid[:, None, :], idx),
                                      (cache["k"], cache["v"]), deterministic=True,
                                      keep_kv=True)
    return pre_logits, dict(k=k, v=v, valid=valid, pos=kv_pos, next_pos=pos[:, 0] + 1,
                            idx=idx + 1)


def load(init_params, init_file, model_cfg=None, dont_load=()):
  """Loads Gemma params into `init_params`' layout (scan <-> per-layer, vocab rows).

  Args:
    init_params: nested dict of the initialised model (defines the layout and vocab).
    init_file: "file.npz", "file.npz:llm", or a nested dict of arrays.
    model_cfg: the Model kwargs (unused: the layout comes from `init_params`).
    dont_load: regexes of names to keep from `init_params`.

  Returns:
    nested dict of arrays ready for `Model.apply`.
  """
  del model_cfg
  params = common.read_params(init_file)
  layers = common.subtree(params, "layers", "llm")
  init_layers = init_params.get("layers", {})
  if "0" in layers and "0" not in init_layers:
    layers, stacked = common.stack_layers(layers, "", sum(k.isdigit() for k in layers))
    layers.update(stacked)
  elif "0" in init_layers and layers and "0" not in layers:
    layers = common.unstack_layers(layers, "")
  if layers:
    params["layers"] = layers
  emb = common.subtree(params, "embedder", "llm").get("input_embedding")
  if emb is not None and "embedder" in init_params:
    rows = init_params["embedder"]["input_embedding"].shape[0]
    params["embedder"] = dict(params["embedder"], input_embedding=common.fit_vocab(emb, rows))
  return common.merge_params(params, init_params, dont_load)
