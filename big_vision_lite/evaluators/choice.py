"""Choice accuracy for answers from a fixed set (NLVR2 true/false, AI2D options).

The prediction (whitespace-stripped, optionally lower-cased) must equal the answer.
When the examples carry their `choices`, `valid` is the fraction of predictions that are
one of them (after the same normalisation).
"""
import dataclasses

from big_vision_lite.evaluators import common


def normalize(text, to_lower):
  text = " ".join(text.split())
  return text.lower() if to_lower else text


@dataclasses.dataclass(kw_only=True, eq=False)
class Evaluator(common.EvaluatorBase):
  """Multiple-choice accuracy; needs `answer` (str), optionally `choices` (list of str)."""

  to_lower: bool = True
  name: str = "choice"

  def run(self, params):
    """Evaluates `params`; yields (metric name, value)."""
    acc = valid = with_choices = num = 0.0
    records = []
    batches = common.eval_batches(self.data, self.pp_fn, self.batch_size)
    for gt, answer in common.decoded_examples(self.predict_fn, params, self.tokenizer,
                                              batches, ("question_id", "answer", "choices")):
      answer = normalize(answer, self.to_lower)
      target = normalize(str(gt["answer"]), self.to_lower)
      acc, num = acc + (answer == target), num + 1
      if gt.get("choices"):
        choices = [normalize(c, self.to_lower) for c in common.nonempty(gt["choices"])]
        valid, with_choices = valid + (answer in choices), with_choices + 1
      records.append({"question_id": gt.get("question_id"), "answer": answer,
                      "gt": target})
    records = common.gather_json(records)
    acc, valid, with_choices, num = common.process_sum([acc, valid, with_choices, num])
    if num:
      yield "acc", acc / num
    if with_choices:
      yield "valid", valid / with_choices
    yield "num", num
    common.write_json(self.workdir, self.name, records)
