"""SigLIP: image and text towers trained with the pairwise sigmoid loss (big_vision layout).

Params (as big_vision's `proj.image_text.two_towers` with its text transformer):
  img/...            the image tower (`img_model`, default "vit"; its `head` maps to out_dim)
  txt/Embed_0/embedding [V, D], txt/pos_embedding [1, L, D],
  txt/Encoder_0/{encoderblock_{i} | encoderblock}/..., txt/Encoder_0/encoder_norm,
  txt/head           the text tower (`TextTransformer`)
  t [1]              log temperature; b [1] bias (when `bias_init` is set)

Loss (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training"): with unit-norm
embeddings, logits = zimg @ ztxt.T * exp(t) + b, and every image-text pair of the batch
is an independent binary problem (positive on the diagonal, or where `positives` says):
loss = -sum_j log_sigmoid(label_ij * logits_ij), averaged over the images i.
"""
import importlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from big_vision_lite import registry
from big_vision_lite.models import common
from big_vision_lite.models import vit


class TextTransformer(nn.Module):
  """Text tower: token + learned position embeddings -> ViT encoder blocks -> pool -> head.

  Attention is bidirectional (as big_vision's text transformer); `pool_type="last"`
  takes the last position, which is EOS when texts are padded with EOS ("sticky" EOS).
  """
  num_classes: int | None
  vocab_size: int
  width: int = 512
  depth: int = 12
  mlp_dim: int = 2048
  num_heads: int = 8
  dropout: float = 0.0
  pool_type: str = "last"
  scan: bool = False
  remat_policy: str = "nothing_saveable"

  @nn.compact
  def __call__(self, text, *, train=False):
    """text: int32[B, L] -> (float32[B, num_classes or D], out dict)."""
    if text.ndim != 2:
      raise ValueError(f"text {text.shape} must be int32[B, L].")
    out = {}
    embedding = nn.Embed(num_embeddings=self.vocab_size, features=self.width)
    x = out["embedded"] = embedding(text)
    _, length, d = x.shape
    x = x + self.param("pos_embedding", nn.initializers.normal(stddev=d**-0.5),
                       (1, length, d), x.dtype)
    x = vit.Encoder(depth=self.depth, mlp_dim=self.mlp_dim, num_heads=self.num_heads,
                    dropout=self.dropout, scan=self.scan,
                    remat_policy=self.remat_policy)(x, deterministic=not train)
    out["transformed"] = x
    if self.pool_type == "last":
      x = x[:, -1]
    elif self.pool_type == "first":
      x = x[:, 0]
    elif self.pool_type == "gap":
      x = jnp.mean(x, axis=1)
    elif self.pool_type == "map":
      x = vit.MAPHead(mlp_dim=self.mlp_dim, num_heads=self.num_heads)(x)
    else:
      raise registry.unknown_name("text pool_type", self.pool_type,
                                  ("last", "first", "gap", "map"))
    out["pre_logits"] = x
    if self.num_classes:
      x = out["logits"] = nn.Dense(self.num_classes, name="head")(x)
    return x, out


