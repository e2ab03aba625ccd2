"""Hugging Face PaliGemma (1 and 2) safetensors <-> big_vision npz.

Every tensor is mapped by one `Rule`: one big_vision array <-> one or more HF
tensors. HF `nn.Linear` weights are [out, in]; big_vision kernels are [in, out].

  SigLIP (`vision_tower.vision_model.`, layer i = `encoder.layers.{i}.`):
    embeddings.patch_embedding.weight [D,3,p,p] (OIHW)  img/embedding/kernel [p,p,3,D]
    embeddings.position_embedding.weight [P,D]          img/pos_embedding [1,P,D]
    self_attn.{q,k,v}_proj.weight [N*H,D], bias [N*H]   .../{query,key,value}/kernel [D,N,H],
                                                          and bias [N,H]
    self_attn.out_proj.weight [D,N*H]                   .../out/kernel [N,H,D]
    layer_norm{1,2}, mlp.fc{1,2}                        LayerNorm_{0,1}, MlpBlock_0/Dense_{0,1}
    post_layernorm                                      img/Transformer/encoder_norm
  multi_modal_projector.linear [Dllm,D]                 img/head/kernel [D,Dllm]
  Gemma (`language_model.model.`, layer i = `layers.{i}.`):
    embed_tokens.weight [V,D]                           llm/embedder/input_embedding [V,D]
    self_attn.q_proj.weight [N*H,D]                     attn/q_einsum/w [N,D,H]
    self_attn.{k,v}_proj.weight [K*H,D]                 attn/kv_einsum/w [2,K,D,H]
    q,k,v when K == N                                   attn/qkv_einsum/w [3,N,D,H]
    self_attn.o_proj.weight [D,N*H]                     attn/attn_vec_einsum/w [N,H,D]
    mlp.{gate,up}_proj.weight [F,D]                     mlp/gating_einsum [2,D,F]
    mlp.down_proj.weight [D,F]                          mlp/linear [F,D]
    input_layernorm                                     pre_attention_norm/scale
    post_attention_layernorm (Gemma 1: before the MLP)  pre_ffw_norm/scale
    Gemma 2: post_attention_layernorm                   post_attention_norm/scale
             pre_/post_feedforward_layernorm            pre_ffw_norm, post_ffw_norm
    norm.weight                                         llm/final_norm/scale
  RMSNorm: both compute x * (1 + w), so the weights are copied unchanged. The LM
  head is tied to the embedding on both sides and is never stored separately.

Scanned big_vision layers carry the layer axis first (`img/Transformer/
encoderblock/...`, `llm/layers/...`, as in the released PaliGemma npz);
unscanned ones are `encoderblock_{i}` and `llm/layers/{i}`.

HF -> big_vision checks every tensor's name, dtype and shape (against the shape that
config.json implies, `hf_shapes`) before it writes anything.
"""
import dataclasses
import json
import math
import os
import re
from typing import Callable

import numpy as np

from big_vision_lite.hf import config as hfc
from big_vision_lite.hf import io as hf_io
from big_vision_lite.hf import processor as hf_processor
from big_vision_lite.hf import shapes as hf_shapes
from big_vision_lite.hf.config import Spec
from big_vision_lite.hf.shapes import LLM, LLM_LAYER, LM_HEAD, PROJ, VIT, VIT_LAYER

# (prefix found in files, canonical prefix); the first match wins.
_ALIASES = (
    ("model.vision_tower.vision_model.", VIT), ("model.vision_tower.", VIT),
    ("vision_tower.vision_model.", VIT), ("vision_tower.", VIT),
    ("model.multi_modal_projector.linear.", PROJ), (PROJ, PROJ),
    ("lm_head.weight", LM_HEAD), (LM_HEAD, LM_HEAD),
    ("model.language_model.", LLM), (LLM, LLM), ("language_model.", LLM),
)
# Non-parameter buffers that some exporters save; they are recomputed on load.
_BUFFERS = re.compile(r"(rotary_emb\.inv_freq|embeddings\.position_ids)$")
_LAYERS = {
    "img": (VIT_LAYER, "img/Transformer/encoderblock/", "img/Transformer/encoderblock_{i}/"),
    "llm": (LLM_LAYER, "llm/layers/", "llm/layers/{i}/"),
}


