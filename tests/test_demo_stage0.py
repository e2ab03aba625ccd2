"""big_vision_lite/stage0.py: the demo's stage 0 (SigLIP or a sigmoid-xent tag classifier)
and PaliGemma's init from it."""
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
  assert stage0.init_from_stage0(demo.get_config(), str(tmp_path), mesh).get(
      "model_init") is None  # No stage 0: the config as it is.


@pytest.mark.slow  # Compiles and trains the ViT classifier for 3 steps.
def test_stage0_sigmoid_xent_tag_classifier(demo_config, tmp_path):
  data_dir = demo_config.ensure_shapes.out_dir
  c = demo.get_config(f"data_dir={data_dir},num_train=40,num_val=8,total_steps=1,"
                      "batch_size=8,stage0_steps=3")
  assert c.stage0.objective == "sigmoid_xent"
  c.stage0.input.batch_size = 8
  c.stage0.log_training_steps = 1
  mesh = train.make_mesh(c)
  out = stage0.init_from_stage0(c, str(tmp_path), mesh)
  with open(os.path.join(str(tmp_path), "stage0", "metrics.jsonl")) as f:
    rows = [json.loads(l) for l in f]
  assert [r["step"] for r in rows] == [1, 2, 3]
  assert all(np.isfinite(r["loss"]) and 0 <= r["acc"] <= 1 for r in rows)
  # A zero head predicts 0.5 for each class: the first loss is C * log 2.
  assert rows[0]["loss"] == pytest.approx(len(demo.caption_tags()) * np.log(2), rel=1e-4)
  saved = checkpoint.load_params(out.model_init.img.rsplit(":", 1)[0])
  assert set(saved) == {"img"}
  assert saved["img"]["head"]["kernel"].shape == (128, len(demo.caption_tags()))
  model = paligemma.Model(**c.model)
  image = np.zeros((1, 64, 64, 3), np.float32)
  text = np.zeros((1, 4), np.int32)
  init = jax.device_get(model.init(jax.random.key(0), image, text, text)["params"])
  params = paligemma.load(init, out.model_init.to_dict(), out.model.to_dict(),
                          **out.model_load.to_dict())
  np.testing.assert_array_equal(params["img"]["embedding"]["kernel"],
                                saved["img"]["embedding"]["kernel"])
  np.testing.assert_array_equal(params["img"]["head"]["kernel"], init["img"]["head"]["kernel"])


def test_stage0_sigmoid_xent_loss_and_bad_objective(demo_config, tmp_path):
  logits = np.array([[0.0, 2.0, -1.0]], np.float32)
  labels = np.array([[1.0, 0.0, 1.0]], np.float32)
  sig = 1 / (1 + np.exp(-logits))
  want = -np.sum(labels * np.log(sig) + (1 - labels) * np.log(1 - sig))
  assert float(stage0.sigmoid_xent(logits, labels)) == pytest.approx(want, rel=1e-6)
  c = demo_config.copy_and_resolve_references()
  c.stage0.objective = "xent"
  with pytest.raises(ValueError, match=r"Unknown config.stage0.objective 'xent'\..* Valid: "
                     r"\['siglip', 'sigmoid_xent'\]"):
    stage0.init_from_stage0(c, str(tmp_path), train.make_mesh(c))
  with pytest.raises(ValueError, match="stage0='clip' must be"):
    demo.get_config("stage0=clip")
