"""SigLIP two towers: big_vision param names, the sigmoid loss, load round trip."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from big_vision_lite import checkpoint
from big_vision_lite.models import siglip

IMG = dict(variant="mu", patch_size=(8, 8), pool_type="gap", scan=False,
           remat_policy="none")
TXT = dict(vocab_size=50, width=32, depth=1, mlp_dim=64, num_heads=2, remat_policy="none")


def _model(**kw):
  return siglip.Model(image=IMG, text=TXT, out_dim=16, **kw)


def _inputs(b=4, length=6):
  image = jax.random.uniform(jax.random.key(1), (b, 16, 16, 3), minval=-1, maxval=1)
  text = jax.random.randint(jax.random.key(2), (b, length), 2, 50)
  return image, text


def test_param_names_and_outputs():
  image, text = _inputs()
  model = _model()
  params = model.init(jax.random.key(0), image, text)["params"]
  flat = checkpoint.flatten(params)
  for name in ("img/embedding/kernel", "img/head/kernel", "txt/Embed_0/embedding",
               "txt/pos_embedding", "txt/Encoder_0/encoderblock_0/LayerNorm_0/scale",
               "txt/Encoder_0/encoder_norm/scale", "txt/head/kernel", "t", "b"):
    assert name in flat, (name, sorted(flat))
  np.testing.assert_allclose(np.exp(flat["t"]), [10.0], rtol=1e-6)
  np.testing.assert_allclose(flat["b"], [-10.0])
  zimg, ztxt, out = model.apply({"params": params}, image, text)
  assert zimg.shape == ztxt.shape == (4, 16)
  np.testing.assert_allclose(np.linalg.norm(zimg, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(ztxt, axis=1), 1.0, rtol=1e-5)
  zimg2, none, _ = model.apply({"params": params}, image, None)  # One tower alone.
  assert none is None
  np.testing.assert_allclose(zimg2, zimg, rtol=1e-6)
  assert "b" not in checkpoint.flatten(
      _model(bias_init=None).init(jax.random.key(0), image, text)["params"])


def test_sigmoid_loss_matches_pairwise_binary_xent():
  rng = np.random.default_rng(0)
  zimg = rng.normal(size=(5, 8)).astype(np.float32)
  ztxt = rng.normal(size=(5, 8)).astype(np.float32)
  zimg /= np.linalg.norm(zimg, axis=1, keepdims=True)
  ztxt /= np.linalg.norm(ztxt, axis=1, keepdims=True)
  t, b = np.float32([7.0]), np.float32([-3.0])
  loss, logits = siglip.sigmoid_loss(zimg, ztxt, t, b)
  want_logits = zimg @ ztxt.T * 7.0 - 3.0
  np.testing.assert_allclose(logits, want_logits, rtol=1e-5)
  want = optax.sigmoid_binary_cross_entropy(want_logits, np.eye(5)).sum(1).mean()
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  pos = np.eye(5, dtype=bool)
  pos[0, 1] = pos[1, 0] = True  # Images 0 and 1 share a text.
  loss2, _ = siglip.sigmoid_loss(zimg, ztxt, t, b, jnp.asarray(pos))
  want2 = optax.sigmoid_binary_cross_entropy(want_logits, pos.astype(np.float32)).sum(1)
  np.testing.assert_allclose(loss2, want2.mean(), rtol=1e-5)
  with pytest.raises(ValueError, match=r"positives \(2, 2\) must be \[B, B\]"):
    siglip.sigmoid_loss(zimg, ztxt, t, b, jnp.eye(2, dtype=bool))


def test_loss_falls_on_a_fixed_batch():
  image, text = _inputs(b=8)
  model = _model()
  params = model.init(jax.random.key(0), image, text)["params"]
  tx = optax.adam(3e-3)
  opt = tx.init(params)

  @jax.jit
  def step(p, o):
    def loss_fn(p):
      zimg, ztxt, out = model.apply({"params": p}, image, text)
      return siglip.sigmoid_loss(zimg, ztxt, out["t"], out["b"])[0]
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, loss
  losses = []
  for _ in range(30):
    params, opt, loss = step(params, opt)
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0], losses


def test_load_round_trip_and_scan_conversion(tmp_path):
  image, text = _inputs()
  params = _model().init(jax.random.key(0), image, text)["params"]
  path = str(tmp_path / "siglip.npz")
  checkpoint.save_params(params, path)
  scanned = siglip.Model(image=dict(IMG, scan=True), text=TXT, out_dim=16)
  init = scanned.init(jax.random.key(5), image, text)["params"]
  loaded = siglip.load(init, path, dict(image=dict(IMG, scan=True)))
  assert "encoderblock" in loaded["img"]["Transformer"]
  za, zt, _ = _model().apply({"params": params}, image, text)
  zb, zt2, _ = scanned.apply({"params": loaded}, image, text)
  np.testing.assert_allclose(zb, za, atol=1e-5)
  np.testing.assert_allclose(zt2, zt, atol=1e-5)
  kept = siglip.load(init, path, dict(image=dict(IMG, scan=True)), dont_load=("t",))
  np.testing.assert_array_equal(kept["t"], init["t"])
  del params["t"]
  with pytest.raises(ValueError, match="t"):
    siglip.load(init, params)
