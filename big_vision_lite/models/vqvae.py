"""The PaliGemma segmentation VQ-VAE: 64x64 masks <-> 16 codes out of 128.

PaliGemma writes a segmentation mask as 16 `<segNNN>` tokens: the VQ-VAE encoder maps a
mask of the object's box, resized to 64x64, onto a 4x4 grid of codebook indices (row-major),
and the decoder maps the 16 indices back to 64x64 mask logits (> 0 means "inside").

The released weights (`vae-oid.npz`) are a flat PyTorch state dict:

  encoder.{0,2,4,6}.{weight,bias}     Conv2d, stride 2 (64 -> 4 in four steps), ReLU after
  encoder.{8,9}.net.{0,2,4}.*         residual blocks: conv3x3, ReLU, conv3x3, ReLU, conv1x1
  encoder.10.*                        conv to the embedding width E
  _vq_vae._embedding                  codebook float32[C, E] (C = 128 codes)
  decoder.0.*                         conv1x1 E -> W, ReLU
  decoder.{2,3}.net.{0,2,4}.*         residual blocks as in the encoder
  decoder.{4,6,8,10}.*                ConvTranspose2d(kernel 4, stride 2, padding 1), ReLU
  decoder.12.*                        conv1x1 -> 1 channel (mask logits)

Torch kernels are OIHW for Conv2d and IOHW for ConvTranspose2d; `convert_state_dict` turns
them into Flax HWIO kernels (ConvTranspose with `transpose_kernel=True` takes HW-O-I). Channel
widths and kernel sizes are read from the weights, not hard-coded. Encoder convolutions use
"SAME" padding as the reference target encoder (big_vision's TF op) does.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

NUM_DOWN = 4      # 64 -> 4
NUM_RES = 2
GRID = 4          # 4 x 4 = 16 codes
MASK_SIZE = 64

_ENC_DOWN = [f"encoder.{2 * i}" for i in range(NUM_DOWN)]
_ENC_RES = [f"encoder.{2 * NUM_DOWN + i}.net" for i in range(NUM_RES)]
_ENC_OUT = f"encoder.{2 * NUM_DOWN + NUM_RES}"
_DEC_IN = "decoder.0"
_DEC_RES = [f"decoder.{2 + i}.net" for i in range(NUM_RES)]
_DEC_UP = [f"decoder.{2 + NUM_RES + 2 * i}" for i in range(NUM_DOWN)]
_DEC_OUT = f"decoder.{2 + NUM_RES + 2 * NUM_DOWN}"
_CODEBOOK = "_vq_vae._embedding"
_RES_CONVS = (0, 2, 4)


def _torch_names():
  """All weight names (without .weight/.bias) of the torch state dict, in order."""
  res = lambda prefix: [f"{prefix}.{j}" for j in _RES_CONVS]
  enc = _ENC_DOWN + sum((res(r) for r in _ENC_RES), []) + [_ENC_OUT]
  dec = [_DEC_IN] + sum((res(r) for r in _DEC_RES), []) + _DEC_UP + [_DEC_OUT]
  return enc + dec


class ResBlock(nn.Module):
  """x + conv1x1(relu(conv3x3(relu(conv3x3(x)))))."""

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    y = nn.relu(nn.Conv(width, (3, 3), padding="SAME", name="conv_0")(x))
    y = nn.relu(nn.Conv(width, (3, 3), padding="SAME", name="conv_1")(y))
    return x + nn.Conv(width, (1, 1), padding="SAME", name="conv_2")(y)


class Encoder(nn.Module):
  """float32[B, 64, 64, 1] in [-1, 1] -> float32[B, 4, 4, E] (before quantisation)."""
  widths: tuple      # output channels of the 4 stride-2 convs
  kernels: tuple     # their kernel sizes
  embed_dim: int

  @nn.compact
  def __call__(self, x):
    for i, (w, k) in enumerate(zip(self.widths, self.kernels)):
      x = nn.relu(nn.Conv(w, (k, k), strides=(2, 2), padding="SAME", name=f"down_{i}")(x))
    for i in range(NUM_RES):
      x = ResBlock(name=f"res_{i}")(x)
    return nn.Conv(self.embed_dim, (1, 1), padding="SAME", name="out")(x)


class Decoder(nn.Module):
  """float32[B, 4, 4, E] quantised codes -> float32[B, 64, 64, 1] mask logits."""
  width: int         # channels of the input 1x1 conv and the residual blocks
  up_widths: tuple   # output channels of the 4 transposed convs
  up_kernels: tuple
  up_paddings: tuple  # torch padding of each transposed conv

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(self.width, (1, 1), name="in")(x))
    for i in range(NUM_RES):
      x = ResBlock(name=f"res_{i}")(x)
    for i, (w, k, p) in enumerate(zip(self.up_widths, self.up_kernels, self.up_paddings)):
      # torch ConvTranspose2d(padding=p) == lax.conv_transpose with padding k - 1 - p.
      x = nn.ConvTranspose(w, (k, k), strides=(2, 2), padding=k - 1 - p,
                           transpose_kernel=True, name=f"up_{i}")(x)
      x = nn.relu(x)
    return nn.Conv(1, (1, 1), name="out")(x)


def _conv(state, name):
  w = np.asarray(state[name + ".weight"], np.float32)
  if w.ndim != 4:
    raise ValueError(f"VQ-VAE weight {name}.weight has shape {w.shape}; expected a 4-d "
                     "torch conv kernel (OIHW, or IOHW for a transposed conv).")
  # Conv2d OIHW -> HWIO. ConvTranspose2d IOHW -> HW(O)(I), which is the layout Flax's
  # ConvTranspose(transpose_kernel=True) expects: the same axis permutation.
  kernel = np.transpose(w, (2, 3, 1, 0))
  return {"kernel": kernel, "bias": np.asarray(state[name + ".bias"], np.float32)}


def _res(state, prefix):
  return {f"conv_{i}": _conv(state, f"{prefix}.{j}") for i, j in enumerate(_RES_CONVS)}


def convert_state_dict(state):
  """Converts a `vae-oid.npz`-style torch state dict into VQ-VAE params.

  Args:
    state: mapping from torch names (`encoder.0.weight`, `_vq_vae._embedding`, ...) to
      numpy arrays.

  Returns:
    dict with `codebook` float32[C, E], `encoder` and `decoder` Flax param trees and
    `config` (static ints describing the architecture, read from the weight shapes).

  Raises:
    KeyError: when weights are missing or unexpected keys are present.
  """
  expected = {f"{n}.{s}" for n in _torch_names() for s in ("weight", "bias")}
  expected.add(_CODEBOOK)
  missing = sorted(expected - set(state))
  unused = sorted(set(state) - expected)
  if missing or unused:
    raise KeyError(f"Not a PaliGemma VQ-VAE state dict (vae-oid.npz layout): missing "
                   f"{missing[:8]}{'...' if len(missing) > 8 else ''}, unexpected "
                   f"{unused[:8]}{'...' if len(unused) > 8 else ''}. Pass the released "
                   "vae-oid.npz (a torch state dict saved with numpy).")
  codebook = np.asarray(state[_CODEBOOK], np.float32)
  shape = lambda n: np.shape(state[n + ".weight"])
  config = {
      "enc_widths": tuple(int(shape(n)[0]) for n in _ENC_DOWN),
      "enc_kernels": tuple(int(shape(n)[2]) for n in _ENC_DOWN),
      "embed_dim": int(codebook.shape[1]),
      "dec_width": int(shape(_DEC_IN)[0]),
      "up_widths": tuple(int(shape(n)[1]) for n in _DEC_UP),
      "up_kernels": tuple(int(shape(n)[2]) for n in _DEC_UP),
      # The released decoder upsamples 2x per layer: kernel 4, padding 1.
      "up_paddings": tuple((int(shape(n)[2]) - 2) // 2 for n in _DEC_UP),
  }
  encoder = {f"down_{i}": _conv(state, n) for i, n in enumerate(_ENC_DOWN)}
  encoder.update({f"res_{i}": _res(state, r) for i, r in enumerate(_ENC_RES)})
  encoder["out"] = _conv(state, _ENC_OUT)
  decoder = {"in": _conv(state, _DEC_IN), "out": _conv(state, _DEC_OUT)}
  decoder.update({f"res_{i}": _res(state, r) for i, r in enumerate(_DEC_RES)})
  decoder.update({f"up_{i}": _conv(state, n) for i, n in enumerate(_DEC_UP)})
  return {"codebook": codebook, "encoder": encoder, "decoder": decoder, "config": config}


def random_state_dict(seed=0, enc_widths=(16, 32, 64, 128), embed_dim=512, dec_width=128,
                      up_widths=(128, 64, 32, 16), num_codes=128):
  """A randomly initialised state dict in the `vae-oid.npz` layout (tests, smoke runs).

  The defaults are the released sizes; pass small widths for fast tests.

  Returns:
    dict from torch names to float32 numpy arrays; save with `np.savez(path, **d)`.
  """
  rng = np.random.default_rng(seed)
  state = {}

  def add(name, cout, cin, k, transpose=False):
    scale = (2.0 / (cin * k * k)) ** 0.5
    shape = (cin, cout, k, k) if transpose else (cout, cin, k, k)
    state[name + ".weight"] = (rng.normal(size=shape) * scale).astype(np.float32)
    state[name + ".bias"] = (rng.normal(size=(cout,)) * 0.1).astype(np.float32)

  def add_res(prefix, w):
    for j, k in zip(_RES_CONVS, (3, 3, 1)):
      add(f"{prefix}.{j}", w, w, k)

  cin = 1
  for name, w in zip(_ENC_DOWN, enc_widths):
    add(name, w, cin, 4)
    cin = w
  for r in _ENC_RES:
    add_res(r, cin)
  add(_ENC_OUT, embed_dim, cin, 1)
  add(_DEC_IN, dec_width, embed_dim, 1)
  for r in _DEC_RES:
    add_res(r, dec_width)
  cin = dec_width
  for name, w in zip(_DEC_UP, up_widths):
    add(name, w, cin, 4, transpose=True)
    cin = w
  add(_DEC_OUT, 1, cin, 1)
  state[_CODEBOOK] = rng.normal(size=(num_codes, embed_dim)).astype(np.float32)
  return state


def load_vqvae(path):
  """Loads `vae-oid.npz` (or a file in its layout) from a local path.

  Args:
    path: local path of the npz file.

  Returns:
    params dict for `encode_masks` / `decode_codes` (see `convert_state_dict`).
  """
  with open(path, "rb") as f:
    with np.load(f, allow_pickle=False) as data:
      state = {k: data[k] for k in data.files}
  return convert_state_dict(state)


def _split(params):
  arrays = {k: v for k, v in params.items() if k != "config"}
  return arrays, tuple(sorted(params["config"].items()))


def encode_masks(params, masks):
  """Encodes masks into codebook indices (the `<segNNN>` numbers).

  Args:
    params: from `load_vqvae`.
    masks: float32[N, 64, 64] in [0, 1] (the object's box resized to 64x64).

  Returns:
    int32[N, 16]: indices in [0, C), the 4x4 grid in row-major order.
  """
  masks = jnp.asarray(masks, jnp.float32)
  if masks.ndim != 3 or masks.shape[1:] != (MASK_SIZE, MASK_SIZE):
    raise ValueError(f"masks shape {masks.shape} != (N, 64, 64); resize each box crop "
                     "to 64x64 first.")
  arrays, config = _split(params)
  return _encode(arrays, masks, config)


def decode_codes(params, codes):
  """Decodes codebook indices into mask logits.

  Args:
    params: from `load_vqvae`.
    codes: int32[N, 16] indices in [0, C).

  Returns:
    float32[N, 64, 64] mask logits (> 0 inside the object; the released decoder returns
    values roughly in [-1, 1]).
  """
  codes = jnp.asarray(codes, jnp.int32)
  if codes.ndim != 2 or codes.shape[1] != GRID * GRID:
    raise ValueError(f"codes shape {codes.shape} != (N, 16): pass the 16 <segNNN> "
                     "numbers of each mask.")
  arrays, config = _split(params)
  return _decode(arrays, codes, config)


@functools.partial(jax.jit, static_argnums=2)
def _encode(arrays, masks, config):
  c = dict(config)
  enc = Encoder(c["enc_widths"], c["enc_kernels"], c["embed_dim"])
  x = 2.0 * (masks[..., None] - 0.5)
  z = enc.apply({"params": arrays["encoder"]}, x)  # [N, 4, 4, E]
  if z.shape[1:3] != (GRID, GRID):
    raise ValueError(f"VQ-VAE encoder produced a {z.shape[1:3]} grid, expected 4x4.")
  z = z.reshape(z.shape[0], GRID * GRID, -1)
  e = arrays["codebook"]
  d = (jnp.sum(z * z, -1, keepdims=True) + jnp.sum(e * e, -1)
       - 2.0 * jnp.einsum("npe,ce->npc", z, e, precision="highest"))
  return jnp.argmin(d, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=2)
def _decode(arrays, codes, config):
  c = dict(config)
  dec = Decoder(c["dec_width"], c["up_widths"], c["up_kernels"], c["up_paddings"])
  n = codes.shape[0]
  x = jnp.take(arrays["codebook"], codes.reshape(-1), axis=0)
  x = x.reshape(n, GRID, GRID, -1)
  return dec.apply({"params": arrays["decoder"]}, x)[..., 0]