@dataclasses.dataclass(frozen=True)
class Rule:
  """One big_vision array <-> HF tensors (names relative to a layer if any)."""
  bv: str
  hf: tuple[str, ...]
  to_bv: Callable[..., np.ndarray]
  to_hf: Callable[[np.ndarray], tuple[np.ndarray, ...]]


def _same(name_bv, name_hf):
  return Rule(name_bv, (name_hf,), lambda w: w, lambda x: (x,))


def _linear(name_bv, name_hf):  # torch [out, in] <-> flax [in, out]
  return Rule(name_bv, (name_hf,), lambda w: w.T, lambda x: (x.T,))


def _stack(*xs):
  """np.stack into a C-ordered array (np.stack of transposed views is not)."""
  out = np.empty((len(xs), *xs[0].shape), xs[0].dtype)
  for i, x in enumerate(xs):
    out[i] = x
  return out


def _heads_in(n, h):
  """[n*h, D] (torch) <-> [n, D, h] (Gemma einsum)."""
  return (lambda w: w.reshape(n, h, w.shape[1]).transpose(0, 2, 1),
          lambda x: x.transpose(0, 2, 1).reshape(n * h, -1))


def vit_layer_rules(spec: Spec) -> list[Rule]:
  n = spec.vit_heads
  mha = "MultiHeadDotProductAttention_0/"
  rules = [_same("LayerNorm_0/scale", "layer_norm1.weight"),
           _same("LayerNorm_0/bias", "layer_norm1.bias"),
           _same("LayerNorm_1/scale", "layer_norm2.weight"),
           _same("LayerNorm_1/bias", "layer_norm2.bias"),
           _linear("MlpBlock_0/Dense_0/kernel", "mlp.fc1.weight"),
           _same("MlpBlock_0/Dense_0/bias", "mlp.fc1.bias"),
           _linear("MlpBlock_0/Dense_1/kernel", "mlp.fc2.weight"),
           _same("MlpBlock_0/Dense_1/bias", "mlp.fc2.bias")]
  for bv, hf in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
    rules.append(Rule(f"{mha}{bv}/kernel", (f"self_attn.{hf}.weight",),
                      lambda w: w.T.reshape(w.shape[1], n, -1),
                      lambda x: (x.reshape(x.shape[0], -1).T,)))
    rules.append(Rule(f"{mha}{bv}/bias", (f"self_attn.{hf}.bias",),
                      lambda b: b.reshape(n, -1), lambda x: (x.reshape(-1),)))
  rules.append(Rule(f"{mha}out/kernel", ("self_attn.out_proj.weight",),
                    lambda w: w.T.reshape(n, -1, w.shape[0]),
                    lambda x: (x.reshape(-1, x.shape[-1]).T,)))
  rules.append(_same(f"{mha}out/bias", "self_attn.out_proj.bias"))
  return rules


