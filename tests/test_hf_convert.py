"""HF PaliGemma safetensors <-> big_vision npz: key coverage, round trips, parity, errors.

Tiny random HF models (every weight randomised, norms included) are saved with
`save_pretrained`, converted, and compared tensor by tensor and by logits.
"""
import copy
import json
import os
import re
import shutil
import tracemalloc

import jax
import ml_dtypes
import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from big_vision_lite import checkpoint
from big_vision_lite.hf import config as hf_config
from big_vision_lite.hf import convert as hf_convert
from big_vision_lite.hf import io as hf_io
from big_vision_lite.hf import shapes as hf_shapes
from big_vision_lite.models import paligemma
from tools import convert_checkpoint

IMAGE_TOKEN = 299
VOCAB = 300
# name -> (text model_type, text config kwargs)
CONFIGS = {
    "gemma_mqa": ("gemma", dict(num_attention_heads=4, num_key_value_heads=1)),
    "gemma_mha": ("gemma", dict(num_attention_heads=4, num_key_value_heads=4)),
    "gemma2_gqa": ("gemma2", dict(num_attention_heads=4, num_key_value_heads=2,
                                  query_pre_attn_scalar=24, sliding_window=8,
                                  attn_logit_softcapping=4.0, final_logit_softcapping=5.0)),
}


def make_hf_model(name, seed=0, **text_overrides):
  """A tiny PaliGemma with all weights random (norm weights too)."""
  kind, kw = CONFIGS[name]
  kw = dict(kw, **text_overrides)
  vc = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=2, num_attention_heads=2,
                                       image_size=28, patch_size=14, vision_use_head=False)
  tc_cls = transformers.Gemma2Config if kind == "gemma2" else transformers.GemmaConfig
  tc = tc_cls(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              head_dim=16, **kw)
  cfg = transformers.PaliGemmaConfig(vision_config=vc, text_config=tc,
                                     image_token_index=IMAGE_TOKEN, vocab_size=VOCAB,
                                     projection_dim=64, hidden_size=64)
  torch.manual_seed(seed)
  model = transformers.PaliGemmaForConditionalGeneration(cfg).eval()
  with torch.no_grad():
    for pname, p in model.named_parameters():
      if re.search(r"(layer_norm\d|post_layernorm)\.weight$", pname):  # LayerNorm: w
        p.copy_(1 + 0.1 * torch.randn_like(p))
      elif pname.endswith("norm.weight"):  # Gemma RMSNorm: 1 + w
        p.copy_(0.1 * torch.randn_like(p))
      else:
        p.copy_(0.2 * torch.randn_like(p))
  return model


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
  """{name: (model, directory written by save_pretrained)}."""
  out = {}
  for name in CONFIGS:
    d = str(tmp_path_factory.mktemp(name))
    model = make_hf_model(name)
    model.save_pretrained(d)
    out[name] = (model, d)
  return out


def canonical_state(directory):
  """{canonical HF name: np array} of all tensors in a safetensors directory."""
  src = hf_io.SafetensorsDir(directory)
  return {hf_convert.canonical_name(k): np.array(src.get(k)) for k in src.keys()}


def npz_arrays(path):
  """{key without the `params/` prefix: array} (bfloat16 stays 2-byte void)."""
  with np.load(path, allow_pickle=False) as z:
    assert all(k.startswith("params/") for k in z.files), z.files
    return {k[len("params/"):]: z[k] for k in z.files}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("scan", [True, False])
def test_every_hf_tensor_mapped_once_and_round_trips(hf_dirs, tmp_path, name, scan):
  model, src = hf_dirs[name]
  cfg = hf_convert.hf_to_bv(src, str(tmp_path / "a.npz"), scan=scan)
  spec = hf_config.spec_from_hf_config(cfg)
  names = [n for _, _, groups, _ in hf_convert.plan(spec, scan) for g in groups for n in g]
  before = canonical_state(src)
  assert len(names) == len(set(names)) and set(names) == set(before)
  # Every model parameter except the tied head is in the file.
  assert len(before) == len(list(model.parameters()))

  out = str(tmp_path / "hf")
  hf_convert.bv_to_hf(str(tmp_path / "a.npz"), out, config_overrides=cfg)
  after = canonical_state(out)
  assert set(after) == set(before)
  for k, v in before.items():
    np.testing.assert_array_equal(after[k], v, err_msg=k)


