"""TallyQA counting accuracy, overall, on the simple / complex split and per count.

Prediction and answer go through the same map of number words to digits ("three" ->
"3", up to twenty, case-insensitive) and must then match exactly. `issimple` is 1
(simple), 0 (complex) or -1 (not annotated, e.g. the train split).
"""
import dataclasses

from big_vision_lite.evaluators import common

LARGEST_COUNT = 15
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
NUMBER_WORDS["none"] = "0"


def to_numeral(text):
  """Maps a number word to its digits ("One" -> "1"); other text is returned as is."""
  return NUMBER_WORDS.get(text.lower(), text)


@dataclasses.dataclass(kw_only=True, eq=False)
class Evaluator(common.EvaluatorBase):
  """TallyQA: `acc`, `acc/simple`, `acc/complex`, `acc/count_{k}`; needs `answer`."""

  name: str = "tallyqa"

  def run(self, params):
    """Evaluates `params`; yields (metric name, value)."""
    keys = ["all", "simple", "complex"] + [f"count_{i}" for i in range(LARGEST_COUNT + 1)]
    stats = {k: [0.0, 0.0] for k in keys}
    records = []
    batches = common.eval_batches(self.data, self.pp_fn, self.batch_size)
    for gt, answer in common.decoded_examples(self.predict_fn, params, self.tokenizer,
                                              batches, ("question_id", "answer", "issimple")):
      answer, target = to_numeral(answer), to_numeral(str(gt["answer"]))
      ok = float(answer == target)
      split = {1: "simple", 0: "complex"}.get(gt.get("issimple", -1))
      for k in ("all", split, f"count_{target}"):
        if k in stats:
          stats[k][0] += ok
          stats[k][1] += 1
      records.append({"question_id": gt.get("question_id"), "answer": answer,
                      "gt": target})
    records = common.gather_json(records)
    stats = common.process_sum(stats)
    if stats["all"][1]:
      yield "acc", stats["all"][0] / stats["all"][1]
    for k in keys[1:]:
      if stats[k][1]:
        yield f"acc/{k}", stats[k][0] / stats[k][1]
        yield f"num/{k}", stats[k][1]
    yield "num", stats["all"][1]
    common.write_json(self.workdir, self.name, records)
