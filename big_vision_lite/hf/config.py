"""PaliGemma config.json <-> the sizes that fix the tensor layouts and model configs.

`hf_config` writes the config.json that transformers' PaliGemmaForConditionalGeneration
needs for a big_vision checkpoint; `model_config` turns an HF config.json into the
`paligemma.Model(img=..., llm=...)` arguments of this package.
"""
import dataclasses
import math
import re

import transformers

from big_vision_lite.hf import shapes as hf_shapes
from big_vision_lite.models import gemma
from big_vision_lite.models import vit

_VIT_NAMES = ("mu", "Ti", "S", "M", "B", "L", "So400m", "H", "g")
_GEMMA_NAMES = ("gemma_2b", "gemma_7b", "gemma2_2b", "gemma2_9b", "gemma2_27b")
# Gemma 2 text_config fields that the tensors do not determine; the released sizes
# (width, depth) take them from our variants (full attention, as big_vision trained them).
_GEMMA2_UNKNOWN = ("query_pre_attn_scalar", "attn_logit_softcapping",
                   "final_logit_softcapping")
_LLM_FIELDS = ("variant",) + gemma.ARCH_KEYS
# Model fields that may differ from a variant's when an HF config maps onto it.
_LLM_OPTIONS = ("attn_logits_softcap", "final_logits_softcap", "sliding_window")


def _released_gemma2():
  out = {}
  for name in _GEMMA_NAMES:
    c = gemma.resolve_config(gemma.get_config(name).to_dict())
    if c["post_norms"]:
      out[(c["width"], c["depth"])] = dict(
          query_pre_attn_scalar=c["query_pre_attn_scalar"],
          attn_logit_softcapping=c["attn_logits_softcap"],
          final_logit_softcapping=c["final_logits_softcap"])
  return out


@dataclasses.dataclass(frozen=True)
class Spec:
  """The sizes that the tensor layouts depend on."""
  vit_depth: int
  vit_heads: int
  llm_depth: int
  llm_heads: int
  llm_kv_heads: int
  head_dim: int
  gemma2: bool


def resolve(cfg: dict) -> dict:
  """A PaliGemma config.json dict as transformers reads it, with every field filled.

  Hub configs omit fields that then take the config classes' defaults (PaliGemma 2
  has no text_config.head_dim: it is 256, not hidden_size / num_heads = 288), so
  sizes are read only after transformers has filled them in.
  """
  if cfg.get("model_type") != "paligemma":
    raise ValueError(f"config.json has model_type={cfg.get('model_type')!r}; only "
                     "'paligemma' (PaliGemma 1 and 2) checkpoints are supported.")
  kind = cfg.get("text_config", {}).get("model_type", "gemma")
  if kind not in ("gemma", "gemma2"):
    raise ValueError(f"text_config.model_type={kind!r}; supported: 'gemma', 'gemma2'.")
  hf_shapes.check_given_sizes(cfg)
  try:
    return transformers.PaliGemmaConfig.from_dict(cfg).to_dict()
  except (ValueError, TypeError, ArithmeticError) as e:  # transformers' field checks.
    detail = " ".join(str(e).split())[:300]
    raise ValueError(f"config.json is not a valid PaliGemma config: transformers says "
                     f"{type(e).__name__}: {detail}; fix that field.") from e


def spec_from_hf_config(cfg: dict) -> Spec:
  """Reads the layout sizes of a PaliGemma `config.json` dict."""
  cfg = resolve(cfg)
  vc, tc = cfg["vision_config"], cfg["text_config"]
  return Spec(vit_depth=vc["num_hidden_layers"], vit_heads=vc["num_attention_heads"],
              llm_depth=tc["num_hidden_layers"], llm_heads=tc["num_attention_heads"],
              llm_kv_heads=tc["num_key_value_heads"], head_dim=tc["head_dim"],
              gemma2=tc["model_type"] == "gemma2")


def spec_from_bv_shapes(shapes: dict[str, tuple]) -> Spec:
  """Reads the layout sizes from the shapes of a big_vision param dict (any scan)."""
  shapes = as_scanned(shapes)

  def get(key):
    if key not in shapes:
      raise KeyError(f"big_vision checkpoint lacks '{key}'; have {sorted(shapes)[:8]}...")
    return shapes[key]
  att = "img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel"
  vit_depth, _, vit_heads, _ = get(att)
  pre = "llm/layers/attn/"
  if pre + "qkv_einsum/w" in shapes:
    llm_depth, _, n, _, h = shapes[pre + "qkv_einsum/w"]
    k = n
  else:
    llm_depth, n, _, h = get(pre + "q_einsum/w")
    k = get(pre + "kv_einsum/w")[2]
  return Spec(vit_depth, vit_heads, llm_depth, n, k, h,
              gemma2="llm/layers/post_ffw_norm/scale" in shapes)



