"""Evaluators fed by the real `input_pipeline.evaluation` (jsonl source, callable pp)."""
import json

import numpy as np
import pytest
import tensorflow as tf

from big_vision_lite import input_pipeline
from big_vision_lite.evaluators import coco_caption
from big_vision_lite.evaluators import common
from big_vision_lite.evaluators import vqa
from big_vision_lite.evaluators import vqav2


def _source(tmp_path, rows):
  path = tmp_path / "data.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return {"name": "jsonl", "fname": str(path)}


def _pp(keep):
  def pp(ex):  # Stands in for a pp string: model inputs + kept ground truth.
    idx = tf.cast(ex["idx"], tf.int32)
    out = {"image": tf.zeros([2, 2, 3]), "text": tf.stack([idx, 0]),
           "mask_ar": tf.zeros([2], tf.int32), "mask_input": tf.ones([2], tf.int32)}
    return out | {k: ex[k] for k in keep}
  return pp


def _predict(preds, tok):
  def predict_fn(params, batch):
    del params
    rows = [tok.encode(preds[int(i)]) + [tok.eos_id] for i in batch["text"][:, 0]]
    width = max(map(len, rows))
    return {"tokens": np.asarray([r + [0] * (width - len(r)) for r in rows], np.int32)}
  return predict_fn, tok


@pytest.fixture
def real_pipeline(monkeypatch):
  """Routes `common.eval_batches` to the real pipeline with a callable pp."""
  monkeypatch.setattr(common, "eval_batches", lambda data, pp, bs: input_pipeline.evaluation(
      data, pp, bs))


def test_vqav2_and_vqa_through_pipeline(real_pipeline, char_tok, tmp_path):
  rows = [{"idx": i, "question_id": 100 + i, "answer_type": "other",
           "answers": [a] * 10} for i, a in enumerate(["dog", "two", "red", "cat", "x"])]
  rows[1]["answer_type"] = "number"
  rows[1]["answers"] = ["2"] * 10
  preds = ["a dog", "Two", "red", "no", "x"]
  predict_fn, tok = _predict(preds, char_tok)
  ev = vqav2.Evaluator(predict_fn, tok, data=_source(tmp_path, rows),
                       pp_fn=_pp(("question_id", "answers", "answer_type")), batch_size=2,
                       workdir=str(tmp_path))
  m = dict(ev.run({}))
  assert m["acc"] == pytest.approx(4 / 5) and m["num"] == 5
  assert m["acc/number"] == 1.0
  out = json.loads((tmp_path / "vqav2_predictions.json").read_text())
  assert [r["question_id"] for r in out] == [100, 101, 102, 103, 104]
  # Variable-length answer lists are padded with "" by batching; those are dropped.
  rows = [{"idx": 0, "question_id": 1, "answers": ["a", "a", "a"]},
          {"idx": 1, "question_id": 2, "answers": ["b"]}]
  predict_fn, tok = _predict(["", "b"], char_tok)
  ev = vqa.Evaluator(predict_fn, tok, data=_source(tmp_path, rows),
                     pp_fn=_pp(("question_id", "answers")), batch_size=2)
  m = dict(ev.run({}))
  assert m["acc_any"] == 0.5 and m["anls"] == 0.5


def test_coco_caption_through_pipeline(real_pipeline, char_tok, tmp_path):
  caps = [["a cat on a mat", "a cat sitting", "the cat is on the mat"],
          ["a dog in the park", "a dog running"],
          ["a red bus on the street", "a bus", "a big red bus", "red bus parked"]]
  rows = [{"idx": i, "image/id": i, "captions": c} for i, c in enumerate(caps)]
  preds = ["a cat on the mat", "a dog", "a red bus"]
  predict_fn, tok = _predict(preds, char_tok)
  ev = coco_caption.Evaluator(predict_fn, tok, data=_source(tmp_path, rows),
                              pp_fn=_pp(("image/id", "captions")), batch_size=2)
  m = dict(ev.run({}))
  want = coco_caption.score_captions({str(i): p for i, p in enumerate(preds)},
                                     {str(i): c for i, c in enumerate(caps)})
  assert m["cider"] == pytest.approx(want["cider"], abs=1e-12)
  assert m["bleu4"] == pytest.approx(want["bleu4"], abs=1e-12)
