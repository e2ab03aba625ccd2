"""VQA-family metric functions against hand-computed cases."""
import jax
import numpy as np
import pytest

from big_vision_lite.evaluators import chartqa
from big_vision_lite.evaluators import perplexity
from big_vision_lite.evaluators import pope
from big_vision_lite.evaluators import rsvqa
from big_vision_lite.evaluators import science_qa
from big_vision_lite.evaluators import tallyqa
from big_vision_lite.evaluators import vqa
from big_vision_lite.evaluators import vqav2

# (prediction, answers, official accuracy, big_vision accuracy)
_VQAV2_CASES = [
    ("two", ["2"] * 10, 1.0, 0.0),          # Number word: official always maps the pred.
    ("two", ["two"] * 10, 0.0, 1.0),        # ... and never maps the ground truths.
    ("dont", ["don't"] * 10, 1.0, 0.0),     # Contraction restored in the prediction only.
    ("don't", ["dont"] * 5 + ["no"] * 5, 0.0, 1.0),  # big_vision restores the GTs too.
    ("yes.", ["yes"] * 10, 1.0, 0.0),       # Trailing period.
    ("a dog", ["dog"] * 10, 1.0, 0.0),      # Article.
    ("The Dog", ["dog"] * 10, 1.0, 0.0),    # Case.
    ("A Dog.", ["dog"] * 2 + ["cat"] * 8, 0.6, 0.6),  # 2 matches: (2/3 * 8 + 1/3 * 2) / 10.
    ("dog", ["dog"] + ["cat"] * 9, 0.3, 0.3),
    ("dog", ["dog"] * 3 + ["cat"] * 7, 0.9, 0.9),
    ("dog", ["dog"] * 4 + ["cat"] * 6, 1.0, 1.0),
    (" yes\n", ["yes"] * 10, 1.0, 1.0),    # Prediction whitespace is always stripped...
    ("yes", ["yes "] * 10, 0.0, 1.0),     # ... ground-truth whitespace only by big_vision.
    ("1.5", ["1.5", "15"] + ["2"] * 8, 0.3, 0.3),  # A period before a digit stays.
    ("red/blue", ["red blue"] * 3 + ["x"] * 7, 0.9, 0.9),  # '/' becomes a space.
    ("red/blue", ["red/blue"] * 3 + ["x"] * 7, 0.9, 0.9),  # GTs get punctuation too...
    ("red/blue", ["red/blue"] * 10, 0.0, 1.0),  # ... but only when they disagree.
    ("1,000", ["1000"] * 3 + ["x"] * 7, 0.9, 0.9),  # Digit-comma: all marks deleted.
]


@pytest.mark.parametrize("pred,answers,official,big_vision", _VQAV2_CASES)
def test_vqav2_normalisation_conventions(pred, answers, official, big_vision):
  assert vqav2.vqa_accuracy(pred, answers) == pytest.approx(official)
  assert vqav2.vqa_accuracy(pred, answers, "big_vision") == pytest.approx(big_vision)


def test_vqav2_official_steps():
  assert vqav2.process_punctuation("yes.") == "yes"
  assert vqav2.process_punctuation("3.5") == "3.5"
  assert vqav2.process_punctuation("left, right") == "left right"
  assert vqav2.process_punctuation("left,right") == "left right"
  assert vqav2.process_punctuation("1,000 cars, 2") == "1000 cars 2"
  # The official `sub(..., re.UNICODE)` removes at most 32 periods.
  assert vqav2.process_punctuation("." * 40) == "." * 8
  assert vqav2.process_punctuation("." * 40, 0) == ""
  assert vqav2.process_digit_article("The Two dogs arent an issue") == "2 dogs aren't issue"
  with pytest.raises(ValueError, match="Unknown VQAv2 normalize mode 'x'"):
    vqav2.vqa_accuracy("a", ["a"], "x")
  with pytest.raises(ValueError, match="at least one"):
    vqav2.vqa_accuracy("a", [])


