"""Evaluator classes end to end with a fake predict fn and in-memory batches."""
import json
import os

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import pytest

from big_vision_lite.evaluators import chartqa
from big_vision_lite.evaluators import choice
from big_vision_lite.evaluators import coco_caption
from big_vision_lite.evaluators import common
from big_vision_lite.evaluators import detection
from big_vision_lite.evaluators import perplexity
from big_vision_lite.evaluators import pope
from big_vision_lite.evaluators import rsvqa
from big_vision_lite.evaluators import science_qa
from big_vision_lite.evaluators import storepreds
from big_vision_lite.evaluators import tallyqa
from big_vision_lite.evaluators import vqa
from big_vision_lite.evaluators import vqav2

_KW = dict(data={"name": "fake"}, pp_fn="fake", batch_size=3)


def _run(module, fake_task, examples, preds, tmp_path, **kw):
  predict_fn, tok = fake_task(examples, preds)
  ev = module.Evaluator(predict_fn, tok, workdir=str(tmp_path), **_KW, **kw)
  metrics = dict(ev.run(params={}))
  path = tmp_path / os.path.basename(common.predictions_path(str(tmp_path), ev.name))
  return metrics, json.loads(path.read_text()) if path.exists() else None


def test_vqav2(fake_task, tmp_path):
  examples = [
      {"question_id": 1, "answers": ["2"] * 10, "answer_type": "number",
       "question_type": "how many"},
      {"question_id": 2, "answers": ["yes"] * 9 + ["no"], "answer_type": "yes/no",
       "question_type": "is the"},
      {"question_id": 3, "answers": ["red"] * 2 + ["blue"] * 8, "answer_type": "other",
       "question_type": "what color"},
      {"question_id": 4, "answers": ["dog"] * 10, "answer_type": "other",
       "question_type": "what"},
  ]
  preds = ["Two", "no", "Red.", "a cat"]
  m, js = _run(vqav2, fake_task, examples, preds, tmp_path)
  # Per question: 1.0, 0.3 ("no" matches 1 of 10), 0.6 (2 matches), 0.0.
  assert m["acc"] == pytest.approx((1.0 + 0.3 + 0.6 + 0.0) / 4)
  assert m["acc/other"] == pytest.approx(0.3) and m["num/other"] == 2
  assert m["acc/yesno"] == pytest.approx(0.3) and m["acc/number"] == 1.0
  assert m["acc_qtype/is the"] == pytest.approx(0.3) and m["num"] == 4
  assert js == [{"question_id": i + 1, "answer": p} for i, p in enumerate(preds)]
  m2, _ = _run(vqav2, fake_task, examples, preds, tmp_path, normalize="big_vision")
  assert m2["acc"] == pytest.approx((0.0 + 0.3 + 0.6 + 0.0) / 4)
  with pytest.raises(ValueError, match="Unknown VQAv2 normalize mode 'bv'"):
    vqav2.Evaluator(None, None, normalize="bv", **_KW)


def test_vqa_single_and_multi(fake_task, tmp_path):
  examples = [{"question_id": 1, "answer": "hello"}, {"question_id": 2, "answer": "abcd"}]
  m, js = _run(vqa, fake_task, examples, ["hello", "abcx"], tmp_path)
  assert m["acc"] == 0.5 and m["anls"] == pytest.approx((1 + 0.75) / 2)
  assert js[1] == {"question_id": 2, "answer": "abcx", "gts": ["abcd"]}
  examples = [{"question_id": 1, "answers": ["a", "a", "b"]}]
  m, _ = _run(vqa, fake_task, examples, ["A"], tmp_path, to_lower=True)
  assert m["acc"] == pytest.approx(2 / 3) and m["acc_any"] == 1.0
  examples = [{"question_id": i, "answer": a, "question_type": t} for i, (a, t) in
              enumerate([("red", "color"), ("2", "count"), ("blue", "color")])]
  m, js = _run(vqa, fake_task, examples, ["red", "3", "green"], tmp_path,
               type_key="question_type")
  assert m["acc/color"] == 0.5 and m["acc/count"] == 0.0 and m["acc"] == pytest.approx(1 / 3)
  assert js[0]["type"] == "color" and js[0]["acc"] == 1.0


