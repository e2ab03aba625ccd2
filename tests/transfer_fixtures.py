"""Fixtures shared by the transfer and pre-training config tests (mode=mock runs)."""
import os

import jax
from jax.experimental.compilation_cache import compilation_cache
import ml_collections
import numpy as np
import pytest

from big_vision_lite import train
from big_vision_lite.models import vqvae
from transfers import common

_CACHE_KEYS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
               "jax_persistent_cache_min_entry_size_bytes")


@pytest.fixture(scope="session")
def mock_dir(tmp_path_factory):
  """Shapes data, tokenizer and a small random VQ-VAE, where mode=mock expects them."""
  d = str(tmp_path_factory.mktemp("mock"))
  a = common.parse(f"mode=mock,mock_dir={d}")
  c = ml_collections.ConfigDict()
  common.mock_prepare(c, a)
  train.prepare(c)
  state = vqvae.random_state_dict(enc_widths=(4, 4, 4, 4), embed_dim=8, dec_width=8,
                                  up_widths=(4, 4, 4, 4))
  np.savez(os.path.join(d, "vqvae_mock.npz"), **state)
  return d


@pytest.fixture
def xla_cache(tmp_path_factory):
  """A persistent XLA compilation cache (one folder per session) around one test."""
  old = {k: getattr(jax.config, k) for k in _CACHE_KEYS}
  jax.config.update(_CACHE_KEYS[0], str(tmp_path_factory.getbasetemp() / "xla_cache"))
  jax.config.update(_CACHE_KEYS[1], 0.0)
  jax.config.update(_CACHE_KEYS[2], 0)
  compilation_cache.reset_cache()
  yield
  for k, v in old.items():
    jax.config.update(k, v)
  compilation_cache.reset_cache()