def test_released_layout_names_and_shapes(hf_dirs, tmp_path):
  _, src = hf_dirs["gemma_mqa"]
  hf_convert.hf_to_bv(src, str(tmp_path / "a.npz"))
  shapes = {k: v.shape for k, v in npz_arrays(str(tmp_path / "a.npz")).items()}
  enc = "img/Transformer/encoderblock/"
  assert shapes["img/embedding/kernel"] == (14, 14, 3, 32)
  assert shapes["img/pos_embedding"] == (1, 4, 32)
  assert shapes[enc + "MultiHeadDotProductAttention_0/query/kernel"] == (2, 32, 2, 16)
  assert shapes[enc + "MultiHeadDotProductAttention_0/out/kernel"] == (2, 2, 16, 32)
  assert shapes[enc + "MlpBlock_0/Dense_0/kernel"] == (2, 32, 64)
  assert shapes["img/head/kernel"] == (32, 64)
  assert shapes["llm/layers/attn/q_einsum/w"] == (2, 4, 64, 16)
  assert shapes["llm/layers/attn/kv_einsum/w"] == (2, 2, 1, 64, 16)
  assert shapes["llm/layers/attn/attn_vec_einsum/w"] == (2, 4, 16, 64)
  assert shapes["llm/layers/mlp/gating_einsum"] == (2, 2, 64, 128)
  assert shapes["llm/layers/mlp/linear"] == (2, 128, 64)
  assert shapes["llm/embedder/input_embedding"] == (VOCAB, 64)
  assert not any("lm_head" in k for k in shapes)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_npz_hf_npz_bit_exact_and_loads_in_transformers(hf_dirs, tmp_path, dtype):
  model, src = hf_dirs["gemma2_gqa"]
  cfg = hf_convert.hf_to_bv(src, str(tmp_path / "a.npz"), dtype=dtype)
  first = npz_arrays(str(tmp_path / "a.npz"))
  if dtype == "bfloat16":  # big_vision convention: 2-byte void on disk.
    assert first["llm/final_norm/scale"].dtype == np.dtype("V2")
  out = str(tmp_path / "hf")
  written = hf_convert.bv_to_hf(str(tmp_path / "a.npz"), out, config_overrides=cfg,
                                max_shard_bytes=100_000)  # Forces several shards.
  assert os.path.exists(os.path.join(out, "model.safetensors.index.json"))
  assert written["dtype"] == dtype and written["text_config"]["sliding_window"] == 8
  hf_convert.hf_to_bv(out, str(tmp_path / "b.npz"))
  second = npz_arrays(str(tmp_path / "b.npz"))
  assert set(first) == set(second)
  for k in first:
    assert first[k].dtype == second[k].dtype, k
    assert first[k].tobytes() == second[k].tobytes(), k

  loaded = transformers.PaliGemmaForConditionalGeneration.from_pretrained(
      out, dtype=torch.float32).eval()
  assert loaded.lm_head.weight.data_ptr() == (
      loaded.model.language_model.embed_tokens.weight.data_ptr())
  ref_model = copy.deepcopy(model)
  with torch.no_grad():  # The reference sees the same rounded weights.
    for p in ref_model.parameters():
      p.copy_(p.to(getattr(torch, dtype)).float())
  ids, pixels, token_types, _ = _inputs()
  with torch.no_grad():
    ref = ref_model(input_ids=ids, pixel_values=pixels, token_type_ids=token_types).logits
    got = loaded(input_ids=ids, pixel_values=pixels, token_type_ids=token_types).logits
  np.testing.assert_array_equal(got.numpy(), ref.numpy())


def test_inferred_config_loads_without_overrides(hf_dirs, tmp_path):
  model, src = hf_dirs["gemma_mha"]
  hf_convert.hf_to_bv(src, str(tmp_path / "a.npz"), scan=False)
  out = str(tmp_path / "hf")
  cfg = hf_convert.bv_to_hf(str(tmp_path / "a.npz"), out, dtype="bfloat16")
  assert cfg["image_token_index"] == VOCAB  # Out of vocab: never looked up.
  with safe_open(os.path.join(out, "model.safetensors"), "np") as f:
    assert "language_model.lm_head.weight" not in f.keys()
  loaded = transformers.PaliGemmaForConditionalGeneration.from_pretrained(out)
  assert loaded.config.text_config.num_key_value_heads == 4
  emb = model.model.language_model.embed_tokens.weight.detach().numpy()
  np.testing.assert_array_equal(
      loaded.model.language_model.embed_tokens.weight.detach().float().numpy(),
      emb.astype(ml_dtypes.bfloat16).astype(np.float32))