class Model(nn.Module):
  """Two towers: `img_model` (a module of this package, "vit") and `TextTransformer`.

  Attributes:
    image: kwargs of the image tower's Model (num_classes defaults to out_dim,
      head_zeroinit to False).
    text: kwargs of `TextTransformer` (vocab_size required).
    out_dim: embedding size of both towers (int or (img, txt)).
    temperature_init: initial exp(t); bias_init: initial b (None: no bias).
  """
  image: Any = None
  text: Any = None
  img_model: str = "vit"
  out_dim: int | tuple[int, int] = 128
  temperature_init: float = 10.0
  bias_init: float | None = -10.0

  @nn.compact
  def __call__(self, image, text=None, *, train=False):
    """Embeds images and/or texts.

    Args:
      image: float32[B, H, W, 3] in [-1, 1], or None.
      text: int32[B, L] token ids (EOS-padded for pool_type "last"), or None.
    Returns:
      (zimg float32[B, C] or None, ztxt float32[B, C] or None, out): the embeddings are
      L2-normalised; out["t"] = exp(t), out["b"] (when biased) and each tower's outputs
      under "img/..." and "txt/...".
    """
    out_dims = (self.out_dim,) * 2 if isinstance(self.out_dim, int) else self.out_dim
    zimg = ztxt = None
    out = {}
    if text is not None:
      txt = TextTransformer(**{"num_classes": out_dims[1], **dict(self.text or {})},
                            name="txt")
      ztxt, txt_out = txt(text, train=train)
      out.update({f"txt/{k}": v for k, v in txt_out.items()})
      ztxt = ztxt / (jnp.linalg.norm(ztxt, axis=-1, keepdims=True) + 1e-8)
    if image is not None:
      module = importlib.import_module(f"big_vision_lite.models.{self.img_model}")
      # head_zeroinit defaults to False here: a zero head gives zero embeddings, whose
      # normalisation has no useful gradient (big_vision's SigLIP configs set it too).
      img = module.Model(**{"num_classes": out_dims[0], "head_zeroinit": False,
                            **dict(self.image or {})}, name="img")
      zimg, img_out = img(image, train=train)
      if zimg.ndim != 2:
        raise ValueError(f"Image tower returned {zimg.shape}; SigLIP needs [B, C] (set "
                         "image pool_type to 'map', 'gap' or 'tok').")
      out.update({f"img/{k}": v for k, v in img_out.items()})
      zimg = zimg / (jnp.linalg.norm(zimg, axis=-1, keepdims=True) + 1e-8)
    t_init = float(np.log(self.temperature_init))
    t = self.param("t", lambda _, shape: jnp.full(shape, t_init, jnp.float32), (1,))
    out["t"] = jnp.exp(t)
    if self.bias_init is not None:
      out["b"] = self.param("b", lambda _, s: jnp.full(s, self.bias_init, jnp.float32),
                            (1,))
    return zimg, ztxt, out


def sigmoid_loss(zimg, ztxt, t, b=None, positives=None):
  """SigLIP's pairwise sigmoid loss.

  Args:
    zimg: float32[B, C] and ztxt: float32[B, C], L2-normalised embeddings.
    t: float32[1] temperature (exp of the `t` param); b: float32[1] bias or None.
    positives: bool[B, B] of matching pairs (default: the diagonal), e.g. where two
      images of the batch have the same text.
  Returns:
    (loss float32[], logits float32[B, B]): mean over images of the summed pair NLLs.
  """
  if zimg.shape != ztxt.shape or zimg.ndim != 2:
    raise ValueError(f"zimg {zimg.shape} and ztxt {ztxt.shape} must both be [B, C].")
  logits = zimg @ ztxt.T * t
  if b is not None:
    logits = logits + b
  if positives is None:
    positives = jnp.eye(zimg.shape[0], dtype=bool)
  elif positives.shape != logits.shape:
    raise ValueError(f"positives {positives.shape} must be [B, B] = {logits.shape}.")
  labels = jnp.where(positives, 1.0, -1.0)
  nll = -jnp.sum(jax.nn.log_sigmoid(labels * logits), axis=-1)
  return jnp.mean(nll), logits


def load(init_params, init_file, model_cfg=None, dont_load=()):
  """Loads a SigLIP checkpoint ("file.npz" or a nested dict) into `init_params`' layout.

  The image tower goes through its own module's `load` (scan <-> per-layer, posemb
  resampling); text tower, `t` and `b` are merged as they are.
  """
  model_cfg = dict(model_cfg or {})
  params = common.read_params(init_file)
  out = {}
  if "img" in params:
    module = importlib.import_module(
        f"big_vision_lite.models.{model_cfg.get('img_model', 'vit')}")
    img_dont_load = [d[len("img/"):] for d in dont_load if d.startswith("img/")]
    out["img"] = module.load(init_params["img"], params.pop("img"),
                             dict(model_cfg.get("image") or {}), img_dont_load)
  rest = {k: v for k, v in init_params.items() if k != "img"}
  out.update(common.merge_params(params, rest, dont_load))
  return out
