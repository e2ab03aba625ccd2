"""Gemma 1/2: configs, layouts, Gemma 2 features, scan <-> per-layer loading, vocab rows."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_vision_lite import checkpoint
from big_vision_lite.models import common
from big_vision_lite.models import gemma


def _init(seed=0, **kw):
  """Model and random params (numpy draws: compiling `init` is slow on a CPU)."""
  model = gemma.Model(**{"variant": "gemma_tiny", **kw})
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: (rng.standard_normal(s.shape) * 0.1).astype(s.dtype),
                        shapes["params"])
  return model, params


def test_configs():
  c = gemma.get_config("gemma2_27b")
  assert (c.width, c.depth, c.num_heads, c.num_kv_heads, c.head_dim) == (4608, 46, 32, 16, 128)
  assert c.query_pre_attn_norm == "rsqrt_emb_per_head"  # width / num_heads, not head_dim.
  assert gemma.Model(variant="gemma2_27b").cfg["query_pre_attn_scalar"] == 144
  assert gemma.Model(variant="gemma2_9b").cfg["query_pre_attn_scalar"] == 256
  # big_vision (which trained PaliGemma 2) has no sliding window.
  assert gemma.Model(variant="gemma2_2b").cfg["sliding_window"] is None
  assert gemma.get_config("gemma_2b").attn_logits_softcap is None
  with pytest.raises(ValueError, match="Unknown Gemma variant 'gemma3'"):
    gemma.get_config("gemma3")
  with pytest.raises(ValueError, match=r"Gemma needs \['width'"):
    gemma.Model(depth=2).cfg  # pylint: disable=expression-not-assigned
  # pylint: disable=protected-access
  for name, arch in gemma._VARIANTS.items():  # Every variant names every architecture key.
    assert set(arch) == set(gemma.ARCH_KEYS) - {"query_pre_attn_scalar"}, name
  # One hashable BlockConfig per model: the resolved sizes plus dropout and kernel.
  block = gemma.Model(variant="gemma2_27b", dropout=0.1, dropout_bdims=[1]).block_config
  assert block == gemma.BlockConfig(
      width=4608, mlp_dim=36_864, num_heads=32, num_kv_heads=16, head_dim=128,
      query_pre_attn_scalar=144, post_norms=True, attn_logits_softcap=50.0, dropout=0.1,
      dropout_bdims=(1,))
  assert hash(block) == hash(dataclasses.replace(block))


@pytest.mark.parametrize("kw,names", [
    (dict(), {"q_einsum", "kv_einsum", "attn_vec_einsum"}),
    (dict(num_kv_heads=4), {"qkv_einsum", "attn_vec_einsum"}),
])
def test_layouts(kw, names):
  _, params = _init(scan=True, **kw)
  layers = params["layers"]
  assert set(layers["attn"]) == names
  assert set(layers) == {"attn", "mlp", "pre_attention_norm", "pre_ffw_norm"}
  assert layers["mlp"]["gating_einsum"].shape == (2, 2, 64, 128)
  assert layers["mlp"]["linear"].shape == (2, 128, 64)
  assert layers["attn"]["attn_vec_einsum"]["w"].shape == (2, 4, 16, 64)
  if "qkv_einsum" in names:
    assert layers["attn"]["qkv_einsum"]["w"].shape == (2, 3, 4, 64, 16)
  else:
    assert layers["attn"]["kv_einsum"]["w"].shape == (2, 2, 1, 64, 16)
  assert params["embedder"]["input_embedding"].shape == (300, 64)


def test_query_scale_follows_size_overrides():
  """big_vision stores a rule: "rsqrt_head_dim" uses the overridden head_dim, and
  "rsqrt_emb_per_head" (27B) the overridden width / num_heads."""
  assert gemma.Model(variant="gemma_2b", head_dim=16).cfg["query_pre_attn_scalar"] == 16
  assert gemma.Model(variant="gemma2_27b", width=512).cfg["query_pre_attn_scalar"] == 16
  assert gemma.Model(variant="gemma2_27b", num_heads=16).cfg["query_pre_attn_scalar"] == 288
  assert gemma.Model(variant="gemma2_2b", query_pre_attn_norm="rsqrt_emb_per_head"
                    ).cfg["query_pre_attn_scalar"] == 2304 // 8
  assert gemma.Model(variant="gemma_2b", query_pre_attn_scalar=7.0
                    ).cfg["query_pre_attn_scalar"] == 7.0
  with pytest.raises(ValueError, match="Unknown query_pre_attn_norm 'rsqrt'.* Valid: "):
    _ = gemma.Model(variant="gemma_2b", query_pre_attn_norm="rsqrt").cfg
  # The derived scale reaches the attention: head_dim 8 overrides gemma_tiny's 16, so
  # queries are scaled by 8**-0.5 (as an explicit scalar 8), not by the variant's 16**-0.5.
  model, params = _init(variant="gemma_tiny", head_dim=8, depth=1)
  tokens = jnp.asarray([[5, 7, 9]], jnp.int32)
  logits = lambda **kw: gemma.Model(variant="gemma_tiny", head_dim=8, depth=1, **kw).apply(
      {"params": params}, tokens)[0]
  np.testing.assert_array_equal(logits(), logits(query_pre_attn_scalar=8))
  assert np.abs(logits() - logits(query_pre_attn_scalar=16)).max() > 1e-3


def test_big_vision_variant_defaults_scan_and_remat():
  """As big_vision's Gemma variants: scanned layers (layer axis first), remat on."""
  model = gemma.Model(variant="gemma_tiny")
  assert model.scan and model.remat_policy == "nothing_saveable"
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))
  assert shapes["params"]["layers"]["mlp"]["linear"].shape == (2, 128, 64)
  assert gemma.Model(variant="gemma_2b").cfg["sliding_window"] is None


