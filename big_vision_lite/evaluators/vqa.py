"""Simple VQA: exact match, min(1, m/3) for several answers, acc_any and ANLS.

Used for OCR-VQA, OK-VQA, A-OKVQA, TextVQA (accuracy), DocVQA / InfoVQA / ST-VQA (ANLS).
With a single ground truth (`answer`) accuracy is exact match; with several (`answers`)
it is min(1, #matches / 3) (no leave-one-out averaging, as A-OKVQA's official script) and
`acc_any` is 1 when any answer matches. ANLS (Biten et al. 2019) is
1 - NL(gt, pred) when the normalised Levenshtein distance NL is strictly below 0.5, else 0,
maximised over the ground truths and averaged over questions.

A ground-truth answer "" is a real answer: the evaluator appends `num_texts` to a pp
string so that the batch padding of answer lists ("") is cut by count, not by value.
"""
import dataclasses

from big_vision_lite.evaluators import common

ANSWER_KEYS = ("answer", "answers")


def with_answer_counts(pp_fn, keys=ANSWER_KEYS):
  """pp string + ops writing `{key}/num` (the real number of answers) for each key."""
  if not isinstance(pp_fn, str):
    return pp_fn  # A callable: answer lists are read without their padding by value.
  return pp_fn + "".join(f"|num_texts({k!r}, missing_ok=True)" for k in keys)


def ground_truths(gt):
  """The example's answers: a str (`answer`), a list (`answers`, cut to its count) or
  None. Without a count, the "" that pad a list are dropped by value."""
  if "answer" in gt:
    return str(gt["answer"])
  answers = gt.get("answers")
  if answers is None:
    return None
  answers = [str(a) for a in (answers if isinstance(answers, list) else [answers])]
  n = gt.get("answers/num")
  return answers[:int(n)] if n is not None else common.nonempty(answers)


def levenshtein(a, b):
  """Edit distance (insertions, deletions, substitutions of characters) of two strings."""
  if len(a) < len(b):
    a, b = b, a
  prev = list(range(len(b) + 1))
  for i, ca in enumerate(a, 1):
    cur = [i]
    for j, cb in enumerate(b, 1):
      cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
    prev = cur
  return prev[-1]


def anls(prediction, answers, threshold=0.5):
  """Average Normalised Levenshtein Similarity of one prediction against its answers.

  Args:
    prediction: str.
    answers: list of str (or one str).
    threshold: similarities with NL >= threshold score 0 (strict cut-off, 0.5 for DocVQA).

  Returns:
    float in [0, 1]: max over answers of (1 - NL if NL < threshold else 0); an empty
    answer scores 1 only against an empty prediction.
  """
  if isinstance(answers, str):
    answers = [answers]
  best = 0.0
  for gt in answers:
    if not gt:
      best = max(best, float(prediction == ""))
      continue
    nl = levenshtein(gt, prediction) / max(len(gt), len(prediction))
    best = max(best, 1.0 - nl if nl < threshold else 0.0)
  return best


def postprocess(text, to_lower=False, strip=False):
  """`text` lower-cased (`to_lower`) and with whitespace runs collapsed (`strip`)."""
  text = text.lower() if to_lower else text
  return " ".join(text.split()) if strip else text


def vqa_scores(prediction, answers):
  """Returns (acc, acc_any) of a prediction against one (str) or several (list) answers."""
  if isinstance(answers, str):
    ok = float(prediction == answers)
    return ok, ok
  matches = sum(prediction == a for a in answers)
  return min(1.0, matches / 3.0), min(1.0, float(matches))


@dataclasses.dataclass(kw_only=True, eq=False)
class Evaluator(common.EvaluatorBase):
  """Accuracy, acc_any and ANLS for VQA tasks with `answer` or `answers` ground truth.

  Options: `to_lower` lower-cases prediction and answers before matching (DocVQA's
  official ANLS lower-cases and collapses whitespace: use `to_lower=True, strip=True`);
  `type_key` names a kept field (e.g. "question_type") to also report `acc/<type>`.
  """

  to_lower: bool = False
  strip: bool = False
  anls_threshold: float = 0.5
  type_key: str | None = None
  name: str = "vqa"

  def _post(self, s):
    return postprocess(s, self.to_lower, self.strip)

  def run(self, params):
    """Evaluates `params`; yields (metric name, value)."""
    acc = acc_any = anls_sum = scored = 0.0
    records = []
    batches = common.eval_batches(self.data, with_answer_counts(self.pp_fn),
                                  self.batch_size)
    keep = ("question_id", "answer", "answers", "answers/num") + (
        (self.type_key,) if self.type_key else ())
    for gt, answer in common.decoded_examples(self.predict_fn, params, self.tokenizer,
                                              batches, keep):
      answer = self._post(answer)
      gts = ground_truths(gt)
      rec = {"question_id": gt.get("question_id"), "answer": answer}
      if isinstance(gts, str) or gts:  # One answer ("" too) or a non-empty list.
        gts = self._post(gts) if isinstance(gts, str) else [self._post(a) for a in gts]
        a, a_any = vqa_scores(answer, gts)
        acc, acc_any, scored = acc + a, acc_any + a_any, scored + 1
        anls_sum += anls(answer, gts, self.anls_threshold)
        rec["gts"] = [gts] if isinstance(gts, str) else gts
        if self.type_key:
          rec["type"], rec["acc"] = str(gt.get(self.type_key)), a
      records.append(rec)
    records = common.gather_json(records)
    acc, acc_any, anls_sum, scored = common.process_sum([acc, acc_any, anls_sum, scored])
    if scored:
      yield "acc", acc / scored
      yield "acc_any", acc_any / scored
      yield "anls", anls_sum / scored
    by_type = {}
    for r in records:
      if "type" in r:
        by_type.setdefault(r["type"], []).append(r["acc"])
    for t, v in sorted(by_type.items()):
      yield f"acc/{t}", sum(v) / len(v)
    yield "num", len(records)
    common.write_json(self.workdir, self.name, records)
