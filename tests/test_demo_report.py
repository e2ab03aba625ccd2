"""big_vision_lite/report.py: loss curves from metrics.jsonl, the shapes prediction grid."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from big_vision_lite import report
from big_vision_lite import tokenizer
from big_vision_lite.datasets import shapes


def _metrics(path):
  rows = [{"step": 10, "loss": 2.0}, {"step": 20, "loss": 1.0},
          {"step": 20, "loss_vqa/nll": 1.5, "loss_vqa/perplexity": 4.5},
          {"step": 20, "loss_caption/nll": 0.7},
          {"step": 40, "loss": 0.5}, {"step": 40, "loss_vqa/nll": 0.4}]
  with open(path, "w") as f:
    f.write("\n".join(json.dumps(r) for r in rows) + "\n{\"step\": 5")  # Torn last line.


def test_loss_series_and_png(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  _metrics(path)
  series = report.loss_series(report.read_metrics(path))
  assert sorted(series) == ["loss_caption", "loss_vqa", "train"]
  np.testing.assert_array_equal(series["train"][0], [10, 20, 40])
  np.testing.assert_array_equal(series["loss_vqa"][1], [1.5, 0.4])
  out = str(tmp_path / "curves.png")
  assert report.plot_loss_curves(path, out) == ["loss_caption", "loss_vqa", "train"]
  assert Image.open(out).size[0] > 300
  with open(path, "w") as f:
    f.write(json.dumps({"step": 1, "vqa/acc": 0.5}) + "\n")
  with pytest.raises(ValueError, match="no `loss` or `<eval>/nll`"):
    report.plot_loss_curves(path, out)


def _predictions(workdir, split_dir):
  """Evaluator-style prediction files: perfect answers, one wrong, boxes shifted."""
  rows = lambda t: [json.loads(l) for l in open(os.path.join(split_dir, f"{t}.jsonl"))]
  vqa = [{"question_id": None, "answer": r["suffix"]} for r in rows("vqa")]
  vqa[0]["answer"] = "purple-ish"
  cap = [{"image_id": f"0/{i}", "caption": r["suffix"]}
         for i, r in enumerate(rows("caption"))]
  det = []
  for i, r in enumerate(rows("detect")):
    boxes = [[min(1.0, v + 0.05) for v in b] for b in r["objects"]["bbox"]]
    det.append({"image_id": None, "answer": tokenizer.boxes_to_loc_str(
        boxes, r["objects"]["label"]) if i else "garbage"})
  for name, recs in (("vqa", vqa), ("caption", cap), ("detect", det)):
    with open(os.path.join(workdir, f"{name}_predictions.json"), "w") as f:
      json.dump(recs, f)


def test_shapes_grid(tmp_path):
  data_dir = shapes.ensure_shapes(str(tmp_path / "shapes"), num_train=2, num_val=5, res=32)
  split_dir = os.path.join(data_dir, "validation")
  workdir = str(tmp_path / "work")
  os.makedirs(workdir)
  _predictions(workdir, split_dir)
  items = report.grid_items(workdir, split_dir, num=4)
  assert [os.path.basename(it["image"]) for it in items] == [
      f"{i:06d}.png" for i in range(4)]
  first = items[0]
  assert first["vqa"][0][1] == "purple-ish" and first["vqa"][0][2] != "purple-ish"
  assert first["caption"][0] == first["caption"][1]
  assert first["detect"][1] == []  # "garbage" parses to no box.
  assert len(items[1]["detect"][1]) == len(items[1]["detect"][2]) >= 1
  out = report.write(dict(shapes_grid=dict(out="grid.png", data_dir=data_dir, num=4)),
                     workdir)
  assert out == {"shapes_grid": os.path.join(workdir, "grid.png")}
  assert Image.open(out["shapes_grid"]).size[0] > 400
  with pytest.raises(ValueError, match=r"Unknown config.report key 'grid'\."):
    report.write(dict(grid=True), workdir)
  with open(os.path.join(workdir, "vqa_predictions.json"), "w") as f:
    json.dump([], f)
  with pytest.raises(ValueError, match="has 0 records but"):
    report.grid_items(workdir, split_dir, num=4)