def llm_layer_rules(spec: Spec) -> list[Rule]:
  n, k, h = spec.llm_heads, spec.llm_kv_heads, spec.head_dim
  q_bv, q_hf = _heads_in(n, h)
  kv_bv, kv_hf = _heads_in(k, h)
  rules = [_same("pre_attention_norm/scale", "input_layernorm.weight")]
  if spec.gemma2:
    rules += [_same("post_attention_norm/scale", "post_attention_layernorm.weight"),
              _same("pre_ffw_norm/scale", "pre_feedforward_layernorm.weight"),
              _same("post_ffw_norm/scale", "post_feedforward_layernorm.weight")]
  else:
    rules.append(_same("pre_ffw_norm/scale", "post_attention_layernorm.weight"))
  qkv = tuple(f"self_attn.{x}_proj.weight" for x in "qkv")
  if n == k:
    rules.append(Rule("attn/qkv_einsum/w", qkv,
                      lambda q, k_, v: _stack(q_bv(q), q_bv(k_), q_bv(v)),
                      lambda x: (q_hf(x[0]), q_hf(x[1]), q_hf(x[2]))))
  else:
    rules.append(Rule("attn/q_einsum/w", qkv[:1], q_bv, lambda x: (q_hf(x),)))
    rules.append(Rule("attn/kv_einsum/w", qkv[1:],
                      lambda k_, v: _stack(kv_bv(k_), kv_bv(v)),
                      lambda x: (kv_hf(x[0]), kv_hf(x[1]))))
  rules.append(Rule("attn/attn_vec_einsum/w", ("self_attn.o_proj.weight",),
                    lambda w: w.T.reshape(n, h, w.shape[0]),
                    lambda x: (x.reshape(n * h, -1).T,)))
  rules.append(Rule("mlp/gating_einsum", ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
                    lambda g, u: _stack(g.T, u.T), lambda x: (x[0].T, x[1].T)))
  rules.append(_linear("mlp/linear", "mlp.down_proj.weight"))
  return rules


def global_rules() -> list[Rule]:
  emb = VIT + "embeddings."
  return [
      Rule("img/embedding/kernel", (emb + "patch_embedding.weight",),
           lambda w: w.transpose(2, 3, 1, 0), lambda x: (x.transpose(3, 2, 0, 1),)),
      _same("img/embedding/bias", emb + "patch_embedding.bias"),
      Rule("img/pos_embedding", (emb + "position_embedding.weight",),
           lambda w: w[None], lambda x: (x[0],)),
      _same("img/Transformer/encoder_norm/scale", VIT + "post_layernorm.weight"),
      _same("img/Transformer/encoder_norm/bias", VIT + "post_layernorm.bias"),
      _linear("img/head/kernel", PROJ + "weight"),
      _same("img/head/bias", PROJ + "bias"),
      _same("llm/embedder/input_embedding", LLM + "embed_tokens.weight"),
      _same("llm/final_norm/scale", LLM + "norm.weight"),
  ]


def plan(spec: Spec, scan: bool):
  """Yields `(bv_key, rule, groups, stacked)` for every big_vision array.

  `groups` holds one tuple of full HF names per array slice: one slice for a
  global or unscanned array, one per layer (in order) for a scanned one.
  """
  for rule in global_rules():
    yield rule.bv, rule, [rule.hf], False
  for tower, rules, depth in (("img", vit_layer_rules(spec), spec.vit_depth),
                              ("llm", llm_layer_rules(spec), spec.llm_depth)):
    hf_fmt, bv_scan, bv_layer = _LAYERS[tower]
    for rule in rules:
      groups = [tuple(hf_fmt.format(i=i) + n for n in rule.hf) for i in range(depth)]
      if scan:
        yield bv_scan + rule.bv, rule, groups, True
      else:
        for i in range(depth):
          yield bv_layer.format(i=i) + rule.bv, rule, [groups[i]], False


def hf_layout(shapes: dict[str, tuple], steps=None) -> list[tuple[str, str, tuple]]:
  """`(bv_key, hf_name, hf_shape)` of every HF tensor made from params of `shapes`.

  Args:
    shapes: {bv key: shape} of big_vision params (scanned or not).
    steps: `list(plan(...))` for them (computed when None).
  """
  if steps is None:
    steps = plan(hfc.spec_from_bv_shapes(shapes), "llm/layers/attn/attn_vec_einsum/w" in shapes)
  out = []
  for bv_key, rule, groups, stacked in steps:
    shape = shapes[bv_key][1:] if stacked else shapes[bv_key]
    # A zero-stride stand-in: to_hf only makes views, so this costs no memory.
    probe = np.lib.stride_tricks.as_strided(np.zeros((), np.float32), shape, (0,) * len(shape))
    hf_shapes = [x.shape for x in rule.to_hf(probe)]
    out += [(bv_key, n, s) for g in groups for n, s in zip(g, hf_shapes)]
  return out


