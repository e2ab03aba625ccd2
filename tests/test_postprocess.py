"""Detections / segmentations from decoded text; invalid outputs are reported, not raised."""
import numpy as np
from pycocotools import mask as coco_mask
import pytest

from big_vision_lite import postprocess
from big_vision_lite.models import vqvae


def _loc(*ks):
  return "".join(f"<loc{k:04d}>" for k in ks)


def _seg(codes):
  return "".join(f"<seg{k:03d}>" for k in codes)


@pytest.fixture(scope="module")
def vq():
  return vqvae.convert_state_dict(vqvae.random_state_dict(
      enc_widths=(4, 4, 4, 4), embed_dim=8, dec_width=4, up_widths=(4, 4, 4, 4)))


def test_detections_pixels_and_labels():
  text = f"{_loc(0, 0, 1023, 1023)} cat ; {_loc(100, 200, 300, 400)} big dog"
  dets, invalid = postprocess.detections(text, height=480, width=640)
  assert invalid == []
  assert dets[0] == ("cat", 0.0, 0.0, 480.0, 640.0)
  label, *box = dets[1]
  assert label == "big dog"
  np.testing.assert_allclose(box, [100 / 1023 * 480, 200 / 1023 * 640,
                                   300 / 1023 * 480, 400 / 1023 * 640], rtol=1e-5)


@pytest.mark.parametrize("text", [
    "a cat", _loc(1, 2, 3) + " cat", _loc(500, 2, 100, 9) + " cat",
    _loc(1, 2, 3, 4) + "<seg001> cat", _loc(1, 2, 3, 4) + " cat <loc0001>",
])
def test_invalid_detections_are_reported(text):
  good = _loc(10, 10, 20, 20) + " ok"
  dets, invalid = postprocess.detections(f"{good} ; {text} ; ", 100, 100)
  assert [d[0] for d in dets] == ["ok"]
  assert len(invalid) == 1 and invalid[0][0] == text.strip() and invalid[0][1]


def test_paste_mask_bilinear_threshold():
  logits = -np.ones((64, 64), np.float32)
  logits[:, 32:] = 1.0  # right half inside
  mask = postprocess.paste_mask(logits, (10.0, 20.0, 30.0, 60.0), 50, 80)
  assert mask.dtype == bool and mask.shape == (50, 80)
  assert mask[10:30, 40:60].all() and not mask[10:30, 20:40].any()
  assert not mask[:10].any() and not mask[30:].any() and not mask[:, 60:].any()
  # Degenerate and out-of-image boxes give empty / clipped masks instead of errors.
  assert not postprocess.paste_mask(logits, (5, 5, 5, 9), 50, 80).any()
  assert postprocess.paste_mask(logits, (-10, -10, 100, 100), 50, 80).shape == (50, 80)


def test_segmentations_decode_with_vqvae(vq):
  text = (f"{_loc(0, 0, 511, 511)}{_seg(range(16))} cat ; {_loc(5, 5, 9, 9)} no seg ; "
          f"{_loc(5, 5, 9, 9)}{_seg(range(3))} short")
  segs, invalid = postprocess.segmentations(text, 32, 48, vq)
  assert len(segs) == 1 and segs[0]["label"] == "cat"
  assert segs[0]["mask"].shape == (32, 48) and not segs[0]["mask"][17:, :].any()
  assert len(invalid) == 2
  want = np.asarray(vqvae.decode_codes(vq, np.arange(16)[None]))[0]
  np.testing.assert_array_equal(
      segs[0]["mask"], postprocess.paste_mask(want, segs[0]["box"], 32, 48))


def test_to_json(vq):
  det = postprocess.to_json(f"{_loc(0, 0, 1023, 1023)} cat ; junk", 10, 20)
  assert det["objects"] == [{"label": "cat", "box": [0.0, 0.0, 10.0, 20.0]}]
  assert det["invalid"][0]["text"] == "junk"
  seg_text = f"{_loc(0, 0, 1023, 1023)}{_seg([7] * 16)} cat"
  codes = postprocess.to_json(seg_text, 10, 20)
  assert codes["objects"][0]["codes"] == [7] * 16
  masks = postprocess.to_json(seg_text, 10, 20, vq)
  assert postprocess.rle_to_mask(masks["objects"][0]["mask"]).shape == (10, 20)
  assert postprocess.to_json("a caption", 10, 20)["objects"] == []


def test_rle_roundtrip_matches_pycocotools():
  mask = np.zeros((7, 5), bool)
  mask[0, 0] = mask[2:5, 1:4] = True
  rle = postprocess.mask_to_rle(mask)
  np.testing.assert_array_equal(postprocess.rle_to_mask(rle), mask)
  coco = coco_mask.frPyObjects(rle, 7, 5)
  np.testing.assert_array_equal(coco_mask.decode(coco).astype(bool), mask)
