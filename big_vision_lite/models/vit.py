"""SigLIP Vision Transformer (the PaliGemma image tower), big_vision param layout.

Params (scan=True stacks the blocks with the layer axis first):
  embedding/{kernel [ph, pw, 3, D], bias}, pos_embedding [1, P, D],
  Transformer/encoderblock/{LayerNorm_0, MultiHeadDotProductAttention_0/{query,key,value,out},
  LayerNorm_1, MlpBlock_0/{Dense_0, Dense_1}}, Transformer/encoder_norm, head (projector).
Unscanned blocks are named `Transformer/encoderblock_{i}`.
"""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage

from big_vision_lite import registry
from big_vision_lite.models import common
from big_vision_lite.sharding import ACT_BATCH, ACT_EMBED, ACT_LEN

_VARIANTS = {
    "mu": dict(width=32, depth=1, mlp_dim=128, num_heads=2),
    "Ti": dict(width=192, depth=12, mlp_dim=768, num_heads=3),
    "S": dict(width=384, depth=12, mlp_dim=1536, num_heads=6),
    "M": dict(width=512, depth=12, mlp_dim=2048, num_heads=8),
    "B": dict(width=768, depth=12, mlp_dim=3072, num_heads=12),
    "L": dict(width=1024, depth=24, mlp_dim=4096, num_heads=16),
    "So400m": dict(width=1152, depth=27, mlp_dim=4304, num_heads=16),
    "H": dict(width=1280, depth=32, mlp_dim=5120, num_heads=16),
    "g": dict(width=1408, depth=40, mlp_dim=6144, num_heads=16),
}


def decode_variant(variant):
  """Turns "So400m/14" into dict(width, depth, mlp_dim, num_heads, patch_size=(14, 14))."""
  if variant is None:
    return {}
  m = re.fullmatch(r"([A-Za-z0-9]+)(?:/(\d+))?", variant)
  if not m or m.group(1) not in _VARIANTS:
    raise registry.unknown_name("ViT variant", variant, _VARIANTS, context="A variant may "
                                "end in /patch (e.g. 'So400m/14', 'B/16', 'mu').")
  cfg = dict(_VARIANTS[m.group(1)])
  if m.group(2):
    cfg["patch_size"] = (int(m.group(2)),) * 2
  return cfg


def posemb_sincos_2d(h, w, width, temperature=10_000.0):
  """Fixed 2D sin-cos position embedding: float32[1, h*w, width]."""
  if width % 4:
    raise ValueError(f"sincos2d posemb needs width divisible by 4, got {width}.")
  y, x = np.mgrid[:h, :w]
  omega = np.arange(width // 4) / (width // 4 - 1)
  omega = 1.0 / (temperature**omega)
  y = np.einsum("m,d->md", y.flatten(), omega)
  x = np.einsum("m,d->md", x.flatten(), omega)
  pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
  return jnp.asarray(pe, jnp.float32)[None]


class MlpBlock(nn.Module):
  """Dense -> tanh-GELU -> Dense."""
  mlp_dim: int
  dropout: float = 0.0
  dtype_mm: str = "float32"

  @nn.compact
  def __call__(self, x, deterministic=True):
    inits = dict(kernel_init=nn.initializers.xavier_uniform(),
                 bias_init=nn.initializers.normal(stddev=1e-6))
    d = x.shape[-1]
    x = nn.Dense(self.mlp_dim, dtype=self.dtype_mm, **inits)(x)
    x = nn.gelu(x, approximate=True)
    x = nn.Dropout(rate=self.dropout)(x, deterministic)
    return nn.Dense(d, dtype=self.dtype_mm, **inits)(x)


class Encoder1DBlock(nn.Module):
  """Pre-LN transformer block; `x -> (x, None)` so it can be scanned.

  `deterministic=False` enables dropout.
  """
  mlp_dim: int
  num_heads: int
  dropout: float = 0.0
  dtype_mm: str = "float32"
  deterministic: bool = True

  @nn.compact
  def __call__(self, x):
    x = nn.with_logical_constraint(x, (ACT_BATCH, ACT_LEN, ACT_EMBED))
    y = nn.LayerNorm()(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, kernel_init=nn.initializers.xavier_uniform(),
        deterministic=True, dtype=self.dtype_mm)(y, y)
    y = nn.Dropout(rate=self.dropout)(y, self.deterministic)
    x = x + y
    y = nn.LayerNorm()(x)
    y = MlpBlock(self.mlp_dim, self.dropout, self.dtype_mm)(y, self.deterministic)
    y = nn.Dropout(rate=self.dropout)(y, self.deterministic)
    return x + y, None


class Encoder(nn.Module):
  """Stack of `depth` blocks plus the final `encoder_norm`."""
  depth: int
  mlp_dim: int
  num_heads: int
  dropout: float = 0.0
  scan: bool = False
  remat_policy: str = "nothing_saveable"
  dtype_mm: str = "float32"

  @nn.compact
  def __call__(self, x, deterministic=True):
    kw = dict(mlp_dim=self.mlp_dim, num_heads=self.num_heads, dropout=self.dropout,
              dtype_mm=self.dtype_mm, deterministic=deterministic)
    if self.scan:
      block = Encoder1DBlock
      if self.remat_policy != "none":
        block = nn.remat(block, prevent_cse=False,
                         policy=getattr(jax.checkpoint_policies, self.remat_policy))
      x, _ = nn.scan(block, variable_axes={"params": 0},
                     split_rngs={"params": True, "dropout": True},
                     length=self.depth)(name="encoderblock", **kw)(x)
    else:
      for i in range(self.depth):
        x, _ = Encoder1DBlock(name=f"encoderblock_{i}", **kw)(x)
    return nn.LayerNorm(name="encoder_norm")(x)


class MAPHead(nn.Module):
  """Multihead attention pooling with one learned probe."""
  mlp_dim: int
  num_heads: int

  @nn.compact
  def __call__(self, x):
    b, _, d = x.shape
    probe = self.param("probe", nn.initializers.xavier_uniform(), (1, 1, d), x.dtype)
    probe = jnp.tile(probe, [b, 1, 1])
    x = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, kernel_init=nn.initializers.xavier_uniform())(probe, x)
    y = nn.LayerNorm()(x)
    x = x + MlpBlock(mlp_dim=self.mlp_dim)(y)
    return x[:, 0]


