"""COCO box AP and AR (COCOeval's 12 summary stats) in numpy, as pycocotools' COCOeval.

Matches COCOeval("bbox") on the same boxes and scores: 10 IoU thresholds .50:.05:.95,
101 recall points, greedy matching of score-sorted detections (stable sort, so ties
keep the input order) to the best-IoU unmatched ground truth, ground truths outside the
area range (from their `area` field) or marked crowd are "ignored" (matching one makes
the detection ignored; crowd boxes match many detections with IoU = intersection /
detection area), unmatched detections outside the area range are ignored, at most
`max_dets` detections per image and class, interpolated precision, and a mean over the
classes that have ground truth. Classes are the labels present in the ground truth;
detections of other labels are dropped, as COCOeval drops unknown category ids.
"""
import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1)
AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0 ** 2),
               "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e10)}


def box_iou(dets, gts, crowd):
  """IoU of boxes (ymin, xmin, ymax, xmax): float[D, 4] x float[G, 4] -> float[D, G].

  For crowd ground truths (bool[G]) the union is the detection's area, as COCO does.
  """
  dets = np.asarray(dets, np.float64).reshape(-1, 4)
  gts = np.asarray(gts, np.float64).reshape(-1, 4)
  y1 = np.maximum(dets[:, None, 0], gts[None, :, 0])
  x1 = np.maximum(dets[:, None, 1], gts[None, :, 1])
  y2 = np.minimum(dets[:, None, 2], gts[None, :, 2])
  x2 = np.minimum(dets[:, None, 3], gts[None, :, 3])
  inter = np.clip(y2 - y1, 0, None) * np.clip(x2 - x1, 0, None)
  area_d = (dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1])
  area_g = (gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1])
  union = np.where(np.asarray(crowd, bool)[None, :], area_d[:, None],
                   area_d[:, None] + area_g[None, :] - inter)
  return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _match(ious, gt_ignore, gt_crowd):
  """Greedy COCO matching for one image and class. Returns (dt_matched, dt_ignored) [T, D]."""
  num_t, (num_d, num_g) = len(IOU_THRESHOLDS), ious.shape
  dt_m, dt_ig = np.zeros((num_t, num_d), bool), np.zeros((num_t, num_d), bool)
  gt_m = np.zeros((num_t, num_g), bool)
  for t, thr in enumerate(IOU_THRESHOLDS):
    for d in range(num_d):
      best, m = min(thr, 1 - 1e-10), -1
      for g in range(num_g):
        if gt_m[t, g] and not gt_crowd[g]:
          continue
        if m > -1 and not gt_ignore[m] and gt_ignore[g]:
          break  # Ground truths are sorted: non-ignored first.
        if ious[d, g] < best:
          continue
        best, m = ious[d, g], g
      if m > -1:
        dt_ig[t, d], dt_m[t, d], gt_m[t, m] = gt_ignore[m], True, True
  return dt_m, dt_ig


def _eval_image(gt, det, label, area_rng, max_dets):
  """Returns (scores[D], matched[T, D], ignored[T, D], num non-ignored gt) or None."""
  g_sel = [i for i, l in enumerate(gt["labels"]) if l == label]
  d_sel = [i for i, l in enumerate(det["labels"]) if l == label]
  if not g_sel and not d_sel:
    return None
  g_boxes = np.asarray(gt["boxes"], np.float64).reshape(-1, 4)[g_sel]
  g_area = np.asarray(gt["areas"], np.float64)[g_sel]
  g_crowd = np.asarray(gt.get("iscrowd", np.zeros(len(gt["labels"]))), bool)[g_sel]
  g_ignore = g_crowd | (g_area < area_rng[0]) | (g_area > area_rng[1])
  g_order = np.argsort(g_ignore, kind="mergesort")
  g_boxes, g_crowd, g_ignore = g_boxes[g_order], g_crowd[g_order], g_ignore[g_order]
  scores = np.asarray(det["scores"], np.float64)[d_sel]
  d_order = np.argsort(-scores, kind="mergesort")[:max_dets]
  d_boxes = np.asarray(det["boxes"], np.float64).reshape(-1, 4)[d_sel][d_order]
  scores = scores[d_order]
  dt_m, dt_ig = _match(box_iou(d_boxes, g_boxes, g_crowd), g_ignore, g_crowd)
  d_area = (d_boxes[:, 2] - d_boxes[:, 0]) * (d_boxes[:, 3] - d_boxes[:, 1])
  outside = (d_area < area_rng[0]) | (d_area > area_rng[1])
  dt_ig |= ~dt_m & outside[None, :]
  return scores, dt_m, dt_ig, int(np.sum(~g_ignore))


