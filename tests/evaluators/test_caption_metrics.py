"""Caption metrics and PTB tokenisation against pycocoevalcap (the COCO caption toolkit)."""
import random
import shutil

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from big_vision_lite.evaluators import caption_metrics
from big_vision_lite.evaluators import coco_caption
from big_vision_lite.evaluators import ptb_tokenizer

_SUBJECTS = ["a man", "a woman", "two dogs", "a cat", "a young boy", "a group of people",
             "an old truck", "a red bus", "a little girl", "three birds"]
_VERBS = ["riding", "sitting on", "standing next to", "looking at", "holding",
          "walking past", "playing with", "parked near"]
_OBJECTS = ["a surfboard", "the beach", "a wooden bench", "a black-and-white sign",
            "a large kite", "the city street", "a plate of food", "a tennis racket",
            "an umbrella", "the train station"]
_TAILS = ["", ".", " on a sunny day.", " in the rain!", " (at night).", ", smiling.",
          " while it's snowing.", " that doesn't move."]

HANDWRITTEN = {
    "img_a": ("A man riding a wave on top of a surfboard.",
              ["A surfer rides a large wave in the ocean.",
               "A man on a surfboard riding a wave.",
               "Person surfing on a big wave, in the sea.",
               "A man is surfing in the ocean."]),
    "img_b": ("Two dogs don't like the cat's toy",
              ["Two dogs playing with a toy.", "The dogs aren't sharing the cat's toy.",
               "Two brown dogs and a toy on the floor."]),
    "img_c": ("a pizza with cheese and pepperoni on a plate",
              ["A pizza with cheese, pepperoni and olives.",
               "A 12-inch pizza sits on a white plate.",
               "Pepperoni pizza on a plate (with a fork).",
               "A close up of a pizza on a plate."]),
    "img_d": ("A kitchen with a stove, a sink and a refrigerator.",
              ["A kitchen that has a stove and a refrigerator.",
               "The kitchen is clean; it has a sink.",
               "A small kitchen with white cabinets -- and a stove."]),
}


def corpus(num_generated=20, seed=0):
  """Returns (predictions {id: str}, references {id: [str]}) with >= 24 images."""
  rng = random.Random(seed)

  def sentence():
    s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
    s += rng.choice(_TAILS)
    return s[0].upper() + s[1:] if rng.random() < 0.5 else s

  preds = {k: v[0] for k, v in HANDWRITTEN.items()}
  refs = {k: list(v[1]) for k, v in HANDWRITTEN.items()}
  for i in range(num_generated):
    key = f"gen_{i:02d}"
    refs[key] = [sentence() for _ in range(rng.randint(3, 5))]
    preds[key] = rng.choice(refs[key]) if i % 5 == 0 else sentence()
  return preds, refs


needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")


def _tokenized():
  preds, refs = corpus()
  keys = list(refs)
  gts = ptb_tokenizer.tokenize({i: refs[k] for i, k in enumerate(keys)})
  res = ptb_tokenizer.tokenize({i: [preds[k]] for i, k in enumerate(keys)})
  return gts, res


def test_corpus_is_non_trivial():
  preds, refs = corpus()
  assert len(refs) >= 24 and all(len(r) >= 3 for r in refs.values())
  assert sum(preds[k] in refs[k] for k in refs) >= 3  # Some exact hits, most not.


def test_cider_bleu_rouge_match_pycocoevalcap():
  gts, res = _tokenized()
  ours, ours_img = caption_metrics.cider_d(gts, res)
  ref, ref_img = Cider().compute_score(gts, res)
  assert abs(ours - ref) <= 1e-6 and np.max(np.abs(ours_img - ref_img)) <= 1e-6
  assert 0.3 < ours < 9.0  # Non-trivial.
  ours_b, ours_b_img = caption_metrics.bleu(gts, res)
  ref_b, ref_b_img = Bleu(4).compute_score(gts, res, verbose=0)
  np.testing.assert_allclose(ours_b, ref_b, rtol=0, atol=1e-6)
  np.testing.assert_allclose(ours_b_img, ref_b_img, rtol=0, atol=1e-6)
  ours_r, ours_r_img = caption_metrics.rouge_l(gts, res)
  ref_r, ref_r_img = Rouge().compute_score(gts, res)
  assert abs(ours_r - ref_r) <= 1e-6
  np.testing.assert_allclose(ours_r_img, ref_r_img, rtol=0, atol=1e-6)


def test_cider_df_comes_from_evaluated_corpus():
  gts, res = _tokenized()
  sub = list(gts)[:10]
  small = caption_metrics.cider_d({k: gts[k] for k in sub}, {k: res[k] for k in sub})[1]
  full = caption_metrics.cider_d(gts, res)[1][:10]
  assert np.max(np.abs(small - full)) > 1e-3  # Same captions, different corpus df.


