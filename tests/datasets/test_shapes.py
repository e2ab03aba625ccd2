"""Tests of the bundled shapes dataset: determinism, content sanity, the source."""
import hashlib
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from big_vision_lite import datasets
from big_vision_lite import tokenizer
from big_vision_lite.pp import builder
from big_vision_lite.datasets import shapes

ARGS = dict(num_train=24, num_val=6, res=64, seed=3)


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
  return shapes.ensure_shapes(str(tmp_path_factory.mktemp("s") / "shapes"), **ARGS)


def _digest(folder):
  out = {}
  for root, _, files in os.walk(folder):
    for f in files:
      path = os.path.join(root, f)
      with open(path, "rb") as fh:
        out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
  return out


def _read(shapes_dir, split, task):
  with open(os.path.join(shapes_dir, split, f"{task}.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def test_same_seed_same_bytes(shapes_dir, tmp_path):
  again = _digest(shapes.ensure_shapes(str(tmp_path / "again"), **ARGS))
  assert again == _digest(shapes_dir)
  assert {"info.json", "corpus.txt", "train/caption.jsonl", "validation/vqa.jsonl",
          "train/images/000000.png"} <= set(again)
  other = _digest(shapes.ensure_shapes(str(tmp_path / "other"), **dict(ARGS, seed=4)))
  assert other["train/caption.jsonl"] != again["train/caption.jsonl"]


def test_existing_data_is_kept_or_rejected(shapes_dir):
  mtime = os.path.getmtime(os.path.join(shapes_dir, "info.json"))
  assert shapes.ensure_shapes(shapes_dir, **ARGS) == shapes_dir
  assert os.path.getmtime(os.path.join(shapes_dir, "info.json")) == mtime
  with pytest.raises(ValueError, match=r"generated with .*Use another out_dir"):
    shapes.ensure_shapes(shapes_dir, **dict(ARGS, res=32))
  assert not [f for f in os.listdir(os.path.dirname(shapes_dir)) if ".tmp-" in f]


def test_content_consistent_with_drawn_shapes(shapes_dir):
  res = ARGS["res"]
  for split, num in (("train", ARGS["num_train"]), ("validation", ARGS["num_val"])):
    scenes = {s["image"]: s for s in _read(shapes_dir, split, "scenes")}
    assert len(scenes) == num
    for s in scenes.values():
      boxes = np.asarray(s["objects"]["bbox"])
      assert 1 <= len(boxes) <= 4 and (boxes >= 0).all() and (boxes <= 1).all()
      assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
      pixels = np.asarray(Image.open(os.path.join(shapes_dir, split, s["image"])))
      assert pixels.shape == (res, res, 3)
      for box, color in zip(boxes, s["objects"]["color"]):  # The centre has the colour.
        cy, cx = int((box[0] + box[2]) / 2 * res), int((box[1] + box[3]) / 2 * res)
        assert tuple(pixels[cy, cx]) == shapes.COLORS[color]
    for r in _read(shapes_dir, split, "vqa"):
      s, q = scenes[r["image"]], r["question"]
      labels, colors = s["objects"]["label"], s["objects"]["color"]
      assert len(r["answers"]) == 10 and r["suffix"] in r["answers"]
      if q == "how many shapes are there?":
        assert r["suffix"] == str(len(labels))
      elif m := re.fullmatch(r"how many (\w+)s are there\?", q):
        assert r["suffix"] == str(labels.count(m[1]))
      elif m := re.fullmatch(r"what color is the (\w+)\?", q):
        assert r["suffix"] == colors[labels.index(m[1])] and labels.count(m[1]) == 1
      elif m := re.fullmatch(r"is there a (\w+) (\w+)\?", q):
        assert (r["suffix"] == "yes") == ((m[1], m[2]) in zip(colors, labels))
    for r in _read(shapes_dir, split, "detect"):
      shape = r["prefix"].split()[1]
      s = scenes[r["image"]]
      want = [b for b, l in zip(s["objects"]["bbox"], s["objects"]["label"]) if l == shape]
      assert r["objects"]["bbox"] == want
      assert r["suffix"] == " ; ".join(
          tokenizer.box_to_loc_str(b) + " " + shape for b in want)
    ocr = _read(shapes_dir, split, "ocr")
    assert {r["image"]: r["suffix"] for r in ocr} == {
        k: s["word"] for k, s in scenes.items() if s["word"]}
    for r in _read(shapes_dir, split, "segment"):
      mask = np.asarray(Image.open(os.path.join(shapes_dir, split, r["mask"])))
      ys, xs = np.nonzero(mask)
      y0, x0, y1, x1 = (np.asarray(r["box"]) * res).round().astype(int)
      assert ys.min() >= y0 and ys.max() < y1 and xs.min() >= x0 and xs.max() < x1
      assert scenes[r["image"]]["objects"]["label"].count(r["label"]) == 1
  corpus = open(os.path.join(shapes_dir, "corpus.txt"), encoding="utf-8").read()
  assert "caption en" in corpus and "answer en" in corpus and "<loc" not in corpus


def test_source_serves_tasks(shapes_dir):
  kw = dict(ARGS, data_dir=shapes_dir, split="validation")
  cap = next(datasets.get("shapes", task="caption", **kw).get_tfdata().as_numpy_iterator())
  assert cap["image"][:4] == b"\x89PNG" and cap["prefix"] == b"caption en"
  assert len(cap["captions"]) == 5
  det_ds = datasets.get("shapes", task="detect", **kw).get_tfdata()
  det = next(det_ds.as_numpy_iterator())
  assert det["objects/bbox"].shape[1] == 4 and det["objects/label"].ndim == 1
  pp = builder.get_preprocess_fn("box_to_loc(labels_key='objects/label', outkey='loc')")
  for ex in det_ds.map(pp).as_numpy_iterator():  # The pp op rebuilds the suffix.
    assert ex["loc"] == ex["suffix"]
  seg_src = datasets.get("shapes", task="segment", **kw)
  seg = next(seg_src.get_tfdata().as_numpy_iterator())
  assert seg["objects/mask"].shape == (1, 64, 64, 1) and seg["objects/bbox"].shape == (1, 4)
  assert seg["suffix"] == b"" and seg["objects/mask"].max() == 255
  with pytest.raises(ValueError, match=r"task 'captions'.*tasks are"):
    datasets.get("shapes", task="captions", **kw)


def test_scenes_source_and_label_counts(shapes_dir):
  """The `scenes` task serves each image's full ground truth; `label_counts` counts it."""
  kw = dict(ARGS, data_dir=shapes_dir, split="validation")
  rows = _read(shapes_dir, "validation", "scenes")
  pp = builder.get_preprocess_fn(
      f"label_counts(inkey='objects/label', classes={list(shapes.SHAPES)!r}, max_count=3)")
  got = list(datasets.get("shapes", task="scenes", **kw).get_tfdata().map(pp)
             .as_numpy_iterator())
  assert len(got) == len(rows) == ARGS["num_val"]
  for ex, row in zip(got, rows):
    assert ex["image"][:4] == b"\x89PNG"
    assert [c.decode() for c in ex["objects/color"]] == row["objects"]["color"]
    assert ex["objects/bbox"].shape == (len(row["objects"]["label"]), 4)
    want = [min(row["objects"]["label"].count(k), 3) for k in shapes.SHAPES]
    np.testing.assert_array_equal(ex["labels"].reshape(4, 4).argmax(1), want)


def test_cli(tmp_path, capsys):
  shapes.main(["--out", str(tmp_path / "cli"), "--num_train", "2", "--num_val", "1",
               "--res", "32"])
  assert capsys.readouterr().out.strip() == str(tmp_path / "cli")
  assert len(_read(str(tmp_path / "cli"), "train", "caption")) == 2


def test_design_args(shapes_dir, tmp_path):
  with open(os.path.join(shapes_dir, "info.json")) as f:  # Defaults: the original keys.
    assert set(json.load(f)) == {"version", "num_train", "num_val", "res", "seed"}
  same = shapes.make_scene(3, 0, 5, 64)
  assert shapes.make_scene(3, 0, 5, 64, size_scale=1.0, max_objects=4) == same
  big = shapes.ensure_shapes(str(tmp_path / "big"), **ARGS, size_scale=1.5, max_objects=2)
  with open(os.path.join(big, "info.json")) as f:
    assert json.load(f)["size_scale"] == 1.5
  scenes = _read(big, "train", "scenes") + _read(big, "validation", "scenes")
  assert max(len(s["objects"]["label"]) for s in scenes) <= 2
  small = [min(b[2] - b[0] for b in s["objects"]["bbox"]) for s in scenes]
  assert min(small) >= 0.14 * 1.5 - 1 / 64  # Smallest side scales with size_scale.
  src = datasets.get("shapes", task="vqa", split="train", data_dir=big, **ARGS,
                     size_scale=1.5, max_objects=2)
  assert src.total_examples == len(_read(big, "train", "vqa"))
  with pytest.raises(ValueError, match="generated with"):
    shapes.ensure_shapes(big, **ARGS)  # Same folder, default design.
  with pytest.raises(ValueError, match=r"max_objects=5 must be in 1..4"):
    shapes.make_scene(0, 0, 0, 64, max_objects=5)
  with pytest.raises(ValueError, match=r"font_scale=8 in \[0.5, 4\]"):
    shapes.make_scene(0, 0, 0, 64, font_scale=8)


def test_font_scale_draws_larger_words(tmp_path):
  assert shapes.font_size(64) == 8 and shapes.font_size(224) == 22  # The original sizes.
  assert shapes.font_size(64, 2.0) == 12 and shapes.font_size(64, 0.5) == 8
  worded = [i for i in range(40) if shapes.make_scene(0, 0, i, 64)["word"]]
  for i in worded:
    a, b = shapes.make_scene(0, 0, i, 64), shapes.make_scene(0, 0, i, 64, font_scale=2.0)
    assert a["objects"] == b["objects"]  # Only the word changes.
    assert a["font_size"] == 8 and (not b["word"] or b["font_size"] == 12)
    if b["word"]:
      h = lambda s: s["word_px"][2] - s["word_px"][0]
      assert h(b) > h(a)
  big = shapes.ensure_shapes(str(tmp_path / "w"), **ARGS, font_scale=2.0)
  with open(os.path.join(big, "info.json")) as f:
    assert json.load(f)["font_scale"] == 2.0


def test_scene_kinds_and_sizes_subsets():
  full = [shapes.make_scene(0, 0, i, 64) for i in range(20)]
  same = [shapes.make_scene(0, 0, i, 64, kinds=shapes.SHAPES, sizes=tuple(shapes.SIZES))
          for i in range(20)]
  assert full == same  # The defaults are the full sets, draw for draw.
  sub = [shapes.make_scene(0, 0, i, 64, kinds=("circle", "square"), sizes=("large",))
         for i in range(20)]
  objs = [o for s in sub for o in s["objects"]]
  assert objs and {o["shape"] for o in objs} <= {"circle", "square"}
  assert {o["size"] for o in objs} == {"large"}
  with pytest.raises(ValueError, match=r"kinds=\('star',\) must be a non-empty subset"):
    shapes.make_scene(0, 0, 0, 64, kinds=("star",))
  with pytest.raises(ValueError, match=r"sizes=\(\) of"):
    shapes.make_scene(0, 0, 0, 64, sizes=())
