"""Tests of the training and evaluation input pipelines."""
import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from big_vision_lite import input_pipeline


def _png(i):
  buf = io.BytesIO()
  Image.new("RGB", (4, 4), (i, 0, 0)).save(buf, format="PNG")
  return buf.getvalue()


def _jsonl(folder, name, n, bad=()):
  """Writes folder/name.jsonl with n rows (image PNG files; rows in `bad` corrupt)."""
  (folder / name).mkdir()
  rows = []
  for i in range(n):
    (folder / name / f"{i}.png").write_bytes(b"not a png" if i in bad else _png(i))
    rows.append({"image": f"{name}/{i}.png", "prefix": f"{name} {i}", "id": i})
  (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return dict(name="jsonl", fname=str(folder / f"{name}.jsonl"), fopen_keys=["image"])


def _ids(ex):
  return {"id": ex["id"], "n": tf.strings.length(ex["prefix"])}


def _decode(ex):
  return {"id": ex["id"], "red": tf.io.decode_png(ex["image"])[0, 0, 0]}


def _take(it, n):
  return [next(it) for _ in range(n)]


def _same(a, b):
  return len(a) == len(b) and all(
      x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
      for x, y in zip(a, b))


@pytest.fixture
def mixture(tmp_path):
  return dict(batch_size=100, data={"a": 0.7, "b": 0.3}, pp=_ids,
              a=dict(data=_jsonl(tmp_path, "a", 10)), b=dict(data=_jsonl(tmp_path, "b", 30)))


def test_mixture_weights_and_counts(mixture):
  it = input_pipeline.training(mixture, seed=0)
  assert it.total_examples == 40
  batches = _take(it, 20)
  assert set(batches[0]) == {"id", "n"} and batches[0]["id"].shape == (100,)
  counts = it.counts()
  assert sum(counts.values()) == 2000 and abs(counts["a"] / 2000 - 0.7) < 0.04
  n = np.concatenate([b["n"] for b in batches])  # "a i" is 3 chars, "b ii" up to 4.
  assert (n == 3).sum() >= counts["a"] and it.skipped() == {"a": 0, "b": 0}


def test_deterministic_given_seed(mixture):
  first = _take(input_pipeline.training(mixture, seed=1), 3)
  assert _same(first, _take(input_pipeline.training(mixture, seed=1), 3))
  assert not _same(first, _take(input_pipeline.training(mixture, seed=2), 3))


def test_per_host_batches_and_shards(mixture):
  host = [input_pipeline.training(dict(mixture, batch_size=8), seed=0, process_index=p,
                                  process_count=2) for p in range(2)]
  ids = [np.concatenate([b["id"] for b in _take(h, 20)]) for h in host]
  assert ids[0].shape == (80,)
  with pytest.raises(ValueError, match=r"batch_size 9 is not divisible by the 2 proc"):
    input_pipeline.training(dict(mixture, batch_size=9), seed=0, process_count=2)


def test_exact_resume_with_random_pp(tmp_path, mixture):
  def pp(ex):  # Random pp draws from the per-example stateless `_seed`.
    noise = tf.random.stateless_uniform([], tf.cast(ex["_seed"], tf.int32))
    return dict(_decode(ex), noise=noise)

  cfg = dict(mixture, batch_size=6, pp=pp, skip_errors=True,
             b=dict(data=_jsonl(tmp_path, "c", 30, bad=(3, 7))))
  it = input_pipeline.training(cfg, seed=0)
  _take(it, 4)
  state = it.get_state()
  expected, counts, skipped = _take(it, 5), it.counts(), it.skipped()
  resumed = input_pipeline.training(cfg, seed=0)
  resumed.set_state(state)
  assert _same(_take(resumed, 5), expected)
  assert resumed.counts() == counts and resumed.skipped() == skipped
  assert resumed.batches == it.batches == 9
  fresh = input_pipeline.training(cfg, seed=0)
  assert _same(_take(fresh, 9)[4:], expected)


def test_skip_errors_counts_corrupt_rows(tmp_path):
  cfg = dict(batch_size=17, data=_jsonl(tmp_path, "bad", 20, bad=(4, 9, 15)), pp=_decode,
             skip_errors=True)
  it = input_pipeline.training(cfg, seed=0)
  ids = np.concatenate([b["id"] for b in _take(it, 10)])
  assert not set(ids.tolist()) & {4, 9, 15}
  assert it.counts() == {"jsonl": 170} and 27 <= it.skipped()["jsonl"] <= 30


def test_failing_row_is_named(tmp_path):
  data = _jsonl(tmp_path, "bad", 12, bad=(5, 9))
  it = input_pipeline.training(dict(batch_size=4, data=data, pp=_decode), seed=0)
  with pytest.raises(ValueError, match=r"Input source 'jsonl': row 5 \(.*bad\.jsonl line 6"
                     r"\) failed in the pp function: .*skip_errors=True"):
    _take(it, 5)
  it = input_pipeline.training(dict(batch_size=4, data=data, pp="decode|keep('image')"),
                               seed=0)
  with pytest.raises(ValueError, match=r"row 5 .* failed in pp op 'decode'"):
    _take(it, 5)
  ev = input_pipeline.evaluation(data, _decode, 4)
  (tmp_path / "bad" / "2.png").unlink()  # Vanishes after the source checked it.
  with pytest.raises(ValueError, match=r"row 2 .* failed while reading it"):
    list(ev)


def test_eval_padding_mask_and_equal_batches(tmp_path):
  data = _jsonl(tmp_path, "ev", 11)
  pp = lambda ex: {"id": ex["id"], "prefix": ex["prefix"]}
  hosts = [input_pipeline.evaluation(data, pp, 4, process_index=p, process_count=2)
           for p in range(2)]
  batches = [list(h) for h in hosts]
  assert [len(h) for h in hosts] == [len(b) for b in batches] == [3, 3]
  masks = [np.concatenate([b["_mask"] for b in bs]) for bs in batches]
  assert masks[0].tolist() == [True] * 5 + [False] and masks[1].all()
  ids = [np.concatenate([b["id"] for b in bs]) for bs in batches]
  assert ids[0][-1] == 0 and batches[0][-1]["prefix"][-1] == b""
  assert np.concatenate([i[m] for i, m in zip(ids, masks)]).tolist() == list(range(11))
  assert _same(batches[0], list(hosts[0]))  # Re-iterable, same order.


def test_config_errors(mixture):
  with pytest.raises(KeyError, match=r"Mixture source 'b' has no config"):
    input_pipeline.training({k: v for k, v in mixture.items() if k != "b"}, seed=0)
  with pytest.raises(KeyError, match=r"Unknown config.input key 'shuffle_buffer'\. "
                     r"Did you mean 'shuffle_buffer_size'\?"):
    input_pipeline.training(dict(mixture, shuffle_buffer=3), seed=0)
  other = dict(mixture, b=dict(data=mixture["b"]["data"], pp=_decode))
  with pytest.raises(ValueError, match=r"different examples after pp"):
    input_pipeline.training(other, seed=0)


def test_shapes_with_training_and_eval_pp_strings(tmp_path):
  from big_vision_lite import tokenizer  # pylint: disable=import-outside-toplevel
  from big_vision_lite.datasets import shapes  # pylint: disable=import-outside-toplevel
  out = shapes.ensure_shapes(str(tmp_path / "shapes"), 16, 8, res=32)
  with open(f"{out}/corpus.txt", encoding="utf-8") as f:
    tok = tokenizer.train_tokenizer(f.read().splitlines(), str(tmp_path / "t.model"), 300)
  data = lambda task, split="train": dict(name="shapes", task=task, split=split,
                                          data_dir=out, num_train=16, num_val=8, res=32)
  pp = "decode|resize(24)|value_range(-1, 1)|combine_and_keep_train(24, model=%r)" % tok
  cfg = dict(batch_size=8, data={"caption": 1, "detect": 1}, pp=pp,
             caption=dict(data=data("caption")), detect=dict(data=data("detect")))
  batch = next(input_pipeline.training(cfg, seed=0))
  assert batch["image"].shape == (8, 24, 24, 3) and batch["text"].shape == (8, 24)
  assert -1 <= batch["image"].min() < batch["image"].max() <= 1
  pp = ("decode|resize(24)|value_range(-1, 1)|"
        "combine_and_keep_eval(16, model=%r, keep=('captions',))" % tok)
  batches = list(input_pipeline.evaluation(data("caption", "validation"), pp, 6))
  assert len(batches) == 2 and batches[1]["_mask"].tolist() == [True] * 2 + [False] * 4
  assert batches[0]["captions"].shape == (6, 5)


def test_configdict_input(tmp_path):
  import ml_collections  # pylint: disable=import-outside-toplevel
  c = ml_collections.ConfigDict()
  c.input = dict(batch_size=4, pp="keep('id')", data={"x": 0.5, "y": 0.5})
  c.input.x = dict(data=_jsonl(tmp_path, "x", 5))
  c.input.y = dict(data=_jsonl(tmp_path, "y", 5), shuffle_buffer_size=2)
  it = input_pipeline.training(ml_collections.FrozenConfigDict(c).input, seed=0)
  assert next(it)["id"].shape == (4,) and sum(it.counts().values()) == 4