def test_empty_string_answers_are_answers(fake_task, tmp_path):
  """"" is a real ground truth; the batch's "" padding is cut by `answers/num` (written
  by the `num_texts` op the evaluators append to their pp string)."""
  assert vqa.with_answer_counts("x|y") == ("x|y|num_texts('answer', missing_ok=True)"
                                           "|num_texts('answers', missing_ok=True)")
  examples = [  # Padded to 6 by batching; 4 real answers, 3 of them "".
      {"question_id": 1, "answers": ["", "", "a", "", "", ""], "answers/num": 4},
      # 2 real answers: the 4 padding "" must not count as answers.
      {"question_id": 2, "answers": ["a", "b", "", "", "", ""], "answers/num": 2},
  ]
  m, js = _run(vqa, fake_task, examples, ["", ""], tmp_path)
  assert m["acc"] == 0.5 and m["acc_any"] == 0.5 and js[0]["gts"] == ["", "", "a", ""]
  m, _ = _run(vqa, fake_task, [{"question_id": 1, "answer": ""}], [""], tmp_path)
  assert m["acc"] == 1.0 and m["anls"] == 1.0 and m["num"] == 1
  m, _ = _run(rsvqa, fake_task, [dict(e, question_type="comp") for e in examples], ["", ""],
              tmp_path)
  assert m["acc"] == 0.5 and m["acc_comp"] == 0.5
  ten = [{"question_id": 1, "answers": [""] * 10, "answers/num": 10, "answer_type": "other"},
         {"question_id": 2, "answers": ["a"] * 3 + [""] * 7, "answers/num": 3,
          "answer_type": "other"}]
  m, _ = _run(vqav2, fake_task, ten, ["", ""], tmp_path, normalize="big_vision")
  assert m["acc"] == 0.5 and m["num/other"] == 2


def test_rsvqa_anls(fake_task, tmp_path):
  m, _ = _run(rsvqa, fake_task, [
      {"question_id": 1, "question_type": "comp", "answers": ["abcd", ""],
       "answers/num": 1},
      {"question_id": 2, "question_type": "count", "answers": ["7", "abcd"],
       "answers/num": 2}], ["abcx", "abcd"], tmp_path)
  assert m["anls"] == pytest.approx((0.75 + 1.0) / 2) and m["acc"] == pytest.approx(1 / 6)


def test_small_task_evaluators(fake_task, tmp_path):
  m, js = _run(chartqa, fake_task, [{"question_id": 1, "answer": "100"},
                                    {"question_id": 2, "answer": "57%"}],
               ["104", "0.60"], tmp_path)
  assert m["acc"] == 0.0 and m["relaxed_acc"] == 0.5 and js[0]["relaxed_match"]
  m, js = _run(science_qa, fake_task, [{"question_id": 1, "answer": "The answer is A."},
                                       {"question_id": 2, "answer": "The answer is C."}],
               ["The answer is A.", "C"], tmp_path)
  assert m["acc"] == 0.5 and m["parsefail"] == 0.5 and js[1]["answer"] == "failed"
  m, _ = _run(tallyqa, fake_task, [{"answer": "2", "issimple": 1},
                                   {"answer": "3", "issimple": 0},
                                   {"answer": "0", "issimple": -1}],
              ["two", "4", "none"], tmp_path)
  assert m["acc"] == pytest.approx(2 / 3) and m["acc/simple"] == 1.0
  assert m["acc/complex"] == 0.0 and m["acc/count_0"] == 1.0
  pope_gt = [{"question_id": i, "answer": a} for i, a in enumerate(["yes", "no", "yes"])]
  m, _ = _run(pope, fake_task, pope_gt, ["Yes", "no", "no"], tmp_path)
  assert m["acc"] == pytest.approx(2 / 3) and m["recall"] == 0.5 and m["precision"] == 1.0
  # big_vision lower-cases but does not strip: " yes" is wrong and invalid by default.
  m, _ = _run(pope, fake_task, pope_gt, [" yes", "no ", "yes"], tmp_path)
  assert m["acc"] == pytest.approx(1 / 3) and m["valid_percent"] == pytest.approx(1 / 3)
  m, _ = _run(pope, fake_task, pope_gt, [" yes", "no ", "yes"], tmp_path, strip=True)
  assert m["acc"] == 1.0 and m["valid_percent"] == 1.0
  m, _ = _run(rsvqa, fake_task, [
      {"question_id": 1, "question_type": "comp", "answer": "yes"},
      {"question_id": 2, "question_type": "count", "answer": "3"},
      {"question_id": 3, "question_type": "presence", "answer": "no"}],
      ["yes", "2", "no"], tmp_path)
  assert m["acc_comp"] == 1.0 and m["acc_count"] == 0.0
  assert m["acc_avg"] == pytest.approx(2 / 3) and m["acc_avg_nonum"] == 1.0
  m, _ = _run(choice, fake_task, [
      {"question_id": 1, "answer": "True", "choices": ["true", "false"]},
      {"question_id": 2, "answer": "false", "choices": ["true", "false"]}],
      ["true", "maybe"], tmp_path)
  assert m["acc"] == 0.5 and m["valid"] == 0.5
  m, js = _run(storepreds, fake_task, [{"id": 7, "prefix": "caption en"}], ["a cat"],
               tmp_path, keep=("prefix",))
  assert m == {"num": 1} and js == [{"id": 7, "prompt": "caption en", "answer": "a cat",
                                     "prefix": "caption en"}]


