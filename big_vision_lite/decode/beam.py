"""Beam search on the device, inside one `jax.lax.while_loop` (used by `decode.decode`).

Every example keeps `beam_size` hypotheses in a batch of B * beam_size cache rows. Each
step scores all beam_size * V continuations, keeps the best beam_size and reorders the KV
cache rows to follow their source beams. A finished hypothesis (it emitted EOS) survives
only as itself with pad tokens appended at no cost, so search stops once the best
beam_size hypotheses of every real example are finished.

Ranking: sum of token log-probs, divided by length**alpha when alpha > 0 (length
normalisation; alpha=0 is the plain sum). With beam_size 1 this is greedy decoding.
"""
import jax
import jax.numpy as jnp

from big_vision_lite.decode import loop
from big_vision_lite.decode import samplers

_NEG = -1e30


def cache_batch_axes(model, params, batch, max_decode_len, cache_dtype):
  """Per cache leaf, the axis that indexes batch rows (or None), found from shapes.

  The cache is opaque; its batch axis is the one whose size changes between a prefill
  of 1 row and one of 2 rows.
  """
  def shapes(n):
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct((n,) + x.shape[1:], x.dtype), batch)
    return jax.eval_shape(
        lambda bt: loop.prefill(model, params, bt, max_decode_len, cache_dtype)[1], one)

  def axis(a, b):
    diff = [i for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y]
    assert len(diff) <= 1, (a.shape, b.shape)
    return diff[0] if diff else None
  return jax.tree.map(axis, shapes(1), shapes(2))


def beam_search(model, params, batch, *, beam_size, alpha, max_decode_len, eos_id, pad_id,
                logit_mask, cache_dtype):
  """Beam search (for use inside jit).

  Args:
    model, params, batch: as for `decode.decode`.
    beam_size: int K.
    alpha: length normalisation exponent (float or float32 scalar).
    max_decode_len: int L.
    eos_id, pad_id: ints.
    logit_mask: None, bool[V] or bool[B, V].
    cache_dtype: KV cache dtype name.

  Returns:
    dict(tokens int32[B, L], logprobs f32[B, L], lengths int32[B], scores f32[B]) for
    the best hypothesis of each example.
  """
  k, length = beam_size, max_decode_len
  b = batch["text"].shape[0]
  axes = cache_batch_axes(model, params, batch, length, cache_dtype)
  rep = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), batch)
  logits, cache, example_mask = loop.prefill(model, params, rep, length, cache_dtype)
  if logit_mask is not None and logit_mask.ndim == 2:
    logit_mask = jnp.repeat(logit_mask, k, axis=0)
  finished = jnp.broadcast_to(~example_mask.reshape(b, k), (b, k))
  state = dict(
      step=jnp.int32(0), logits=logits, cache=cache, finished=finished,
      # Only beam 0 is live at first: the K prompt copies are identical.
      scores=jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, _NEG), (b, 1)),
      lengths=jnp.zeros((b, k), jnp.int32),
      tokens=jnp.full((b, k, length), pad_id, jnp.int32),
      logprobs=jnp.zeros((b, k, length), jnp.float32))

  def rank(scores, lengths):  # alpha may be traced: length**0 == 1 is the plain sum.
    return scores / jnp.maximum(lengths, 1).astype(jnp.float32) ** alpha

  def cond(s):
    return (s["step"] < length) & ~jnp.all(s["finished"])

  def body(s):
    step = s["step"]
    logp = jax.nn.log_softmax(samplers.apply_logit_mask(s["logits"], logit_mask), -1)
    v = logp.shape[-1]
    logp = logp.reshape(b, k, v)
    # A finished hypothesis continues only with pad, at no cost.
    pad_only = jnp.where(jnp.arange(v) == pad_id, 0.0, _NEG)
    logp = jnp.where(s["finished"][..., None], pad_only, logp)
    cand = s["scores"][..., None] + logp                                # [B, K, V]
    cand_len = s["lengths"] + (~s["finished"]).astype(jnp.int32)       # [B, K]
    key = rank(cand, cand_len[..., None]).reshape(b, k * v)
    _, idx = jax.lax.top_k(key, k)                                      # [B, K]
    src, tok = idx // v, (idx % v).astype(jnp.int32)
    take = lambda x: jnp.take_along_axis(x, src.reshape(src.shape + (1,) * (x.ndim - 2)),
                                         axis=1)
    was_finished = take(s["finished"])
    tok_logp = jnp.take_along_axis(logp.reshape(b, k * v), idx, axis=1)
    new = dict(
        step=step + 1,
        scores=jnp.take_along_axis(cand.reshape(b, k * v), idx, axis=1),
        lengths=take(cand_len),
        finished=was_finished | (tok == eos_id),
        tokens=take(s["tokens"]).at[:, :, step].set(tok),
        logprobs=take(s["logprobs"]).at[:, :, step].set(
            jnp.where(was_finished, 0.0, tok_logp)))
    rows = (jnp.arange(b)[:, None] * k + src).reshape(-1)               # [B*K]
    cache = jax.tree.map(lambda x, ax: x if ax is None else jnp.take(x, rows, axis=ax),
                         s["cache"], axes)
    new["logits"], new["cache"] = loop.extend(model, params, tok.reshape(-1), cache)
    return new

  s = jax.lax.while_loop(cond, body, state)
  best = jnp.argmax(rank(s["scores"], s["lengths"]), axis=1)            # [B]
  pick = lambda x: jnp.take_along_axis(
      x, best.reshape((b, 1) + (1,) * (x.ndim - 2)), axis=1)[:, 0]
  out = {n: pick(s[n]) for n in ("tokens", "logprobs", "lengths")}
  out["scores"] = pick(rank(s["scores"], s["lengths"]))
  real = example_mask.reshape(b, k)[:, 0]
  out["lengths"] = jnp.where(real, out["lengths"], 0)
  return out