def test_cli_both_directions(hf_dirs, tmp_path, capsys):
  _, src = hf_dirs["gemma_mqa"]
  npz = str(tmp_path / "a.npz")
  convert_checkpoint.main([src, npz, "--dtype", "bfloat16", "--no-scan"])
  printed = json.loads(capsys.readouterr().out.splitlines()[-1])
  # Two layers of mlp_dim 64: not big_vision's "mu" (1 layer, 128), so sizes are explicit.
  assert printed["img"] == dict(width=32, depth=2, mlp_dim=64, num_heads=2,
                                patch_size=[14, 14], pool_type="none", scan=False)
  assert printed["llm"]["num_kv_heads"] == 1 and printed["llm"]["vocab_size"] == VOCAB
  assert "llm/layers/0/attn/q_einsum/w" in npz_arrays(npz)
  with open(os.path.join(src, "config.json")) as f:
    hub_like = json.load(f)  # Hub files carry a stale top-level size and torch_dtype.
  hub_like.update(hidden_size=2048, vocab_size=257152, torch_dtype="bfloat16")
  hub_like["text_config"]["torch_dtype"] = "bfloat16"
  with open(tmp_path / "hub_config.json", "w") as f:
    json.dump(hub_like, f)
  convert_checkpoint.main([npz, str(tmp_path / "hf"), "--dtype", "float32",
                           "--hf_config", str(tmp_path / "hub_config.json")])
  with open(tmp_path / "hf" / "config.json") as f:
    written = json.load(f)
  assert written["image_token_index"] == IMAGE_TOKEN and written["dtype"] == "float32"
  assert "torch_dtype" not in written["text_config"]
  loaded = transformers.PaliGemmaForConditionalGeneration.from_pretrained(tmp_path / "hf")
  assert loaded.model.language_model.embed_tokens.weight.dtype == torch.float32


def _inputs():
  """HF inputs for 2 rows: 4 image placeholders + 9 text tokens, prefix lengths 4 and 2."""
  rng = np.random.RandomState(1)
  image = rng.uniform(-1, 1, (2, 28, 28, 3)).astype(np.float32)
  text = rng.randint(1, IMAGE_TOKEN, (2, 9)).astype(np.int32)
  mask_ar = np.array([[0] * 4 + [1] * 5, [0] * 2 + [1] * 7], np.int32)
  ids = np.concatenate([np.full((2, 4), IMAGE_TOKEN), text], axis=1)
  token_types = np.concatenate([np.zeros((2, 4), np.int32), mask_ar], axis=1)
  pixels = torch.from_numpy(image.transpose(0, 3, 1, 2).copy())
  return (torch.from_numpy(ids).long(), pixels, torch.from_numpy(token_types).long(),
          (image, text, mask_ar))


def _write_safetensors(directory, tensors, config):
  os.makedirs(directory, exist_ok=True)
  save_file(tensors, os.path.join(directory, "model.safetensors"))
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config, f)


def test_unknown_and_missing_keys_name_key_and_file(hf_dirs, tmp_path):
  _, src = hf_dirs["gemma_mqa"]
  with open(os.path.join(src, "config.json")) as f:
    config = json.load(f)
  tensors = load_file(os.path.join(src, "model.safetensors"))
  extra = dict(tensors, **{"model.vision_tower.head.probe": torch.zeros(3)})
  _write_safetensors(str(tmp_path / "extra"), extra, config)
  with pytest.raises(KeyError, match=r"model\.vision_tower\.head\.probe.*extra/model"):
    hf_convert.hf_to_bv(str(tmp_path / "extra"), str(tmp_path / "x.npz"))
  stray = dict(tensors, **{"text_encoder.weight": torch.zeros(3)})
  _write_safetensors(str(tmp_path / "stray"), stray, config)
  with pytest.raises(KeyError, match=r"Unknown tensor 'text_encoder\.weight' in .*stray/"):
    hf_convert.hf_to_bv(str(tmp_path / "stray"), str(tmp_path / "x.npz"))
  key = "language_model.model.layers.1.mlp.up_proj.weight"
  missing = {k: v for k, v in tensors.items() if hf_convert.canonical_name(k) != key}
  _write_safetensors(str(tmp_path / "missing"), missing, config)
  with pytest.raises(KeyError, match=rf"Missing tensor '{key}'.*missing"):
    hf_convert.hf_to_bv(str(tmp_path / "missing"), str(tmp_path / "x.npz"))
  untied = dict(tensors, **{"lm_head.weight": torch.zeros(VOCAB, 64)})
  _write_safetensors(str(tmp_path / "untied"), untied, config)
  with pytest.raises(ValueError, match=r"'lm_head\.weight' in .*untied/.*differs"):
    hf_convert.hf_to_bv(str(tmp_path / "untied"), str(tmp_path / "x.npz"))
  assert not os.path.exists(tmp_path / "x.npz") and not os.path.exists(tmp_path / "x.npz.tmp")


