"""Tiny served models for the server tests: random weights, and a "chain" model whose
answer is fixed by construction (so that detection / segmentation output is known)."""
import io

import jax
import numpy as np
from PIL import Image

from big_vision_lite import tokenizer
from big_vision_lite.models import paligemma
from big_vision_lite.models import vqvae
from big_vision_lite.serve import engine as engine_lib

RES = 28


def make_tokenizer(path):
  tokenizer.train_tokenizer(["a photo of a cat", "caption en", "detect dog ; cat",
                             "answer en what color is it ?", "segment cat", "ocr"] * 20,
                            path, vocab_size=300)
  return tokenizer.Tokenizer(path)


def random_model(tok, seed=0):
  """(model, params): mu/14 ViT at 28 px + gemma_tiny, weights 0.3 * N(0, 1)."""
  model = paligemma.Model(img=dict(variant="mu/14", scan=True),
                          llm=dict(variant="gemma_tiny", vocab_size=tok.vocab_size, scan=True))
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          np.zeros((1, RES, RES, 3), np.float32),
                          np.zeros((1, 4), np.int32), np.zeros((1, 4), np.int32))
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: (0.3 * rng.normal(size=s.shape)).astype(np.float32),
                        shapes["params"])
  return model, params


def chain_model(tok, answer, sep_id, scale=3.0):
  """(model, params) that greedily answers `answer` (+ EOS) to any image and prompt.

  The decoder's attention outputs and MLPs are zero, so the residual stream at a position
  is its token's embedding and the next token depends on the current token only. Token k
  of the chain [sep_id, *answer ids, EOS] gets the embedding scale**k * (e_k + e_{k+1}):
  its normalised state scores token k+1 highest (scale**(k+1) vs 2 * scale**k for itself).
  """
  model, params = random_model(tok)
  chain = [sep_id] + tok.encode(answer) + [tok.eos_id]
  if len(set(chain)) != len(chain):
    raise ValueError(f"chain {chain} repeats a token; pick an answer of distinct pieces.")
  llm = params["llm"]
  emb = 0.01 * np.random.default_rng(1).normal(size=llm["embedder"]["input_embedding"].shape)
  basis = np.eye(emb.shape[1])
  for k, t in enumerate(chain):
    emb[t] = scale**k * (basis[k] + basis[k + 1])
  llm["embedder"]["input_embedding"] = emb.astype(np.float32)
  llm["final_norm"]["scale"] = np.zeros_like(llm["final_norm"]["scale"])
  for name in ("attn/attn_vec_einsum/w", "mlp/linear"):
    mod, *rest = name.split("/")
    tree = llm["layers"][mod]
    for key in rest[:-1]:
      tree = tree[key]
    tree[rest[-1]] = np.zeros_like(tree[rest[-1]])
  return model, params


def separator_id(engine):
  """Last token of the prompt row ([BOS] prompt sep): the chain's start."""
  ex = engine.preprocess(png_bytes(np.zeros((8, 8, 3), np.uint8)), "detect cat")
  return int(ex.text[ex.prompt_tokens - 1])


def tiny_vqvae():
  return vqvae.convert_state_dict(vqvae.random_state_dict(
      enc_widths=(4, 4, 4, 4), embed_dim=8, dec_width=4, up_widths=(4, 4, 4, 4)))


def png_bytes(array):
  buf = io.BytesIO()
  Image.fromarray(np.asarray(array, np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


def images(n, seed=0):
  """n random RGB images of different sizes, as PNG bytes."""
  rng = np.random.default_rng(seed)
  return [png_bytes(rng.integers(0, 255, (20 + 7 * i, 30 + 5 * i, 3))) for i in range(n)]


def engine(model, params, tok, **kw):
  kw = dict(dict(res=RES, text_len=32, max_tokens=8, max_batch=4), **kw)
  return engine_lib.Engine(model, jax.device_put(params), tok, **kw)