def as_scanned(shapes: dict[str, tuple]) -> dict[str, tuple]:
  """Shapes of a param dict, keyed and shaped as if its layers were scanned."""
  out, layers = {}, {}
  for key, shape in shapes.items():
    m = re.fullmatch(r"(img/Transformer/encoderblock_|llm/layers/)(\d+)/(.*)", key)
    if m is None:
      out[key] = shape
    else:
      layers.setdefault(m[1].rstrip("_/") + "/" + m[3], {})[int(m[2])] = shape
  for key, per_layer in layers.items():
    out[key] = (len(per_layer), *per_layer[min(per_layer)])
  return out


def hf_config(shapes: dict[str, tuple], overrides: dict | None = None, *,
              dtype: str = "float32") -> dict:
  """The HF PaliGemma config.json dict for big_vision params of these shapes.

  Args:
    shapes: {bv key: shape} of the params (scanned or not).
    overrides: fields the tensors do not determine (image_token_index, Gemma 2
      soft-caps / window / query scalar, eps, ...), e.g. an original config.json.
      Fields the tensors do determine must agree with them.
    dtype: the dtype name of the written tensors.

  Returns:
    the config dict. image_token_index defaults to the vocab size (one past the
    last embedding row, which is what the released PaliGemma configs use: HF swaps
    the placeholder for image features before the lookup).
  """
  s = as_scanned(shapes)
  spec = spec_from_bv_shapes(s)
  vocab, width = s["llm/embedder/input_embedding"]
  enc = "img/Transformer/encoderblock/"
  patch, _, _, vit_width = s["img/embedding/kernel"]
  num_patches = s["img/pos_embedding"][1]
  text = dict(model_type="gemma2" if spec.gemma2 else "gemma", hidden_size=width,
              intermediate_size=s["llm/layers/mlp/gating_einsum"][-1],
              num_hidden_layers=spec.llm_depth, num_attention_heads=spec.llm_heads,
              num_key_value_heads=spec.llm_kv_heads, head_dim=spec.head_dim,
              vocab_size=vocab, num_image_tokens=num_patches)
  vision = dict(model_type="siglip_vision_model", hidden_size=vit_width,
                intermediate_size=s[enc + "MlpBlock_0/Dense_0/kernel"][-1],
                num_hidden_layers=spec.vit_depth, num_attention_heads=spec.vit_heads,
                patch_size=patch, image_size=math.isqrt(num_patches) * patch,
                projection_dim=width, num_image_tokens=num_patches)
  # Top-level hidden_size / vocab_size are unused by transformers (hub files disagree
  # with the towers), so only these are checked against overrides.
  derived = dict(projection_dim=width, text_config=text, vision_config=vision)
  overrides = overrides or {}
  for key, value in _flat(derived):
    got = _get(overrides, key)
    if got is not None and got != value:
      raise ValueError(f"config field {'.'.join(key)}={got!r} disagrees with the tensors "
                       f"({value!r}); drop it from the overrides or fix the checkpoint.")
  act = "hidden_activation" if spec.gemma2 else "hidden_act"
  text.update({act: "gelu_pytorch_tanh"}, rms_norm_eps=1e-6,
              max_position_embeddings=8192, tie_word_embeddings=True)
  vision.update(num_channels=3, vision_use_head=False, layer_norm_eps=1e-6,
                hidden_act="gelu_pytorch_tanh")
  if spec.gemma2:
    released = _released_gemma2().get((width, spec.llm_depth))
    if released is not None:
      text.update(released)
    else:
      given = overrides.get("text_config") or {}
      absent = [k for k in _GEMMA2_UNKNOWN if k not in given]  # An explicit null is "off".
      if absent:
        raise ValueError(f"Gemma 2 of width {width} and depth {spec.llm_depth} is not a "
                         f"released size, so text_config fields {absent} are unknown; "
                         "pass them (e.g. the original config.json as overrides; null "
                         "or 0 turns a soft-cap off).")
    text.update(sliding_window=None)  # Full attention unless the overrides set a window.
  cfg = dict(architectures=["PaliGemmaForConditionalGeneration"], model_type="paligemma",
             image_token_index=vocab, bos_token_id=2, eos_token_id=1, pad_token_id=0,
             tie_word_embeddings=True, hidden_size=width, vocab_size=vocab, **derived)
  cfg = merge(cfg, _without_dtypes(overrides))
  if spec.gemma2:
    _normalise_gemma2(cfg["text_config"], spec.llm_depth,
                      "layer_types" in (overrides.get("text_config") or {}))
  cfg["dtype"] = cfg["text_config"]["dtype"] = cfg["vision_config"]["dtype"] = dtype
  return cfg


def _normalise_gemma2(text, depth, layer_types_given):
  """0 soft-caps / window mean off (null: transformers would divide by 0); the window
  sets `layer_types` (sliding on even layers) unless the overrides give them."""
  for k in ("attn_logit_softcapping", "final_logit_softcapping", "sliding_window"):
    text[k] = text.get(k) or None
  if not text["sliding_window"]:
    text["layer_types"] = ["full_attention"] * depth
  elif not layer_types_given:
    text["layer_types"] = _alternating(depth)


def _alternating(depth):
  return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(depth)]