class Model(nn.Module):
  """SigLIP ViT; `variant` ("So400m/14") sets sizes, explicit fields override it."""
  num_classes: int | None = None
  variant: str | None = None
  width: int | None = None
  depth: int | None = None
  mlp_dim: int | None = None
  num_heads: int | None = None
  patch_size: tuple[int, int] | None = None
  posemb: str = "learn"
  pool_type: str = "gap"
  head_zeroinit: bool = True
  scan: bool = False
  remat_policy: str = "nothing_saveable"
  dtype_mm: str = "float32"
  dropout: float = 0.0

  @property
  def cfg(self):
    """Sizes after applying the explicit fields over the variant."""
    cfg = dict(decode_variant(self.variant))
    for k in ("width", "depth", "mlp_dim", "num_heads", "patch_size"):
      if getattr(self, k) is not None:
        cfg[k] = getattr(self, k)
    cfg.setdefault("patch_size", (16, 16))
    missing = [k for k in ("width", "depth", "mlp_dim", "num_heads") if k not in cfg]
    if missing:
      raise ValueError(f"ViT needs {missing}: pass a variant (e.g. 'So400m/14') or them.")
    cfg["patch_size"] = tuple(cfg["patch_size"])
    return cfg

  @nn.compact
  def __call__(self, image, *, train=False):
    """Encodes images (or videos, frames folded into the batch).

    Args:
      image: float32[B, H, W, 3] or float32[B, F, H, W, 3], values in [-1, 1].
      train: enables dropout.

    Returns:
      (x, out): x is float32[B, P, num_classes] for pool_type "none" (P = F * patches),
      float32[B, num_classes] otherwise (width when num_classes is None); `out` holds
      "stem", "with_posemb", "encoded", "pre_logits" and "logits".
    """
    cfg, out = self.cfg, {}
    image = jnp.asarray(image, jnp.float32)
    if image.ndim == 5:
      b, f = image.shape[:2]
      image = jnp.reshape(image, (b * f,) + image.shape[2:])
    elif image.ndim == 4:
      b, f = image.shape[0], 1
    else:
      raise ValueError(f"image {image.shape} must be [B, H, W, 3] or [B, F, H, W, 3].")
    x = out["stem"] = nn.Conv(cfg["width"], cfg["patch_size"], strides=cfg["patch_size"],
                              padding="VALID", name="embedding", dtype=self.dtype_mm)(image)
    n, h, w, c = x.shape
    x = jnp.reshape(x, (n, h * w, c))
    if self.posemb == "learn":
      pe = self.param("pos_embedding", nn.initializers.normal(stddev=c**-0.5),
                      (1, h * w, c), jnp.float32)
    elif self.posemb == "sincos2d":
      pe = posemb_sincos_2d(h, w, c)
    else:
      raise registry.unknown_name("posemb", self.posemb, ("learn", "sincos2d"))
    x = out["with_posemb"] = x + pe.astype(x.dtype)
    if self.pool_type == "tok":
      cls = self.param("cls", nn.initializers.zeros, (1, 1, c), x.dtype)
      x = jnp.concatenate([jnp.tile(cls, [n, 1, 1]), x], axis=1)
    x = nn.Dropout(rate=self.dropout)(x, not train)
    x = Encoder(depth=cfg["depth"], mlp_dim=cfg["mlp_dim"], num_heads=cfg["num_heads"],
                dropout=self.dropout, scan=self.scan, remat_policy=self.remat_policy,
                dtype_mm=self.dtype_mm, name="Transformer")(x, deterministic=not train)
    x = out["encoded"] = jnp.reshape(x, (b, f * x.shape[1], c))
    if self.pool_type == "map":
      x = MAPHead(mlp_dim=cfg["mlp_dim"], num_heads=cfg["num_heads"], name="MAPHead")(x)
    elif self.pool_type == "gap":
      x = jnp.mean(x, axis=1)
    elif self.pool_type == "tok":
      x = x[:, 0]
    elif self.pool_type != "none":
      raise registry.unknown_name("pool_type", self.pool_type, ("none", "gap", "map", "tok"))
    out["pre_logits"] = x
    if self.num_classes:
      kinit = nn.initializers.zeros if self.head_zeroinit else nn.initializers.lecun_normal()
      x = out["logits"] = nn.Dense(self.num_classes, kernel_init=kinit, name="head")(x)
    return x, out


