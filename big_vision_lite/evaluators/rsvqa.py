"""RSVQA (remote-sensing VQA): accuracy overall and per question type.

Scores as `vqa` does (exact match, or min(1, m/3) and acc_any with several answers).
Per question type ("comp", "count", "presence", "rural_urban", "area") the accuracy is
acc_any; `acc_avg` (AA) is the mean over the types present, `acc_avg_nonum` the mean
over the non-numeric types present (comp, presence, rural_urban: RSVQA-LR has all three,
RSVQA-HR has no rural_urban). `anls` (max over the ground truths, threshold 0.5) as in
big_vision's RSVQA evaluator. A ground truth "" is a real answer (lists are cut by count).
"""
import dataclasses

from big_vision_lite import registry
from big_vision_lite.evaluators import common
from big_vision_lite.evaluators import vqa

QUESTION_TYPES = ("comp", "count", "presence", "rural_urban", "area")
NON_NUMERIC = ("comp", "presence", "rural_urban")


def type_averages(per_type):
  """Returns {"acc_avg": .., "acc_avg_nonum": ..} from {type: accuracy} (present types)."""
  out = {}
  if per_type:
    out["acc_avg"] = sum(per_type.values()) / len(per_type)
  nonum = [v for k, v in per_type.items() if k in NON_NUMERIC]
  if nonum:
    out["acc_avg_nonum"] = sum(nonum) / len(nonum)
  return out


@dataclasses.dataclass(kw_only=True, eq=False)
class Evaluator(common.EvaluatorBase):
  """RSVQA; needs `question_id`, `question_type` and `answer` or `answers`."""

  to_lower: bool = False
  name: str = "rsvqa"

  def run(self, params):
    """Evaluates `params`; yields (metric name, value)."""
    post = lambda s: vqa.postprocess(s, self.to_lower)
    stats = {"all": [0.0, 0.0, 0.0]} | {t: [0.0, 0.0, 0.0] for t in QUESTION_TYPES}
    anls_sum, records = 0.0, []
    batches = common.eval_batches(self.data, vqa.with_answer_counts(self.pp_fn),
                                  self.batch_size)
    keep = ("question_id", "question_type", "answer", "answers", "answers/num")
    for gt, answer in common.decoded_examples(self.predict_fn, params, self.tokenizer,
                                              batches, keep):
      answer = post(answer)
      gts = vqa.ground_truths(gt)
      if gts is None or (isinstance(gts, list) and not gts):
        records.append({"question_id": gt.get("question_id"), "answer": answer})
        continue  # No ground truth: only the prediction is written.
      gts = post(gts) if isinstance(gts, str) else [post(a) for a in gts]
      acc, acc_any = vqa.vqa_scores(answer, gts)
      anls_sum += vqa.anls(answer, gts)
      qtype = gt.get("question_type")
      if qtype is not None and qtype not in QUESTION_TYPES:
        raise registry.unknown_name("RSVQA question_type", qtype, QUESTION_TYPES)
      for k in ("all", qtype):
        if k is not None:
          stats[k] = [stats[k][0] + acc, stats[k][1] + acc_any, stats[k][2] + 1]
      records.append({"question_id": gt.get("question_id"), "answer": answer,
                      "gts": gts})
    records = common.gather_json(records)
    stats, anls_sum = common.process_sum([stats, anls_sum])
    if stats["all"][2]:
      yield "acc", stats["all"][0] / stats["all"][2]
      yield "acc_any", stats["all"][1] / stats["all"][2]
      yield "anls", anls_sum / stats["all"][2]
    per_type = {t: stats[t][1] / stats[t][2] for t in QUESTION_TYPES if stats[t][2]}
    for t, v in per_type.items():
      yield f"acc_{t}", v
    yield from type_averages(per_type).items()
    yield "num", len(records)
    common.write_json(self.workdir, self.name, records)
