"""Token streaming: decodes one request step by step, yielding each token as it is made.

`decode.decode` runs the whole answer in one on-device loop, so nothing leaves the device
before the end. A stream instead calls the same pieces from the host: one jitted
`decode.prefill`, then per token one jitted step (`decode_samplers.pick_tokens` on the
logits, then `decode.extend` with the picked token). Streams are decoded alone (batch 1,
beside the batcher's decodes), with the prompt and cache sizes bucketed like the batches,
so they compile once per bucket. Greedy streams give the tokens of `/v1/generate`.
"""
import functools

import jax
import numpy as np

from big_vision_lite import decode
from big_vision_lite.decode import samplers as decode_samplers
from big_vision_lite.serve import engine as engine_lib


class Streamer:
  """Step-by-step decoding for an `Engine`'s model (jitted once per engine and bucket)."""

  def __init__(self, engine):
    self.engine = engine
    model = engine.model
    cache_dtype = str(np.dtype(engine.cache_dtype or decode.default_cache_dtype()))

    @functools.partial(jax.jit, static_argnames=("max_decode_len",))
    def prefill(params, batch, *, max_decode_len):
      logits, cache, _ = decode.prefill(model, params, batch, max_decode_len, cache_dtype)
      return logits, cache

    @jax.jit
    def pick(logits, key, knobs, logit_mask):
      logits = decode_samplers.apply_logit_mask(logits, logit_mask)
      return decode_samplers.pick_tokens(logits, key, knobs)

    @jax.jit
    def extend(params, tokens, cache):
      return decode.extend(model, params, tokens, cache)

    self._prefill, self._pick, self._extend = prefill, pick, extend

  def check(self, options):
    """Raises RequestError for samplers that cannot stream (beam, best_of_n)."""
    kind = decode.get_sampler(options.sampler).kind
    if kind != "token":
      raise engine_lib.RequestError(
          f"sampler {options.sampler!r} ({kind}) ranks whole answers and cannot stream; "
          "use greedy, temperature, topk or nucleus, or drop `stream`.", field="stream")

  def tokens(self, example, options):
    """Yields the answer's token ids one by one (EOS, if reached, is not yielded)."""
    self.check(options)
    eng = self.engine
    _, t, length = eng.shapes(1, example.prompt_tokens, options.max_tokens)
    batch = {k: getattr(example, k)[None] for k in ("image", "text", "mask_ar", "mask_input")}
    for k in ("text", "mask_ar", "mask_input"):
      batch[k] = batch[k][:, :t]
    batch["_mask"] = np.ones((1,), bool)
    logits, cache = self._prefill(eng.params, batch, max_decode_len=length)
    knobs = decode.get_sampler(options.sampler).knobs()
    rng = jax.random.key(options.seed)
    for step in range(options.max_tokens):
      tok = self._pick(logits, jax.random.fold_in(rng, step), knobs, eng.logit_mask)
      token = int(tok[0])
      if token == eng.tok.eos_id:
        return
      yield token
      if step + 1 < options.max_tokens:
        logits, cache = self._extend(eng.params, tok, cache)