def test_coco_caption(fake_task, tmp_path):
  examples = [{"image/id": i, "captions": [f"a {w} on a table", f"the {w} is small"]}
              for i, w in enumerate(["cat", "dog", "cup", "pen"])]
  m, js = _run(coco_caption, fake_task, examples,
               ["A cat on a table.", "a dog", "the cup is small", "a banana"], tmp_path)
  refs = {str(e["image/id"]): e["captions"] for e in examples}
  want = coco_caption.score_captions({k: p for k, p in zip(
      refs, ["A cat on a table.", "a dog", "the cup is small", "a banana"])}, refs)
  assert m["cider"] == pytest.approx(want["cider"]) and m["cider"] > 0.5
  assert set(m) == {"cider", "bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "num"}
  assert js[0] == {"image_id": 0, "caption": "A cat on a table."}
  # id_key=None: each example is its own image (same scores without any id field).
  no_ids = [{"captions": e["captions"]} for e in examples]
  m2, js2 = _run(coco_caption, fake_task, no_ids,
                 ["A cat on a table.", "a dog", "the cup is small", "a banana"], tmp_path,
                 id_key=None)
  assert m2 == m and [r["image_id"] for r in js2] == ["0/0", "0/1", "0/2", "0/3"]


def test_detection(fake_task, tmp_path):
  examples = [{"image/id": 1, "objects/bbox": [[0.1, 0.1, 0.5, 0.5], [0, 0, 0, 0]],
               "objects/label": ["cat", ""]},
              {"image/id": 2, "objects/bbox": [[0.2, 0.2, 0.9, 0.9], [0.0, 0.0, 0.1, 0.1]],
               "objects/label": ["dog", "cat"]}]
  loc = lambda b: "".join(f"<loc{round(v * 1023):04d}>" for b_ in [b] for v in b_)
  preds = [loc([0.1, 0.1, 0.5, 0.5]) + " cat ; junk",
           loc([0.2, 0.2, 0.9, 0.9]) + " dog ; " + loc([0.5, 0.5, 0.6, 0.6]) + " bird"]
  m, _ = _run(detection, fake_task, examples, preds, tmp_path)
  assert m["invalid"] == 1 and m["unknown_label"] == 1 and m["num"] == 2
  # cat: 1 of 2 found (AP = recall 0.5 area), dog: found. Boxes off by < 1 bin.
  assert m["ap50"] == pytest.approx((0.5 + 1.0) / 2, abs=0.01)


def test_perplexity(monkeypatch):
  text = np.array([[2, 5, 6, 1], [2, 5, 1, 0]], np.int32)
  batch = {"text": text, "mask_loss": np.array([[0, 0, 1, 1], [0, 0, 1, 0]], np.int32),
           "mask_ar": np.zeros_like(text), "image": np.zeros((2, 1, 1, 3), np.float32),
           "_mask": np.array([True, False]), "question": np.array([b"x", b"y"])}
  monkeypatch.setattr(common, "eval_batches", lambda *a: [batch])
  logits_fn = lambda params, b: (np.zeros(b["text"].shape + (8,), np.float32), {})
  ev = perplexity.Evaluator(logits_fn, None, **_KW)
  m = dict(ev.run({}))
  assert m["nll"] == pytest.approx(np.log(8)) and m["perplexity"] == pytest.approx(8)
  assert m["num"] == 1 and m["num_tokens"] == 2


def test_perplexity_like_big_vision(monkeypatch):
  """big_vision: per-example avg and sum of the token NLLs, averaged over real examples
  (one without loss tokens counts as 0), `pad_token` drops supervised pad tokens."""
  text = np.array([[2, 5, 6, 1], [2, 5, 0, 0], [2, 5, 1, 0], [2, 5, 6, 1]], np.int32)
  batch = {"text": text, "mask_ar": np.zeros_like(text),
           "mask_loss": np.array([[0, 0, 1, 1], [0] * 4, [0, 0, 1, 1], [0, 0, 1, 1]]),
           "image": np.zeros((4, 1, 1, 3), np.float32),
           "_mask": np.array([True, True, True, False])}
  monkeypatch.setattr(common, "eval_batches", lambda *a: [batch])
  logits_fn = lambda params, b: (np.zeros(b["text"].shape + (8,), np.float32), {})
  run = lambda **kw: dict(perplexity.Evaluator(logits_fn, None, **_KW, **kw).run({}))
  log8 = np.log(8)
  m = run()  # Token counts 2, 0, 2.
  assert m["nll"] == pytest.approx(2 / 3 * log8) and m["nll_sum"] == pytest.approx(4 / 3 * log8)
  assert m["num"] == 3 and m["num_tokens"] == 4
  m = run(pad_token=0)  # Counts 2, 0, 1.
  assert m["nll"] == pytest.approx(2 / 3 * log8) and m["nll_sum"] == pytest.approx(log8)
  m = run(skip_empty=True)
  assert m["nll"] == pytest.approx(log8) and m["num"] == 2


def test_from_config(fake_task, tmp_path):
  predict_fn, tok = fake_task([{"question_id": 1, "answer": "a"}], ["a"])
  config = ml_collections.ConfigDict({"input": {"batch_size": 4}, "evals": {
      "okvqa": {"type": "vqa", "pred": "decode", "pred_kw": {"max_decode_len": 3},
                "data": {"name": "fake"}, "pp_fn": "fake", "log_percent": 0.5},
      "chart": {"type": "chartqa", "data": {"name": "fake"}, "pp_fn": "fake",
                "log_steps": 7, "batch_size": 2, "to_lower": True}}})
  seen = {}
  def decode(params, batch, max_decode_len=None):
    seen["kw"] = max_decode_len
    return predict_fn(params, batch)
  evals = common.from_config(config, {"decode": decode}, tokenizer=tok,
                             write_note=lambda s: None, workdir=str(tmp_path),
                             total_steps=100)
  assert sorted((n, s) for n, _, s in evals) == [("chart", 7), ("okvqa", 50)]
  evs = {n: e for n, e, _ in evals}
  assert evs["okvqa"].batch_size == 4 and evs["chart"].batch_size == 2
  assert evs["chart"].to_lower
  assert dict(evs["okvqa"].run({}))["acc"] == 1.0 and seen["kw"] == 3
  assert (tmp_path / "okvqa_predictions.json").exists()


def test_from_config_errors():
  base = {"data": {}, "pp_fn": "x", "log_steps": 1, "batch_size": 2}
  def build(**cfg):
    config = ml_collections.ConfigDict({"evals": {"e": {**base, **cfg}}})
    return common.from_config(config, {"decode": print}, tokenizer=None)
  with pytest.raises(KeyError, match="Unknown evaluator type 'vqa2'. Did you mean 'vqav2'"):
    build(type="vqa2")
  with pytest.raises(KeyError, match="pred='logits' is not a predict fn"):
    build(type="vqa", pred="logits")
  with pytest.raises(ValueError, match="log_steps/log_percent"):
    build(type="vqa", log_percent=0.5)
  with pytest.raises(ValueError, match="needs total_steps"):
    build(type="vqa", log_steps=None, log_percent=0.5)
  with pytest.raises(TypeError, match=r"evals.e \(type vqa\).*not_an_arg.*Valid keys"):
    build(type="vqa", not_an_arg=1)


def test_multihost_gathering(monkeypatch, fake_task, tmp_path):
  """Two simulated hosts holding the same examples: sums double, records concatenate."""
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(multihost_utils, "process_allgather",
                      lambda x: np.stack([np.asarray(x)] * 2))
  assert common.process_sum({"a": 1.5, "b": [2, 3]}) == {"a": 3.0, "b": [4.0, 6.0]}
  assert common.gather_json([{"q": "é"}]) == [{"q": "é"}, {"q": "é"}]
  examples = [{"question_id": 1, "answer": "a"}, {"question_id": 2, "answer": "b"}]
  m, js = _run(vqa, fake_task, examples, ["a", "x"], tmp_path)
  assert m["acc"] == 0.5 and m["num"] == 4 and len(js) == 4
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert common.write_json(str(tmp_path), "other", [1]) is None  # Only host 0 writes.


def test_prediction_file_names(tmp_path):
  path = common.write_json(str(tmp_path), "vqav2/minival", [{"a": "é"}])
  assert path == str(tmp_path / "vqav2_minival_predictions.json")
  assert json.loads(open(path, encoding="utf-8").read()) == [{"a": "é"}]


def test_from_config_needs_a_batch_size():
  config = ml_collections.ConfigDict({"evals": {"e": {
      "type": "vqa", "data": {}, "pp_fn": "x", "log_steps": 1}}})
  with pytest.raises(ValueError, match="evals.e.batch_size is not set"):
    common.from_config(config, {"decode": print}, tokenizer=None)


def test_to_py():
  assert common.to_py(np.array([b"a", b"\xc3\xa9"], dtype=object)) == ["a", "é"]
  assert common.to_py(np.array([[b"a"], [b"b"]])) == [["a"], ["b"]]
  assert common.to_py(np.int64(3)) == 3 and isinstance(common.to_py(np.float32(1)), float)
  mask = np.zeros((4, 5, 1), np.uint8)
  assert common.to_py(mask) is mask  # Numeric arrays stay numpy.
  assert common.nonempty(["a", "", "b"]) == ["a", "b"]
