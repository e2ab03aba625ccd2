"""Fakes for evaluator tests: a character tokenizer, a predict fn and in-memory batches."""
import numpy as np
import pytest

from big_vision_lite.evaluators import common

EOS = 1
_OFFSET = 3


class CharTokenizer:
  """ids = code points + 3; 0 pad, 1 eos."""
  eos_id, pad_id, bos_id = EOS, 0, 2

  def encode(self, text):
    return [ord(c) + _OFFSET for c in text]

  def to_str(self, ids, stop_at_eos=True):
    out = []
    for i in ids:
      if stop_at_eos and i == EOS:
        break
      if i >= _OFFSET:
        out.append(chr(i - _OFFSET))
    return "".join(out)


def _column(values):
  """Stacks per-example ground truth like tf.data -> numpy does (strings as bytes)."""
  def enc(v):
    if isinstance(v, str):
      return v.encode()
    if isinstance(v, (list, tuple)):
      return np.asarray([enc(x) for x in v], dtype=object)
    return v
  vals = [enc(v) for v in values]
  if all(isinstance(v, np.ndarray) for v in vals):
    out = np.empty(len(vals), dtype=object)
    out[:] = vals
    return out
  return np.asarray(vals, dtype=object if isinstance(vals[0], bytes) else None)


def make_batches(examples, batch_size):
  """Padded batches with `_mask`; `text[:, 0]` holds the example index."""
  batches = []
  for start in range(0, len(examples), batch_size):
    chunk = examples[start:start + batch_size]
    n = len(chunk)
    chunk = chunk + [chunk[-1]] * (batch_size - n)
    batch = {k: _column([e[k] for e in chunk]) for k in chunk[0]}
    idx = np.arange(start, start + batch_size)
    batch["text"] = np.stack([idx, np.zeros_like(idx)], axis=1).astype(np.int32)
    batch["image"] = np.zeros((batch_size, 2, 2, 3), np.float32)
    batch["_mask"] = np.arange(batch_size) < n
    batches.append(batch)
  return batches


@pytest.fixture
def fake_task(monkeypatch):
  """Returns setup(examples, predictions, batch_size) -> (predict_fn, tokenizer)."""
  tok = CharTokenizer()

  def setup(examples, predictions, batch_size=3):
    monkeypatch.setattr(common, "eval_batches",
                        lambda data, pp_fn, bs: make_batches(examples, bs))
    def predict_fn(params, batch):
      del params
      assert set(batch) <= set(common.MODEL_KEYS), sorted(batch)
      rows = []
      for i in batch["text"][:, 0]:
        ids = tok.encode(predictions[min(int(i), len(predictions) - 1)]) + [EOS, 0, 7]
        rows.append(ids)
      width = max(len(r) for r in rows)
      return {"tokens": np.asarray([r + [0] * (width - len(r)) for r in rows], np.int32)}
    return predict_fn, tok
  return setup


@pytest.fixture
def char_tok():
  """The character tokenizer used by the fakes (eos_id 1)."""
  return CharTokenizer()