def test_npz_errors(hf_dirs, tmp_path):
  _, src = hf_dirs["gemma2_gqa"]
  cfg = hf_convert.hf_to_bv(src, str(tmp_path / "a.npz"))
  arrays = npz_arrays(str(tmp_path / "a.npz"))
  np.savez(tmp_path / "extra.npz", **arrays, **{"llm/lm_head": np.zeros(3)})
  with pytest.raises(KeyError, match=r"Unknown array 'llm/lm_head' in .*extra\.npz"):
    hf_convert.bv_to_hf(str(tmp_path / "extra.npz"), str(tmp_path / "o"))
  # Compressed members are streamed; a train state's non-params trees are not read.
  np.savez_compressed(tmp_path / "zipped.npz", **{"opt/mu": np.zeros(3)},
                      **{"params/" + k: v for k, v in arrays.items()})
  hf_convert.bv_to_hf(str(tmp_path / "zipped.npz"), str(tmp_path / "z"), config_overrides=cfg)
  want, got = canonical_state(src), canonical_state(str(tmp_path / "z"))
  assert got.keys() == want.keys()
  for k, v in want.items():
    np.testing.assert_array_equal(got[k], v, err_msg=k)
  with pytest.raises(ValueError, match=r"Gemma 2 of width 64.*query_pre_attn_scalar"):
    hf_convert.bv_to_hf(str(tmp_path / "a.npz"), str(tmp_path / "o"))
  bad = dict(cfg, text_config=dict(cfg["text_config"], intermediate_size=99))
  with pytest.raises(ValueError, match=r"text_config\.intermediate_size=99 disagrees.*128"):
    hf_convert.bv_to_hf(str(tmp_path / "a.npz"), str(tmp_path / "o"), config_overrides=bad)
  shutil.rmtree(tmp_path / "o", ignore_errors=True)


def _our_logits(npz, model_cfg, image, text, mask_ar):
  model = paligemma.Model(**model_cfg)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), image, text, mask_ar)
  init = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes["params"])
  params = paligemma.load(init, npz, model_cfg)
  logits, _ = model.apply({"params": params}, image, text, mask_ar)
  return np.asarray(logits)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_transformers(hf_dirs, tmp_path, name):
  """HF -> npz -> paligemma.Model gives HF's text logits (prefix-LM mask, f32)."""
  model, src = hf_dirs[name]
  scan = name != "gemma_mqa"  # The unscanned layout goes through the loader's unstack.
  cfg = hf_convert.hf_to_bv(src, str(tmp_path / "a.npz"), scan=scan)
  model_cfg = hf_config.model_config(cfg)
  ids, pixels, token_types, (image, text, mask_ar) = _inputs()
  with torch.no_grad():
    ref = model(input_ids=ids, pixel_values=pixels, token_type_ids=token_types).logits
  ref = ref.numpy()[:, -text.shape[1]:]  # HF also scores the image placeholders.
  got = _our_logits(str(tmp_path / "a.npz"), model_cfg, image, text, mask_ar)
  diff = np.abs(got - ref).max()
  print(f"{name}: max |logits - transformers| = {diff:.2e} (max |logit| "
        f"{np.abs(ref).max():.2f})")
  assert diff <= 1e-4
  if name == "gemma2_gqa":  # The inputs exercise each Gemma 2 feature: the check bites.
    for off in (dict(sliding_window=64), dict(attn_logit_softcapping=None),
                dict(final_logit_softcapping=None)):
      other = make_hf_model(name, **off)
      other.load_state_dict(model.state_dict())
      with torch.no_grad():
        changed = other(input_ids=ids, pixel_values=pixels, token_type_ids=token_types).logits
      assert np.abs(changed.numpy()[:, -text.shape[1]:] - ref).max() > 1e-2, off


