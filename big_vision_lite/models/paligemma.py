"""PaliGemma: image tower -> projector -> Gemma decoder with a prefix-LM mask.

Towers are modules of this package named by string (`img_model="vit"`,
`llm_model="gemma"`); params live under `img/` and `llm/`. The ViT's `head` is the
projector (num_classes = LLM width). Image embeddings enter the LLM unscaled, text
embeddings are scaled by sqrt(width).
"""
import re
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from big_vision_lite import checkpoint
from big_vision_lite import models
from big_vision_lite.models import common


def make_attn_mask(input_mask, mask_ar):
  """Prefix-LM attention mask.

  With c = cumsum(mask_ar), token i sees token j iff c[j] <= c[i] and both are valid:
  mask_ar 0 tokens form a bidirectional block with what precedes them, 1 is causal.

  Args:
    input_mask: bool[B, T], True for valid (non-padding) tokens.
    mask_ar: int32[B, T], 0 for prefix tokens (image, prompt), 1 for causal ones.

  Returns:
    bool[B, T, T] indexed [b, query i, key j].
  """
  input_mask = jnp.asarray(input_mask, bool)
  c = jnp.cumsum(jnp.asarray(mask_ar, jnp.int32), axis=1)
  return (c[:, None, :] <= c[:, :, None]) & input_mask[:, None, :] & input_mask[:, :, None]


def _last_valid(input_mask):
  """int32[B]: index of the last True of each row of input_mask bool[B, T]."""
  t = input_mask.shape[1]
  return jnp.max(jnp.where(input_mask, jnp.arange(t), -1), axis=1)


class Model(nn.Module):
  """Two-tower PaliGemma."""
  img_model: str = "vit"
  img: Any = None
  llm_model: str = "gemma"
  llm: Any = None

  def setup(self):
    self._llm = models.get_module(self.llm_model, "llm_model").Model(**dict(self.llm or {}), name="llm")
    width = self._llm.cfg["width"]
    img_cfg = {"pool_type": "none", **dict(self.img or {})}
    if img_cfg.setdefault("num_classes", width) != width:
      raise ValueError(f"img num_classes={img_cfg['num_classes']} must equal the LLM width "
                       f"{width} (the head is the projector); drop it from the img config.")
    self._img = models.get_module(self.img_model, "img_model").Model(**img_cfg, name="img")

  def embed_image(self, image, train=False):
    """image: float32[B, H, W, 3] (or [B, F, H, W, 3]) in [-1, 1] -> (float[B, P, D], out)."""
    x, out = self._img(image, train=train)
    if x.ndim != 3:
      raise ValueError(f"Image tower returned {x.shape}; PaliGemma needs tokens [B, P, D] "
                       "(use pool_type='none').")
    return x, out

  def embed_text(self, tokens, train=False):
    """tokens: int32[B, T] -> float[B, T, D], scaled by sqrt(D)."""
    del train
    return self._llm.embed_tokens(tokens)

  def embed_image_and_text(self, image, text, input_mask=None, mask_ar=None, train=False):
    """Concatenates image tokens (mask_ar 0, valid) before the text tokens.

    Args:
      image: float32[B, H, W, 3]; text: int32[B, T].
      input_mask: bool[B, T] valid text tokens (default all); mask_ar: int32[B, T]
        (default all 0).
      train: enables dropout in the image tower.

    Returns:
      (x float[B, P + T, D], input_mask bool[B, P + T], mask_ar int32[B, P + T]).
    """
    zimg, _ = self.embed_image(image, train=train)
    ztxt = self.embed_text(text)
    b, p = zimg.shape[:2]
    if input_mask is None:
      input_mask = jnp.ones(text.shape, bool)
    if mask_ar is None:
      mask_ar = jnp.zeros(text.shape, jnp.int32)
    if input_mask.shape != text.shape or mask_ar.shape != text.shape:
      raise ValueError(f"input_mask {input_mask.shape} and mask_ar {mask_ar.shape} must "
                       f"match text {text.shape}.")
    x = jnp.concatenate([zimg.astype(ztxt.dtype), ztxt], axis=1)
    input_mask = jnp.concatenate([jnp.ones((b, p), bool), input_mask.astype(bool)], axis=1)
    mask_ar = jnp.concatenate([jnp.zeros((b, p), jnp.int32), mask_ar.astype(jnp.int32)], 1)
    return x, input_mask, mask_ar

  def __call__(self, image, text, mask_ar, input_mask=None, train=False):
    """Training / scoring forward pass.

    Args:
      image: float32[B, H, W, 3] in [-1, 1]; text: int32[B, T]; mask_ar: int32[B, T];
      input_mask: bool[B, T] (default all valid); train: enables dropout.

    Returns:
      (text_logits float32[B, T, V], out); image positions are never projected.
    """
    x, full_mask, full_ar = self.embed_image_and_text(image, text, input_mask, mask_ar,
                                                      train=train)
    positions = jnp.cumsum(full_mask, axis=1) - 1
    pre_logits = self._llm.encode(x, positions, make_attn_mask(full_mask, full_ar),
                                  deterministic=not train)
    pre_logits = pre_logits[:, x.shape[1] - text.shape[1]:]
    logits = self._llm.compute_logits(pre_logits)
    return logits, {"text_pre_logits": pre_logits, "text_logits": logits}

  def prefill_cache(self, image, text, input_mask, mask_ar, cache_size):
    """Runs image + prompt; returns logits at each example's last valid prompt token.

    Args:
      image: float32[B, H, W, 3]; text: int32[B, T] prompts, right-padded;
      input_mask: bool[B, T]; mask_ar: int32[B, T];
      cache_size: S, counts image tokens + prompt tokens + decode steps.

    Returns:
      (logits float32[B, V], cache) where cache is an opaque pytree of fixed shapes.
    """
    x, full_mask, full_ar = self.embed_image_and_text(image, text, input_mask, mask_ar)
    positions = jnp.cumsum(full_mask, axis=1) - 1
    pre_logits, cache = self._llm.prefill_cache(
        x, positions, make_attn_mask(full_mask, full_ar), full_mask, cache_size)
    last = _last_valid(full_mask)
    pre_last = jnp.take_along_axis(pre_logits, last[:, None, None], axis=1)[:, 0]
    return self._llm.compute_logits(pre_last), cache

  def extend_cache(self, tokens, cache):
    """tokens: int32[B, 1] -> (logits float32[B, V], cache) for the next position."""
    pre_logits, cache = self._llm.extend_cache(self.embed_text(tokens), cache)
    return self._llm.compute_logits(pre_logits[:, 0]), cache


