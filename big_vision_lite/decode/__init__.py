"""Autoregressive decoding on top of the model's prefill/extend KV cache.

The whole decode runs on the device: one jitted function prefills the cache with the
image and the (ragged, right-padded) prompts, then a `jax.lax.while_loop` extends it one
token at a time until every real example has emitted EOS or `max_decode_len` tokens
(batch padding rows, `_mask` False, count as finished from the start). No host round
trip per token. The batch may be sharded over any mesh; jit propagates the shardings.

Samplers (`decode_samplers.py`) are strings parsed with `registry.parse_call`:

  "greedy"                       argmax
  "temperature(t=0.7)"           sample from softmax(logits / t)
  "topk(k=40)"                   sample among the k most likely tokens (t=1.0 optional)
  "nucleus(p=0.9)"               sample from the smallest set with mass >= p (t optional)
  "beam(4)"                      beam search (`decode_beam.py`); beam(4, alpha=0.6)
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

from big_vision_lite.decode import samplers as decode_samplers

get_sampler = decode_samplers.get_sampler
allowed_tokens_mask = decode_samplers.allowed_tokens_mask


class _StaticModel:
  """Makes a Flax module (unhashable when it has dict fields) a static jit argument.

  Modules with equal fields trace to the same computation, so they share compilations
  (e.g. the model rebuilt by each call of a tool's `main`).
  """

  def __init__(self, obj):
    self.obj = obj
    self._key = (type(obj), repr(obj))

  def __hash__(self):
    return hash(self._key)

  def __eq__(self, other):
    return isinstance(other, _StaticModel) and (
        other.obj is self.obj or other._key == self._key)  # pylint: disable=protected-access


def _inputs(batch):
  """(image, text, input_mask, mask_ar, example_mask) of a batch normalised by `decode`."""
  text = jnp.asarray(batch["text"], jnp.int32)
  example_mask = batch.get("_mask", jnp.ones(text.shape[:1], bool))
  return (batch["image"], text, jnp.asarray(batch["mask_input"], bool),
          jnp.asarray(batch["mask_ar"], jnp.int32), jnp.asarray(example_mask, bool))


def num_image_tokens(model, params, image):
  """P, the number of image tokens the model prepends (from shapes only)."""
  x, _ = jax.eval_shape(
      lambda p, im: model.apply({"params": p}, im, method="embed_image"), params, image)
  return x.shape[1]


def prefill(model, params, batch, max_decode_len, cache_dtype=None):
  """Prefills the KV cache (for use inside jit).

  Returns:
    (logits f32[B, V] at each prompt's last valid token, cache, example_mask bool[B]).
  """
  image, text, input_mask, mask_ar, example_mask = _inputs(batch)
  cache_size = num_image_tokens(model, params, image) + text.shape[1] + max_decode_len
  logits, cache = model.apply({"params": params}, image, text, input_mask, mask_ar,
                              cache_size=cache_size, method="prefill_cache")
  if cache_dtype is not None:
    cache = jax.tree.map(
        lambda x: x.astype(cache_dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
        cache)
  return logits.astype(jnp.float32), cache, example_mask


def extend(model, params, tokens, cache):
  """One decode step: tokens int32[B] -> (logits f32[B, V], cache)."""
  dtypes = jax.tree.map(lambda x: x.dtype, cache)
  logits, cache = model.apply({"params": params}, tokens[:, None], cache,
                              method="extend_cache")
  cache = jax.tree.map(lambda x, d: x.astype(d), cache, dtypes)  # keep cache_dtype
  return logits.astype(jnp.float32), cache


def sample_loop(model, params, logits, cache, done, rng, knobs, *, max_decode_len, eos_id,
                pad_id=0, logit_mask=None, answers=None):
  """Extends `cache` token by token in a while_loop (for use inside jit).

  Token 0 is picked from the prefill logits; each loop iteration then runs one extend
  step on the last token and picks the next one, so L tokens cost L - 1 extend steps
  (none is spent after the last token).

  Args:
    model, params: the model.
    logits: float32[B, V] next-token logits after the prompt.
    cache: from `prefill`.
    done: bool[B], rows that are already finished (batch padding).
    rng: PRNG key; step i uses fold_in(rng, i).
    knobs: float32[3] (t, k, p), see `pick_tokens`.
    max_decode_len: int L.
    eos_id: int (may be traced).
    pad_id: int written after EOS.
    logit_mask: None, bool[V] or bool[B, V].
    answers: None or int32[A, L] (see `decode_samplers.answers_array`).

  Returns:
    dict(tokens int32[B, L], logprobs float32[B, L], lengths int32[B]); after EOS (which
    is included in the length) tokens are `pad_id` and log-probs 0.
  """
  b = logits.shape[0]
  state = dict(step=jnp.int32(0), cache=cache, done=done,
               last=jnp.full((b,), pad_id, jnp.int32),
               tokens=jnp.full((b, max_decode_len), pad_id, jnp.int32),
               logprobs=jnp.zeros((b, max_decode_len), jnp.float32),
               lengths=jnp.zeros((b,), jnp.int32))
  if answers is not None:
    state["alive"] = jnp.ones((b, answers.shape[0]), bool)

  def pick(s, logits):
    """Picks the token of step s["step"] from `logits` and records it."""
    step = s["step"]
    logits = decode_samplers.apply_logit_mask(logits, logit_mask)
    if answers is not None:
      logits = decode_samplers.apply_logit_mask(logits, decode_samplers.answers_mask(
          s["alive"], answers, step, logits.shape[-1]))
    tok = decode_samplers.pick_tokens(logits, jax.random.fold_in(rng, step), knobs)
    tok = jnp.where(s["done"], pad_id, tok)
    # log p(tok) without materialising log_softmax over the whole vocabulary.
    tok_logp = (jnp.take_along_axis(logits, tok[:, None], -1)[:, 0]
                - jax.nn.logsumexp(logits, -1))
    new = dict(
        s, step=step + 1, last=tok, done=s["done"] | (tok == eos_id),
        tokens=s["tokens"].at[:, step].set(tok),
        logprobs=s["logprobs"].at[:, step].set(jnp.where(s["done"], 0.0, tok_logp)),
        lengths=s["lengths"] + (~s["done"]).astype(jnp.int32))
    if answers is not None:
      new["alive"] = decode_samplers.answers_update(s["alive"], answers, step, tok)
    return new

  def cond(s):
    return (s["step"] < max_decode_len) & ~jnp.all(s["done"])

  def body(s):
    logits, cache = extend(model, params, s["last"], s["cache"])
    return pick(dict(s, cache=cache), logits)

  state = jax.lax.while_loop(cond, body, pick(state, logits))
  return {k: state[k] for k in ("tokens", "logprobs", "lengths")}


def _best_of_n(model, params, batch, rng, knobs, logit_mask, answers, *, n, max_decode_len,
               eos_id, pad_id, cache_dtype):
  b = batch["text"].shape[0]
  if logit_mask is not None and logit_mask.ndim == 2:
    logit_mask = jnp.repeat(logit_mask, n, axis=0)
  rep = jax.tree.map(lambda x: jnp.repeat(x, n, axis=0), batch)
  logits, cache, example_mask = prefill(model, params, rep, max_decode_len, cache_dtype)
  out = sample_loop(model, params, logits, cache, ~example_mask, rng, knobs,
                    max_decode_len=max_decode_len, eos_id=eos_id, pad_id=pad_id,
                    logit_mask=logit_mask, answers=answers)
  out = jax.tree.map(lambda x: x.reshape(b, n, *x.shape[1:]), out)
  sums = out["logprobs"].sum(-1)                              # [B, n]
  best = jnp.argmax(sums, axis=1)                             # [B]
  pick = lambda x: jnp.take_along_axis(
      x, best.reshape((b, 1) + (1,) * (x.ndim - 2)), axis=1)[:, 0]
  result = jax.tree.map(pick, out)
  result["all_logprob_sums"] = sums
  return result


@functools.partial(jax.jit, static_argnames=(
    "model", "max_decode_len", "kind", "n", "pad_id", "cache_dtype"))
def _decode_jit(model, params, batch, rng, knobs, eos_id, logit_mask, answers, alpha, *,
                max_decode_len, kind, n, pad_id, cache_dtype):
  model = model.obj
  kw = dict(max_decode_len=max_decode_len, eos_id=eos_id, pad_id=pad_id,
            cache_dtype=cache_dtype)
  if kind == "beam":
    from big_vision_lite.decode import beam as decode_beam  # pylint: disable=import-outside-toplevel
    return decode_beam.beam_search(model, params, batch, beam_size=n, alpha=alpha,
                                   logit_mask=logit_mask, **kw)
  if kind == "best_of_n":
    return _best_of_n(model, params, batch, rng, knobs, logit_mask, answers, n=n, **kw)
  logits, cache, example_mask = prefill(model, params, batch, max_decode_len, cache_dtype)
  return sample_loop(model, params, logits, cache, ~example_mask, rng, knobs,
                     max_decode_len=max_decode_len, eos_id=eos_id, pad_id=pad_id,
                     logit_mask=logit_mask, answers=answers)


def default_cache_dtype():
  """bfloat16 on accelerators, float32 on CPU."""
  return "float32" if jax.default_backend() == "cpu" else "bfloat16"


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
    answers = decode_samplers.answers_array(answers, int(eos_id), int(max_decode_len))
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
  return _decode_jit(_StaticModel(model), params, inputs, rng, s.knobs(),
                     jnp.int32(eos_id), logit_mask, answers, jnp.float32(s.alpha),
                     max_decode_len=int(max_decode_len), kind=s.kind, n=s.n, pad_id=int(pad_id),
                     cache_dtype=cache_dtype)


@functools.partial(jax.jit, static_argnames=("model",))
def _score_jit(model, params, batch):
  image, text, input_mask, mask_ar, _ = _inputs(batch)
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
  return _score_jit(_StaticModel(model), params, batch)
