"""SigLIP ViT: variants, shapes, scan <-> per-layer loading, posemb resampling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_vision_lite import checkpoint
from big_vision_lite.models import vit


def _init(res=28, **kw):
  """Model and random params (numpy draws: compiling `init` is slow on a CPU)."""
  model = vit.Model(**{"variant": "mu/14", "num_classes": 8, **kw})
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, res, res, 3)))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: (rng.standard_normal(s.shape) * 0.1).astype(s.dtype),
                        shapes["params"])
  return model, params


def test_decode_variant():
  assert vit.decode_variant("So400m/14") == dict(width=1152, depth=27, mlp_dim=4304,
                                                 num_heads=16, patch_size=(14, 14))
  assert vit.decode_variant("B/16")["patch_size"] == (16, 16)
  # big_vision's "mu": width 32, depth 1, mlp_dim 128, 2 heads.
  assert vit.decode_variant("mu") == dict(width=32, depth=1, mlp_dim=128, num_heads=2)
  with pytest.raises(ValueError, match="Unknown ViT variant 'So400/14'"):
    vit.decode_variant("So400/14")
  cfg = vit.decode_variant("B")
  cfg["width"] = 1  # A copy: the variant table is unchanged.
  assert vit.decode_variant("B")["width"] == 768
  for name, arch in vit._VARIANTS.items():  # pylint: disable=protected-access
    assert set(arch) == {"width", "depth", "mlp_dim", "num_heads"}, name


def test_so400m_shapes():
  model = vit.Model(variant="So400m/14", pool_type="none", num_classes=2048, scan=True)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
  p = shapes["params"]
  assert p["pos_embedding"].shape == (1, 256, 1152)
  assert p["embedding"]["kernel"].shape == (14, 14, 3, 1152)
  blk = p["Transformer"]["encoderblock"]
  assert blk["MultiHeadDotProductAttention_0"]["query"]["kernel"].shape == (27, 1152, 16, 72)
  assert blk["MultiHeadDotProductAttention_0"]["out"]["kernel"].shape == (27, 16, 72, 1152)
  assert blk["MlpBlock_0"]["Dense_0"]["kernel"].shape == (27, 1152, 4304)
  assert p["head"]["kernel"].shape == (1152, 2048)


@pytest.mark.parametrize("kw,shape", [
    (dict(pool_type="none"), (2, 4, 8)),
    (dict(pool_type="gap", posemb="sincos2d"), (2, 8)),
    (dict(pool_type="map"), (2, 8)),
    (dict(pool_type="tok", num_classes=None), (2, 32)),
])
def test_pooling_shapes(kw, shape):
  model = vit.Model(**{"variant": "mu/14", "num_classes": 8, **kw})
  x = jnp.ones((2, 28, 28, 3))
  out, _ = jax.eval_shape(model.init_with_output, jax.random.PRNGKey(0), x)[0]
  assert out.shape == shape


def test_video_folds_frames():
  model, params = _init(pool_type="none")
  video = jax.random.uniform(jax.random.PRNGKey(1), (2, 3, 28, 28, 3))
  apply = jax.jit(model.apply)
  out, _ = apply({"params": params}, video)
  assert out.shape == (2, 3 * 4, 8)
  frame1, _ = apply({"params": params}, video[:, 1])
  np.testing.assert_allclose(out[:, 4:8], frame1, atol=1e-5)


def test_scan_and_unscanned_agree_after_load():
  model, params = _init(pool_type="none", depth=2)  # Two layers to stack.
  model_s, params_s = _init(pool_type="none", scan=True, depth=2)
  image = jax.random.uniform(jax.random.PRNGKey(1), (2, 28, 28, 3), minval=-1, maxval=1)
  want, _ = jax.jit(model.apply)({"params": params}, image)
  to_scan = vit.load(params_s, params)
  assert to_scan["Transformer"]["encoderblock"]["LayerNorm_0"]["scale"].shape == (2, 32)
  got, _ = jax.jit(model_s.apply)({"params": to_scan}, image)
  np.testing.assert_allclose(got, want, atol=1e-5)
  back = vit.load(params, to_scan)
  jax.tree.map(np.testing.assert_array_equal, back, params)


def test_posemb_resampled_on_load(tmp_path):
  _, params = _init(res=28)   # 2x2 grid.
  _, params_big = _init(res=56)  # 4x4 grid.
  path = str(tmp_path / "vit.npz")
  checkpoint.save_params(params, path)
  loaded = vit.load(params_big, path)
  assert loaded["pos_embedding"].shape == (1, 16, 32)
  const = np.ones((1, 16 * 16, 5), np.float32) * 3.0
  np.testing.assert_allclose(vit.resample_posemb(const, 32 * 32), np.full((1, 1024, 5), 3.0),
                             rtol=1e-6)


def test_load_reports_missing_and_unused():
  _, params = _init()
  bad = dict(params)
  bad["extra"] = {"w": np.zeros(3)}
  del bad["head"]
  with pytest.raises(ValueError, match=r"Missing .*'head/bias'.*Unused .*'extra/w'"):
    vit.load(params, bad)
  loaded = vit.load(params, {k: v for k, v in params.items() if k != "head"},
                    dont_load=["head/.*"])
  np.testing.assert_array_equal(loaded["head"]["kernel"], params["head"]["kernel"])