def canonical_name(key: str) -> str | None:
  """Maps an HF tensor name in any known layout to ours; None if unknown."""
  for prefix, canon in _ALIASES:
    if key.startswith(prefix):
      return canon + key[len(prefix):]
  return None


def hf_to_bv(src_dir: str, dst: str, *, dtype: str | None = None, scan: bool = True) -> dict:
  """Converts an HF PaliGemma directory into a big_vision npz, tensor by tensor.

  Args:
    src_dir: directory with `config.json` and `*.safetensors` (sharded or not).
    dst: output `.npz` path (written atomically; keys `params/img/...`, `params/llm/...`).
    dtype: output dtype ("float32", "bfloat16", "float16"); None keeps the source's.
    scan: stack layers (layer axis first), as in the released checkpoints.

  Returns:
    the HF config dict that was read, with transformers' defaults filled in.

  Raises:
    KeyError: a tensor is unknown, duplicated or missing (the message names it).
    ValueError: a tensor's dtype is not floating point or its shape is not the one its
      config.json implies (named with its file, both shapes and the config fields), or
      config.json is invalid. Nothing is written then.
  """
  if dtype is not None:
    hf_io.cast(np.zeros(()), dtype)  # Validates the name before any work.
  cfg = hfc.resolve(hf_io.read_json(os.path.join(src_dir, "config.json")))
  want = hf_shapes.expected_shapes(cfg)  # Also checks the size fields.
  spec = hfc.spec_from_hf_config(cfg)
  src = hf_io.SafetensorsDir(src_dir)
  found = {}  # canonical name -> name in the file
  for key in src.keys():
    if _BUFFERS.search(key):
      continue
    canon = canonical_name(key)
    if canon is None:
      raise KeyError(f"Unknown tensor '{key}' in {src.file_of(key)}: not a PaliGemma "
                     f"parameter (known prefixes: {[a for a, _ in _ALIASES]}).")
    if canon in found:
      raise KeyError(f"Tensor '{key}' in {src.file_of(key)} duplicates '{found[canon]}' "
                     f"in {src.file_of(found[canon])}; keep one of them.")
    found[canon] = key
  steps = list(plan(spec, scan))
  expected = {n for _, _, groups, _ in steps for g in groups for n in g}
  if LM_HEAD in found:
    expected.add(LM_HEAD)
  unknown = sorted(set(found) - expected)
  if unknown:
    key = found[unknown[0]]
    raise KeyError(f"Unknown tensor '{key}' in {src.file_of(key)}: not expected for its "
                   f"config.json{hf_shapes.layer_note(unknown[0], cfg)} ({spec}); "
                   f"{len(unknown)} unmapped: {unknown[:5]}.")
  missing = sorted(expected - set(found))
  if missing:
    shape, why = want[hf_shapes.template(missing[0])]
    raise KeyError(f"Missing tensor '{missing[0]}' (or an alias of it; shape {shape} = "
                   f"{why}) in {src_dir}: {len(missing)} missing: {missing[:5]}. Files: "
                   f"{src.files}; re-download or re-convert the checkpoint.")
  for canon in sorted(expected):  # Dtypes and shapes, before anything is written.
    key = found[canon]
    shape, why = want[hf_shapes.template(canon)]
    got = src.get(key, floating=True).shape
    if got != shape:
      raise ValueError(f"Tensor '{key}' in {src.file_of(key)} has shape {got}, but its "
                       f"config.json implies {shape} = {why}; the weights do not match "
                       "config.json: fix it, or re-download or re-convert the checkpoint.")
  if LM_HEAD in found:
    _check_tied_head(src, found, cfg)

  def convert(rule, names):
    out = rule.to_bv(*(src.get(found[n]) for n in names))
    return out if dtype is None else hf_io.cast(out, dtype)

  with hf_io.NpzWriter(dst) as out:  # Keys prefixed `params/` as in the released npz.
    for bv_key, rule, groups, stacked in steps:
      if stacked:
        out.write_layers("params/" + bv_key, len(groups), (convert(rule, g) for g in groups))
      else:
        out.write("params/" + bv_key, convert(rule, groups[0]))
  return cfg


