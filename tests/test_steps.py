"""Tests for the loss and the update step on a toy two-tower model."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from big_vision_lite import optim
from big_vision_lite import steps
from big_vision_lite.models import lora

V, D = 11, 8


class _Img(nn.Module):
  @nn.compact
  def __call__(self, image):
    return nn.Dense(D, name="head")(image.reshape(image.shape[0], -1))


class _Llm(nn.Module):
  @nn.compact
  def __call__(self, text, img, train):
    emb = self.param("input_embedding", nn.initializers.normal(1.0), (V, D))
    x = emb[text] + img[:, None]
    x = nn.Dropout(0.1, deterministic=not train)(x)
    w = self.param("linear", nn.initializers.normal(0.3), (D, D))
    return (x + jnp.tanh(x @ w)) @ emb.T


class Toy(nn.Module):
  """image f32[B, 2, 2, 3], text int32[B, T] -> logits f32[B, T, V].

  Params: img/head/{kernel,bias}, llm/input_embedding, llm/linear.
  """

  @nn.compact
  def __call__(self, image, text, mask_ar, train=False):
    del mask_ar
    return _Llm(name="llm")(text, _Img(name="img")(image), train), {}


def _batch(b=8, t=6, seed=0):
  r = np.random.RandomState(seed)
  mask_loss = np.zeros((b, t), np.int32)
  mask_loss[:, 3:] = 1
  mask_loss[0, 5:] = 0
  return {"image": r.randn(b, 2, 2, 3).astype(np.float32),
          "text": r.randint(0, V, (b, t)).astype(np.int32),
          "mask_ar": (mask_loss > 0).astype(np.int32), "mask_loss": mask_loss}


def _setup(cfg, accum=1, lora_cfg=None):
  model = Toy()
  b = _batch()
  params = model.init(jax.random.key(0), b["image"], b["text"], b["mask_ar"])["params"]
  base, trainable = None, params
  if lora_cfg:
    base, trainable = params, lora.init(jax.random.key(1), params, **lora_cfg)
  tx, _ = optim.make(ml_collections.ConfigDict(cfg), trainable, 10)
  loss_fn = steps.make_loss_fn(model, lora_cfg=lora_cfg)
  upd = jax.jit(steps.make_update_fn(loss_fn, tx, accum=accum,
                                     trainable_mask=optim.trainable_mask(
                                         ml_collections.ConfigDict(cfg), trainable)))
  return model, {"params": trainable, "opt": tx.init(trainable)}, base, upd, b


def test_suffix_xent_matches_one_hot_reference():
  r = np.random.RandomState(0)
  logits = jnp.asarray(r.randn(3, 5, 7), jnp.float32)
  tgt = jnp.asarray(r.randint(0, 7, (3, 5)))
  mask = jnp.asarray([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
  ls = 0.1
  soft = jax.nn.one_hot(tgt, 7) * (1 - ls) + ls / 7
  ref = -jnp.sum(soft * jax.nn.log_softmax(logits), -1)
  ref = jnp.mean(jnp.sum(ref * mask, -1) / jnp.sum(mask, -1))
  loss, per_ex = steps.suffix_xent(logits, tgt, mask, ls)
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  assert per_ex.shape == (3,)


def test_frozen_params_bit_identical():
  cfg = dict(lr=0.1, wd=0.1, schedule=[("img/.*", None), (".*", {})])
  _, state, _, upd, b = _setup(cfg)
  p0 = jax.tree.map(np.asarray, state["params"])
  for i in range(2):
    state, m = upd(state, None, b, jax.random.key(i))
  np.testing.assert_array_equal(state["params"]["img"]["head"]["kernel"], p0["img"]["head"]["kernel"])
  np.testing.assert_array_equal(state["params"]["img"]["head"]["bias"], p0["img"]["head"]["bias"])
  assert not np.array_equal(state["params"]["llm"]["linear"], p0["llm"]["linear"])
  assert np.isfinite(float(m["loss"]))


def test_grad_accum_equals_big_batch():
  model, state, _, _, b = _setup(dict(lr=0.1))
  def det_loss(p, base, bb, r):  # Without dropout, whose draws differ per micro-batch.
    del base, r
    logits, _ = model.apply({"params": p}, bb["image"], bb["text"][:, :-1],
                            bb["mask_ar"][:, :-1], train=False)
    return steps.suffix_xent(logits, bb["text"][:, 1:], bb["mask_loss"][:, 1:])
  run = jax.jit(lambda p, n: steps.grads_and_loss(det_loss, p, None, b, jax.random.key(0), n),
                static_argnums=1)
  (l1, g1), (l4, g4) = run(state["params"], 1), run(state["params"], 4)
  np.testing.assert_allclose(l1, l4, rtol=1e-6)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), g1, g4)


def test_lora_updates_only_adapters_and_merge_equals_adapted_model():
  lcfg = dict(rank=2, alpha=4.0, targets="llm/linear|img/head/kernel")
  cfg = dict(lr=0.1, schedule=dict(decay_type="constant"))
  model, state, base, upd, b = _setup(cfg, lora_cfg=lcfg)
  base0 = jax.tree.map(np.asarray, base)
  for i in range(2):
    state, _ = upd(state, base, b, jax.random.key(i))
  jax.tree.map(np.testing.assert_array_equal, base, base0)
  ad = state["params"]["llm"]["linear"]
  assert float(jnp.abs(ad["lora_b"]).max()) > 0
  merged = lora.merge(base, state["params"], **lcfg)
  assert not np.array_equal(merged["llm"]["linear"], base0["llm"]["linear"])
  loss_fn = steps.make_loss_fn(model, lora_cfg=dict(lcfg, dropout=0.0))
  plain = steps.make_loss_fn(model)
  # Same rng for dropout; LoRA dropout 0: the adapted model == the merged params.
  la = loss_fn(state["params"], base, b, jax.random.key(5))[0]
  lm = plain(merged, None, b, jax.random.key(5))[0]
  np.testing.assert_allclose(la, lm, rtol=1e-6)
