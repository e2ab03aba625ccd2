"""COCO box mAP against pycocotools' COCOeval on the same boxes and scores."""
import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from big_vision_lite.evaluators import coco_map

_LABELS = ["cat", "dog", "car", "person"]


def _random_set(seed, num_images=30, h=480, w=640):
  rng = np.random.default_rng(seed)
  gts, dets = [], []
  for _ in range(num_images):
    n = rng.integers(0, 7)
    sizes = rng.choice([12.0, 50.0, 200.0], size=n)  # Small, medium and large boxes.
    y0, x0 = rng.uniform(0, h - 220, n), rng.uniform(0, w - 220, n)
    hh, ww = sizes * rng.uniform(0.5, 1.5, n), sizes * rng.uniform(0.5, 1.5, n)
    boxes = np.stack([y0, x0, y0 + hh, x0 + ww], 1)
    labels = list(rng.choice(_LABELS, size=n))
    areas = hh * ww * rng.uniform(0.6, 0.9, n)  # Segment area, smaller than the box.
    crowd = rng.random(n) < 0.08
    gts.append({"boxes": boxes, "labels": labels, "areas": areas, "iscrowd": crowd})
    d_boxes, d_labels = [], []
    for b, l in zip(boxes, labels):
      for _ in range(rng.integers(0, 3)):  # Misses, hits and duplicates.
        d_boxes.append(b + rng.normal(0, 0.08 * (b[2] - b[0]), 4))
        d_labels.append(l if rng.random() < 0.85 else rng.choice(_LABELS))
    for _ in range(rng.integers(0, 4)):  # False positives.
      y, x, s = rng.uniform(0, h - 100), rng.uniform(0, w - 100), rng.uniform(8, 100)
      d_boxes.append([y, x, y + s, x + s * rng.uniform(0.5, 2)])
      d_labels.append(rng.choice(_LABELS))
    d_boxes = np.asarray(d_boxes, np.float64).reshape(-1, 4)
    d_boxes[:, 2:] = np.maximum(d_boxes[:, 2:], d_boxes[:, :2] + 1)
    scores = np.round(rng.random(len(d_boxes)), 1)  # Coarse scores: many ties.
    dets.append({"boxes": d_boxes, "labels": d_labels, "scores": scores})
  return gts, dets


def _pycocotools(gts, dets, max_dets=(1, 10, 100)):
  """COCOeval's AP (at max_dets[-1]) and AR (at each max_dets) stats, in its order."""
  cats = {l: i + 1 for i, l in enumerate(_LABELS)}
  images, anns, results = [], [], []
  for img_id, (g, d) in enumerate(zip(gts, dets), 1):
    images.append({"id": img_id, "height": 480, "width": 640})
    for b, l, a, c in zip(g["boxes"], g["labels"], g["areas"], g["iscrowd"]):
      anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cats[l],
                   "bbox": [b[1], b[0], b[3] - b[1], b[2] - b[0]], "area": float(a),
                   "iscrowd": int(c)})
    for b, l, s in zip(d["boxes"], d["labels"], d["scores"]):
      results.append({"image_id": img_id, "category_id": cats[l], "score": float(s),
                      "bbox": [b[1], b[0], b[3] - b[1], b[2] - b[0]]})
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO()
    gt.dataset = {"info": {}, "images": images, "annotations": anns,
                  "categories": [{"id": i, "name": l} for l, i in cats.items()]}
    gt.createIndex()
    ev = COCOeval(gt, gt.loadRes(results), "bbox")
    ev.params.maxDets = list(max_dets)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  prec = ev.eval["precision"][..., -1]  # [T, R, K, A] at max_dets[-1].
  rec = ev.eval["recall"]  # [T, K, A, M].
  mean = lambda x: float(np.mean(x[x > -1])) if np.any(x > -1) else -1.0
  out = [mean(prec[..., 0]), mean(prec[0, ..., 0]), mean(prec[5, ..., 0])]
  out += [mean(prec[..., a]) for a in (1, 2, 3)]
  out += [mean(rec[:, :, 0, m]) for m in range(3)]
  out += [mean(rec[:, :, a, 2]) for a in (1, 2, 3)]
  if tuple(max_dets) == (1, 10, 100):  # Same numbers as COCOeval's own summary.
    np.testing.assert_allclose(out, ev.stats, rtol=0, atol=1e-15)
  return out


@pytest.mark.parametrize("seed,max_dets", [(0, (1, 10, 100)), (1, (1, 10, 100)),
                                           (2, (1, 2, 3))])
def test_matches_cocoeval(seed, max_dets):
  """All 12 COCOeval stats: AP, AP50, AP75, AP by area, AR@1/10/100, AR by area."""
  gts, dets = _random_set(seed)
  ours = coco_map.coco_map(gts, dets, max_dets=max_dets[-1], recall_max_dets=max_dets[:2])
  ref = _pycocotools(gts, dets, max_dets)
  assert list(ours) == ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
                        *(f"AR@{m}" for m in max_dets), "AR_small", "AR_medium",
                        "AR_large"]
  np.testing.assert_allclose(list(ours.values()), ref, rtol=0, atol=1e-12)
  assert 0.05 < ours["AP"] < 0.95 and 0.05 < ours["AR@1"] < ours[f"AR@{max_dets[-1]}"] < 1


def test_hand_cases():
  gt = [{"boxes": [[0, 0, 10, 10]], "labels": ["a"], "areas": None}]
  perfect = coco_map.coco_map(gt, [{"boxes": [[0, 0, 10, 10]], "labels": ["a"],
                                    "scores": [1.0]}], area_ranges=("all",))
  assert perfect == pytest.approx({"AP": 1.0, "AP50": 1.0, "AP75": 1.0, "AR@1": 1.0,
                                   "AR@10": 1.0, "AR@100": 1.0})  # pr < 1 by eps.
  # IoU 0.6: a hit for thresholds .50, .55 and .60, a miss above.
  half = coco_map.coco_map(gt, [{"boxes": [[0, 0, 10, 6]], "labels": ["a"],
                                 "scores": [1.0]}], area_ranges=("all",))
  assert half["AP50"] == pytest.approx(1.0) and half["AP75"] == 0.0
  assert half["AP"] == pytest.approx(0.3) and half["AR@1"] == pytest.approx(0.3)
  none = coco_map.coco_map(gt, [{"boxes": np.zeros((0, 4)), "labels": [], "scores": []}],
                           area_ranges=("all",))
  assert none["AP"] == 0.0
  with pytest.raises(ValueError, match="one \\(possibly empty\\) detection list"):
    coco_map.coco_map(gt, [])
