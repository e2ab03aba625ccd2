"""Referring segmentation (RefCOCO-style): mIoU, box accuracy @0.5 / @0.75, invalid count.

Scored exactly as big_vision's PaliGemma segmentation evaluator:

- Parsing: the answer must start with 4 `<loc>` then 16 `<seg>` tokens with ymax > ymin
  and xmax > xmin (in bins); whatever follows is ignored. `strict=True` instead requires
  every `;` piece to parse (`tokenizer.parse_segmentations`: exactly 16 seg tokens, no
  stray tokens in the label).
- Pixels: the box corners are truncated, `int(v * H)`; a box empty in pixels is invalid.
  The 16 codes are decoded to 64x64 mask logits by the VQ-VAE
  (`models.vqvae.decode_codes`), resized bilinearly (PIL) into that box and thresholded
  at 0 (`postprocess.paste_mask`).
- `miou`: mean over examples of the per-example mask IoU (not a pooled IoU), at the
  ground-truth mask's resolution; invalid answers score 0 (and so does an IoU whose
  union is empty, where the reference would give NaN).
- `boxacc/0.5`, `boxacc/0.75`: fraction of examples whose box IoU (normalised
  coordinates) is >= the threshold; invalid answers score 0.
- `invalid` and `total`: counts (as the reference); `invalid_rate` = invalid / total.

Ground truth kept by the eval pp: `objects/mask` uint8/bool[H, W] or [H, W, 1] (or
[1, H, W(, 1)]), `objects/bbox` float[4] or [1, 4] (ymin, xmin, ymax, xmax in [0, 1]).
Masks of different sizes are zero-padded by batching; `hw_key` names an int[2]
(height, width) field to crop them back to the true resolution.
"""
import dataclasses
import re

import numpy as np

from big_vision_lite import postprocess
from big_vision_lite import tokenizer
from big_vision_lite.evaluators import common
from big_vision_lite.models import vqvae


def box_iou(a, b):
  """IoU of two boxes (ymin, xmin, ymax, xmax), any consistent units; 0 when empty."""
  inter_h = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
  inter_w = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
  inter = inter_h * inter_w
  area = lambda x: max(x[2] - x[0], 0.0) * max(x[3] - x[1], 0.0)
  union = area(a) + area(b) - inter
  return inter / union if union > 0 else 0.0


def mask_iou(pred, gt):
  """IoU of two bool[H, W] masks; 0 when both are empty."""
  pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
  if pred.shape != gt.shape:
    raise ValueError(f"pred mask {pred.shape} != gt mask {gt.shape}; paste the predicted "
                     "mask at the ground-truth resolution first.")
  union = np.sum(pred | gt)
  return float(np.sum(pred & gt) / union) if union else 0.0


_LEADING = re.compile(r"((?:<loc\d{4}>){4})((?:<seg\d{3}>){16})")


def parse_answer(text, strict=False):
  """Returns (box in [0, 1] (ymin, xmin, ymax, xmax), codes int32[16]) or None if invalid.

  Default: big_vision's rule, the first 4 loc + 16 seg tokens and nothing else counts.
  strict: every object of the answer must be well formed (the first one is scored).
  """
  if strict:
    objects, invalid = tokenizer.parse_segmentations(text)
    if invalid or not objects:
      return None
    bins, codes = objects[0].bins, objects[0].codes
  else:
    m = _LEADING.match(text)
    if m is None:
      return None
    bins = [int(b) for b in re.findall(r"\d+", m[1])]
    codes = np.asarray([int(c) for c in re.findall(r"\d+", m[2])], np.int32)
    if (max(bins) >= tokenizer.NUM_LOC or codes.max() >= tokenizer.NUM_SEG
        or bins[2] <= bins[0] or bins[3] <= bins[1]):
      return None
  return tuple(float(b) / (tokenizer.NUM_LOC - 1) for b in bins), codes


def pixel_box(box, height, width):
  """(ymin, xmin, ymax, xmax) in [0, 1] -> int pixels, truncated as big_vision's `int()`."""
  return (int(box[0] * height), int(box[1] * width), int(box[2] * height),
          int(box[3] * width))


