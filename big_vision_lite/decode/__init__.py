"""Autoregressive decoding: the public API `decode`, `score` and the sampler strings.

The whole decode runs on the device: one jitted function prefills the cache with the
image and the (ragged, right-padded) prompts, then a `jax.lax.while_loop` extends it one
token at a time until every real example has emitted EOS or `max_decode_len` tokens
(batch padding rows, `_mask` False, count as finished from the start). No host round
trip per token. The batch may be sharded over any mesh; jit propagates the shardings.

The package: this module (public API), `loop` (prefill / extend / the sampling loop),
`beam` (beam search) and `samplers` (sampler strings, token picking, logit masks).
Samplers are strings parsed with `registry.parse_call`:

  "greedy"                       argmax
  "temperature(t=0.7)"           sample from softmax(logits / t)
  "topk(k=40)"                   sample among the k most likely tokens (t=1.0 optional)
  "nucleus(p=0.9)"               sample from the smallest set with mass >= p (t optional)
  "beam(4)"                      beam search (`decode/beam.py`); beam(4, alpha=0.6)
                                 ranks by sum log-prob / length**alpha
  "best_of_n(n=4, sampler='nucleus(p=0.9)')"  n samples, keep the highest summed log-prob

Log-probs are those of the model's distribution (after the optional `logit_mask` /
`answers` constraints, before temperature / top-k / top-p), so they rank hypotheses of
any sampler the same way.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from big_vision_lite.decode import beam
from big_vision_lite.decode import loop
from big_vision_lite.decode import samplers

# The building blocks, for callers that run their own loop (serve.stream, benchmarks).
Sampler = samplers.Sampler
get_sampler = samplers.get_sampler
allowed_tokens_mask = samplers.allowed_tokens_mask
num_image_tokens = loop.num_image_tokens
prefill = loop.prefill
extend = loop.extend
sample_loop = loop.sample_loop
default_cache_dtype = loop.default_cache_dtype


@functools.partial(jax.jit, static_argnames=(
    "model", "max_decode_len", "kind", "n", "pad_id", "cache_dtype"))
def _decode_jit(model, params, batch, rng, knobs, eos_id, logit_mask, answers, alpha, *,
                max_decode_len, kind, n, pad_id, cache_dtype):
  model = model.obj
  kw = dict(max_decode_len=max_decode_len, eos_id=eos_id, pad_id=pad_id,
            cache_dtype=cache_dtype)
  if kind == "beam":
    return beam.beam_search(model, params, batch, beam_size=n, alpha=alpha,
                            logit_mask=logit_mask, **kw)
  if kind == "best_of_n":
    return loop.best_of_n(model, params, batch, rng, knobs, logit_mask, answers, n=n, **kw)
  logits, cache, example_mask = prefill(model, params, batch, max_decode_len, cache_dtype)
  return sample_loop(model, params, logits, cache, ~example_mask, rng, knobs,
                     max_decode_len=max_decode_len, eos_id=eos_id, pad_id=pad_id,
                     logit_mask=logit_mask, answers=answers)


def _pad_to_bucket(inputs, bucket):
  """Right-pads text/mask_ar/mask_input to a multiple of `bucket` (padding is invalid)."""
  t = np.shape(inputs["text"])[1]
  extra = -t % bucket
  if not extra:
    return inputs
  def pad(x):  # jnp keeps a device (possibly sharded) array on its devices.
    xp = jnp if isinstance(x, jax.Array) else np
    return xp.pad(xp.asarray(x), ((0, 0), (0, extra)))
  return dict(inputs, text=pad(inputs["text"]), mask_ar=pad(inputs["mask_ar"]),
              mask_input=pad(inputs["mask_input"]))


def decode(model, params, batch, *, max_decode_len, sampler="greedy", eos_id, rng=None,
           pad_id=0, logit_mask=None, answers=None, cache_dtype=None, prompt_bucket=16):
  """Decodes a batch of prompts.

  Compiled once per (model config, shapes, sampler kind): calling again with the same
  (or an equal) `model` reuses the compiled function; greedy / temperature / top-k / nucleus and
  any eos_id share it, and prompt lengths are bucketed (`prompt_bucket`).

  Args:
    model: a paligemma `Model` (any module with embed_image / prefill_cache /
      extend_cache methods).
    params: its params.
    batch: dict with `image` f32[B, H, W, 3], `text` int32[B, T] (BOS + prompt + sep,
      right-padded), `mask_ar` int32[B, T], `mask_input` int32/bool[B, T] (default:
      text != 0) and optional `_mask` bool[B] (False = batch padding). Other keys are
      ignored.
    max_decode_len: int, maximum number of generated tokens (EOS included).
    sampler: sampler string (module docstring) or `Sampler`.
    eos_id: int, end-of-sequence id.
    rng: PRNG key for sampling samplers (default key 0).
    pad_id: id written after EOS.
    logit_mask: optional bool[V] or bool[B, V]: tokens allowed at every step.
    answers: optional list of token-id lists: the output is forced to be one of them
      (EOS is appended where missing); not with beam search.
    cache_dtype: KV cache dtype (default: `default_cache_dtype()`).
    prompt_bucket: the prompt length T is right-padded (as invalid tokens) to a multiple
      of this, so prompts of lengths within one bucket share one compilation; 1 = off.

  Returns:
    dict(tokens int32[B, max_decode_len], logprobs f32[B, max_decode_len],
    lengths int32[B]) (best_of_n adds all_logprob_sums f32[B, n]; beam adds
    scores f32[B], the ranking score of the returned hypothesis).
  """
  if max_decode_len < 1:
    raise ValueError(f"max_decode_len={max_decode_len} must be >= 1.")
  if isinstance(prompt_bucket, bool) or not isinstance(prompt_bucket, int) or prompt_bucket < 1:
    raise ValueError(f"prompt_bucket={prompt_bucket!r} must be an int >= 1 (1 = no padding).")
  s = get_sampler(sampler)
  rng = jax.random.key(0) if rng is None else rng
  cache_dtype = str(jnp.dtype(cache_dtype or default_cache_dtype()))
  if logit_mask is not None:
    logit_mask = jnp.asarray(logit_mask, bool)
  if answers is not None:
    if s.kind == "beam":
      raise ValueError("answers= is not supported with beam search; rank a closed answer "
                       "set with decode.score() instead, or use greedy / best_of_n.")
    answers = samplers.answers_array(answers, int(eos_id), int(max_decode_len))
  for k in ("image", "text", "mask_ar"):
    if k not in batch:
      raise KeyError(f"Decode batch lacks {k!r}; has {sorted(batch)}. Use an eval pp that "
                     "ends with combine_and_keep_eval (image, text, mask_ar, mask_input).")
  if np.ndim(batch["text"]) != 2:
    raise ValueError(f"batch['text'] shape {np.shape(batch['text'])} != (B, T).")
  b = np.shape(batch["text"])[0]
  # Same pytree structure for every call, so optional keys don't cause recompiles.
  inputs = dict(image=batch["image"], text=batch["text"], mask_ar=batch["mask_ar"],
                mask_input=batch.get("mask_input"), _mask=batch.get("_mask"))
  if inputs["mask_input"] is None:
    inputs["mask_input"] = jnp.asarray(batch["text"]) != pad_id
  if inputs["_mask"] is None:
    inputs["_mask"] = np.ones((b,), bool)
  inputs = _pad_to_bucket(inputs, prompt_bucket)
  return _decode_jit(loop.StaticModel(model), params, inputs, rng, s.knobs(),
                     jnp.int32(eos_id), logit_mask, answers, jnp.float32(s.alpha),
                     max_decode_len=int(max_decode_len), kind=s.kind, n=s.n, pad_id=int(pad_id),
                     cache_dtype=cache_dtype)


@functools.partial(jax.jit, static_argnames=("model",))
def _score_jit(model, params, batch):
  image, text, input_mask, mask_ar, _ = loop.batch_inputs(batch)
  logits, _ = model.obj.apply({"params": params}, image, text, mask_ar,
                              input_mask=input_mask)
  logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), -1)
  tok_logp = jnp.take_along_axis(logp, text[:, 1:, None], -1)[..., 0]
  return jnp.sum(tok_logp * batch["mask_loss"][:, 1:], -1)


def score(model, params, batch):
  """Sum of log-probs of each example's suffix given image and prompt.

  Args:
    model, params: as for `decode`.
    batch: training-format rows: `image`, `text` int32[B, T] (BOS prefix sep suffix
      [EOS] pad), `mask_ar`, `mask_input` and `mask_loss` int32[B, T] (1 on the tokens
      to score).

  Returns:
    float32[B]: sum over scored tokens of log p(token | everything before it).
  """
  if "mask_loss" not in batch:
    raise KeyError(f"score() needs batch['mask_loss'] marking the suffix tokens to score; "
                   f"batch has {sorted(batch)}. Use combine_and_keep_train rows.")
  batch = {k: v for k, v in batch.items()
           if k in ("image", "text", "mask_ar", "mask_input", "mask_loss")}
  batch.setdefault("mask_input", jnp.asarray(batch["text"]) != 0)
  batch["mask_loss"] = jnp.asarray(batch["mask_loss"], jnp.float32)
  return _score_jit(loop.StaticModel(model), params, batch)
