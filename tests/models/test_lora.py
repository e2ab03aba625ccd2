"""Tests for functional LoRA on the param tree."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_vision_lite.models import lora


def _params():
  k = jax.random.key(0)
  r = lambda i, s: jax.random.normal(jax.random.fold_in(k, i), s)
  return {"llm": {"layers": {"attn": {"q_einsum": {"w": r(0, (3, 2, 8, 4))},   # [L, N, D, H]
                                      "kv_einsum": {"w": r(1, (3, 2, 1, 8, 4))},
                                      "attn_vec_einsum": {"w": r(2, (3, 2, 4, 8))}},
                             "mlp": {"gating_einsum": r(3, (3, 2, 8, 16)),
                                     "linear": r(4, (3, 16, 8))},
                             "pre_ffw_norm": {"scale": r(5, (3, 8))}}},
          "img": {"head": {"kernel": r(6, (8, 8)), "bias": r(7, (8,))}}}


def test_init_is_identity_and_delta_is_low_rank():
  p = _params()
  ad = lora.init(jax.random.key(1), p, rank=2, targets="llm/.*")
  assert "img" not in ad and "pre_ffw_norm" not in ad["llm"]["layers"]
  assert ad["llm"]["layers"]["attn"]["kv_einsum"]["w"]["lora_a"].shape == (3, 2, 8, 2)
  assert ad["llm"]["layers"]["attn"]["kv_einsum"]["w"]["lora_b"].shape == (3, 2, 2, 4)
  merged = lora.merge(p, ad, rank=2, alpha=4.0)
  jax.tree.map(np.testing.assert_array_equal, merged, p)
  ad = jax.tree.map(lambda x: x + 1.0, ad)
  merged = lora.merge(p, ad, rank=2, alpha=4.0)
  d = merged["llm"]["layers"]["attn"]["q_einsum"]["w"] - p["llm"]["layers"]["attn"]["q_einsum"]["w"]
  # Per layer, [N, D, H] viewed as D x (N*H) has rank <= 2.
  m = jnp.transpose(d[0], (1, 0, 2)).reshape(8, 8)
  assert np.linalg.matrix_rank(np.asarray(m), tol=1e-4) <= 2
  np.testing.assert_array_equal(merged["img"]["head"]["kernel"], p["img"]["head"]["kernel"])


def test_merge_matches_adapter_path_for_dense():
  p = {"k": {"kernel": jnp.ones((4, 6))}}
  a, b = jnp.arange(8.0).reshape(4, 2), jnp.arange(12.0).reshape(2, 6)
  ad = {"k": {"kernel": {"lora_a": a, "lora_b": b}}}
  x = jnp.ones((3, 4))
  merged = lora.merge(p, ad, rank=2, alpha=2.0)
  np.testing.assert_allclose(x @ merged["k"]["kernel"], x @ p["k"]["kernel"] + x @ a @ b)


def test_dropout_masks_input_features():
  p = {"k": {"kernel": jnp.zeros((64, 4))}}
  ad = {"k": {"kernel": {"lora_a": jnp.ones((64, 1)), "lora_b": jnp.ones((1, 4))}}}
  m = lora.merge(p, ad, rank=1, alpha=1.0, dropout=0.5, rng=jax.random.key(0))["k"]["kernel"]
  rows = np.asarray(m[:, 0])
  assert set(np.unique(rows)) <= {0.0, 2.0} and 10 < (rows == 0).sum() < 54
  assert np.all(m == m[:, :1])  # One mask per input feature.


def test_bad_targets():
  with pytest.raises(ValueError, match="selects no weight"):
    lora.init(jax.random.key(0), _params(), rank=2, targets="nothing/.*")
  with pytest.raises(ValueError, match="selects no weight"):
    lora.init(jax.random.key(0), {"x": {"pos_embedding": jnp.ones((4, 4))}}, rank=2,
              targets=".*")
  with pytest.raises(ValueError, match="no known layout"):
    lora.layout("x/pos_embedding", 2)
