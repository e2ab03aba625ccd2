"""ChartQA: exact-match accuracy and relaxed accuracy (5% tolerance on numbers).

Relaxed accuracy (Methani et al. 2020, as used by ChartQA and PaLI/PaliGemma): when both
strings parse as floats (a trailing "%" divides by 100, so "57%" == "0.57") and the
target is non-zero, the answer is right iff |pred - gt| / |gt| <= 0.05, computed in
float64 (inclusive; note 1.05 vs 1.0 gives 0.050000000000000044 and fails, as in the
reference). Otherwise, and always for a zero target, strings must match exactly.
"""
import dataclasses

from big_vision_lite.evaluators import common


def to_float(text):
  """Parses "12.5" or "57%" (-> 0.57) into a float64; returns None when it is no number."""
  try:
    if text.endswith("%"):
      return float(text.rstrip("%")) / 100.0
    return float(text)
  except ValueError:
    return None


def relaxed_match(target, prediction, max_relative_error=0.05):
  """Returns whether `prediction` (str) matches `target` (str) with 5% numeric tolerance."""
  pred, gt = to_float(prediction), to_float(target)
  if pred is not None and gt:
    return abs(pred - gt) / abs(gt) <= max_relative_error
  return prediction == target


@dataclasses.dataclass(kw_only=True, eq=False)
class Evaluator(common.EvaluatorBase):
  """ChartQA: `acc` (exact) and `relaxed_acc`; needs `question_id` and `answer`."""

  to_lower: bool = False
  name: str = "chartqa"

  def run(self, params):
    """Evaluates `params`; yields (metric name, value)."""
    post = (lambda s: s.lower()) if self.to_lower else (lambda s: s)
    acc = relaxed = num = 0.0
    records = []
    batches = common.eval_batches(self.data, self.pp_fn, self.batch_size)
    for gt, answer in common.decoded_examples(self.predict_fn, params, self.tokenizer,
                                              batches, ("question_id", "answer")):
      answer, target = post(answer), post(str(gt["answer"]))
      ok = relaxed_match(target, answer)
      acc, relaxed, num = acc + (answer == target), relaxed + ok, num + 1
      records.append({"question_id": gt.get("question_id"), "answer": answer,
                      "gt": target, "relaxed_match": bool(ok)})
    records = common.gather_json(records)
    acc, relaxed, num = common.process_sum([acc, relaxed, num])
    if num:
      yield "acc", acc / num
      yield "relaxed_acc", relaxed / num
    yield "num", num
    common.write_json(self.workdir, self.name, records)