def _check_tied_head(src, found, cfg):
  tie = cfg.get("tie_word_embeddings", True)
  head = src.get(found[LM_HEAD], floating=True)
  emb = src.get(found[LLM + "embed_tokens.weight"], floating=True)
  if not tie or head.shape != emb.shape or not np.array_equal(head, emb):
    raise ValueError(f"'{found[LM_HEAD]}' in {src.file_of(found[LM_HEAD])} differs from "
                     f"the token embedding (tie_word_embeddings={tie}); big_vision ties "
                     "the LM head to it, so an untied head cannot be converted.")


def bv_to_hf(src: str, dst_dir: str, *, dtype: str | None = None,
             config_overrides: dict | None = None, max_shard_bytes: int = 5 << 30,
             tokenizer: str | None = None) -> dict:
  """Converts a big_vision PaliGemma npz into an HF directory, tensor by tensor.

  Args:
    src: big_vision `.npz` (scanned or not, keys optionally prefixed `params/`).
    dst_dir: output directory: config.json + model.safetensors (or shards + index).
    dtype: output dtype ("float32", "bfloat16", "float16"); None keeps the source's.
    config_overrides: config.json fields that the tensors do not determine (e.g. an
      original HF config.json as a dict); merged into the inferred config, and
      checked against the tensors.
    max_shard_bytes: maximum size of one safetensors shard.
    tokenizer: a SentencePiece `.model`; then the tokenizer, processor and generation
      config are written too (`hf_processor`), and image_token_index is the processor's
      `<image>` id.

  Returns:
    the config dict written to `config.json`.
  """
  with hf_io.NpzReader(src) as reader:
    shapes = reader.shapes()
    scan = "llm/layers/attn/attn_vec_einsum/w" in shapes
    spec = hfc.spec_from_bv_shapes(shapes)
    steps = list(plan(spec, scan))
    wanted = {s[0] for s in steps}
    for key in sorted(set(shapes) ^ wanted):
      if key in shapes:
        raise KeyError(f"Unknown array '{key}' in {src}: not a PaliGemma parameter "
                       f"for {spec}.")
      raise KeyError(f"Missing array '{key}' in {src} (needed for {spec}).")
    out_dtype = {}
    for key in shapes:
      out_dtype[key] = reader.dtype(key) if dtype is None else hf_io.cast(
          np.zeros((), reader.dtype(key)), dtype).dtype
    processor = None
    if tokenizer is not None:
      patch, num_patches = shapes["img/embedding/kernel"][0], shapes["img/pos_embedding"][1]
      processor = hf_processor.make_processor(tokenizer, math.isqrt(num_patches) * patch,
                                              num_patches)
      given = (config_overrides or {}).get("image_token_index")
      if given is not None and given != processor.image_token_id:
        raise ValueError(f"image_token_index={given} in the overrides, but the tokenizer "
                         f"{tokenizer} puts <image> at {processor.image_token_id}.")
      config_overrides = dict(config_overrides or {},
                              image_token_index=processor.image_token_id)
    cfg = hfc.hf_config(shapes, config_overrides,
                        dtype=str(out_dtype["llm/embedder/input_embedding"]))
    entries = [(name, shape, out_dtype[bv_key])
               for bv_key, name, shape in hf_layout(shapes, steps)]

    def arrays():
      for bv_key, rule, groups, stacked in steps:
        slices = reader.iter_layers(bv_key) if stacked else [reader.array(bv_key)]
        for names, x in zip(groups, slices):
          for name, y in zip(names, rule.to_hf(x)):
            yield name, y if dtype is None else hf_io.cast(y, dtype)
          del x, y  # Free this layer before the next one is read.

    os.makedirs(dst_dir, exist_ok=True)
    hf_io.write_safetensors(dst_dir, entries, arrays(), max_shard_bytes)
  with open(os.path.join(dst_dir, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2, sort_keys=True)
  if processor is not None:
    hf_processor.save_processor_files(dst_dir, processor)
  return cfg