def test_anls_strict_threshold():
  assert vqa.levenshtein("kitten", "sitting") == 3
  assert vqa.anls("hello", ["hello"]) == 1.0
  assert vqa.anls("hellp", "hello") == pytest.approx(0.8)
  assert vqa.anls("abcx", "abcd") == pytest.approx(0.75)
  assert vqa.anls("abxy", "abcd") == 0.0  # NL = 0.5 exactly: cut off.
  assert vqa.anls("abxy", ["zzzz", "abcd", "abxd"]) == pytest.approx(0.75)  # Max over GTs.
  assert vqa.anls("", [""]) == 1.0 and vqa.anls("a", [""]) == 0.0


def test_vqa_scores():
  assert vqa.vqa_scores("a", "a") == (1.0, 1.0)
  assert vqa.vqa_scores("a", ["a", "b", "a"]) == (pytest.approx(2 / 3), 1.0)
  assert vqa.vqa_scores("c", ["a", "b"]) == (0.0, 0.0)


@pytest.mark.parametrize("target,pred,ok", [
    ("100", "105", True), ("100", "95", True), ("100", "105.01", False),
    ("1.0", "1.05", False),  # |1.05 - 1| / 1 = 0.050000000000000044 in float64.
    ("57%", "0.57", True), ("0.57", "57%", True), ("0.57", "57", False),
    ("0", "0.0", False), ("0", "0", True),  # A zero target needs an exact match.
    ("abc", "abc", True), ("Yes", "yes", False), ("12", "twelve", False),
])
def test_chartqa_relaxed(target, pred, ok):
  assert chartqa.relaxed_match(target, pred) is ok


def test_science_qa_parse():
  assert science_qa.parse_answer("The answer is B.") == "b"
  assert science_qa.parse_answer("The answer is B. Because ...") == "b"
  assert science_qa.parse_answer("the answer is b") == "failed"
  assert science_qa.parse_answer("Answer: B.") == "failed"


def test_tallyqa_numerals():
  assert tallyqa.to_numeral("Three") == "3" and tallyqa.to_numeral("twenty") == "20"
  assert tallyqa.to_numeral("none") == "0" and tallyqa.to_numeral("7") == "7"


def test_pope_metrics():
  pairs = [("yes", "yes"), ("Yes", "no"), ("no", "yes"), ("no", "no"), ("maybe", "no")]
  totals = np.sum([pope.pope_counts(p, a) for p, a in pairs], axis=0)
  m = pope.pope_metrics(list(totals), len(pairs))
  assert m["acc"] == pytest.approx(2 / 5) and m["valid_percent"] == pytest.approx(4 / 5)
  assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
  assert m["f1"] == pytest.approx(0.5) and m["yes_ratio"] == pytest.approx(2 / 5)


def test_rsvqa_type_averages():
  out = rsvqa.type_averages({"comp": 0.5, "presence": 1.0, "count": 0.0})
  assert out == {"acc_avg": pytest.approx(0.5), "acc_avg_nonum": pytest.approx(0.75)}


def test_perplexity_per_example_nll():
  b, t, v = 2, 4, 5
  logits = np.zeros((b, t, v), np.float32)
  logits[1, :, 2] = 100.0  # Example 1 is sure of token 2 everywhere.
  text = np.full((b, t), 2, np.int32)
  mask = np.array([[0, 0, 1, 1], [0, 1, 1, 1]], np.int32)
  nll, count = perplexity.per_example_nll(logits, text, mask)
  np.testing.assert_allclose(nll, [np.log(5), 0.0], atol=1e-6)
  np.testing.assert_array_equal(count, [2, 3])
  with pytest.raises(ValueError, match="must agree"):
    perplexity.per_example_nll(logits[:, :3], text, mask)
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 6, 11)).astype(np.float32) * 3
  text = rng.integers(0, 11, (3, 6)).astype(np.int32)
  mask = (rng.random((3, 6)) < 0.6).astype(np.int32)
  want = perplexity.per_example_nll(logits, text, mask)
  got = perplexity.nll_from_logits(jax.numpy.asarray(logits), text, mask)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(got[1], want[1])
