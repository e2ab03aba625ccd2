"""HF PaliGemma tensor names and the shape that config.json implies for each.

`hf_convert.hf_to_bv` checks every tensor against `expected_shapes` before it writes
anything, so a tensor of another shape is a one-line error naming the file, the
tensor, its shape, the expected shape and the config.json fields that fix it.
Shapes are torch's: `nn.Linear` weights [out, in], `nn.Conv2d` weights [out, in, h, w].
"""
import re

VIT = "vision_tower.vision_model."
PROJ = "multi_modal_projector.linear."
LLM = "language_model.model."
LM_HEAD = "language_model.lm_head.weight"
VIT_LAYER = VIT + "encoder.layers.{i}."
LLM_LAYER = LLM + "layers.{i}."

# Each shape is written in the size symbols of `_sizes`, one per axis.
_GLOBAL = {
    VIT + "embeddings.patch_embedding.weight": "D C p p",
    VIT + "embeddings.patch_embedding.bias": "D",
    VIT + "embeddings.position_embedding.weight": "P D",
    VIT + "post_layernorm.weight": "D",
    VIT + "post_layernorm.bias": "D",
    PROJ + "weight": "E D",
    PROJ + "bias": "E",
    LLM + "embed_tokens.weight": "V W",
    LLM + "norm.weight": "W",
    LM_HEAD: "V W",
}
_VIT_LAYER = {
    **{f"{norm}.{x}": "D" for norm in ("layer_norm1", "layer_norm2")
       for x in ("weight", "bias")},
    **{f"self_attn.{proj}.weight": "D D" for proj in ("q_proj", "k_proj", "v_proj",
                                                     "out_proj")},
    **{f"self_attn.{proj}.bias": "D" for proj in ("q_proj", "k_proj", "v_proj",
                                                 "out_proj")},
    "mlp.fc1.weight": "F D", "mlp.fc1.bias": "F",
    "mlp.fc2.weight": "D F", "mlp.fc2.bias": "D",
}
_LLM_LAYER = {
    # post_attention_layernorm is before the MLP in Gemma 1, after attention in
    # Gemma 2; the pre_/post_feedforward norms are Gemma 2's. All have width W.
    **{f"{norm}.weight": "W" for norm in ("input_layernorm", "post_attention_layernorm",
                                          "pre_feedforward_layernorm",
                                          "post_feedforward_layernorm")},
    "self_attn.q_proj.weight": "NH W",
    "self_attn.k_proj.weight": "KH W",
    "self_attn.v_proj.weight": "KH W",
    "self_attn.o_proj.weight": "W NH",
    "mlp.gate_proj.weight": "M W",
    "mlp.up_proj.weight": "M W",
    "mlp.down_proj.weight": "W M",
}
_LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")


_VISION_SIZES = ("hidden_size", "intermediate_size", "num_channels", "patch_size",
                 "image_size", "num_attention_heads", "num_hidden_layers")
_TEXT_SIZES = ("hidden_size", "intermediate_size", "vocab_size", "num_attention_heads",
               "num_key_value_heads", "head_dim", "num_hidden_layers")
_SIZE_FIELDS = (("projection_dim",), *(("vision_config", f) for f in _VISION_SIZES),
                *(("text_config", f) for f in _TEXT_SIZES))


def _field(cfg, path):
  """The positive int at `path` (("text_config", "hidden_size")) of a config dict."""
  value = cfg
  for k in path:
    value = value[k]
  if type(value) is not int or value <= 0:
    raise ValueError(f"config.json field {'.'.join(path)}={value!r} must be a positive "
                     "integer (it sets tensor shapes); fix config.json.")
  return value


def check_given_sizes(cfg: dict):
  """Checks the size fields that a raw config.json gives (absent ones take defaults)."""
  for path in _SIZE_FIELDS:
    node = cfg
    for k in path[:-1]:
      node = node.get(k) if isinstance(node, dict) else None
    if isinstance(node, dict) and node.get(path[-1]) is not None:
      _field(cfg, path)