def _accumulate(results, max_dets):
  """(interpolated precision float[T, R], recall float[T]) of one class for the first
  `max_dets` detections per image, or None without (non-ignored) ground truth."""
  results = [r for r in results if r is not None]
  if not results:
    return None
  num_gt = sum(r[3] for r in results)
  if num_gt == 0:
    return None
  scores = np.concatenate([r[0][:max_dets] for r in results])
  order = np.argsort(-scores, kind="mergesort")
  dt_m = np.concatenate([r[1][:, :max_dets] for r in results], axis=1)[:, order]
  dt_ig = np.concatenate([r[2][:, :max_dets] for r in results], axis=1)[:, order]
  tps = np.cumsum(dt_m & ~dt_ig, axis=1, dtype=np.float64)
  fps = np.cumsum(~dt_m & ~dt_ig, axis=1, dtype=np.float64)
  out = np.zeros((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)))
  recall = np.zeros(len(IOU_THRESHOLDS))
  for t in range(len(IOU_THRESHOLDS)):
    rc = tps[t] / num_gt
    pr = tps[t] / (fps[t] + tps[t] + np.spacing(1))
    if len(rc):
      recall[t] = rc[-1]
    pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr
    idx = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
    valid = idx < len(pr)
    out[t, valid] = pr[idx[valid]]
  return out, recall


def coco_map(gts, dets, max_dets=100, area_ranges=("all", "small", "medium", "large"),
             recall_max_dets=(1, 10)):
  """COCO box AP and AR.

  Args:
    gts: list (one per image) of dicts: `boxes` float[G, 4] (ymin, xmin, ymax, xmax),
      `labels` list of G str, `areas` float[G] (COCO `area`; the box area if missing),
      optional `iscrowd` bool[G].
    dets: list (same images) of dicts: `boxes` float[D, 4], `labels` list of D str,
      `scores` float[D].
    max_dets: detections kept per image and class (COCO's 100).
    area_ranges: names from AREA_RANGES to report.
    recall_max_dets: the smaller detection budgets of AR (COCO's 1 and 10).

  Returns:
    dict: "AP" (mean over IoU .50:.95), "AP50", "AP75", and "AR@{m}" for m in
    recall_max_dets + (max_dets,) for the "all" range; "AP_{name}" and "AR_{name}" (at
    max_dets) for the other ranges. With the defaults these are COCOeval's 12 `stats`,
    in its order. -1 where no class has ground truth (as COCO).
  """
  if len(gts) != len(dets):
    raise ValueError(f"{len(gts)} ground-truth images but {len(dets)} detection lists; "
                     "pass one (possibly empty) detection list per image.")
  budgets = sorted({*(int(m) for m in recall_max_dets if m < max_dets), int(max_dets)})
  gts = [dict(g, areas=g.get("areas") if g.get("areas") is not None else
              [(b[2] - b[0]) * (b[3] - b[1]) for b in np.reshape(g["boxes"], (-1, 4))])
         for g in gts]
  labels = sorted({l for g in gts for l in g["labels"]})
  images_of = {l: [] for l in labels}  # Images (in order) where a class appears.
  for i, (g, d) in enumerate(zip(gts, dets)):
    for l in sorted(set(g["labels"]) | set(d["labels"])):
      if l in images_of:
        images_of[l].append(i)
  mean = lambda x: float(np.mean(x)) if x.size else -1.0
  ap, ar = {}, {}
  for name in area_ranges:
    rng = AREA_RANGES[name]
    per_class = [[_eval_image(gts[i], dets[i], label, rng, max_dets)
                  for i in images_of[label]] for label in labels]
    for m in budgets:
      acc = [a for a in (_accumulate(r, m) for r in per_class) if a is not None]
      prec = (np.stack([a[0] for a in acc]) if acc
              else np.zeros((0, len(IOU_THRESHOLDS), 1)))
      rec = np.stack([a[1] for a in acc]) if acc else np.zeros((0, len(IOU_THRESHOLDS)))
      if m == max_dets:
        if name == "all":
          ap.update(AP=mean(prec), AP50=mean(prec[:, 0]), AP75=mean(prec[:, 5]))
        else:
          ap[f"AP_{name}"] = mean(prec)
      if name == "all":
        ar[f"AR@{m}"] = mean(rec)
      elif m == max_dets:
        ar[f"AR_{name}"] = mean(rec)
  return {**ap, **ar}