def resample_posemb(old, new_len):
  """Bilinearly resizes a square grid of position embeddings.

  Args:
    old: float[1, P_old, D] with P_old = g * g.
    new_len: P_new, also a square.

  Returns:
    float[1, P_new, D] in the dtype of `old`.
  """
  old = np.asarray(old)
  gs_old, gs_new = int(np.sqrt(old.shape[1])), int(np.sqrt(new_len))
  if gs_old**2 != old.shape[1] or gs_new**2 != new_len:
    raise ValueError(f"Can only resample square grids of posemb: {old.shape[1]} -> {new_len}.")
  grid = old[0].astype(np.float32).reshape(gs_old, gs_old, -1)
  grid = scipy.ndimage.zoom(grid, (gs_new / gs_old, gs_new / gs_old, 1), order=1)
  return grid.reshape(1, new_len, -1).astype(old.dtype)


def load(init_params, init_file, model_cfg=None, dont_load=()):
  """Loads ViT params from an npz (or an already loaded tree) into `init_params`' layout.

  Converts scanned <-> per-layer blocks and resamples `pos_embedding` when the
  checkpoint's resolution differs.

  `init_params` (the freshly initialised tree) defines the layout; `init_file` is
  "file.npz", "file.npz:img" or a nested dict of arrays; `model_cfg` is unused; names
  matching a `dont_load` regex keep their `init_params` value. Returns the tree to
  pass to `Model.apply`.
  """
  del model_cfg
  params = common.read_params(init_file)
  enc = common.subtree(params, "Transformer", "img")
  init_enc = init_params.get("Transformer", {})
  if "encoderblock" in init_enc and "encoderblock_0" in enc:
    depth = sum(1 for k in enc if k.startswith("encoderblock_"))
    enc, stacked = common.stack_layers(enc, "encoderblock_", depth)
    enc["encoderblock"] = stacked
  elif "encoderblock_0" in init_enc and "encoderblock" in enc:
    enc.update(common.unstack_layers(enc.pop("encoderblock"), "encoderblock_"))
  if enc:
    params["Transformer"] = enc
  if "pos_embedding" in params and "pos_embedding" in init_params:
    new_len = init_params["pos_embedding"].shape[1]
    if params["pos_embedding"].shape[1] != new_len:
      params["pos_embedding"] = resample_posemb(params["pos_embedding"], new_len)
  return common.merge_params(params, init_params, dont_load)