def test_cider_hand_case():
  # Two images; candidate equal to the single ref of image 0: every n-gram of image 0 has
  # df 1, idf log(2); cosine 1 for n = 1..3 and 0 for n = 4 (the ref has no 4-gram).
  gts = {0: ["a b c"], 1: ["d e f"]}
  res = {0: ["a b c"], 1: ["x y z"]}
  score, per = caption_metrics.cider_d(gts, res)
  np.testing.assert_allclose(per, [10 * 3 / 4, 0.0], atol=1e-12)
  assert score == pytest.approx(3.75)


def test_bleu_brevity_and_clipping_hand_case():
  # Candidate "the the the" vs ref "the cat": clipped unigram 1/3, no bigrams.
  out, _ = caption_metrics.bleu({0: ["the cat"]}, {0: ["the the the"]}, n=1)
  assert out[0] == pytest.approx(1 / 3, abs=1e-8)
  out, _ = caption_metrics.bleu({0: ["a b c d"]}, {0: ["a b"]}, n=1)
  assert out[0] == pytest.approx(np.exp(1 - 2), abs=1e-8)  # Precision 1, BP e^(1-4/2).


def test_metric_input_errors():
  with pytest.raises(ValueError, match="same keys"):
    caption_metrics.cider_d({0: ["a"]}, {1: ["a"]})
  with pytest.raises(ValueError, match="exactly one candidate"):
    caption_metrics.rouge_l({0: ["a"]}, {0: ["a", "b"]})
  with pytest.raises(ValueError, match="Unknown caption metric"):
    caption_metrics.compute({0: ["a"]}, {0: ["a"]}, metrics=("spice",))


_TRICKY = [
    "A man riding a wave on top of a surfboard.", "Two dogs don't like the cat's toy.",
    "The cats' bowls are empty", "I can't believe it's not butter!",
    "A black-and-white photo of a 1,000-year-old tree.",
    "He paid $5.50 for a hot-dog (with mustard).", "A \"big\" sign says 'STOP' here",
    "An image of a man... waiting -- for a bus ; really?",
    "A [red] {blue} bus at 3:30 p.m. in the U.S.", "Mr. Smith and Dr. Who go to St. Louis.",
    "A cat/dog sits on a chair & eats.", "people's kids' things weren't they're we'll",
    "cannot gonna gotta wanna", "a café with naïve décor", "it's 5 o'clock, isn't it?",
    "A 3.5 inch floppy. The end.", "a man   with  extra   spaces ", "50% off * star",
    "two-thirds of the 10x zoom; e.g. this, i.e. that etc.", "it was 1990s, the '90s, 'tis",
    "a+b=c ~tilde", "Yes. No! Maybe? A.", "a U.S.A. flag; the U.K.'s queen",
    "\u201ccurly\u201d \u2018single\u2019 \u2013 en \u2014 em\u2026", "why?? yes!!",
    "Ph.D. student", "a 2x4 board and a 4-by-4 car", "dogs' toys. -5 degrees",
]


@needs_java
def test_python_ptb_matches_java_tokenizer():
  preds, refs = corpus()
  sentences = _TRICKY + list(preds.values()) + [c for r in refs.values() for c in r]
  java = coco_caption.java_ptb_tokenize({i: [s] for i, s in enumerate(sentences)})
  mismatches = [(s, java[i][0], ptb_tokenizer.tokenize_caption(s))
                for i, s in enumerate(sentences)
                if java[i][0] != ptb_tokenizer.tokenize_caption(s)]
  assert not mismatches, mismatches


@needs_java
def test_score_captions_python_equals_java():
  preds, refs = corpus()
  py = coco_caption.score_captions(preds, refs, ptb="python")
  java = coco_caption.score_captions(preds, refs, ptb="java")
  assert py.keys() == java.keys()
  for k in py:
    assert abs(py[k] - java[k]) <= 1e-6, k


def test_ptb_examples():
  tok = ptb_tokenizer.tokenize_caption
  assert tok("Two dogs don't like the cat's toy.") == "two dogs do n't like the cat 's toy"
  assert tok("A bus (red).") == "a bus -lrb- red -rrb-"  # Kept, as the toolkit does.
  assert tok("I can't, cannot!") == "i ca n't can not"


@needs_java
@pytest.mark.slow
def test_meteor_runs_the_toolkit_jar():
  gts = ptb_tokenizer.tokenize({0: ["a cat on a mat", "the cat sits on the mat"],
                                1: ["a dog runs", "dog running in park"]})
  res = ptb_tokenizer.tokenize({0: ["a cat sitting on a mat"], 1: ["a dog in a park"]})
  score = caption_metrics.compute(gts, res, metrics=("meteor",))["meteor"]
  assert 0.2 < score < 0.6
