"""The serving engine: one loaded model that checks requests and decodes padded batches.

Every request is preprocessed exactly as `tools/predict.py` and evaluation do (the pp ops
`resize(res)|value_range(-1, 1)|combine_and_keep_eval(text_len)`, images decoded with PIL),
then decoded by `decode.decode` together with the other requests of its batch. Shapes are
bucketed so that a running server compiles a bounded set of decode functions, never one
per request:

  batch      padded up to the next size in `batch_sizes` (1, 2, 4, ... max_batch), the
             padding rows marked `_mask` False (finished from the start);
  prompt     the token row cut to the next length in `text_lens` (16, 32, ... text_len)
             that holds every prompt of the batch (rows are right-padded, so cutting
             padding changes nothing);
  new tokens decoded up to the next length in `decode_lens` (8, 16, ... max_tokens) that
             holds the largest `max_tokens` of the batch; each answer is then cut at its
             own `max_tokens`.

Greedy answers therefore do not depend on which requests share a batch. Sampled ones do:
the samplers draw for the whole batch from one key (`seed`), so a request's draws depend on
its row.
"""
import dataclasses
import io
import time

import jax
import numpy as np
from PIL import Image
from PIL import ImageOps
import tensorflow as tf

from big_vision_lite import decode
from big_vision_lite import postprocess
from big_vision_lite.pp import builder
from big_vision_lite.pp import ops_image

MAX_PROMPT_CHARS = 2000


class RequestError(ValueError):
  """A request the server refuses; `status` is the HTTP code, the message says why."""

  def __init__(self, message, status=400, field=None):
    super().__init__(message)
    self.status = status
    self.field = field


@dataclasses.dataclass(frozen=True)
class Options:
  """Decoding options of one request (validated by `Engine.check_options`)."""
  sampler: str = "greedy"
  max_tokens: int = 32
  seed: int = 0

  def group(self):
    """Requests with equal groups may share a batch (one sampler and key per batch)."""
    return (self.sampler, self.seed)


@dataclasses.dataclass
class Example:
  """One preprocessed request: image float32[res, res, 3], rows int32[text_len]."""
  image: np.ndarray
  text: np.ndarray
  mask_ar: np.ndarray
  mask_input: np.ndarray
  prompt_tokens: int
  size: tuple


def buckets(limit, smallest):
  """Powers of two from `smallest` below `limit`, then `limit`: e.g. (8, 16, 32, 40)."""
  if limit < 1:
    raise ValueError(f"bucket limit {limit} must be >= 1.")
  out, v = [], smallest
  while v < limit:
    out.append(v)
    v *= 2
  return tuple(out) + (limit,)


def _blank_png():
  buf = io.BytesIO()
  Image.new("RGB", (8, 8)).save(buf, format="PNG")
  return buf.getvalue()


def _bucket(sizes, n):
  return next(s for s in sizes if s >= n)