def text_overrides(llm: dict) -> dict:
  """config.json fields the tensors do not fix, from `paligemma.Model(llm=...)` kwargs.

  For Gemma 2: the query scalar (from the rule and sizes), the soft-caps (0 -> null) and
  the window (none: full attention); {} for Gemma 1.
  """
  cfg = gemma.Model(**{k: v for k, v in llm.items() if k in _LLM_FIELDS}).cfg
  if not cfg["post_norms"]:
    return {}
  return {"text_config": dict(query_pre_attn_scalar=cfg["query_pre_attn_scalar"],
                              attn_logit_softcapping=cfg["attn_logits_softcap"],
                              final_logit_softcapping=cfg["final_logits_softcap"],
                              sliding_window=cfg["sliding_window"])}


def model_config(cfg: dict, scan: bool = True) -> dict:
  """`paligemma.Model` arguments (img=..., llm=...) for an HF PaliGemma config dict."""
  cfg = resolve(cfg)
  spec = spec_from_hf_config(cfg)
  vc, tc = cfg["vision_config"], cfg["text_config"]
  patch = vc["patch_size"]
  img = dict(width=vc["hidden_size"], depth=spec.vit_depth, mlp_dim=vc["intermediate_size"],
             num_heads=spec.vit_heads, patch_size=(patch, patch))
  for name in _VIT_NAMES:
    if vit.decode_variant(f"{name}/{patch}") == img:
      img = dict(variant=f"{name}/{patch}")
      break
  img.update(pool_type="none", scan=scan)
  llm = dict(width=tc["hidden_size"], depth=spec.llm_depth, mlp_dim=tc["intermediate_size"],
             num_heads=spec.llm_heads, num_kv_heads=spec.llm_kv_heads,
             head_dim=spec.head_dim, vocab_size=tc["vocab_size"], norm_eps=tc["rms_norm_eps"],
             post_norms=spec.gemma2, query_pre_attn_scalar=spec.head_dim,
             attn_logits_softcap=None, final_logits_softcap=None, sliding_window=None)
  if spec.gemma2:
    windowed = "sliding_attention" in (tc.get("layer_types") or _alternating(spec.llm_depth))
    llm.update(query_pre_attn_scalar=tc["query_pre_attn_scalar"],
               attn_logits_softcap=tc["attn_logit_softcapping"] or None,
               final_logits_softcap=tc["final_logit_softcapping"] or None,
               sliding_window=(tc["sliding_window"] or None) if windowed else None)
  _check_supported(cfg, spec)
  for name in _GEMMA_NAMES:
    base = gemma.get_config(name).to_dict()
    del base["variant"]
    base = gemma.resolve_config(dict(base, vocab_size=llm["vocab_size"]))
    differ = {k for k in llm if llm[k] != base[k]}
    if differ <= set(_LLM_OPTIONS):  # 0 turns a variant's soft-cap or window off.
      llm = dict(variant=name, vocab_size=llm["vocab_size"],
                 **{k: llm[k] or 0 for k in sorted(differ)})
      break
  return dict(img=img, llm=dict(llm, scan=scan))


def _check_supported(cfg, spec):
  """Raises if the HF config uses a feature that paligemma.Model does not have."""
  vc, tc = cfg["vision_config"], cfg["text_config"]
  rope = tc.get("rope_parameters") or {}
  act = tc.get("hidden_activation") or tc.get("hidden_act")
  layer_types = tc.get("layer_types")
  checks = {
      "text_config.rope_parameters": (rope.get("rope_type", "default"),
                                      rope.get("rope_theta", 10_000.0)) == ("default", 10_000),
      "text_config.hidden_activation": act == "gelu_pytorch_tanh",
      "vision_config.hidden_act": vc["hidden_act"] == "gelu_pytorch_tanh",
      "vision_config.layer_norm_eps": vc["layer_norm_eps"] == 1e-6,
      "vision_config.vision_use_head": not vc.get("vision_use_head"),
      "text_config.layer_types": not spec.gemma2 or layer_types in (
          None, _alternating(spec.llm_depth), ["full_attention"] * spec.llm_depth),
  }
  bad = [k for k, ok in checks.items() if not ok]
  if bad:
    raise ValueError(f"HF config fields {bad} have values paligemma.Model does not "
                     "implement (it has RoPE theta 10000, tanh-GELU, LayerNorm eps 1e-6, no "
                     "SigLIP pooling head, Gemma 2 layers all full or alternating "
                     "sliding/full from 0).")


def _flat(d, prefix=()):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from _flat(v, prefix + (k,))
    else:
      yield prefix + (k,), v


def _get(d, key):
  for k in key:
    if not isinstance(d, dict) or k not in d:
      return None
    d = d[k]
  return d


def _without_dtypes(d):
  """d without (torch_)dtype entries at any level: the written tensors decide them."""
  return {k: _without_dtypes(v) if isinstance(v, dict) else v for k, v in d.items()
          if k not in ("dtype", "torch_dtype")}


def merge(base, extra):
  """`base` with `extra`'s fields set over it (nested dicts merged, None kept)."""
  out = dict(base)
  for k, v in extra.items():
    out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
  return out
