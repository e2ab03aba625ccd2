"""Tests for the optimizer built from a config."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from big_vision_lite import optim


def _params():
  return {"img": {"Dense_0": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones((3,))}},
          "llm": {"layers": {"attn": {"q_einsum": {"w": jnp.ones((2, 4, 3))}},
                             "mlp": {"linear": jnp.ones((3, 4))},
                             "pre_attention_norm": {"scale": jnp.ones((4,))}},
                  "embedder": {"input_embedding": jnp.ones((10, 4))}}}


def _cfg(**kw):
  return ml_collections.ConfigDict(dict(lr=0.1, **kw))


def test_frozen_params_get_no_state_and_zero_update():
  p = _params()
  tx, _ = optim.make(_cfg(optax_name="identity", schedule=[
      ("llm/layers/attn/.*", dict(decay_type="constant")), (".*", None)]), p, 10)
  st = tx.init(p)
  assert sum(x.size for x in jax.tree.leaves(st)) <= 4  # Counters only.
  g = jax.tree.map(jnp.ones_like, p)
  u, _ = tx.update(g, st, p)
  np.testing.assert_allclose(u["llm"]["layers"]["attn"]["q_einsum"]["w"], -0.1)
  assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(u["img"]))
  assert float(jnp.abs(u["llm"]["layers"]["mlp"]["linear"]).max()) == 0


def test_default_wd_reaches_gemma_and_vit_weights_not_norms():
  p = _params()
  mults = optim.mults(optim.DEFAULT_WD_MULTS, p, 0.0)
  assert mults["llm"]["layers"]["attn"]["q_einsum"]["w"] == 1.0
  assert mults["llm"]["layers"]["mlp"]["linear"] == 1.0
  assert mults["llm"]["embedder"]["input_embedding"] == 1.0
  assert mults["img"]["Dense_0"]["kernel"] == 1.0
  assert mults["img"]["Dense_0"]["bias"] == 0.0
  assert mults["llm"]["layers"]["pre_attention_norm"]["scale"] == 0.0


def test_wd_and_lr_mults_applied():
  p = _params()
  tx, _ = optim.make(_cfg(optax_name="identity", wd=0.5, schedule=dict(decay_type="constant"),
                          lr_mults=[("img/.*", 0.0)]), p, 10)
  u, _ = tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)
  np.testing.assert_allclose(u["llm"]["layers"]["mlp"]["linear"], -0.5)  # Only wd.
  np.testing.assert_allclose(u["llm"]["layers"]["pre_attention_norm"]["scale"], 0.0)
  u, _ = tx.update(jax.tree.map(jnp.ones_like, p), tx.init(p), p)
  np.testing.assert_allclose(u["img"]["Dense_0"]["bias"], 0.0)


def test_schedules():
  f = optim.make_schedule(dict(decay_type="cosine", warmup_steps=2), 10)
  np.testing.assert_allclose([f(0), f(1), f(2), f(10)], [0.5, 1.0, 1.0, 0.0], atol=1e-6)
  f = optim.make_schedule(dict(decay_type="linear", linear_end=0.1), 10)
  np.testing.assert_allclose([f(0), f(10)], [1.0, 0.1], atol=1e-6)
  with pytest.raises(ValueError, match="Unknown schedule decay_type 'cos'. Did you mean 'cosine'"):
    optim.make_schedule(dict(decay_type="cos"), 10)
  with pytest.raises(ValueError, match="both warmup_steps and warmup_percent"):
    optim.make_schedule(dict(warmup_steps=1, warmup_percent=0.1), 10)


def test_unmatched_schedule_and_bad_optax_name():
  with pytest.raises(ValueError, match="matches no `schedule` regex"):
    optim.make(_cfg(schedule=[("img/.*", {})]), _params(), 10)
  with pytest.raises(ValueError, match="takes a learning rate"):
    optim.make(_cfg(optax_name="adam"), _params(), 10)


def test_grad_clip_ignores_frozen_grads():
  p = {"a": jnp.ones((2,)), "b": jnp.ones((2,))}
  tx, _ = optim.make(_cfg(optax_name="identity", grad_clip_norm=1.0,
                          schedule=[("a", dict(decay_type="constant")), ("b", None)]), p, 5)
  g = {"a": jnp.array([0.3, 0.4]), "b": jnp.array([100.0, 100.0])}
  u, _ = tx.update(g, tx.init(p), p)
  np.testing.assert_allclose(u["a"], [-0.03, -0.04], rtol=1e-5)  # Norm 0.5 < 1: no clip.
