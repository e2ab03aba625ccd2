"""VQ-VAE: weight mapping from the torch `vae-oid.npz` layout, checked against torch."""
import numpy as np
import pytest
import torch

from big_vision_lite.models import vqvae


class _TorchRes(torch.nn.Module):

  def __init__(self, w):
    super().__init__()
    self.net = torch.nn.Sequential(
        torch.nn.Conv2d(w, w, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(w, w, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(w, w, 1))

  def forward(self, x):
    return x + self.net(x)


class _TorchVQVAE(torch.nn.Module):
  """The released architecture, with the same state-dict names."""

  def __init__(self, widths=(4, 8, 8, 16), embed_dim=24, codes=128, dec_width=16,
               up=(16, 8, 8, 4)):
    super().__init__()
    layers, cin = [], 1
    for w in widths:
      layers += [torch.nn.Conv2d(cin, w, 4, stride=2, padding=1), torch.nn.ReLU()]
      cin = w
    layers += [_TorchRes(cin), _TorchRes(cin), torch.nn.Conv2d(cin, embed_dim, 1)]
    self.encoder = torch.nn.Sequential(*layers)
    layers = [torch.nn.Conv2d(embed_dim, dec_width, 1), torch.nn.ReLU(),
              _TorchRes(dec_width), _TorchRes(dec_width)]
    cin = dec_width
    for w in up:
      layers += [torch.nn.ConvTranspose2d(cin, w, 4, stride=2, padding=1), torch.nn.ReLU()]
      cin = w
    layers += [torch.nn.Conv2d(cin, 1, 1)]
    self.decoder = torch.nn.Sequential(*layers)
    self._vq_vae = torch.nn.Module()
    self._vq_vae._embedding = torch.nn.Parameter(torch.randn(codes, embed_dim))

  def encode(self, masks):
    z = self.encoder(2.0 * (masks[:, None] - 0.5)).permute(0, 2, 3, 1)
    z = z.reshape(z.shape[0], 16, -1)
    e = self._vq_vae._embedding
    d = (z ** 2).sum(-1, keepdim=True) + (e ** 2).sum(-1) - 2 * z @ e.T
    return d.argmin(-1)

  def decode(self, codes):
    x = self._vq_vae._embedding[codes].reshape(codes.shape[0], 4, 4, -1)
    return self.decoder(x.permute(0, 3, 1, 2))[:, 0]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  torch.manual_seed(0)
  model = _TorchVQVAE().eval()
  path = tmp_path_factory.mktemp("vq") / "vae-oid.npz"
  np.savez(path, **{k: v.detach().numpy() for k, v in model.state_dict().items()})
  return model, path


def _masks(n=3, seed=0):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:64, :64]
  out = []
  for _ in range(n):
    cy, cx, r = rng.uniform(16, 48), rng.uniform(16, 48), rng.uniform(8, 24)
    out.append(((yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2).astype(np.float32))
  return np.stack(out)


def test_load_reads_architecture_from_weights(ckpt):
  params = vqvae.load_vqvae(ckpt[1])
  assert params["codebook"].shape == (128, 24)
  assert params["config"]["enc_widths"] == (4, 8, 8, 16)
  assert params["config"]["up_widths"] == (16, 8, 8, 4)
  assert params["decoder"]["up_0"]["kernel"].shape == (4, 4, 16, 16)
  assert params["encoder"]["down_0"]["kernel"].shape == (4, 4, 1, 4)


def test_decoder_matches_torch(ckpt):
  model, path = ckpt
  params = vqvae.load_vqvae(path)
  codes = np.random.default_rng(1).integers(0, 128, (3, 16)).astype(np.int32)
  got = np.asarray(vqvae.decode_codes(params, codes))
  with torch.no_grad():
    want = model.decode(torch.from_numpy(codes).long()).numpy()
  assert got.shape == (3, 64, 64) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_encoder_matches_torch_and_roundtrips(ckpt):
  model, path = ckpt
  params = vqvae.load_vqvae(path)
  masks = _masks()
  codes = np.asarray(vqvae.encode_masks(params, masks))
  with torch.no_grad():
    want = model.encode(torch.from_numpy(masks)).numpy()
  assert codes.shape == (3, 16) and codes.dtype == np.int32
  np.testing.assert_array_equal(codes, want)
  logits = vqvae.decode_codes(params, codes)
  assert logits.shape == (3, 64, 64)
  assert np.all(np.isfinite(np.asarray(logits)))


def test_errors(ckpt, tmp_path):
  params = vqvae.load_vqvae(ckpt[1])
  with pytest.raises(ValueError, match=r"\(N, 64, 64\)"):
    vqvae.encode_masks(params, np.zeros((2, 32, 32), np.float32))
  with pytest.raises(ValueError, match=r"\(N, 16\)"):
    vqvae.decode_codes(params, np.zeros((2, 15), np.int32))
  bad = tmp_path / "bad.npz"
  np.savez(bad, **{"encoder.0.weight": np.zeros((4, 1, 4, 4), np.float32)})
  with pytest.raises(KeyError, match="missing"):
    vqvae.load_vqvae(bad)


def test_random_state_dict_has_released_layout():
  state = vqvae.random_state_dict()
  model = _TorchVQVAE(widths=(16, 32, 64, 128), embed_dim=512, dec_width=128,
                      up=(128, 64, 32, 16))
  want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
  assert {k: v.shape for k, v in state.items()} == want
  params = vqvae.convert_state_dict(state)
  codes = vqvae.encode_masks(params, _masks(2))
  assert vqvae.decode_codes(params, codes).shape == (2, 64, 64)