def _hf_logits(directory):
  ids, pixels, token_types, (_, text, _) = _inputs()
  model = transformers.PaliGemmaForConditionalGeneration.from_pretrained(directory).eval()
  with torch.no_grad():
    out = model(input_ids=ids, pixel_values=pixels, token_type_ids=token_types).logits
  return out.numpy()[:, -text.shape[1]:]


@pytest.mark.parametrize("caps", [
    dict(attn_logit_softcapping=4.0, final_logit_softcapping=5.0),
    # 0.0 is "off": written as null (transformers would divide by 0); an explicit null
    # counts as given for a size that is not released.
    dict(attn_logit_softcapping=None, final_logit_softcapping=0.0),
])
def test_export_without_window_matches_full_attention(hf_dirs, tmp_path, caps):
  """Our Gemma 2 attends fully by default (as big_vision): the export must too, on a
  sequence (13 tokens) longer than the tiny model's window (8)."""
  _, src = hf_dirs["gemma2_gqa"]
  npz = str(tmp_path / "a.npz")
  hf_cfg = hf_convert.hf_to_bv(src, npz)
  windowed = hf_config.model_config(hf_cfg)
  assert windowed["llm"]["sliding_window"] == 8
  llm = dict(windowed["llm"], sliding_window=None,
             attn_logits_softcap=caps["attn_logit_softcapping"] or 0,
             final_logits_softcap=caps["final_logit_softcapping"] or 0)
  overrides = dict(image_token_index=IMAGE_TOKEN,
                   text_config=dict(query_pre_attn_scalar=24, **caps))
  out = str(tmp_path / "hf")
  cfg = hf_convert.bv_to_hf(npz, out, config_overrides=overrides)
  tc = cfg["text_config"]
  assert tc["sliding_window"] is None and tc["layer_types"] == ["full_attention"] * 2
  assert tc["final_logit_softcapping"] == (caps["final_logit_softcapping"] or None)
  assert tc["attn_logit_softcapping"] == caps["attn_logit_softcapping"]
  _, _, _, (image, text, mask_ar) = _inputs()
  ours = _our_logits(npz, dict(windowed, llm=llm), image, text, mask_ar)
  ref = _hf_logits(out)
  assert np.abs(ours - ref).max() <= 1e-4
  with_window = _our_logits(npz, windowed, image, text, mask_ar)
  assert np.abs(with_window - ours).max() > 1e-2  # The window matters on these inputs.
  assert hf_config.model_config(cfg)["llm"]["sliding_window"] is None


def test_cli_model_cfg_fixes_gemma2_fields(hf_dirs, tmp_path, capsys):
  """--model_cfg: the soft-caps, window and query scale come from our model config (a
  PaliGemma 2 transfer's final_logits_softcap=0 is exported as null); same logits."""
  _, src = hf_dirs["gemma2_gqa"]
  npz = str(tmp_path / "a.npz")
  model_cfg = hf_config.model_config(hf_convert.hf_to_bv(src, npz))
  model_cfg["llm"].update(final_logits_softcap=0.0, sliding_window=0)
  out, extra = str(tmp_path / "hf"), str(tmp_path / "extra.json")
  with open(extra, "w") as f:  # Merged over the fields from --model_cfg.
    json.dump(dict(image_token_index=IMAGE_TOKEN), f)
  convert_checkpoint.main([npz, out, "--model_cfg", json.dumps(model_cfg),
                           "--hf_config", extra])
  capsys.readouterr()
  with open(os.path.join(out, "config.json")) as f:
    tc = json.load(f)["text_config"]
  assert (tc["query_pre_attn_scalar"], tc["attn_logit_softcapping"]) == (24, 4.0)
  assert tc["final_logit_softcapping"] is None and tc["sliding_window"] is None
  assert tc["layer_types"] == ["full_attention"] * 2
  _, _, _, (image, text, mask_ar) = _inputs()
  ours = _our_logits(npz, model_cfg, image, text, mask_ar)
  np.testing.assert_allclose(ours, _hf_logits(out), atol=1e-4, rtol=0)


