"""Segmentation metrics (hand cases, VQ-VAE decode through the Evaluator) and detection parsing."""
import numpy as np
import pytest

from big_vision_lite import postprocess
from big_vision_lite.evaluators import detection
from big_vision_lite.evaluators import segmentation
from big_vision_lite.models import vqvae


def _answer(box_bins, codes, extra=""):
  return ("".join(f"<loc{b:04d}>" for b in box_bins) +
          "".join(f"<seg{c:03d}>" for c in codes) + extra)


def test_box_and_mask_iou():
  assert segmentation.box_iou((0, 0, 1, 1), (0, 0, 1, 0.5)) == pytest.approx(0.5)
  assert segmentation.box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
  a = np.zeros((4, 4), bool)
  a[:2] = True
  b = np.zeros((4, 4), bool)
  b[:, :2] = True
  assert segmentation.mask_iou(a, b) == pytest.approx(4 / 12)
  assert segmentation.mask_iou(a, np.zeros((4, 4))) == 0.0
  with pytest.raises(ValueError, match="ground-truth resolution"):
    segmentation.mask_iou(a, np.zeros((3, 4)))


def test_parse_answer_reads_leading_20_tokens_like_big_vision():
  codes = list(range(16))
  box, c = segmentation.parse_answer(_answer([0, 0, 1023, 511], codes, " cat"))
  np.testing.assert_allclose(box, (0, 0, 1, 511 / 1023))
  np.testing.assert_array_equal(c, codes)
  # big_vision reads 4 loc + 16 seg tokens and ignores the rest: these are valid...
  for extra in ("<seg001><seg002>", "<loc0001>", " ; junk"):
    _, c = segmentation.parse_answer(_answer([0, 0, 9, 9], codes, extra))
    np.testing.assert_array_equal(c, codes)
  # ... but not in strict mode.
  for extra in ("<seg001><seg002>", "<loc0001>"):
    assert segmentation.parse_answer(_answer([0, 0, 9, 9], codes, extra), strict=True) is None
  assert segmentation.parse_answer(_answer([0, 0, 9, 9], codes), strict=True) is not None
  for bad in (_answer([5, 0, 5, 9], codes),  # Empty box (ymax == ymin).
              _answer([0, 0, 9, 9], codes[:15]),  # 15 codes.
              "a cat"):
    assert segmentation.parse_answer(bad) is None
    assert segmentation.parse_answer(bad, strict=True) is None
  assert segmentation.parse_answer(" " + _answer([0, 0, 9, 9], codes)) is None  # Not first.


def test_pixel_box_truncates_like_big_vision():
  # 0.46 * 10 = 4.6 -> 4 (int()), not round's 5.
  assert segmentation.pixel_box((0.46, 0.19, 0.96, 0.5), 10, 20) == (4, 3, 9, 10)


def test_example_scores_invalid_and_valid():
  gt = np.zeros((10, 20), bool)
  gt[:5, :10] = True
  iou, hits, valid = segmentation.example_scores(None, None, (0, 0, 0.5, 0.5), gt)
  assert iou == 0.0 and hits == {0.5: 0.0, 0.75: 0.0} and not valid
  logits = np.ones((64, 64), np.float32)  # Everything inside the box.
  parsed = ((0.0, 0.0, 0.5, 0.5), np.zeros(16, np.int32))
  iou, hits, valid = segmentation.example_scores(parsed, logits, (0, 0, 0.5, 0.5), gt)
  assert iou == 1.0 and hits == {0.5: 1.0, 0.75: 1.0} and valid
  parsed = ((0.0, 0.0, 0.5, 0.25), np.zeros(16, np.int32))  # Half of the box.
  iou, hits, valid = segmentation.example_scores(parsed, logits, (0, 0, 0.5, 0.5), gt)
  assert iou == pytest.approx(0.5) and hits == {0.5: 1.0, 0.75: 0.0}
  # Truncated corners: rows int(0.06*10)=0 .. int(0.58*10)=5, cols 0 .. int(0.54*20)=10:
  # the pasted mask is exactly the ground truth (rounding would take rows 1..6, cols 0..11).
  parsed = ((0.06, 0.0, 0.58, 0.54), np.zeros(16, np.int32))
  iou, _, valid = segmentation.example_scores(parsed, logits, (0, 0, 0.5, 0.5), gt)
  assert iou == 1.0 and valid
  # A valid box that is empty in pixels (int(0.42*10) == int(0.48*10) == 4) is invalid,
  # but its box IoU still counts (the reference's det_by_iou is filled before the check).
  parsed = ((0.42, 0.0, 0.48, 0.5), np.zeros(16, np.int32))
  iou, hits, valid = segmentation.example_scores(parsed, logits, (0.42, 0.0, 0.48, 0.5), gt)
  assert iou == 0.0 and not valid and hits == {0.5: 1.0, 0.75: 1.0}


def test_segmentation_evaluator(fake_task, tmp_path):
  state = vqvae.random_state_dict(enc_widths=(4, 8, 8, 16), embed_dim=24, dec_width=16,
                                  up_widths=(16, 8, 8, 4))
  path = tmp_path / "vae.npz"
  np.savez(path, **state)
  params = vqvae.load_vqvae(str(path))
  rng = np.random.default_rng(0)
  codes = rng.integers(0, 128, (2, 16))
  bins = [(100, 200, 700, 900), (0, 0, 1023, 1023)]
  logits = np.asarray(vqvae.decode_codes(params, codes))
  examples, preds = [], []
  for i in range(2):
    box = tuple(b / 1023 for b in bins[i])
    mask = postprocess.paste_mask(logits[i], segmentation.pixel_box(box, 30, 40), 30, 40)
    assert 0 < mask.sum() < mask.size or i == 1
    examples.append({"id": i, "objects/mask": mask[..., None].astype(np.uint8),
                     "objects/bbox": [box]})
    preds.append(_answer(bins[i], codes[i]))
  examples.append(dict(examples[0], id=2))
  preds.append(_answer([700, 0, 100, 900], codes[0]))  # Invalid: ymax < ymin.
  predict_fn, tok = fake_task(examples, preds)
  ev = segmentation.Evaluator(predict_fn, tok, data={}, pp_fn="x", batch_size=2,
                              vqvae_path=str(path), workdir=str(tmp_path))
  m = dict(ev.run({}))
  assert m["miou"] == pytest.approx(2 / 3) and m["invalid"] == 1 and m["total"] == 3
  assert m["boxacc/0.5"] == pytest.approx(2 / 3) and m["invalid_rate"] == pytest.approx(1 / 3)


def test_detection_parse_prediction():
  det, invalid = detection.parse_prediction(
      "<loc0000><loc0000><loc1023><loc0511> cat ; <loc0010><loc0010><loc0020><loc0020> dog"
      " ; garbage", height=100, width=200)
  np.testing.assert_allclose(det["boxes"][0], [0, 0, 100, 511 / 1023 * 200])
  assert det["labels"] == ["cat", "dog"] and invalid == 1
  np.testing.assert_allclose(det["scores"], [1.0, 0.5])