def test_zero_softcaps_and_window_mean_off():
  cfg = gemma.Model(variant="gemma2_2b", final_logits_softcap=0.0, attn_logits_softcap=0,
                    sliding_window=0).cfg
  assert (cfg["final_logits_softcap"], cfg["attn_logits_softcap"], cfg["sliding_window"]) == (
      None, None, None)


def test_gemma2_features():
  model, params = _init(variant="gemma2_tiny", scan=False, sliding_window=4)
  assert "post_ffw_norm" in params["layers"]["0"]
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 300, (2, 12)), jnp.int32)
  params = jax.tree.map(lambda x: x * 20, params)  # Large logits, so the caps matter.
  fwd = jax.jit(lambda p, m: m.apply({"params": p}, tokens)[0], static_argnums=1)
  logits = fwd(params, model)
  assert np.abs(logits).max() <= 30.0
  no_window = gemma.Model(variant="gemma2_tiny", scan=False)  # The variants attend fully.
  no_caps = gemma.Model(variant="gemma2_tiny", scan=False, sliding_window=4,
                        final_logits_softcap=0, attn_logits_softcap=0)
  # Window 4 < 12 tokens: changes late positions only.
  diff = np.abs(fwd(params, no_window) - logits).max(axis=(0, 2))
  assert diff[:4].max() < 1e-3 and diff[4:].max() > 1e-1, diff
  assert np.abs(fwd(params, no_caps)).max() > 30.0


def test_dropout_train_mode():
  model, params = _init(dropout=0.5)
  tokens = jnp.ones((1, 4), jnp.int32)
  apply = jax.jit(model.apply, static_argnames="deterministic")
  a, _ = apply({"params": params}, tokens, deterministic=False,
               rngs={"dropout": jax.random.PRNGKey(1)})
  b, _ = apply({"params": params}, tokens)
  assert a.shape == b.shape and np.abs(a - b).max() > 1e-4


@pytest.mark.parametrize("variant", ["gemma_tiny", "gemma2_tiny"])
def test_scan_and_unscanned_agree_after_load(variant, tmp_path):
  model, params = _init(variant=variant)
  model_s, params_s = _init(variant=variant, scan=True, seed=1)
  tokens = jnp.asarray([[2, 5, 7, 9, 11, 13]], jnp.int32)
  want, _ = jax.jit(model.apply)({"params": params}, tokens)
  path = str(tmp_path / "llm.npz")
  checkpoint.save_params(params, path)
  to_scan = gemma.load(params_s, path)
  assert to_scan["layers"]["pre_ffw_norm"]["scale"].shape == (2, 64)
  got, _ = jax.jit(model_s.apply)({"params": to_scan}, tokens)
  np.testing.assert_allclose(got, want, atol=1e-5)
  back = gemma.load(params, to_scan)
  jax.tree.map(np.testing.assert_array_equal, back, params)


def test_fit_vocab_trims_padding_and_grows():
  emb = np.arange(256_128 * 2, dtype=np.float32).reshape(256_128, 2)
  out = common.fit_vocab(emb, 257_152)
  assert out.shape == (257_152, 2)
  np.testing.assert_array_equal(out[:256_000], emb[:256_000])  # Padding rows dropped.
  assert abs(out[256_000:].std() - 0.02) < 0.002
  np.testing.assert_array_equal(common.fit_vocab(emb, 257_152), out)  # Fixed seed.
  assert common.fit_vocab(emb, 256_000).shape == (256_000, 2)
  assert common.fit_vocab(emb, 256_128) is emb
  with pytest.raises(ValueError, match="300 embedding rows .* vocab_size is 200"):
    common.fit_vocab(np.zeros((300, 2)), 200)


def test_load_grows_vocab_and_reports_errors():
  _, params = _init()
  _, big = _init(vocab_size=310)
  loaded = gemma.load(big, params)
  assert loaded["embedder"]["input_embedding"].shape == (310, 64)
  np.testing.assert_array_equal(loaded["embedder"]["input_embedding"][:300],
                                params["embedder"]["input_embedding"])
  bad = dict(params, extra={"w": np.zeros(2)})
  del bad["final_norm"]
  with pytest.raises(ValueError, match=r"Missing .*'final_norm/scale'.*Unused .*'extra/w'"):
    gemma.load(params, bad)
  _, mha = _init(num_kv_heads=4)
  with pytest.raises(ValueError, match="Missing .*qkv_einsum"):
    gemma.load(mha, params)


@pytest.mark.parametrize("num_kv_heads", [1, 4])
def test_dot_product_attention_matches_reference(num_kv_heads):
  """attn_impl="xla" (jax.nn.dot_product_attention) == the einsum path (valid rows)."""
  kw = dict(variant="gemma_tiny", num_kv_heads=num_kv_heads)
  ref, params = _init(**kw)
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 300, (2, 7)), jnp.int32)
  fast = gemma.Model(**kw, attn_impl="xla")
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((7, 7), bool)), (2, 7, 7)) & (
      jnp.arange(7) < jnp.array([[7], [5]]))[:, None, :]
  want = ref.apply({"params": params}, tokens, mask=mask)[0]
  got = fast.apply({"params": params}, tokens, mask=mask)[0]
  np.testing.assert_allclose(got[0], want[0], atol=1e-5)
  np.testing.assert_allclose(got[1, :5], want[1, :5], atol=1e-5)
  with pytest.raises(ValueError, match="Unknown attn_impl 'fast'.* Valid: "):
    gemma.Model(**kw, attn_impl="fast").apply({"params": params}, tokens)
  with pytest.raises(ValueError, match="no attention soft-cap"):
    gemma.Model(variant="gemma2_tiny", attn_impl="xla").init(jax.random.key(0), tokens)