def test_released_gemma2_exports_full_attention_and_zero_cap_as_null():
  shapes = jax.eval_shape(paligemma.Model(
      img=dict(variant="mu/14"), llm=dict(variant="gemma2_2b", vocab_size=300, depth=2)).init,
      jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 28, 28, 3), np.float32),
      jax.ShapeDtypeStruct((1, 2), np.int32), jax.ShapeDtypeStruct((1, 2), np.int32))
  flat = {k: v.shape for k, v in checkpoint.flatten(shapes["params"]).items()}
  # 2 layers: not a released size, so the scalar and caps must be given.
  with pytest.raises(ValueError, match=r"\['final_logit_softcapping'\] are unknown"):
    hf_config.hf_config(flat, dict(text_config=dict(query_pre_attn_scalar=256,
                                                    attn_logit_softcapping=50.0)))
  cfg = hf_config.hf_config(flat, dict(text_config=dict(
      query_pre_attn_scalar=256, attn_logit_softcapping=50.0, final_logit_softcapping=0.0)))
  assert cfg["text_config"]["final_logit_softcapping"] is None
  assert transformers.PaliGemmaConfig.from_dict(cfg).text_config.final_logit_softcapping is None


def test_hub_and_native_key_layouts_convert_alike(hf_dirs, tmp_path):
  """Hub files (`vision_tower.vision_model.`, `language_model.model.`) and the layout of
  transformers' modules (`model.vision_tower.`, `lm_head` included) give the same npz."""
  _, src = hf_dirs["gemma_mqa"]
  with open(os.path.join(src, "config.json")) as f:
    config = json.load(f)
  tensors = {hf_convert.canonical_name(k): v
             for k, v in load_file(os.path.join(src, "model.safetensors")).items()}
  native = {k.replace("vision_tower.vision_model.", "model.vision_tower.")
            .replace("language_model.model.", "model.language_model.")
            .replace("multi_modal_projector.", "model.multi_modal_projector."): v
            for k, v in tensors.items()}
  native["lm_head.weight"] = tensors["language_model.model.embed_tokens.weight"].clone()
  native["model.language_model.rotary_emb.inv_freq"] = torch.ones(8)  # A buffer: skipped.
  results = []
  for layout, state in (("hub", tensors), ("native", native)):
    _write_safetensors(str(tmp_path / layout), state, config)
    hf_convert.hf_to_bv(str(tmp_path / layout), str(tmp_path / f"{layout}.npz"))
    results.append(npz_arrays(str(tmp_path / f"{layout}.npz")))
  assert set(results[0]) == set(results[1])
  for k in results[0]:
    np.testing.assert_array_equal(results[0][k], results[1][k], err_msg=k)


def test_conversion_streams_tensor_by_tensor(tmp_path):
  """Peak numpy/Python memory stays far below the checkpoint size in both directions."""
  vc = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=1, num_attention_heads=2,
                                       image_size=28, patch_size=14, vision_use_head=False)
  tc = transformers.GemmaConfig(vocab_size=1024, hidden_size=256, intermediate_size=2048,
                                num_hidden_layers=6, num_attention_heads=4,
                                num_key_value_heads=1, head_dim=64)
  cfg = transformers.PaliGemmaConfig(vision_config=vc, text_config=tc, image_token_index=0,
                                     vocab_size=1024, projection_dim=256, hidden_size=256)
  transformers.PaliGemmaForConditionalGeneration(cfg).save_pretrained(str(tmp_path / "hf"))
  total = os.path.getsize(tmp_path / "hf" / "model.safetensors")  # About 40 MB.
  tracemalloc.start()
  try:
    hf_convert.hf_to_bv(str(tmp_path / "hf"), str(tmp_path / "a.npz"))
    _, peak_to_npz = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    hf_convert.bv_to_hf(str(tmp_path / "a.npz"), str(tmp_path / "hf2"))
    _, peak_to_hf = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  print(f"checkpoint {total / 2**20:.1f} MiB; peak to npz {peak_to_npz / 2**20:.1f} MiB, "
        f"to HF {peak_to_hf / 2**20:.1f} MiB")
  # One layer of the largest tensor (gating_einsum, 4 MiB) bounds the working set.
  assert peak_to_npz < 1.5 * 4 * 2**20 and peak_to_hf < 1.5 * 4 * 2**20


