"""Video end to end: frame sampling pp ops, the shapes video split, frame folding in
PaliGemma, and the video transfer configs on the shapes video split (one train step +
evals)."""
import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from big_vision_lite import datasets
from big_vision_lite.datasets import shapes_video
from big_vision_lite.models import paligemma
from big_vision_lite.pp import builder
from big_vision_lite.pp import ops_video
import big_vision_lite.pp  # noqa: F401  (registers every op)


def _video(f, h=6, w=5):
  """uint8[F, H, W, 3] (F <= 25) whose frame k is filled with the value 10 * k."""
  return (np.arange(f, dtype=np.uint8)[:, None, None, None] * 10
          * np.ones((1, h, w, 3), np.uint8))


def _png(frame):
  buf = io.BytesIO()
  Image.fromarray(frame).save(buf, format="PNG")
  return buf.getvalue()


def _frame_ids(video):
  return [int(v) // 10 for v in np.asarray(video)[:, 0, 0, 0]]


@pytest.mark.parametrize("f,n,expected", [(10, 4, [1, 3, 6, 8]), (8, 8, list(range(8))),
                                          (3, 6, [0, 0, 1, 1, 2, 2]), (1, 2, [0, 0])])
def test_video_sample_uniform_on_decoded_frames(f, n, expected):
  out = builder.get_preprocess_fn(f"video_sample({n})")({"image": tf.constant(_video(f))})
  assert out["image"].dtype == tf.uint8 and out["image"].shape == (n, 6, 5, 3)
  assert _frame_ids(out["image"]) == expected


def test_video_sample_encoded_frames_and_files(tmp_path):
  frames = _video(6)
  encoded = tf.constant([_png(x) for x in frames])
  out = builder.get_preprocess_fn("video_sample(3)|resize(4)|value_range(-1, 1)")(
      {"image": encoded})
  assert out["image"].shape == (3, 4, 4, 3) and out["image"].dtype == tf.float32
  raw = builder.get_preprocess_fn("video_sample(3)")({"image": encoded})["image"]
  np.testing.assert_array_equal(raw.numpy(), frames[[1, 3, 5]])
  paths = []
  for k, x in enumerate(frames):
    paths.append(str(tmp_path / f"{k}.png"))
    Image.fromarray(x).save(paths[-1])
  out = builder.get_preprocess_fn("video_sample(2, read_files=True)")(
      {"image": tf.constant(paths)})
  np.testing.assert_array_equal(out["image"].numpy(), frames[[1, 4]])


def test_video_sample_random_stays_in_segments_and_is_seeded():
  fn = builder.get_preprocess_fn("video_sample(4, random=True)")
  video = tf.constant(np.arange(40, dtype=np.uint8)[:, None, None, None]
                      * np.ones((1, 2, 2, 3), np.uint8))
  draws = set()
  for s in range(20):
    ids = [int(v) for v in fn({"image": video, "_seed": tf.constant([s, 1])})[
        "image"].numpy()[:, 0, 0, 0]]
    assert all(10 * i <= k < 10 * (i + 1) for i, k in enumerate(ids)), ids
    again = fn({"image": video, "_seed": tf.constant([s, 1])})["image"].numpy()
    assert ids == again[:, 0, 0, 0].tolist()
    draws.add(tuple(ids))
  assert len(draws) > 5


def test_video_sample_in_tf_data_graph():
  ds = tf.data.Dataset.from_tensor_slices({"image": _video(9)[None].repeat(2, 0)})
  ds = ds.map(builder.get_preprocess_fn("video_sample(3)|resize(8)"))
  (ex,) = list(ds.take(1))
  assert ex["image"].shape == (3, 8, 8, 3)


def test_video_from_image():
  out = builder.get_preprocess_fn("video_from_image(3)")({"image": tf.constant(_video(1)[0])})
  assert out["image"].shape == (3, 6, 5, 3)


def test_video_errors():
  with pytest.raises(ValueError, match="num_frames=0 must be a positive int"):
    builder.get_preprocess_fn("video_sample(0)")
  with pytest.raises(ValueError, match="read_files 'yes'. .*Valid: "):
    builder.get_preprocess_fn("video_sample(2, read_files='yes')")
  fn = builder.get_preprocess_fn("video_sample(2)")
  with pytest.raises(ValueError, match=r"must be uint8\[F, H, W, 3\].*video_from_image"):
    fn({"image": tf.zeros([4, 4, 3], tf.uint8)})
  with pytest.raises(KeyError, match="needs key 'image'"):
    fn({"video": tf.zeros([2, 4, 4, 3], tf.uint8)})
  with pytest.raises(tf.errors.InvalidArgumentError, match="has no frames"):
    fn({"image": tf.zeros([0, 4, 4, 3], tf.uint8)})
  assert ops_video.uniform_indices(5, 2).numpy().tolist() == [1, 3]


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("shapes"))


def _centroid(frame, color):
  ys, xs = np.nonzero(np.all(np.abs(frame.astype(int) - color) < 3, axis=-1))
  return np.array([ys.mean(), xs.mean()])


