"""Object detection: COCO mAP@[.5:.95], AP50, AP75 (and AP by area) from `<loc>` outputs.

big_vision has no detection evaluator; this one parses "<loc>x4 label ; ..." answers with
`tokenizer.parse_detections` and scores them with `coco_map` (pycocotools' COCOeval rules).
PaliGemma gives no confidences, so an image's objects are ranked in output order
(score 1 / (1 + rank)): earlier objects count as more confident. Detections whose label
is not a ground-truth class of the evaluated set are dropped (as COCOeval drops unknown
category ids) and counted in `unknown_label`; malformed pieces are counted in `invalid`.

Ground truth (kept by the eval pp): `objects/bbox` float[N, 4] (ymin, xmin, ymax, xmax in
[0, 1]; zero-area rows are batch padding and skipped), `objects/label` (str, or int
indices into `categories`), optionally `objects/area` (pixels, COCO's `area`) and
`objects/is_crowd`. With `hw_key` naming an int[2] (height, width) field, boxes are
scaled to pixels and AP_small / AP_medium / AP_large are reported too.
"""
import dataclasses
from typing import Any

import numpy as np

from big_vision_lite import tokenizer
from big_vision_lite.evaluators import coco_map
from big_vision_lite.evaluators import common


def parse_prediction(text, height=1.0, width=1.0):
  """Parses a detection answer into {boxes float[D, 4], labels, scores} and #invalid."""
  objects, invalid = tokenizer.parse_detections(text)
  scale = np.array([height, width, height, width], np.float64) / (tokenizer.NUM_LOC - 1)
  boxes = np.asarray([o.bins * scale for o in objects], np.float64).reshape(-1, 4)
  scores = 1.0 / (1.0 + np.arange(len(objects)))
  return {"boxes": boxes, "labels": [o.label for o in objects], "scores": scores}, len(invalid)


@dataclasses.dataclass(kw_only=True, eq=False)
class Evaluator(common.EvaluatorBase):
  """COCO-style detection mAP over the whole eval set (gathered from all hosts)."""

  categories: Any = None
  hw_key: str | None = None
  box_key: str = "objects/bbox"
  label_key: str = "objects/label"
  area_key: str = "objects/area"
  crowd_key: str = "objects/is_crowd"
  id_key: str = "image/id"
  max_dets: int = 100
  name: str = "detection"

  def __post_init__(self):
    self.categories = list(self.categories) if self.categories is not None else None
    self.keys = dict(hw=self.hw_key, box=self.box_key, label=self.label_key,
                     area=self.area_key, crowd=self.crowd_key, id=self.id_key)

  def _label(self, v):
    if isinstance(v, str):
      return v
    if self.categories is None:
      raise ValueError(f"Ground-truth label {v!r} is not a string; pass "
                       "categories=[names...] to map class indices to names.")
    return self.categories[int(v)]

  def _ground_truth(self, gt):
    k = self.keys
    h, w = (gt[k["hw"]] if k["hw"] else (1.0, 1.0))
    boxes = np.asarray(gt.get(k["box"], []), np.float64).reshape(-1, 4)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    labels = [self._label(v) for v, ok in zip(gt.get(k["label"], []), keep) if ok]
    boxes = boxes[keep] * np.array([h, w, h, w], np.float64)
    area = gt.get(k["area"]) if k["hw"] else None
    areas = np.asarray(area, np.float64)[keep] if area is not None else None
    crowd = gt.get(k["crowd"])
    crowd = np.asarray(crowd, bool)[keep] if crowd is not None else np.zeros(len(boxes), bool)
    return {"boxes": boxes, "labels": labels, "areas": areas, "iscrowd": crowd}, (h, w)

  def run(self, params):
    """Evaluates `params`; yields (metric name, value)."""
    k = self.keys
    keep = [v for v in k.values() if v]
    records = []
    batches = common.eval_batches(self.data, self.pp_fn, self.batch_size)
    for gt, text in common.decoded_examples(self.predict_fn, params, self.tokenizer,
                                            batches, keep):
      g, (h, w) = self._ground_truth(gt)
      det, num_invalid = parse_prediction(text, h, w)
      records.append({"image_id": gt.get(k["id"]), "answer": text, "invalid": num_invalid,
                      "gt": {"boxes": g["boxes"].tolist(), "labels": g["labels"],
                             "areas": None if g["areas"] is None else g["areas"].tolist(),
                             "iscrowd": g["iscrowd"].tolist()},
                      "det": {"boxes": det["boxes"].tolist(), "labels": det["labels"],
                              "scores": det["scores"].tolist()}})
    records = common.gather_json(records)
    gts, dets = [r["gt"] for r in records], [r["det"] for r in records]
    classes = {l for g in gts for l in g["labels"]}
    areas = ("all", "small", "medium", "large") if k["hw"] else ("all",)
    if records:
      for name, v in coco_map.coco_map(gts, dets, self.max_dets, areas).items():
        yield {"AP": "map"}.get(name, name.lower()), v
    yield "invalid", float(sum(r["invalid"] for r in records))
    yield "unknown_label", float(sum(l not in classes for d in dets for l in d["labels"]))
    yield "num", len(records)
    common.write_json(self.workdir, self.name,
                      [{"image_id": r["image_id"], "answer": r["answer"]} for r in records])