class Engine:
  """A model, its tokenizer and (optionally) the VQ-VAE, serving padded batches.

  Args:
    model, params: a paligemma `Model` and its params (on device).
    tok: `tokenizer.Tokenizer`.
    res: image side the model takes.
    text_len: longest token row (BOS + prompt + separator).
    max_tokens: the most new tokens a request may ask for.
    max_batch: the largest decode batch.
    vqvae_params: from `vqvae.load_vqvae`, to turn `<seg>` answers into masks.
    cache_dtype: KV cache dtype (default `decode.default_cache_dtype()`).
    max_pixels: larger images are refused before decoding.
  """

  def __init__(self, model, params, tok, *, res, text_len=64, max_tokens=64, max_batch=8,
               vqvae_params=None, cache_dtype=None, max_pixels=ops_image.MAX_PIXELS):
    for name, v, lo in (("res", res, 1), ("text_len", text_len, 3),
                        ("max_tokens", max_tokens, 1), ("max_batch", max_batch, 1)):
      if not isinstance(v, int) or v < lo:
        raise ValueError(f"Engine {name}={v!r} must be an int >= {lo}.")
    self.model, self.params, self.tok, self.res = model, params, tok, res
    self.text_len, self.max_tokens, self.max_batch = text_len, max_tokens, max_batch
    self.vqvae_params, self.cache_dtype, self.max_pixels = vqvae_params, cache_dtype, max_pixels
    self.batch_sizes = buckets(max_batch, 1)
    self.text_lens = buckets(text_len, 16)
    self.decode_lens = buckets(max_tokens, 8)
    self._pp = builder.get_preprocess_fn(
        f"decode|resize({res})|value_range(-1, 1)|"
        f"combine_and_keep_eval({text_len}, model={tok.model_path!r})")
    vocab = params["llm"]["embedder"]["input_embedding"].shape[0]
    if vocab < tok.vocab_size:
      raise ValueError(f"The model's vocabulary ({vocab}) is smaller than the tokenizer's "
                       f"({tok.vocab_size}): wrong --tokenizer for this checkpoint?")
    # A model vocab padded beyond the tokenizer's never emits the ids the tokenizer lacks.
    self.logit_mask = None if vocab == tok.vocab_size else np.arange(vocab) < tok.vocab_size

  def info(self):
    """JSON-ready description (for the health endpoint)."""
    return dict(res=self.res, text_len=self.text_len, max_tokens=self.max_tokens,
                max_batch=self.max_batch, batch_sizes=list(self.batch_sizes),
                text_lens=list(self.text_lens), decode_lens=list(self.decode_lens),
                segmentation_masks=self.vqvae_params is not None,
                vocab_size=self.tok.vocab_size, backend=jax.default_backend())

  def check_options(self, sampler="greedy", max_tokens=32, seed=None):
    """Validates decoding options; returns `Options` or raises `RequestError`."""
    if not isinstance(sampler, str) or not sampler.strip():
      raise RequestError(f"sampler must be a non-empty string, got {sampler!r}; e.g. "
                         "'greedy', 'temperature(t=0.7)', 'nucleus(p=0.9)', 'beam(4)'.",
                         field="sampler")
    try:
      kind = decode.get_sampler(sampler).kind
    except (ValueError, KeyError, TypeError, SyntaxError) as e:
      raise RequestError(f"Bad sampler {sampler!r}: {e}", field="sampler") from e
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not (
        1 <= max_tokens <= self.max_tokens):
      raise RequestError(f"max_tokens={max_tokens!r} must be an int in [1, "
                         f"{self.max_tokens}] (the server's --max_tokens).", field="max_tokens")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not (
        0 <= seed < 2**31)):
      raise RequestError(f"seed={seed!r} must be an int in [0, 2**31).", field="seed")
    # Greedy and beam search draw nothing: the seed must not split their batches.
    seed = 0 if seed is None or kind in ("greedy", "beam") else seed
    return Options(sampler=sampler.strip(), max_tokens=max_tokens, seed=seed)

  def load_image(self, data):
    """Encoded image bytes -> uint8[H, W, 3] (EXIF orientation applied, as browsers show)."""
    if not data:
      raise RequestError("The image is empty; send a JPEG, PNG, GIF, BMP or WebP file.",
                         field="image")
    try:
      with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        if w * h > self.max_pixels:
          raise RequestError(f"The image is {w}x{h} = {w * h} pixels, more than the "
                             f"{self.max_pixels} allowed; resize it.", status=413,
                             field="image")
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB"))
    except RequestError:
      raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
      raise RequestError(f"The image could not be decoded ({type(e).__name__}: {e}); "
                         "send a JPEG, PNG, GIF, BMP or WebP file.", field="image") from e

  def preprocess(self, image_bytes, prompt):
    """Checks and preprocesses one request; returns an `Example` or raises RequestError."""
    if not isinstance(prompt, str) or not prompt.strip():
      raise RequestError(f"prompt must be a non-empty string, got {prompt!r}; e.g. "
                         "'caption en', 'answer en what color is the circle?', "
                         "'detect circle', 'segment circle', 'ocr'.", field="prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
      raise RequestError(f"prompt has {len(prompt)} characters; at most "
                         f"{MAX_PROMPT_CHARS}.", field="prompt")
    image = self.load_image(image_bytes)
    ex = self._pp({"image": tf.constant(image), "prefix": tf.constant(prompt)})
    if int(ex["_truncated"]):
      n = len(self.tok.encode(prompt))
      raise RequestError(f"prompt is {n} tokens; at most {self.text_len - 2} fit (BOS + "
                         f"prompt + separator in the server's --text_len={self.text_len}).",
                         field="prompt")
    rows = {k: np.asarray(ex[k]) for k in ("image", "text", "mask_ar", "mask_input")}
    return Example(prompt_tokens=int(rows["mask_input"].sum()), size=tuple(image.shape[:2]),
                   **rows)

  def shapes(self, n, prompt_tokens, max_tokens):
    """(batch, text_len, decode_len) buckets of a batch of n requests."""
    if not 1 <= n <= self.max_batch:
      raise ValueError(f"batch of {n} requests; the engine takes 1..{self.max_batch}.")
    return (_bucket(self.batch_sizes, n), _bucket(self.text_lens, prompt_tokens),
            _bucket(self.decode_lens, max_tokens))

  def generate(self, examples, options):
    """Decodes requests in one padded batch.

    Args:
      examples: list of `Example` (1..max_batch).
      options: list of `Options`, one per example, all of one `group()`.

    Returns:
      list of dicts: text, tokens (ids, EOS excluded), finish_reason ("eos" | "length"),
      objects / invalid (`postprocess.to_json`, boxes in pixels of the original image),
      image_size, timings {decode_ms, postprocess_ms}, batch {size, padded, text_len,
      decode_len}.
    """
    if len({o.group() for o in options}) != 1 or len(options) != len(examples):
      raise ValueError("generate() needs one Options per example, all of one group.")
    n = len(examples)
    b, t, length = self.shapes(n, max(e.prompt_tokens for e in examples),
                               max(o.max_tokens for o in options))
    batch = {k: np.stack([getattr(e, k) for e in examples]
                         + [getattr(examples[0], k)] * (b - n))
             for k in ("image", "text", "mask_ar", "mask_input")}
    for k in ("text", "mask_ar", "mask_input"):
      batch[k] = batch[k][:, :t]
    batch["_mask"] = np.arange(b) < n
    start = time.perf_counter()
    out = decode.decode(self.model, self.params, batch, max_decode_len=length,
                        sampler=options[0].sampler, eos_id=self.tok.eos_id,
                        pad_id=self.tok.pad_id, rng=jax.random.key(options[0].seed),
                        logit_mask=self.logit_mask, cache_dtype=self.cache_dtype)
    tokens, lengths = np.asarray(out["tokens"]), np.asarray(out["lengths"])
    decode_ms = 1000 * (time.perf_counter() - start)
    results = []
    for i, (ex, opt) in enumerate(zip(examples, options)):
      start = time.perf_counter()
      ids = tokens[i, :min(int(lengths[i]), opt.max_tokens)].tolist()
      eos = self.tok.eos_id in ids
      rec = self.answer(ex, ids[:ids.index(self.tok.eos_id)] if eos else ids, eos)
      rec["timings"] = dict(decode_ms=round(decode_ms, 2),
                            postprocess_ms=round(1000 * (time.perf_counter() - start), 2))
      rec["batch"] = dict(size=n, padded=b, text_len=t, decode_len=length)
      results.append(rec)
    return results

  def answer(self, example, ids, eos):
    """The JSON-ready answer of token `ids` (EOS excluded; `eos`: whether it ended there)."""
    text = self.tok.to_str(ids)
    rec = postprocess.to_json(text, *example.size, self.vqvae_params)
    return dict(text=text, tokens=list(ids), finish_reason="eos" if eos else "length",
                objects=rec["objects"], invalid=rec["invalid"], image_size=list(example.size))

  def warmup(self, samplers=("greedy",), batch_sizes=None, text_lens=None,
             decode_lens=None):
    """Compiles the decode functions of the given buckets (default: all batch sizes at the
    smallest prompt and largest decode length); returns the number compiled."""
    ex = self.preprocess(_blank_png(), "caption en")
    count = 0
    for sampler in samplers:
      for b in batch_sizes or self.batch_sizes:
        for t in text_lens or self.text_lens[:1]:
          for length in decode_lens or self.decode_lens[-1:]:
            opts = self.check_options(sampler, length)
            self.generate([dataclasses.replace(ex, prompt_tokens=t)] * b, [opts] * b)
            count += 1
    return count
