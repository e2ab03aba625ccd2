"""ScienceQA: parses "the answer is X." and scores the letter.

Follows the official ScienceQA / big_vision rule: the lower-cased text must START with
"the answer is <letter>." (`re.match`); anything else is a parse failure ("failed"),
which counts as wrong and is reported as `parsefail`.
"""
import dataclasses
import re

from big_vision_lite.evaluators import common

FAILURE = "failed"
_ANSWER = re.compile(r"the answer is ([a-z])\.")


def parse_answer(text):
  """Returns the answer letter of "The answer is B." ('b'), or "failed"."""
  m = _ANSWER.match(text.lower())
  return m.group(1) if m else FAILURE


@dataclasses.dataclass(kw_only=True, eq=False)
class Evaluator(common.EvaluatorBase):
  """ScienceQA accuracy and parse-failure rate; needs `question_id` and `answer`."""

  name: str = "science_qa"

  def run(self, params):
    """Evaluates `params`; yields (metric name, value)."""
    acc = fails = scored = 0.0
    records = []
    batches = common.eval_batches(self.data, self.pp_fn, self.batch_size)
    for gt, raw in common.decoded_examples(self.predict_fn, params, self.tokenizer,
                                           batches, ("question_id", "answer")):
      answer = parse_answer(raw)
      rec = {"question_id": gt.get("question_id"), "raw_answer": raw, "answer": answer}
      if gt.get("answer") is not None:
        target = parse_answer(gt["answer"])
        acc, fails, scored = acc + (answer == target), fails + (answer == FAILURE), scored + 1
        rec["gt"] = target
      records.append(rec)
    records = common.gather_json(records)
    acc, fails, scored = common.process_sum([acc, fails, scored])
    if scored:
      yield "acc", acc / scored
      yield "parsefail", fails / scored
    yield "num", len(records)
    common.write_json(self.workdir, self.name, records)
