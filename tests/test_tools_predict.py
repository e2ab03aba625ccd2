"""tools/predict.py on a tiny saved checkpoint + tokenizer; tools/visualize.py PNGs."""
import json

import jax
import numpy as np
from PIL import Image
import pytest

from big_vision_lite import checkpoint
from big_vision_lite import tokenizer
from big_vision_lite.models import paligemma
from big_vision_lite.models import vqvae
from tools import predict
from tools import visualize


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp("predict")
  tok_path = str(d / "tok.model")
  tokenizer.train_tokenizer(["a photo of a cat", "caption en", "detect dog ; cat"] * 20,
                            tok_path, vocab_size=300)
  vocab = tokenizer.Tokenizer(tok_path).vocab_size
  model = paligemma.Model(img=dict(variant="mu/14", depth=2, mlp_dim=64, scan=True),
                          llm=dict(variant="gemma_tiny", vocab_size=vocab, scan=True))
  shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 28, 28, 3), np.float32),
                          np.zeros((1, 4), np.int32), np.zeros((1, 4), np.int32))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: (0.3 * rng.normal(size=s.shape)).astype(np.float32),
                        shapes["params"])
  ckpt = str(d / "tiny.npz")
  checkpoint.save_params(params, ckpt)
  images = []
  for i, size in enumerate([(40, 30), (20, 50)]):
    arr = rng.integers(0, 255, (size[1], size[0], 3)).astype(np.uint8)
    path = str(d / f"im{i}.{'jpg' if i == 0 else 'png'}")
    Image.fromarray(arr).save(path)
    images.append(path)
  return dict(dir=d, tok=tok_path, ckpt=ckpt, images=images)


def test_predict_single_and_jsonl(files, capsys):
  common = ["--ckpt", files["ckpt"], "--tokenizer", files["tok"],
            "--max_decode_len", "4", "--batch_size", "2"]  # res 28 read from the ckpt
  single = predict.main(common + ["--image", files["images"][0], "--prompt", "caption en",
                                  "--json"])
  rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert rec["answer"] == single[0] and rec["prompt"] == "caption en"
  assert set(rec) >= {"answer", "objects", "invalid", "image"}
  items = files["dir"] / "items.jsonl"
  rows = [{"image": files["images"][0], "prompt": "caption en"},
          {"image": files["images"][1], "prompt": "detect cat"},
          {"image": files["images"][0], "prompt": "caption en"}]
  items.write_text("".join(json.dumps(r) + "\n" for r in rows))
  answers = predict.main(common + ["--jsonl", str(items)])
  assert len(answers) == 3 and answers[0] == answers[2] == single[0]
  assert capsys.readouterr().out.splitlines()[-3:] == answers


def test_predict_args_errors(files):
  with pytest.raises(SystemExit):
    predict.parse_args(["--ckpt", "x", "--tokenizer", "y", "--image", "a.jpg"])
  with pytest.raises(ValueError, match="Unknown --variant|not both"):
    predict.model_config_for({}, model_cfg={"img": {}}, variant="paligemma_3b")


def test_visualize_detection_and_mask(files, tmp_path):
  image = np.full((60, 80, 3), 128, np.uint8)
  img_path = str(tmp_path / "grey.png")
  Image.fromarray(image).save(img_path)
  out = str(tmp_path / "dets.png")
  answer = ("<loc0000><loc0000><loc0511><loc0511> cat ; "
            "<loc0600><loc0600><loc1000><loc1000> dog ; junk")
  rec = visualize.main(["--image", img_path, "--answer", answer, "--out", out])
  assert [o["label"] for o in rec["objects"]] == ["cat", "dog"]
  png = np.asarray(Image.open(out))
  assert png.shape == (60, 80, 3)
  assert tuple(png[0, 10]) == visualize.PALETTE[0]  # top edge of the cat box
  # The same from a `predict --json` line.
  pred = tmp_path / "pred.jsonl"
  pred.write_text(json.dumps(dict(image=img_path, prompt="detect cat", **rec)) + "\n")
  out_pred = str(tmp_path / "pred.png")
  visualize.main(["--image", img_path, "--pred", str(pred), "--out", out_pred])
  np.testing.assert_array_equal(np.asarray(Image.open(out_pred)), png)
  # A segmentation: the mask is tinted inside the box.
  vq = str(tmp_path / "vq.npz")
  np.savez(vq, **vqvae.random_state_dict(enc_widths=(4, 4, 4, 4), embed_dim=8,
                                         dec_width=4, up_widths=(4, 4, 4, 4)))
  seg = "<loc0100><loc0100><loc0900><loc0900>" + "<seg005>" * 16 + " blob"
  out2 = str(tmp_path / "seg.png")
  rec = visualize.main(["--image", img_path, "--answer", seg, "--vqvae", vq, "--out", out2])
  mask = np.asarray(visualize.objects_from_record(rec)[0]["mask"])
  png2 = np.asarray(Image.open(out2)).astype(int)
  inner = mask.copy()
  inner[:, :] &= np.pad(np.ones((40, 60), bool), ((10, 10), (10, 10)))
  if inner.any():
    assert np.any(png2[inner] != 128)
  assert not mask[:5].any()
