"""Pictures of a training run, written into its workdir at the end (`config.report`).

  config.report = dict(
      loss_curves="loss_curves.png",        # per-task held-out loss + train loss
      shapes_grid=dict(out="predictions.png", data_dir=..., num=12))

`loss_curves` reads `metrics.jsonl`: the train loss, and every evaluator whose results
carry `nll` (one `perplexity` evaluator per task gives one curve per task).
`shapes_grid` draws held-out `shapes` images (validation split) with the model's VQA
answers, caption and detected boxes (from the evaluators' `*_predictions.json`, which
list the rows in file order) next to the ground truth. Both use matplotlib (Agg) and PIL.
"""
import json
import os
import textwrap

import numpy as np
from PIL import Image, ImageDraw

from big_vision_lite import registry
from big_vision_lite import tokenizer

KEYS = ("loss_curves", "shapes_grid")


def read_metrics(path):
  """metrics.jsonl -> list of dicts (a torn last line is skipped)."""
  rows = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except ValueError:
        continue
  return rows


def loss_series(rows):
  """{name: (steps int[n], values float[n])}: "train" and each evaluator's `nll`."""
  series = {}
  for r in rows:
    for k, v in r.items():
      name = "train" if k == "loss" else k[:-len("/nll")] if k.endswith("/nll") else None
      if name is not None:
        series.setdefault(name, ([], []))
        series[name][0].append(r["step"])
        series[name][1].append(v)
  return {k: (np.asarray(s), np.asarray(v, np.float64)) for k, (s, v) in series.items()}


def plot_loss_curves(metrics_path, out_path):
  """Writes the loss curves PNG; returns the names of the curves drawn."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  series = loss_series(read_metrics(metrics_path))
  if not series:
    raise ValueError(f"{metrics_path} has no `loss` or `<eval>/nll` values to plot.")
  fig, ax = plt.subplots(figsize=(8.5, 4.5))
  for name, (steps, values) in sorted(series.items()):
    style = dict(lw=1, alpha=0.6, color="0.4") if name == "train" else dict(marker="o", ms=3)
    ax.plot(steps, values, label=name if name == "train" else f"{name} (held-out)", **style)
  ax.set(xlabel="step", ylabel="loss (mean NLL per suffix token)", yscale="log",
         title="Train loss and per-task held-out loss")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
  fig.tight_layout()
  fig.savefig(out_path, dpi=110)
  plt.close(fig)
  return sorted(series)


def _read_jsonl(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _read_preds(workdir, name):
  path = os.path.join(workdir, f"{name}_predictions.json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _draw_boxes(image, boxes, color, scale):
  """Draws [ymin, xmin, ymax, xmax] boxes (normalized) on a PIL image in place."""
  draw = ImageDraw.Draw(image)
  w, h = image.size
  for y0, x0, y1, x1 in boxes:
    draw.rectangle([x0 * w, y0 * h, x1 * w - 1, y1 * h - 1], outline=color,
                   width=max(1, scale // 3))


def grid_items(workdir, split_dir, num):
  """The first `num` held-out images with their predictions and ground truth.

  Returns a list of dicts: image (path), vqa [(question, answer, truth)], caption
  (predicted, one reference), detect (prompt, predicted boxes, true boxes).
  """
  items = {}
  order = []
  def item(image):
    if image not in items:
      items[image] = dict(image=os.path.join(split_dir, image), vqa=[], caption=None,
                          detect=None)
      order.append(image)
    return items[image]
  for name, rows_file in (("vqa", "vqa"), ("caption", "caption"), ("detect", "detect")):
    preds = _read_preds(workdir, name)
    if preds is None:
      continue
    rows = _read_jsonl(os.path.join(split_dir, f"{rows_file}.jsonl"))
    if len(preds) != len(rows):
      raise ValueError(f"{name}_predictions.json has {len(preds)} records but "
                       f"{split_dir}/{rows_file}.jsonl has {len(rows)} rows; the grid "
                       "needs the evaluator to have run on the whole split.")
    for row, pred in zip(rows, preds):
      it = item(row["image"])
      if name == "vqa":
        it["vqa"].append((row["question"], pred["answer"], row["suffix"]))
      elif name == "caption":
        it["caption"] = (pred["caption"], row["suffix"])
      else:
        objs, _ = tokenizer.parse_detections(pred["answer"])
        it["detect"] = (row["prefix"], [o.box.tolist() for o in objs],
                        row["objects"]["bbox"])
  return [items[k] for k in sorted(order)[:num]]


def plot_shapes_grid(workdir, split_dir, out_path, num=12, cols=4, scale=4):
  """Writes a grid of held-out images: predicted boxes (red) vs true ones (green).

  Returns the number of images drawn; 0 (nothing written) when the workdir holds no
  vqa/caption/detect predictions (e.g. a run with its evaluators switched off).
  """
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  items = grid_items(workdir, split_dir, num)
  if not items:
    return 0
  rows = -(-len(items) // cols)
  fig, axes = plt.subplots(2 * rows, cols, figsize=(cols * 3.6, rows * 5.2), squeeze=False,
                           gridspec_kw=dict(height_ratios=[3, 2] * rows))
  for ax in axes.flat:
    ax.axis("off")
  for k, it in enumerate(items):
    ax, text_ax = axes[2 * (k // cols), k % cols], axes[2 * (k // cols) + 1, k % cols]
    image = Image.open(it["image"]).convert("RGB")
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    lines = []
    if it["detect"]:
      prompt, pred_boxes, true_boxes = it["detect"]
      _draw_boxes(image, true_boxes, (40, 200, 40), scale)
      _draw_boxes(image, pred_boxes, (230, 20, 20), scale)
      lines.append(f"{prompt}: {len(pred_boxes)} pred / {len(true_boxes)} true")
    for q, a, t in it["vqa"]:
      mark = "ok" if a == t else f"X (true: {t})"
      lines.append(f"Q: {q}\nA: {a}  {mark}")
    if it["caption"]:
      pred, ref = it["caption"]
      lines.append(f"caption: {pred}\ntrue: {ref}")
    ax.imshow(np.asarray(image))
    ax.set_title(os.path.basename(it["image"]), fontsize=8)
    text = "\n".join(textwrap.fill(l, 60) for line in lines for l in line.split("\n"))
    text_ax.text(0, 1, text, transform=text_ax.transAxes, va="top",
                 fontsize=6.5)
  fig.suptitle("Held-out images: boxes predicted (red) vs true (green); answers and "
               "captions vs ground truth", fontsize=10)
  fig.tight_layout()
  fig.savefig(out_path, dpi=100)
  plt.close(fig)
  return len(items)


def write(report_cfg, workdir):
  """Writes the pictures `report_cfg` asks for; returns {key: path written}."""
  report_cfg = dict(report_cfg)
  for key in sorted(set(report_cfg) - set(KEYS)):
    raise registry.unknown_name("config.report key", key, KEYS)
  out = {}
  if report_cfg.get("loss_curves"):
    path = os.path.join(workdir, report_cfg["loss_curves"])
    plot_loss_curves(os.path.join(workdir, "metrics.jsonl"), path)
    out["loss_curves"] = path
  if report_cfg.get("shapes_grid"):
    grid = dict(report_cfg["shapes_grid"])
    path = os.path.join(workdir, grid.pop("out", "predictions.png"))
    split_dir = os.path.join(grid.pop("data_dir"), "validation")
    if plot_shapes_grid(workdir, split_dir, path, **grid):
      out["shapes_grid"] = path
    else:
      print(f"Warning: no vqa/caption/detect predictions in {workdir}: {path} not drawn.")
  return out
