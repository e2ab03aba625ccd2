"""big_vision_lite/stage0.py: the demo's stage 0 (SigLIP, or a classifier of the scenes'
objects or of the captions' tags) and PaliGemma's init from it."""
import json
import os

import jax
import numpy as np
import pytest

from big_vision_lite import checkpoint
from big_vision_lite import stage0
from big_vision_lite import train
from big_vision_lite.models import paligemma
from configs import demo


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("s") / "shapes")
  c = demo.get_config(f"data_dir={data_dir},num_train=40,num_val=8,total_steps=1,"
                      "batch_size=8,stage0_steps=3,stage0=siglip")
  c.stage0.input.batch_size = 8
  c.stage0.log_training_steps = 1
  train.prepare(c)  # Data and tokenizer.
  return c


@pytest.mark.slow  # Compiles and trains SigLIP for 3 steps (~40 s idle).
def test_stage0_trains_saves_and_inits_the_image_tower(demo_config, tmp_path):
  c = demo_config
  mesh = train.make_mesh(c)
  workdir = str(tmp_path)
  out = stage0.init_from_stage0(c, workdir, mesh)
  path = os.path.join(workdir, "stage0", stage0.CKPT)
  assert dict(out.model_init) == {"img": f"{path}:img"} and not c.get("model_init")
  with open(os.path.join(workdir, "stage0", "metrics.jsonl")) as f:
    rows = [json.loads(l) for l in f]
  assert [r["step"] for r in rows] == [1, 2, 3]
  assert all(np.isfinite(r["loss"]) and 0 <= r["acc"] <= 1 for r in rows)
  assert rows[0]["t"] == pytest.approx(10.0, rel=0.05)
  saved = checkpoint.load_params(path)
  assert {"img", "txt", "t", "b"} <= set(saved)

  model = paligemma.Model(**c.model)
  image = np.zeros((1, 64, 64, 3), np.float32)
  text = np.zeros((1, 4), np.int32)
  init = jax.device_get(model.init(jax.random.key(0), image, text, text)["params"])
  params = paligemma.load(init, out.model_init.to_dict(), out.model.to_dict(),
                          **out.model_load.to_dict())
  got, want = checkpoint.flatten(params["img"]), checkpoint.flatten(saved["img"])
  for k in got:
    if k.startswith("head/"):  # The projector starts from its own init.
      np.testing.assert_array_equal(got[k], checkpoint.flatten(init["img"])[k])
    else:
      np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  np.testing.assert_array_equal(params["llm"]["final_norm"]["scale"],
                                init["llm"]["final_norm"]["scale"])

  mtime = os.path.getmtime(path)
  again = stage0.init_from_stage0(c, workdir, mesh)  # Reuses the saved stage 0.
  assert os.path.getmtime(path) == mtime and dict(again.model_init) == dict(out.model_init)


def test_stage0_config_errors(demo_config, tmp_path):
  c = demo_config.copy_and_resolve_references()
  mesh = train.make_mesh(c)
  c.model_init = "/ckpts/x.npz"
  with pytest.raises(ValueError, match="stage0 and config.model_init"):
    stage0.init_from_stage0(c, str(tmp_path), mesh)
  c.model_init = None
  c.stage0.positives = "all"
  with pytest.raises(ValueError, match=r"Unknown config.stage0.positives 'all'\..* Valid: "
                     r"\['diagonal', 'same_text'\]"):
    stage0.init_from_stage0(c, str(tmp_path), mesh)
  del c.stage0["positives"]
  c.stage0.steps = 3
  with pytest.raises(ValueError, match=r"Unknown config.stage0 key 'steps'\."):
    stage0.init_from_stage0(c, str(tmp_path), mesh)
  del c.stage0["steps"]
  c.stage0.patch_weight = -0.5
  with pytest.raises(ValueError, match=r"patch_weight=-0.5 must be a number >= 0"):
    stage0.init_from_stage0(c, str(tmp_path), mesh)
  c.stage0.patch_weight, c.stage0.box_weight = 1.0, "1"
  with pytest.raises(ValueError, match=r"box_weight='1' must be a number >= 0 \(the "
                     r"weight of the per-token box loss\)"):
    stage0.init_from_stage0(c, str(tmp_path), mesh)
  assert stage0.init_from_stage0(demo.get_config("stage0_steps=0"), str(tmp_path), mesh).get(
      "model_init") is None  # No stage 0: the config as it is.


