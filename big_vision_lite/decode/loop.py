"""The decode loop: KV-cache prefill, one-token extend, and the sampling `while_loop`.

Building blocks for use inside jit, shared by `decode.decode` (the public API), beam
search (`decode.beam`) and the streaming server (`serve.stream`): `prefill` fills the
cache with image + prompt, `extend` runs one step, `sample_loop` extends token by token
until every row has emitted EOS or the length limit, `best_of_n` keeps the best of n
sampled rows. `StaticModel` makes a Flax module a hashable static jit argument.
"""
import jax
import jax.numpy as jnp

from big_vision_lite.decode import samplers

class StaticModel:
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
    return isinstance(other, StaticModel) and (
        other.obj is self.obj or other._key == self._key)  # pylint: disable=protected-access


def batch_inputs(batch):
  """(image, text, input_mask, mask_ar, example_mask) of a batch normalised by `decode.decode`."""
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
  image, text, input_mask, mask_ar, example_mask = batch_inputs(batch)
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
    answers: None or int32[A, L] (see `samplers.answers_array`).

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
    logits = samplers.apply_logit_mask(logits, logit_mask)
    if answers is not None:
      logits = samplers.apply_logit_mask(logits, samplers.answers_mask(
          s["alive"], answers, step, logits.shape[-1]))
    tok = samplers.pick_tokens(logits, jax.random.fold_in(rng, step), knobs)
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
      new["alive"] = samplers.answers_update(s["alive"], answers, step, tok)
    return new

  def cond(s):
    return (s["step"] < max_decode_len) & ~jnp.all(s["done"])

  def body(s):
    logits, cache = extend(model, params, s["last"], s["cache"])
    return pick(dict(s, cache=cache), logits)

  state = jax.lax.while_loop(cond, body, pick(state, logits))
  return {k: state[k] for k in ("tokens", "logprobs", "lengths")}


def best_of_n(model, params, batch, rng, knobs, logit_mask, answers, *, n, max_decode_len,
              eos_id, pad_id, cache_dtype):
  """n sampled decodes per row; keeps the one with the highest summed log-prob (in jit)."""
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



def default_cache_dtype():
  """bfloat16 on accelerators, float32 on CPU."""
  return "float32" if jax.default_backend() == "cpu" else "bfloat16"
