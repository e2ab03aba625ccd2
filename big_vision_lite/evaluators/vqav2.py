"""VQAv2 accuracy (https://visualqa.org/evaluation.html) and the test-server JSON.

An answer's accuracy is min(1, #matching ground truths / 3), averaged over the 10
leave-one-out subsets of the 10 ground-truth answers. Before matching, answers are
normalised; two conventions exist and both are implemented:

- `normalize="official"` (default), as GT-Vision-Lab/VQA `vqaEval.py` (Python 3 version):
  the prediction is ALWAYS normalised (whitespace, punctuation, lower case, number words
  -> digits, articles dropped, contractions restored: "dont" -> "don't"); the ground
  truths get only the punctuation step, and only when the 10 answers disagree. Ground
  truths are never stripped, lower-cased or digit-mapped.
- `normalize="big_vision"`, as big_vision's PaliGemma evaluator (its published minival
  numbers): prediction and ground truths are fully normalised, but only when the answers
  disagree; when all 10 agree, only whitespace is stripped.

Example: prediction "Two", answers 10 x "2". Official: "Two" -> "2", accuracy 1.0.
big_vision: answers agree, so nothing is normalised: "Two" != "2", accuracy 0.0.
Conversely prediction "two", answers 10 x "two": official maps only the prediction
("2" != "two", accuracy 0.0); big_vision leaves both alone ("two" == "two", 1.0).

Quirks of the official script kept on purpose: the period regex `(?!<=\\d)(\\.)(?!\\d)`
(its "lookbehind" is really a lookahead, so any "." not followed by a digit goes), and its
`sub(..., re.UNICODE)` passes 32 as the replacement count (at most 32 periods removed).
"""
import collections
import dataclasses
import re

from big_vision_lite import registry
from big_vision_lite.evaluators import common
from big_vision_lite.evaluators import vqa

CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't",
    "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd",
    "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3",
                "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
                "nine": "9", "ten": "10"}
ARTICLES = ("a", "an", "the")
PUNCT = (";", "/", "[", "]", "\"", "{", "}", "(", ")", "=", "+", "\\", "_", "-",
         ">", "<", "@", "`", ",", "?", "!")
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
MODES = ("official", "big_vision")


def strip_space(text):
  """Newlines and tabs become spaces; outer whitespace is removed."""
  return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text, max_periods=32):
  """The official punctuation step.

  A mark next to a space (or any mark, when the text has a digit-comma-digit) is deleted,
  otherwise it becomes a space; then periods not followed by a digit are removed (at most
  `max_periods` of them: the official script's count; 0 means no limit).
  """
  delete_all = _DIGIT_COMMA.search(text) is not None
  out = text
  for p in PUNCT:
    if delete_all or f"{p} " in text or f" {p}" in text:
      out = out.replace(p, "")
    else:
      out = out.replace(p, " ")
  return _PERIOD.sub("", out, count=max_periods)


def process_digit_article(text):
  """Lower-cases, maps number words to digits, drops articles, restores contractions."""
  words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
  words = [CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES]
  return " ".join(words)


def normalize_pair(prediction, answers, mode="official"):
  """Normalises a prediction and its ground truths as `mode` does; returns (str, list)."""
  if mode not in MODES:
    raise registry.unknown_name("VQAv2 normalize mode", mode, MODES)
  prediction = strip_space(prediction)
  if mode == "official":  # Ground truths are not even whitespace-stripped.
    prediction = process_digit_article(process_punctuation(prediction))
    if len(set(answers)) > 1:
      answers = [process_punctuation(a) for a in answers]
    return prediction, list(answers)
  answers = [strip_space(a) for a in answers]
  if len(set(answers)) > 1:
    prediction = process_digit_article(process_punctuation(prediction, 0))
    answers = [process_digit_article(process_punctuation(a, 0)) for a in answers]
  return prediction, answers


def vqa_accuracy(prediction, answers, mode="official"):
  """VQA accuracy in [0, 1]: mean over leave-one-out subsets of min(1, matches / 3).

  Args:
    prediction: str, the model's answer.
    answers: list of str, the (usually 10) ground-truth answers.
    mode: "official" or "big_vision" normalisation (see the module docstring).
  """
  if not answers:
    raise ValueError("vqa_accuracy needs at least one ground-truth answer; got none.")
  prediction, answers = normalize_pair(prediction, answers, mode)
  matches = [a == prediction for a in answers]
  total = sum(matches)
  return sum(min(1.0, (total - m) / 3.0) for m in matches) / len(matches)


@dataclasses.dataclass(kw_only=True, eq=False)
class Evaluator(common.EvaluatorBase):
  """VQAv2: accuracy overall, per answer type and per question type; test-server JSON.

  Metrics: `acc`, `acc/{yesno,number,other}` with `num/...` counts, `acc_qtype/{type}`.

  Needs the eval pp to keep `question_id`, and for scoring `answers` (10 strings),
  `answer_type` and optionally `question_type` ("" answers count: the answer lists are
  cut by their `answers/num` count, not by value). Examples without answers (test-dev) are
  only written to `{workdir}/{name}_predictions.json` as [{question_id, answer}].
  """

  normalize: str = "official"
  name: str = "vqav2"

  def __post_init__(self):
    if self.normalize not in MODES:
      raise registry.unknown_name("VQAv2 normalize mode", self.normalize, MODES)

  def run(self, params):
    """Evaluates `params`; yields (metric name, value)."""
    sums, counts = collections.Counter(), collections.Counter()
    records = []
    keep = ("question_id", "answers", "answers/num", "answer_type", "question_type")
    batches = common.eval_batches(self.data, vqa.with_answer_counts(self.pp_fn, ("answers",)),
                                  self.batch_size)
    for gt, answer in common.decoded_examples(self.predict_fn, params, self.tokenizer,
                                              batches, keep):
      records.append({"question_id": gt.get("question_id"), "answer": answer})
      answers = vqa.ground_truths({k: v for k, v in gt.items() if k != "answer"}) or []
      if answers:  # "" is a real answer; test-dev examples have none.
        acc = vqa_accuracy(answer, answers, self.normalize)
        atype = str(gt.get("answer_type", "unknown")).replace("/", "")
        keys = ["all", f"acc/{atype}"]
        if "question_type" in gt:
          keys.append(f"acc_qtype/{gt['question_type']}")
        for k in keys:
          sums[k] += acc
          counts[k] += 1
    records = common.gather_json(records)
    names = sorted(set(k for r in common.gather_json([list(counts)]) for k in r))
    tot = common.process_sum({k: (sums[k], counts[k]) for k in names})
    if "all" in tot and tot["all"][1]:
      yield "acc", tot["all"][0] / tot["all"][1]
    for k in names:
      if k != "all" and tot[k][1]:
        yield k, tot[k][0] / tot[k][1]
        if k.startswith("acc/"):
          yield "num/" + k[4:], tot[k][1]
    yield "num", len(records)
    common.write_json(self.workdir, self.name, records)
