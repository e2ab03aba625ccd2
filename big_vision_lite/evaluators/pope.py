"""POPE (object hallucination): yes/no accuracy, precision/recall/F1 of "yes", validity.

As big_vision's POPE evaluator, the prediction is lower-cased (not stripped: " yes" is
wrong and invalid) and compared with the answer as it is ("yes" or "no"); `strip=True`
also strips the prediction. `valid_percent` is the fraction of predictions that are
exactly "yes" or "no". Precision, recall and F1 treat "yes" as the positive class, as
the POPE paper reports them.
"""
import dataclasses

from big_vision_lite.evaluators import common


def pope_counts(prediction, answer, strip=False):
  """Returns [correct, valid, tp, fp, fn, said_yes] (floats) for one example."""
  p, a = prediction.lower(), answer
  p = p.strip() if strip else p
  return [float(p == a), float(p in ("yes", "no")), float(p == "yes" and a == "yes"),
          float(p == "yes" and a != "yes"), float(p != "yes" and a == "yes"),
          float(p == "yes")]


def pope_metrics(totals, num):
  """Metrics from summed `pope_counts` over `num` examples."""
  correct, valid, tp, fp, fn, yes = totals
  prec = tp / (tp + fp) if tp + fp else 0.0
  rec = tp / (tp + fn) if tp + fn else 0.0
  f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
  return {"acc": correct / num, "valid_percent": valid / num, "precision": prec,
          "recall": rec, "f1": f1, "yes_ratio": yes / num}


@dataclasses.dataclass(kw_only=True, eq=False)
class Evaluator(common.EvaluatorBase):
  """POPE; needs `question_id` and `answer`."""

  strip: bool = False
  name: str = "pope"

  def __post_init__(self):
    self.strip = bool(self.strip)

  def run(self, params):
    """Evaluates `params`; yields (metric name, value)."""
    totals, num, records = [0.0] * 6, 0.0, []
    batches = common.eval_batches(self.data, self.pp_fn, self.batch_size)
    for gt, answer in common.decoded_examples(self.predict_fn, params, self.tokenizer,
                                              batches, ("question_id", "answer")):
      counts = pope_counts(answer, str(gt["answer"]), self.strip)
      totals = [t + c for t, c in zip(totals, counts)]
      num += 1
      records.append({"question_id": gt.get("question_id"), "answer": answer.lower()})
    records = common.gather_json(records)
    totals, num = common.process_sum([totals, num])
    if num:
      yield from pope_metrics(totals, num).items()
    yield "num", num
    common.write_json(self.workdir, self.name, records)
