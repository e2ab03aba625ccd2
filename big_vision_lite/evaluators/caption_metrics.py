"""COCO caption metrics on tokenised captions: CIDEr-D, BLEU-1..4, ROUGE-L, METEOR.

Inputs are `gts = {image: [ref str, ...]}` and `res = {image: [candidate str]}` after PTB
tokenisation (`ptb_tokenizer.tokenize`); words are split on whitespace. Definitions follow
the COCO caption toolkit (pycocoevalcap), including its corners:

- CIDEr-D: n = 1..4 TF-IDF vectors with document frequencies counted over the REFERENCE
  sets of the evaluated corpus (log(max(1, df))), idf base log(#images); per n the score
  is sum over refs of sum_g min(c_g, r_g) * r_g / (|c| |r|) times a Gaussian length penalty
  exp(-(l_c - l_r)^2 / (2 * 6^2)) where the "length" is the number of BIGRAMS (as the
  toolkit does); averaged over n and refs, times 10, then averaged over images.
- BLEU: corpus-level (clipped counts and lengths summed over images before the ratio),
  "closest" reference length (ties -> the shorter), brevity penalty exp(1 - r/c), and
  the toolkit's smoothing constants tiny=1e-15 (numerator) and small=1e-9 (denominator).
- ROUGE-L: per image, max over refs of LCS precision and of LCS recall (separately),
  F with beta = 1.2; mean over images. Candidates are split on single spaces.
- METEOR: needs Java; runs pycocoevalcap's METEOR 1.5 jar (corpus-level statistic).
"""
import collections
import math
import shutil

import numpy as np

from big_vision_lite import registry


def _ngrams(words, n):
  counts = collections.Counter()
  for k in range(1, n + 1):
    for i in range(len(words) - k + 1):
      counts[tuple(words[i:i + k])] += 1
  return counts


def _check(gts, res):
  if set(gts) != set(res):
    raise ValueError(f"gts and res must have the same keys; only in gts: "
                     f"{sorted(set(gts) - set(res))[:5]}, only in res: "
                     f"{sorted(set(res) - set(gts))[:5]}.")
  for k in res:
    if len(res[k]) != 1 or not gts[k]:
      raise ValueError(f"Image {k!r} needs exactly one candidate and at least one "
                       f"reference; got {len(res[k])} and {len(gts[k])}.")


def cider_d(gts, res, n=4, sigma=6.0):
  """CIDEr-D (x10 scale). Returns (corpus score float, per-image float64[N] in key order)."""
  _check(gts, res)
  keys = list(gts)
  refs = {k: [_ngrams(r.split(), n) for r in gts[k]] for k in keys}
  df = collections.Counter()
  for k in keys:
    df.update(set(g for r in refs[k] for g in r))
  log_n = math.log(float(len(keys)))

  def vec(counts):
    v = [dict() for _ in range(n)]
    norm = [0.0] * n
    length = 0
    for g, tf in counts.items():
      w = float(tf) * (log_n - math.log(max(1.0, df[g])))
      v[len(g) - 1][g] = w
      norm[len(g) - 1] += w * w
      if len(g) == 2:
        length += tf
    return v, [math.sqrt(x) for x in norm], length

  scores = []
  for k in keys:
    vc, nc, lc = vec(_ngrams(res[k][0].split(), n))
    total = np.zeros(n)
    for r in refs[k]:
      vr, nr, lr = vec(r)
      penalty = math.e ** (-(float(lc - lr) ** 2) / (2 * sigma ** 2))
      for i in range(n):
        val = sum(min(w, vr[i].get(g, 0.0)) * vr[i].get(g, 0.0) for g, w in vc[i].items())
        if nc[i] != 0 and nr[i] != 0:
          val /= nc[i] * nr[i]
        total[i] += val * penalty
    scores.append(float(np.mean(total)) / len(refs[k]) * 10.0)
  scores = np.asarray(scores)
  return float(np.mean(scores)), scores


