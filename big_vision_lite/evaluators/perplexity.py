"""Perplexity: per-example negative log-likelihood of the supervised tokens.

With logits f32[B, T, V] of the full row (`predict_fns["logits"]`), token t+1 is
predicted at position t; the weights are `mask_loss[:, 1:]` (suffix + EOS), times
`text != pad_token` when `pad_token` is set. As big_vision's perplexity evaluator:
`nll` (its "avg") is each example's NLL averaged over its supervised tokens, then over
examples (as the training loss); `nll_sum` (its "sum") is the per-example sum averaged
over examples; `perplexity` = exp(nll). Examples without supervised tokens count with
NLL 0, as there (`skip_empty=True` leaves them out); padding examples (`_mask` False)
never count.
"""
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from big_vision_lite.evaluators import common


def per_example_nll(logits, text, mask_loss):
  """Mean NLL per example (float64 numpy reference of `nll_from_logits`).

  Args:
    logits: float32[B, T, V], logits at every position of `text`.
    text: int32[B, T] token ids.
    mask_loss: int32[B, T], 1 on supervised tokens.

  Returns:
    (nll float64[B], num_tokens float64[B]); nll is 0 where num_tokens is 0.
  """
  logits = np.asarray(logits, np.float64)[:, :-1]
  labels = np.asarray(text)[:, 1:]
  weights = np.asarray(mask_loss, np.float64)[:, 1:]
  if logits.shape[:2] != labels.shape:
    raise ValueError(f"logits {logits.shape[:2]} and text {labels.shape} (both after "
                     "the shift) must agree on [B, T-1]: pass the full-row logits.")
  mx = logits.max(axis=-1, keepdims=True)
  logz = np.log(np.exp(logits - mx).sum(axis=-1)) + mx[..., 0]
  picked = np.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
  count = weights.sum(axis=1)
  nll = ((logz - picked) * weights).sum(axis=1) / np.maximum(count, 1.0)
  return nll, count


@jax.jit
def _nll_device(logits, text, mask_loss):
  """`per_example_nll` in float32 on the logits' device (logits never leave it)."""
  logits = logits[:, :-1].astype(jnp.float32)
  logz = jax.nn.logsumexp(logits, axis=-1)
  picked = jnp.take_along_axis(logits, text[:, 1:, None].astype(jnp.int32), axis=-1)[..., 0]
  weights = mask_loss[:, 1:].astype(jnp.float32)
  count = weights.sum(axis=1)
  return ((logz - picked) * weights).sum(axis=1) / jnp.maximum(count, 1.0), count


def nll_from_logits(logits, text, mask_loss):
  """Per-example (nll, count) as float64 numpy [b] for this host's rows.

  Args:
    logits: float[B, T, V] numpy or jax.Array (possibly global, sharded over hosts).
    text: int32[b, T] this host's rows.
    mask_loss: int32[b, T].
  """
  if logits.shape[1] != text.shape[1]:
    raise ValueError(f"logits {logits.shape[:2]} and text {text.shape} must agree on T: "
                     "pass the full-row logits.")
  if isinstance(logits, jax.Array) and not logits.is_fully_addressable:
    shards = {}
    for s in logits.addressable_shards:
      shards.setdefault(s.index[0].start or 0, s.data)
    first, parts = min(shards), []
    for start in sorted(shards):
      rows = slice(start - first, start - first + shards[start].shape[0])
      parts.append(_nll_device(shards[start], text[rows], mask_loss[rows]))
    nll, count = (np.concatenate([np.asarray(p[i]) for p in parts]) for i in (0, 1))
  else:
    nll, count = (np.asarray(x) for x in _nll_device(logits, text, mask_loss))
  return nll.astype(np.float64), count.astype(np.float64)


@dataclasses.dataclass(kw_only=True, eq=False)
class Evaluator(common.EvaluatorBase):
  """Yields `nll`, `nll_sum` and `perplexity` (see the module docstring)."""

  # Perplexity needs no detokenisation: the tokenizer is optional and unused.
  tokenizer: Any = dataclasses.field(default=None, kw_only=False)
  pad_token: int | None = None
  skip_empty: bool = False
  name: str = "perplexity"

  def __post_init__(self):
    self.skip_empty = bool(self.skip_empty)

  def run(self, params):
    """Evaluates `params`; yields (metric name, value)."""
    total = total_sum = num = tokens = 0.0
    for batch in common.eval_batches(self.data, self.pp_fn, self.batch_size):
      model_batch = {k: v for k, v in batch.items() if k in common.MODEL_KEYS}
      logits, _ = self.predict_fn(params, model_batch)
      weights = np.asarray(batch["mask_loss"])
      if self.pad_token is not None:
        weights = weights * (np.asarray(batch["text"]) != self.pad_token)
      nll, count = nll_from_logits(logits, batch["text"], weights)
      keep = np.asarray(batch["_mask"], bool)
      if self.skip_empty:
        keep &= count > 0
      total, total_sum = total + nll[keep].sum(), total_sum + (nll * count)[keep].sum()
      num, tokens = num + keep.sum(), tokens + count[keep].sum()
    total, total_sum, num, tokens = common.process_sum([total, total_sum, num, tokens])
    if num:
      yield "nll", total / num
      yield "nll_sum", total_sum / num
      yield "perplexity", float(np.exp(total / num))
    yield "num", num
    yield "num_tokens", tokens