def test_shapes_video_split(shapes_dir):
  kw = dict(data_dir=shapes_dir, num_train=16, num_val=8, res=48)
  cap = datasets.get("shapes_video", task="video_caption", split="train", **kw)
  qa = datasets.get("shapes_video", task="video_qa", split="train", **kw)
  assert cap.total_examples == 4 and qa.total_examples == 8
  rows = [json.loads(l) for l in open(os.path.join(
      shapes_dir, "videos", "train", "video_caption.jsonl"))]
  for ex, row in zip(cap.get_tfdata(ordered=True), rows):
    assert ex["image"].shape == (shapes_video.NUM_FRAMES,)
    frames = builder.get_preprocess_fn("video_sample(8)")(ex)["image"].numpy()
    assert frames.shape == (8, 48, 48, 3)
    mover = row["captions"][0].split(" moves ")[0].split()[-2:]
    direction = row["captions"][0].split(" moves ")[1]
    from big_vision_lite.datasets import shapes  # pylint: disable=import-outside-toplevel
    delta = (_centroid(frames[-1], shapes.COLORS[mover[0]]) -
             _centroid(frames[0], shapes.COLORS[mover[0]]))
    dy, dx = shapes_video.DIRECTIONS[direction]
    assert np.dot(delta, [dy, dx]) > 0.2 * 48, (row, delta)  # Moved that way...
    assert abs(np.dot(delta, [dx, dy])) < 2  # ...and not sideways.
    assert ex["suffix"].numpy().decode() in row["captions"]
  questions = [ex["question"].numpy().decode() for ex in qa.get_tfdata(ordered=True)]
  assert sum(q.startswith("what moves ") for q in questions) == 4
  # Regenerating with the same arguments keeps the files; other arguments are refused.
  assert datasets.get("shapes_video", task="video_qa", split="validation", **kw).total_examples == 4
  with pytest.raises(ValueError, match="generated with"):
    shapes_video.ensure_videos(os.path.join(shapes_dir, "videos"), 16, 8, 64, 0)


def test_paligemma_folds_frames():
  model = paligemma.Model(img=dict(variant="mu", patch_size=(14, 14)),
                          llm=dict(variant="gemma_tiny", vocab_size=64))
  rng = np.random.default_rng(0)
  video = jnp.asarray(rng.uniform(-1, 1, (2, 3, 28, 28, 3)), jnp.float32)
  text = jnp.ones((2, 5), jnp.int32)
  params = model.init(jax.random.key(0), video, text, jnp.zeros_like(text))["params"]
  head = params["img"]["head"]  # The projector starts at zero: give it weights.
  head["kernel"] = jnp.asarray(rng.normal(size=head["kernel"].shape), jnp.float32)
  embed = jax.jit(lambda v: model.apply({"params": params}, v, method="embed_image")[0])
  forward = jax.jit(lambda v: model.apply({"params": params}, v, text, 0 * text)[0])
  tokens = embed(video)
  assert tokens.shape[:2] == (2, 3 * 4)  # F * P.
  np.testing.assert_allclose(tokens[:, 4:8], embed(video[:, 1]), rtol=1e-4, atol=1e-4)
  logits = forward(video)
  assert logits.shape == (2, 5, 64)
  swapped = forward(video[:, ::-1])
  assert not np.allclose(logits, swapped, atol=1e-4)  # Frame order reaches the LLM.


@pytest.mark.parametrize("name,evaluator", [("video_cap", "coco_caption"),
                                            ("video_qa", "vqa")])
def test_transfer_real_config_builds(name, evaluator):
  import importlib  # pylint: disable=import-outside-toplevel
  from big_vision_lite.evaluators import common as eval_common  # pylint: disable=import-outside-toplevel
  mod = importlib.import_module(f"transfers.{name}")
  c = mod.get_config("dataset=vatex,num_frames=8,data_dir=/tfds")
  assert c.input.data.name == "vatex" and c.input.data.data_dir == "/tfds"
  assert "video_sample(8, key=\"video\", random=True)" in c.input.pp
  assert c.total_epochs == (10 if name == "video_cap" else 1)
  assert c.model.img.variant == "So400m/14" and c.model_init.endswith(".npz")
  types = {ev.type for ev in c.evals.values()}
  assert types == {evaluator, "perplexity"}
  for t in types:
    eval_common._evaluator_module(t)  # pylint: disable=protected-access
  for ev in c.evals.values():
    assert "random=False" in ev.pp_fn and "combine_and_keep" in ev.pp_fn


@pytest.mark.slow
@pytest.mark.parametrize("name", ["video_cap", "video_qa"])
def test_transfer_mock_mode(name, tmp_path_factory):
  """One train step and the task's evaluator on the shapes video split (`mock_config`)."""
  from big_vision_lite import train  # pylint: disable=import-outside-toplevel
  from tests.transfer_fixtures import mock_config  # pylint: disable=import-outside-toplevel
  mock_dir = tmp_path_factory.getbasetemp() / "video_mock"
  config = mock_config(name, mock_dir)
  assert "video_sample(4" in config.input.pp
  result = train.train(config, str(tmp_path_factory.mktemp(name)))
  assert result["step"] == 1 and np.isfinite(result["losses"][1])
  metric = "cider" if name == "video_cap" else "acc"
  assert any(k.endswith(f"/{metric}") for k in result["evals"]), result["evals"]