def bleu(gts, res, n=4):
  """Corpus BLEU-1..n as the toolkit. Returns (list of n floats, per-image lists)."""
  _check(gts, res)
  tiny, small = 1e-15, 1e-9
  correct, guess = [0] * n, [0] * n
  test_len = ref_len = 0
  per_image = [[] for _ in range(n)]
  for k in gts:
    words = res[k][0].split()
    max_ref = collections.Counter()
    lens = []
    for r in gts[k]:
      rw = r.split()
      lens.append(len(rw))
      for g, c in _ngrams(rw, n).items():
        max_ref[g] = max(max_ref[g], c)
    tl = len(words)
    rl = min((abs(l - tl), l) for l in lens)[1]
    cor = [0] * n
    for g, c in _ngrams(words, n).items():
      cor[len(g) - 1] += min(max_ref.get(g, 0), c)
    gue = [max(0, tl - i) for i in range(n)]
    test_len, ref_len = test_len + tl, ref_len + rl
    b = 1.0
    for i in range(n):
      correct[i] += cor[i]
      guess[i] += gue[i]
      b *= (float(cor[i]) + tiny) / (float(gue[i]) + small)
      per_image[i].append(b ** (1.0 / (i + 1)))
    ratio = (tl + tiny) / (rl + small)
    if ratio < 1:
      for i in range(n):
        per_image[i][-1] *= math.exp(1 - 1 / ratio)
  out, b = [], 1.0
  for i in range(n):
    b *= float(correct[i] + tiny) / (guess[i] + small)
    out.append(b ** (1.0 / (i + 1)))
  ratio = (test_len + tiny) / (ref_len + small)
  if ratio < 1:
    out = [x * math.exp(1 - 1 / ratio) for x in out]
  return out, per_image


def _lcs(a, b):
  prev = [0] * (len(b) + 1)
  for x in a:
    cur = [0]
    for j, y in enumerate(b, 1):
      cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
    prev = cur
  return prev[-1]


def rouge_l(gts, res, beta=1.2):
  """ROUGE-L. Returns (mean float, per-image float64[N] in key order)."""
  _check(gts, res)
  scores = []
  for k in gts:
    cand = res[k][0].split(" ")
    prec, rec = [], []
    for r in gts[k]:
      ref = r.split(" ")
      lcs = _lcs(ref, cand)
      prec.append(lcs / float(len(cand)))
      rec.append(lcs / float(len(ref)))
    p, r = max(prec), max(rec)
    scores.append(((1 + beta ** 2) * p * r) / float(r + beta ** 2 * p) if p and r else 0.0)
  scores = np.asarray(scores)
  return float(np.mean(scores)), scores


def meteor(gts, res):
  """METEOR 1.5 via pycocoevalcap's jar (needs `java` on PATH). Returns (float, list)."""
  _check(gts, res)
  if shutil.which("java") is None:
    raise RuntimeError("METEOR needs Java (the `java` binary was not found on PATH); "
                       "install a JRE or drop 'meteor' from the caption metrics.")
  from pycocoevalcap.meteor.meteor import Meteor  # pylint: disable=import-outside-toplevel
  scorer = Meteor()
  try:
    return scorer.compute_score(gts, res)
  finally:
    del scorer


METRICS = ("cider", "bleu4", "rouge_l", "meteor")


def compute(gts, res, metrics=("cider", "bleu4", "rouge_l")):
  """Returns {metric: score} for tokenised captions; see METRICS."""
  for m in metrics:
    if m not in METRICS:
      raise registry.unknown_name("caption metric", m, METRICS)
  out = {}
  if "cider" in metrics:
    out["cider"] = cider_d(gts, res)[0]
  if "bleu4" in metrics:
    scores = bleu(gts, res)[0]
    out.update({f"bleu{i + 1}": s for i, s in enumerate(scores)})
  if "rouge_l" in metrics:
    out["rouge_l"] = rouge_l(gts, res)[0]
  if "meteor" in metrics:
    out["meteor"] = float(meteor(gts, res)[0])
  return out