def _sizes(cfg):
  """{symbol: (size, "config field(s)=values")} of a resolved config dict."""
  v = {f: _field(cfg, ("vision_config", f)) for f in _VISION_SIZES}
  v["projection_dim"] = _field(cfg, ("projection_dim",))  # Copied into vision_config.
  t = {f: _field(cfg, ("text_config", f)) for f in _TEXT_SIZES}
  if v["hidden_size"] % v["num_attention_heads"]:
    raise ValueError(f"config.json vision_config.hidden_size={v['hidden_size']} is not "
                     "divisible by vision_config.num_attention_heads="
                     f"{v['num_attention_heads']}; SigLIP splits its width evenly into "
                     "heads: fix config.json.")
  if t["num_attention_heads"] % t["num_key_value_heads"]:
    raise ValueError(f"config.json text_config.num_attention_heads="
                     f"{t['num_attention_heads']} is not a multiple of text_config."
                     f"num_key_value_heads={t['num_key_value_heads']}; Gemma shares each "
                     "KV head among equally many query heads: fix config.json.")
  grid = v["image_size"] // v["patch_size"]
  if not grid:
    raise ValueError(f"config.json vision_config.image_size={v['image_size']} is smaller "
                     f"than vision_config.patch_size={v['patch_size']}; it must hold at "
                     "least one patch: fix config.json.")
  heads, kv, hd = t["num_attention_heads"], t["num_key_value_heads"], t["head_dim"]
  return {
      "D": (v["hidden_size"], f"vision_config.hidden_size={v['hidden_size']}"),
      "F": (v["intermediate_size"],
            f"vision_config.intermediate_size={v['intermediate_size']}"),
      "C": (v["num_channels"], f"vision_config.num_channels={v['num_channels']}"),
      "p": (v["patch_size"], f"vision_config.patch_size={v['patch_size']}"),
      "P": (grid * grid, f"(vision_config.image_size={v['image_size']} // patch_size="
                         f"{v['patch_size']})**2"),
      "E": (v["projection_dim"], f"projection_dim={v['projection_dim']}"),
      "V": (t["vocab_size"], f"text_config.vocab_size={t['vocab_size']}"),
      "W": (t["hidden_size"], f"text_config.hidden_size={t['hidden_size']}"),
      "M": (t["intermediate_size"],
            f"text_config.intermediate_size={t['intermediate_size']}"),
      "NH": (heads * hd, f"text_config.num_attention_heads={heads} * head_dim={hd}"),
      "KH": (kv * hd, f"text_config.num_key_value_heads={kv} * head_dim={hd}"),
  }


def expected_shapes(cfg: dict) -> dict[str, tuple[tuple[int, ...], str]]:
  """{HF name (layers as `...layers.{i}.`): (shape, the config fields of its axes)}.

  Args:
    cfg: a config.json dict resolved by `hf_config.resolve` (defaults filled in).

  Raises:
    ValueError: a size field is not a positive integer, or sizes contradict each other.
  """
  sizes = _sizes(cfg)
  out = {}
  for prefix, table in (("", _GLOBAL), (VIT_LAYER, _VIT_LAYER), (LLM_LAYER, _LLM_LAYER)):
    for name, axes in table.items():
      axes = axes.split()
      out[prefix + name] = (tuple(sizes[a][0] for a in axes),
                            "[" + ", ".join(sizes[a][1] for a in axes) + "]")
  return out


def template(name: str) -> str:
  """The `expected_shapes` key of a canonical HF name (its layer index -> `{i}`)."""
  return _LAYER_INDEX.sub(".layers.{i}.", name, count=1)


def layer_note(name: str, cfg: dict) -> str:
  """For a layer tensor beyond the config's depth, why it is not expected; else ""."""
  m = _LAYER_INDEX.search(name)
  if m is None:
    return ""
  tower = "vision_config" if name.startswith(VIT) else "text_config"
  depth = cfg[tower]["num_hidden_layers"]
  if int(m[1]) < depth:
    return ""
  return (f" (layer {m[1]}, but config.json {tower}.num_hidden_layers={depth}: "
          f"layers 0..{depth - 1})")