def example_scores(parsed, logits, gt_box, gt_mask, thresholds=(0.5, 0.75)):
  """Scores one example.

  Args:
    parsed: `parse_answer` output or None (invalid).
    logits: float32[64, 64] decoded mask logits (ignored when invalid).
    gt_box: (ymin, xmin, ymax, xmax) in [0, 1].
    gt_mask: bool[H, W] at the ground truth's resolution.
    thresholds: box IoU thresholds.

  Returns:
    (mask IoU, {threshold: box hit 0/1}, valid): `valid` is False for an invalid answer
    or a box that is empty in pixels (its box hits still count, as the reference's).
  """
  if parsed is None:
    return 0.0, {t: 0.0 for t in thresholds}, False
  box, _ = parsed
  biou = box_iou(box, gt_box)
  hits = {t: float(biou >= t) for t in thresholds}
  h, w = gt_mask.shape
  y1, x1, y2, x2 = pixel_box(box, h, w)
  if y2 <= y1 or x2 <= x1:
    return 0.0, hits, False
  pred = postprocess.paste_mask(logits, (y1, x1, y2, x2), h, w)
  return mask_iou(pred, gt_mask), hits, True


def _gt_mask(mask, hw):
  m = np.asarray(mask)
  if m.ndim == 4 or (m.ndim == 3 and m.shape[-1] != 1):
    m = m[0]
  if m.ndim == 3:
    m = m[..., 0]
  if hw is not None:
    m = m[:int(hw[0]), :int(hw[1])]
  return m > 0


@dataclasses.dataclass(kw_only=True, eq=False)
class Evaluator(common.EvaluatorBase):
  """Segmentation metrics; needs `vqvae_path` (the released `vae-oid.npz`)."""

  vqvae_path: str
  det_ious: tuple = (0.5, 0.75)
  hw_key: str | None = None
  mask_key: str = "objects/mask"
  box_key: str = "objects/bbox"
  id_key: str = "id"
  strict: bool = False
  name: str = "segmentation"

  def __post_init__(self):
    self.vqvae_params = vqvae.load_vqvae(self.vqvae_path)
    self.det_ious = tuple(float(t) for t in self.det_ious)
    self.strict = bool(self.strict)

  def run(self, params):
    """Evaluates `params`; yields (metric name, value)."""
    keep = [k for k in (self.mask_key, self.box_key, self.id_key, self.hw_key) if k]
    examples = list(common.decoded_examples(self.predict_fn, params, self.tokenizer,
                                            common.eval_batches(self.data, self.pp_fn,
                                                                self.batch_size), keep))
    parsed = [parse_answer(text, self.strict) for _, text in examples]
    codes = [p[1] for p in parsed if p is not None]
    logits = iter(np.asarray(vqvae.decode_codes(self.vqvae_params, np.stack(codes)))
                  if codes else [])
    iou_sum, invalid, hits, records = 0.0, 0, {t: 0.0 for t in self.det_ious}, []
    for (gt, text), p in zip(examples, parsed):
      gt_box = np.asarray(gt[self.box_key], np.float64).reshape(-1, 4)[0]
      gt_mask = _gt_mask(gt[self.mask_key], gt.get(self.hw_key) if self.hw_key else None)
      iou, hit, valid = example_scores(p, next(logits) if p is not None else None, gt_box,
                                       gt_mask, self.det_ious)
      iou_sum, invalid = iou_sum + iou, invalid + (not valid)
      hits = {t: hits[t] + hit[t] for t in hits}
      records.append({"id": gt.get(self.id_key), "answer": text, "iou": iou,
                      "valid": valid})
    records = common.gather_json(records)
    iou_sum, invalid, num, hits = common.process_sum(
        [iou_sum, invalid, float(len(examples)), [hits[t] for t in self.det_ious]])
    if num:
      yield "miou", iou_sum / num
      for t, h in zip(self.det_ious, hits):
        yield f"boxacc/{t}", h / num
      yield "invalid_rate", invalid / num
    yield "invalid", int(invalid)
    yield "total", int(num)
    common.write_json(self.workdir, self.name, records)