@pytest.mark.slow  # Compiles and trains the ViT classifier for 3 steps.
@pytest.mark.parametrize("kind,num_classes,first_loss", [
    # 4 shapes x counts 0-3 and 24 colour + shape pairs x absent/present, a softmax each,
    # (+ per token of 8 x 8: none or one of the 4 shapes).
    ("objects", 4 * 4 + 24 * 2, 4 * np.log(4) + 24 * np.log(2)),
    ("objects_patches", 4 * 4 + 24 * 2 + 5, 4 * np.log(4) + 24 * np.log(2) + 64 * np.log(5)),
    # (+ 16 shape x quarter counts 0-2.)
    ("objects_where", 4 * 4 + 24 * 2 + 16 * 3,
     4 * np.log(4) + 24 * np.log(2) + 16 * np.log(3)),
    # (+ per token: none or one of the 24 pairs, weighted by patch_weight=0.125.)
    ("objects_tokens", 4 * 4 + 24 * 2 + 25,
     4 * np.log(4) + 24 * np.log(2) + 0.125 * 64 * np.log(25)),
    # (+ 16 words x absent/present; per token: none, one of the 24 pairs or of the 16 words.)
    ("objects_words", 4 * 4 + 24 * 2 + 16 * 2 + 41,
     4 * np.log(4) + 24 * np.log(2) + 16 * np.log(2) + 0.125 * 64 * np.log(41)),
    ("scene", 4 * 4 + 24 * 2 + 16 * 3 + 25,
     4 * np.log(4) + 24 * np.log(2) + 16 * np.log(3) + 0.125 * 64 * np.log(25)),
    ("tags", len(demo.caption_tags()), len(demo.caption_tags()) * np.log(2))])
def test_stage0_classifiers(demo_config, tmp_path, kind, num_classes, first_loss):
  data_dir = demo_config.ensure_shapes.out_dir
  c = demo.get_config(f"data_dir={data_dir},num_train=40,num_val=8,total_steps=1,"
                      f"batch_size=8,stage0_steps=3,stage0={kind},patch_weight=0.125")
  objects = kind != "tags"
  assert c.stage0.objective == ("grouped_softmax" if objects else "sigmoid_xent")
  assert c.stage0.input.data.task == ("scenes" if objects else "caption")
  assert not c.stage0.model.image.head_zeroinit
  c.stage0.model.image.head_zeroinit = True  # Pins the first loss (below).
  c.stage0.input.batch_size = 8
  c.stage0.log_training_steps = 1
  mesh = train.make_mesh(c)
  out = stage0.init_from_stage0(c, str(tmp_path), mesh)
  with open(os.path.join(str(tmp_path), "stage0", "metrics.jsonl")) as f:
    rows = [json.loads(l) for l in f]
  assert [r["step"] for r in rows] == [1, 2, 3]
  assert all(np.isfinite(r["loss"]) and 0 <= r["acc"] <= 1 for r in rows)
  assert ("patch_acc" in rows[0]) == (kind in ("objects_patches", "objects_tokens",
                                                   "objects_words", "scene"))
  # A zero head predicts each class of a k-way group with 1/k (sigmoid: 1/2).
  assert rows[0]["loss"] == pytest.approx(first_loss, rel=1e-4)
  saved = checkpoint.load_params(out.model_init.img.rsplit(":", 1)[0])
  assert set(saved) == {"img"}
  assert saved["img"]["head"]["kernel"].shape == (128, num_classes)
  model = paligemma.Model(**c.model)
  image = np.zeros((1, 64, 64, 3), np.float32)
  text = np.zeros((1, 4), np.int32)
  init = jax.device_get(model.init(jax.random.key(0), image, text, text)["params"])
  params = paligemma.load(init, out.model_init.to_dict(), out.model.to_dict(),
                          **out.model_load.to_dict())
  np.testing.assert_array_equal(params["img"]["embedding"]["kernel"],
                                saved["img"]["embedding"]["kernel"])
  np.testing.assert_array_equal(params["img"]["head"]["kernel"], init["img"]["head"]["kernel"])


