"""COCO captioning metrics: CIDEr(-D), BLEU-1..4, ROUGE-L and optionally METEOR.

Predictions and reference captions are PTB-tokenised (`ptb="python"`: our
re-implementation in `ptb_tokenizer`; `ptb="java"`: pycocoevalcap's Stanford tokenizer)
and scored corpus-wide with `caption_metrics` over the examples of ALL hosts (CIDEr's
document frequencies come from the whole evaluated set). Examples with the same image id
are scored once (the first one's caption and references count).
"""
import dataclasses
import shutil

import jax

from big_vision_lite import registry
from big_vision_lite.evaluators import caption_metrics
from big_vision_lite.evaluators import common
from big_vision_lite.evaluators import ptb_tokenizer


def java_ptb_tokenize(captions_for_image):
  """Tokenises {key: [str]} with pycocoevalcap's Java PTBTokenizer."""
  if shutil.which("java") is None:
    raise RuntimeError("ptb='java' needs Java on PATH; use ptb='python' instead.")
  # pylint: disable-next=import-outside-toplevel
  from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
  data = {k: [{"caption": c} for c in caps] for k, caps in captions_for_image.items()}
  return PTBTokenizer().tokenize(data)


def score_captions(predictions, references, metrics=("cider", "bleu4", "rouge_l"),
                   ptb="python"):
  """Scores captions.

  Args:
    predictions: {image_id: caption str}.
    references: {image_id: [caption str, ...]}.
    metrics: subset of caption_metrics.METRICS.
    ptb: "python" or "java" tokenisation.

  Returns:
    dict metric -> float.
  """
  if ptb not in ("python", "java"):
    raise registry.unknown_name("ptb tokenizer", ptb, ("python", "java"))
  tok = ptb_tokenizer.tokenize if ptb == "python" else java_ptb_tokenize
  keys = list(references)
  gts = tok({i: list(references[k]) for i, k in enumerate(keys)})
  res = tok({i: [predictions[k]] for i, k in enumerate(keys)})
  return caption_metrics.compute(gts, res, metrics)


@dataclasses.dataclass(kw_only=True, eq=False)
class Evaluator(common.EvaluatorBase):
  """Captioning; the eval pp must keep `image/id` and `captions` (list of str).

  Examples sharing an `id_key` value are one image (its first caption is scored);
  `id_key=None` scores every example as its own image.
  """

  metrics: tuple = ("cider", "bleu4", "rouge_l")
  ptb: str = "python"
  id_key: str | None = "image/id"
  name: str = "coco_caption"

  def __post_init__(self):
    metrics, ptb = self.metrics, self.ptb
    unknown = [m for m in metrics if m not in caption_metrics.METRICS]
    if unknown or ptb not in ("python", "java"):
      raise ValueError(f"coco_caption metrics={tuple(metrics)} ptb={ptb!r}: metrics must "
                       f"be in {caption_metrics.METRICS}, ptb 'python' or 'java'.")
    self.metrics = tuple(metrics)

  def run(self, params):
    """Evaluates `params`; yields (metric name, value)."""
    records = []
    batches = common.eval_batches(self.data, self.pp_fn, self.batch_size)
    keep = (self.id_key, "captions") if self.id_key else ("captions",)
    for i, (gt, caption) in enumerate(common.decoded_examples(
        self.predict_fn, params, self.tokenizer, batches, keep)):
      # Without an id key every example is its own image (one caption per image).
      image_id = gt.get(self.id_key) if self.id_key else f"{jax.process_index()}/{i}"
      records.append({"image_id": image_id, "caption": caption,
                      "refs": common.nonempty(gt.get("captions") or [])})
    records = common.gather_json(records)
    preds, refs = {}, {}
    for r in records:  # The first example of an image id gives its caption and refs.
      preds.setdefault(str(r["image_id"]), r["caption"])
      refs.setdefault(str(r["image_id"]), r["refs"])
    refs = {k: v for k, v in refs.items() if v}
    if refs:
      yield from score_captions(preds, refs, self.metrics, self.ptb).items()
    yield "num", len(records)
    common.write_json(self.workdir, self.name,
                      [{"image_id": r["image_id"], "caption": r["caption"]}
                       for r in records])
