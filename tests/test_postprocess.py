"""Parsing detections / segmentations out of decoded text; invalid outputs are reported."""
import numpy as np
from pycocotools import mask as coco_mask
import pytest

from big_vision_lite import postprocess
from big_vision_lite.models import vqvae


def _loc(*ks):
  return "".join(f"<loc{k:04d}>" for k in ks)


def test_detections_pixels_and_labels():
  text = f"{_loc(0, 0, 1023, 1023)} cat ; {_loc(100, 200, 300, 400)} big dog"
  dets, invalid = postprocess.detections(text, height=480, width=640)
  assert invalid == []
  assert dets[0] == ("cat", 0.0, 0.0, 480.0, 640.0)
  label, *box = dets[1]
  assert label == "big dog"
  np.testing.assert_allclose(box, [100 / 1023 * 480, 200 / 1023 * 640,
                                   300 / 1023 * 480, 400 / 1023 * 640])


@pytest.mark.parametrize("text, reason", [
    ("a cat", "4 <locXXXX>"),
    (_loc(1, 2, 3) + " cat", "4 <locXXXX>"),
    (_loc(500, 2, 100, 9) + " cat", "min > max"),
    ("<loc1100><loc0000><loc1200><loc0010> cat", "out of range"),
    (_loc(1, 2, 3, 4) + "<seg001><seg002> cat", "2 <segXXX>"),
    (_loc(1, 2, 3, 4) + "<seg200>" * 16 + " cat", "seg value out of range"),
    (_loc(1, 2, 3, 4) + " cat <eos>", "stray"),
])
def test_invalid_objects_are_reported(text, reason):
  good = _loc(10, 10, 20, 20) + " ok"
  objects, invalid = postprocess.parse_objects(f"{good} ; {text} ; ")
  assert [o.label for o in objects] == ["ok"]
  assert len(invalid) == 1 and reason in invalid[0].reason, invalid


def test_empty_answer():
  assert postprocess.parse_objects("") == ([], [])
  assert postprocess.detections(" ; ", 10, 10) == ([], [])


def test_paste_mask_bilinear_threshold():
  logits = -np.ones((64, 64), np.float32)
  logits[:, 32:] = 1.0  # right half inside
  mask = postprocess.paste_mask(logits, (10.0, 20.0, 30.0, 60.0), 50, 80)
  assert mask.dtype == bool and mask.shape == (50, 80)
  assert mask[10:30, 40:60].all() and not mask[10:30, 20:40].any()
  assert not mask[:10].any() and not mask[30:].any() and not mask[:, 60:].any()
  # Degenerate and out-of-image boxes give empty masks instead of errors.
  assert not postprocess.paste_mask(logits, (5, 5, 5, 9), 50, 80).any()
  assert postprocess.paste_mask(logits, (-10, -10, 100, 100), 50, 80).shape == (50, 80)


def test_segmentations_decode_with_vqvae():
  state = vqvae.random_state_dict(enc_widths=(4, 4, 4, 4), embed_dim=8, dec_width=4,
                                  up_widths=(4, 4, 4, 4))
  params = vqvae.convert_state_dict(state)
  segs_txt = "".join(f"<seg{k:03d}>" for k in range(16))
  text = f"{_loc(0, 0, 511, 511)}{segs_txt} cat ; {_loc(5, 5, 9, 9)} no seg"
  segs, invalid = postprocess.segmentations(text, 32, 48, params)
  assert len(segs) == 1 and segs[0]["label"] == "cat"
  assert segs[0]["mask"].shape == (32, 48) and not segs[0]["mask"][17:, :].any()
  assert [i.reason for i in invalid] == ["no <segXXX> tokens"]
  want = np.asarray(vqvae.decode_codes(params, np.arange(16)[None]))[0]
  np.testing.assert_array_equal(
      segs[0]["mask"], postprocess.paste_mask(want, segs[0]["box"], 32, 48))


def test_rle_roundtrip_matches_pycocotools():
  mask = np.zeros((7, 5), bool)
  mask[0, 0] = mask[2:5, 1:4] = True
  rle = postprocess.mask_to_rle(mask)
  np.testing.assert_array_equal(postprocess.rle_to_mask(rle), mask)
  coco = coco_mask.frPyObjects(rle, 7, 5)
  np.testing.assert_array_equal(coco_mask.decode(coco).astype(bool), mask)
