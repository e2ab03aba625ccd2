"""Perplexity: per-example mean negative log-likelihood of the supervised tokens.

With logits f32[B, T, V] of the full row (`predict_fns["logits"]`), token t+1 is
predicted at position t; the weights are `mask_loss[:, 1:]` (suffix + EOS). Each
example's NLL is averaged over its supervised tokens, then over examples (as the
training loss); `perplexity` = exp(mean NLL). Examples without supervised tokens and
padding examples (`_mask` False) are skipped.
"""
import numpy as np

from big_vision_lite.evaluators import common


def per_example_nll(logits, text, mask_loss):
  """Mean NLL per example.

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


class Evaluator:
  """Yields `nll` (mean over examples of per-example mean NLL) and `perplexity`."""

  def __init__(self, predict_fn, tokenizer=None, *, data, pp_fn, batch_size,
               name="perplexity", workdir=None):
    del tokenizer  # Perplexity needs no detokenisation.
    self.predict_fn = predict_fn
    self.data, self.pp_fn, self.batch_size = data, pp_fn, batch_size
    self.name, self.workdir = name, workdir

  def run(self, params):
    """Evaluates `params`; yields (metric name, value)."""
    total = num = tokens = 0.0
    for batch in common.eval_batches(self.data, self.pp_fn, self.batch_size):
      model_batch = {k: v for k, v in batch.items() if k in common.MODEL_KEYS}
      logits, _ = self.predict_fn(params, model_batch)
      nll, count = per_example_nll(common.local_rows(logits), batch["text"],
                                   batch["mask_loss"])
      keep = np.asarray(batch["_mask"], bool) & (count > 0)
      total, num, tokens = total + nll[keep].sum(), num + keep.sum(), tokens + count[keep].sum()
    total, num, tokens = common.process_sum([total, num, tokens])
    if num:
      yield "nll", total / num
      yield "perplexity", float(np.exp(total / num))
    yield "num", num
    yield "num_tokens", tokens
