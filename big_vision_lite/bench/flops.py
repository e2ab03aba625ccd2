"""Analytic FLOPs, bytes and memory of a PaliGemma model, from its config alone.

XLA's `cost_analysis()` counts the body of a scanned layer loop once, so it undercounts
a `scan=True` model by about its depth; these formulas count every layer. They count
model FLOPs (a multiply-add is 2 FLOPs): the matmuls and the attention products as the
model computes them (the full T x S attention matrix: masked entries are computed too).
Rematerialised recomputation is not model FLOPs and is not counted; a training step is
3 forward passes (the backward pass costs 2).

Model configs are the `paligemma.Model` kwargs: `{"img": {...}, "llm": {...}}`.
"""
import re

import jax
import jax.numpy as jnp
import numpy as np

from big_vision_lite import checkpoint
from big_vision_lite.models import gemma
from big_vision_lite.models import paligemma
from big_vision_lite.models import vit


def dims(model_cfg, res):
  """Sizes of both towers: dict(vit=..., llm=..., patches P, patch p)."""
  img = {"pool_type": "none", **dict(model_cfg.get("img") or {})}
  img.pop("num_classes", None)
  vcfg = vit.Model(**img).cfg
  lcfg = gemma.Model(**dict(model_cfg.get("llm") or {})).cfg
  ph, pw = vcfg["patch_size"]
  if res % ph or res % pw:
    raise ValueError(f"res={res} is not a multiple of the patch size {(ph, pw)}.")
  return dict(vit=vcfg, llm=lcfg, patches=(res // ph) * (res // pw), patch=(ph, pw))


def _llm_layer_matmul_params(l):
  d, n, k, h, f = l["width"], l["num_heads"], l["num_kv_heads"], l["head_dim"], l["mlp_dim"]
  return d * n * h + 2 * d * k * h + n * h * d + 3 * d * f


def vit_flops(d, batch):
  """Forward FLOPs of the image tower + projector for `batch` images (dict by part)."""
  v, p, (ph, pw) = d["vit"], d["patches"], d["patch"]
  w, f = v["width"], v["mlp_dim"]
  per_layer = 2 * p * (4 * w * w + 2 * w * f)
  attn = 2 * 2 * p * p * w
  return {"vit_stem": batch * 2 * p * ph * pw * 3 * w,
          "vit_matmul": batch * v["depth"] * per_layer,
          "vit_attn": batch * v["depth"] * attn,
          "projector": batch * 2 * p * w * d["llm"]["width"]}


def llm_flops(d, batch, t, s, logit_tokens):
  """Forward FLOPs of the decoder: t query tokens over s keys, `logit_tokens` projected."""
  l = d["llm"]
  return {"llm_matmul": batch * l["depth"] * 2 * t * _llm_layer_matmul_params(l),
          "llm_attn": batch * l["depth"] * 2 * 2 * t * s * l["num_heads"] * l["head_dim"],
          "logits": batch * 2 * logit_tokens * l["width"] * l["vocab_size"]}


def train_flops(model_cfg, *, res, text_len, batch):
  """Model FLOPs of one training step (forward + backward = 3 forwards).

  Args:
    model_cfg: paligemma.Model kwargs.
    res: image size (square); text_len: L of the batch rows (the model sees L - 1
      tokens and projects them all); batch: B.

  Returns:
    dict with per-part forward FLOPs, "forward" and "train" totals (floats).
  """
  d = dims(model_cfg, res)
  t = d["patches"] + text_len - 1
  parts = {**vit_flops(d, batch), **llm_flops(d, batch, t, t, text_len - 1)}
  fwd = float(sum(parts.values()))
  return {**parts, "forward": fwd, "train": 3.0 * fwd}


def prefill_flops(model_cfg, *, res, prompt_len, batch):
  """Forward FLOPs of a prefill: image + prompt tokens, logits at one token per row."""
  d = dims(model_cfg, res)
  t = d["patches"] + prompt_len
  return float(sum({**vit_flops(d, batch), **llm_flops(d, batch, t, t, 1)}.values()))


def decode_step_flops(model_cfg, *, res, prompt_len, step, batch):
  """FLOPs of decode step `step` (0-based) for `batch` rows, attending to all cache keys."""
  d = dims(model_cfg, res)
  s = d["patches"] + prompt_len + step + 1
  return float(sum(llm_flops(d, batch, 1, s, 1).values()))


def param_shapes(model_cfg, *, res, text_len=8):
  """ShapeDtypeStructs of the params (jax.eval_shape; nothing is allocated)."""
  model = paligemma.Model(**model_cfg)
  def init(rng):
    return model.init(rng, jnp.zeros((1, res, res, 3)), jnp.zeros((1, text_len), jnp.int32),
                      jnp.zeros((1, text_len), jnp.int32))["params"]
  return jax.eval_shape(init, jax.random.key(0))


def count(tree, pred=lambda name: True):
  """Number of elements of the leaves of `tree` whose "a/b/c" name satisfies `pred`."""
  return sum(int(np.prod(x.shape)) for k, x in checkpoint.flatten(tree).items() if pred(k))


def decode_bytes(model_cfg, *, res, prompt_len, step, batch, weight_bytes, cache_bytes):
  """Bytes one decode step must read: decoder weights + the KV cache it attends to.

  Args:
    weight_bytes / cache_bytes: bytes per element of the weights / the KV cache.

  Returns:
    dict(weights, kv_cache, total) in bytes; the cache counts the slots up to this step
    (the model reads the whole cache, but slots past it are a constant it can skip).
  """
  d = dims(model_cfg, res)
  l = d["llm"]
  n_w = l["depth"] * _llm_layer_matmul_params(l) + l["vocab_size"] * l["width"]
  n_w += (l["depth"] * (4 if l["post_norms"] else 2) + 1) * l["width"]
  s = d["patches"] + prompt_len + step + 1
  kv = l["depth"] * batch * s * 2 * l["num_kv_heads"] * l["head_dim"]
  return {"weights": n_w * weight_bytes, "kv_cache": kv * cache_bytes,
          "total": n_w * weight_bytes + kv * cache_bytes}


def finetune_memory(model_cfg, *, res, text_len, batch, trainable=r"llm/layers/attn/.*",
                    frozen_bytes=2, trainable_bytes=4, opt_state_per_param=0):
  """Memory estimate of a fine-tuning step with frozen and trainable params.

  The default is the attention-only SGD recipe of the PaliGemma fine-tuning notebook:
  frozen weights in bf16, the LLM attention weights trained in f32 with plain SGD (no
  optimizer state). Gradients exist only for trainable params. Nothing flows back into
  the frozen image tower, so only the decoder's activations are kept; with the
  decoder's default remat ("nothing_saveable") a layer keeps its input [B, T, D], and
  one layer is recomputed at a time during the backward pass.

  Args:
    model_cfg: paligemma.Model kwargs; res, text_len (L of the rows), batch.
    trainable: regex (fullmatch) of trained params.
    frozen_bytes / trainable_bytes: bytes per element of each group.
    opt_state_per_param: optimizer state elements (f32) per trainable param (Adam: 2).

  Returns:
    dict of bytes: params, grads, opt_state, activations (kept + one layer's working
    set + logits), total; and the param counts n_frozen, n_trainable.
  """
  shapes = param_shapes(model_cfg, res=res)
  rx = re.compile(trainable)
  n_train = count(shapes, lambda k: rx.fullmatch(k) is not None)
  n_frozen = count(shapes) - n_train
  d = dims(model_cfg, res)
  l = d["llm"]
  t, act = d["patches"] + text_len - 1, 4
  kept = l["depth"] * batch * t * l["width"] * act
  layer = batch * t * (3 * l["mlp_dim"] + 4 * l["width"]) * act
  layer += 2 * batch * l["num_heads"] * t * t * act
  logits = 3 * batch * (text_len - 1) * l["vocab_size"] * act
  image = batch * d["patches"] * (d["vit"]["mlp_dim"] + 2 * d["vit"]["width"]) * act
  out = {"params": n_frozen * frozen_bytes + n_train * trainable_bytes,
         "grads": n_train * 4, "opt_state": n_train * 4 * opt_state_per_param,
         "activations": kept + max(layer, image) + logits}
  out["total"] = sum(out.values())
  return {**out, "n_frozen": n_frozen, "n_trainable": n_train}