def _escaped_matches(trees, prefix, dont_load):
  """Names (relative to `prefix`) in `trees` whose full name matches a dont_load regex."""
  regexes = common.compile_patterns(dont_load)
  names = set()
  for tree in trees:
    for k in checkpoint.flatten(tree):
      if any(r.fullmatch(f"{prefix}/{k}") for r in regexes):
        names.add(re.escape(k))
  return sorted(names)


def load(init_params, init_file, model_cfg=None, dont_load=()):
  """Loads PaliGemma params; each tower's own `load` converts its part.

  Args:
    init_params: nested dict with "img" and "llm" (defines the layout).
    init_file: "file.npz" (or "file.npz:subtree") holding img/ and llm/, or a dict
      {"img": path_or_tree, "llm": path_or_tree} loading the towers separately.
    model_cfg: the Model kwargs (img_model, img, llm_model, llm).
    dont_load: regexes on full names ("img/head/.*") kept from `init_params`.

  Returns:
    nested dict of arrays ready for `Model.apply`.
  """
  model_cfg = dict(model_cfg or {})
  if isinstance(init_file, dict) and set(init_file) <= {"img", "llm"}:
    loaded = dict(init_file)
  else:
    loaded = dict(checkpoint.load_params(init_file))
  unknown = sorted(set(loaded) - set(init_params))
  if unknown:
    raise ValueError(f"Checkpoint {init_file!r} has top-level keys {unknown} that PaliGemma "
                     f"does not have; expected {sorted(init_params)}.")
  params = {}
  for tower in init_params:
    sub = loaded.get(tower, {})
    if isinstance(sub, str):
      sub = checkpoint.load_params(sub)
    sub = common.subtree({tower: sub}, tower, "")
    tower_dont_load = _escaped_matches([sub, init_params[tower]], tower, dont_load)
    if tower not in loaded:
      params[tower] = common.merge_params({}, init_params[tower], tower_dont_load)
      continue
    module = models.get_module(
        model_cfg.get(f"{tower}_model", "vit" if tower == "img" else "gemma"), f"{tower}_model")
    params[tower] = module.load(init_params[tower], sub, dict(model_cfg.get(tower) or {}),
                                tower_dont_load)
  return params