def test_hub_configs_resolve_to_released_variants():
  """Hub config.json files omit defaults (PaliGemma 2 has no head_dim: 256, not 288)."""
  vision = dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304,
                num_attention_heads=16, num_hidden_layers=27, patch_size=14,
                vision_use_head=False)
  pg1 = dict(model_type="paligemma", vision_config=vision, text_config=dict(
      model_type="gemma", hidden_size=2048, intermediate_size=16384, num_attention_heads=8,
      num_hidden_layers=18, num_key_value_heads=1, vocab_size=257216))
  pg2 = dict(model_type="paligemma", vision_config=vision, text_config=dict(
      model_type="gemma2", hidden_size=2304, intermediate_size=9216, num_attention_heads=8,
      num_hidden_layers=26, num_key_value_heads=4, query_pre_attn_scalar=256,
      sliding_window=4096, vocab_size=257216))
  assert hf_config.spec_from_hf_config(pg2).head_dim == 256
  assert hf_config.model_config(pg1) == dict(
      img=dict(variant="So400m/14", pool_type="none", scan=True),
      llm=dict(variant="gemma_2b", vocab_size=257216, scan=True))
  # The hub configs keep Gemma 2's window (transformers applies it); big_vision, and so
  # our variants, attend fully: the window is carried as an explicit option.
  assert hf_config.model_config(pg2, scan=False)["llm"] == dict(
      variant="gemma2_2b", vocab_size=257216, sliding_window=4096, scan=False)
  full = dict(pg2, text_config=dict(pg2["text_config"], layer_types=["full_attention"] * 26,
                                    final_logit_softcapping=None))
  assert hf_config.model_config(full)["llm"] == dict(
      variant="gemma2_2b", vocab_size=257216, final_logits_softcap=0, scan=True)
  roped = dict(pg2, text_config=dict(pg2["text_config"], rope_parameters=dict(
      rope_type="default", rope_theta=5e5)))
  with pytest.raises(ValueError, match=r"text_config\.rope_parameters"):
    hf_config.model_config(roped)
  with pytest.raises(ValueError, match=r"model_type='llava'.*'paligemma'"):
    hf_config.spec_from_hf_config(dict(pg1, model_type="llava"))


@pytest.mark.parametrize("llm", ["gemma_2b", "gemma2_27b"])
def test_full_size_layout_matches_transformers(llm):
  """Shapes only: our params (eval_shape) -> every HF tensor of a meta-device model."""
  model_cfg = dict(img=dict(variant="So400m/14", scan=True),
                   llm=dict(variant=llm, vocab_size=257152, scan=True))
  sds = jax.ShapeDtypeStruct
  shapes = jax.eval_shape(paligemma.Model(**model_cfg).init, jax.random.PRNGKey(0),
                          sds((1, 224, 224, 3), np.float32), sds((1, 4), np.int32),
                          sds((1, 4), np.int32))["params"]
  flat = {k: v.shape for k, v in checkpoint.flatten(shapes).items()}
  cfg = hf_config.hf_config(flat)  # Released sizes: Gemma 2 extras are known.
  assert hf_config.model_config(cfg) == dict(
      img=dict(variant="So400m/14", pool_type="none", scan=True),
      llm=dict(variant=llm, vocab_size=257152, scan=True))
  with torch.device("meta"):
    hf = transformers.PaliGemmaForConditionalGeneration(
        transformers.PaliGemmaConfig.from_dict(cfg))
  want = {hf_convert.canonical_name(k): tuple(v.shape) for k, v in hf.state_dict().items()}
  assert want.pop(hf_convert.LM_HEAD) == (257152, flat["llm/embedder/input_embedding"][1])
  assert {name: shape for _, name, shape in hf_convert.hf_layout(flat)} == want
  # The shapes that hf_to_bv checks, derived from config.json alone, are transformers'.
  table = hf_shapes.expected_shapes(hf_config.resolve(cfg))
  assert {name: table[hf_shapes.template(name)][0] for name in want} == want
  assert table[hf_convert.LM_HEAD][0] == (257152, flat["llm/embedder/input_embedding"][1])


def test_shape_table_names_exactly_the_converted_tensors():
  names = set()
  for kv_heads, gemma2 in ((4, False), (1, False), (2, True)):
    spec = hf_config.Spec(2, 2, 2, 4, kv_heads, 16, gemma2)
    names |= {hf_shapes.template(n) for _, _, groups, _ in hf_convert.plan(spec, True)
              for g in groups for n in g}
  table = hf_shapes.expected_shapes(hf_config.resolve(make_hf_model("gemma_mqa").config
                                                      .to_dict()))
  assert names | {hf_convert.LM_HEAD} == set(table)