def test_stage0_objects_words_targets_on_real_scenes(demo_config):
  """`stage0=objects_words`: the word groups and word tokens follow each scene's word; the
  box targets (`box_weight`) hold on exactly the tokens a shape covers."""
  from big_vision_lite.datasets import shapes
  from big_vision_lite.pp import builder
  c = demo.get_config(f"data_dir={demo_config.ensure_shapes.out_dir},num_train=40,"
                      "num_val=8,stage0=objects_words,box_weight=0.5")
  assert c.stage0.box_weight == 0.5 and c.stage0.input.pp.endswith(
      "patch_boxes(grid=8)|keep('image', 'labels', 'patch_labels', 'patch_boxes')")
  src = shapes.DataSource(**{k: v for k, v in c.stage0.input.data.items() if k != "name"})
  pp = builder.get_preprocess_fn(c.stage0.input.pp)
  words, seen, covered = list(shapes.WORDS), 0, 0
  for ex in src.get_tfdata(ordered=True).take(40):
    word, box = ex["word"].numpy().decode(), ex["word_box"].numpy()
    out = pp(ex)
    got = out["labels"].numpy()[4 * 4 + 24 * 2:].reshape(16, 2)  # After counts and pairs.
    np.testing.assert_array_equal(got[:, 1], [w == word for w in words])
    grid = out["patch_labels"].numpy().argmax(-1).reshape(8, 8)
    shape_cls = (grid >= 1) & (grid < 1 + 24)
    # The box targets: a box over exactly the tokens a shape covers (boxes_key objects/bbox).
    hit = out["patch_boxes"].numpy()[:, 0].reshape(8, 8)
    np.testing.assert_array_equal(hit, shape_cls)
    word_cls = grid >= 1 + 24  # Token classes: none, the 24 pairs, the 16 words.
    assert not word_cls.any() if not word else set(grid[word_cls]) <= {25 + words.index(word)}
    if word:  # Every word token lies inside the word's box (98% of boxes hold a centre).
      seen, covered = seen + 1, covered + word_cls.any()
      rows, cols = np.nonzero(word_cls)
      assert np.all((rows + 0.5) / 8 >= box[0]) and np.all((rows + 0.5) / 8 <= box[2])
      assert np.all((cols + 0.5) / 8 >= box[1]) and np.all((cols + 0.5) / 8 <= box[3])
  assert seen >= 5 and covered >= seen - 1  # About 35% of the scenes hold a word.


def test_stage0_sigmoid_xent_loss_and_bad_objective(demo_config, tmp_path):
  logits = np.array([[0.0, 2.0, -1.0]], np.float32)
  labels = np.array([[1.0, 0.0, 1.0]], np.float32)
  sig = 1 / (1 + np.exp(-logits))
  want = -np.sum(labels * np.log(sig) + (1 - labels) * np.log(1 - sig))
  assert float(stage0.sigmoid_xent(logits, labels)) == pytest.approx(want, rel=1e-6)
  c = demo_config.copy_and_resolve_references()
  c.stage0.objective = "xent"
  with pytest.raises(ValueError, match=r"Unknown config.stage0.objective 'xent'\..* Valid: "
                     r"\['grouped_softmax', 'siglip', 'sigmoid_xent'\]"):
    stage0.init_from_stage0(c, str(tmp_path), train.make_mesh(c))
  c.stage0.objective, c.stage0.groups = "grouped_softmax", ((4, 0),)
  with pytest.raises(ValueError, match=r"groups=\(\(4, 0\),\): .* needs a list of "
                     r"\(number of groups, classes per group\)"):
    stage0.init_from_stage0(c, str(tmp_path), train.make_mesh(c))
  with pytest.raises(ValueError, match="stage0='clip' must be"):
    demo.get_config("stage0=clip")


def test_stage0_per_token_class_and_box_losses_against_numpy():
  import optax  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  b, p, c, k = 2, 3, 4, 3  # Image-level: one 4-way group; per token: 3 classes + 4 edges.
  out = rng.normal(size=(b, p, c + k + 4)).astype(np.float32)

  class Fixed:  # A "model" whose outputs are its only param.
    def apply(self, variables, image, train, rngs):
      del image, train, rngs
      return variables["params"]["out"], {}

  labels = np.eye(4, dtype=np.float32)[[1, 3]]
  patch = np.eye(3, dtype=np.float32)[rng.integers(0, 3, (b, p))]
  boxes = np.concatenate([rng.integers(0, 2, (b, p, 1)), rng.uniform(0, 1, (b, p, 4))], -1)
  boxes = boxes.astype(np.float32)
  update = stage0.make_update_fn(Fixed(), optax.sgd(0.0), objective="grouped_softmax",
                                 groups=[(1, 4)], patch_weight=0.5, box_weight=2.0)
  _, _, m = update({"out": out}, optax.sgd(0.0).init({"out": out}),
                   dict(image=np.zeros((b, 1)), labels=labels, patch_labels=patch,
                        patch_boxes=boxes), jax.random.key(0))
  logsm = lambda x: x - np.log(np.sum(np.exp(x), -1, keepdims=True))
  image_level = -np.mean(np.sum(labels * logsm(out[..., :c].mean(1)), -1))
  per_token = -np.mean(np.sum(patch * logsm(out[..., c:c + k]), (1, 2)))
  err = boxes[..., :1] * np.abs(out[..., -4:] - boxes[..., 1:])
  assert float(m["loss"]) == pytest.approx(
      image_level + 0.5 * per_token + 2.0 * np.mean(np.sum(err, (1, 2))), rel=1e-5)
  assert float(m["box_l1"]) == pytest.approx(err.sum() / (4 * boxes[..., 0].sum()), rel=1e-5)


def test_grouped_softmax_xent_against_numpy():
  rng = np.random.default_rng(0)
  groups = ((2, 3), (1, 2))  # Two 3-way groups, then one 2-way group: 8 classes.
  logits = rng.normal(size=(5, 8)).astype(np.float32)
  idx = [rng.integers(0, 3, 5), rng.integers(0, 3, 5), rng.integers(0, 2, 5)]
  labels = np.concatenate([np.eye(3)[idx[0]], np.eye(3)[idx[1]], np.eye(2)[idx[2]]], 1)
  want, right = 0.0, 0.0
  for (a, b), i in zip(((0, 3), (3, 6), (6, 8)), idx):
    lg = logits[:, a:b].astype(np.float64)
    logp = lg - np.log(np.sum(np.exp(lg), 1, keepdims=True))
    want -= logp[np.arange(5), i]
    right += lg.argmax(1) == i
  loss, acc = stage0.grouped_softmax_xent(logits, labels.astype(np.float32), groups)
  assert float(loss) == pytest.approx(np.mean(want), rel=1e-5)
  assert float(acc) == pytest.approx(np.mean(right / 3), rel=1e-6)
  assert stage0.group_slices(groups) == [(0, 6, 3), (6, 8, 2)]
