"""Turns decoded PaliGemma text into detections and segmentation masks.

Detection and segmentation answers are `;`-separated objects, each
`<locYMIN><locXMIN><locYMAX><locXMAX>[<segNNN> x 16] label`; parsing is done by the
tokenizer's codecs (`tokenizer.parse_detections` / `parse_segmentations`: loc k means the
coordinate k / 1023, seg values index the VQ-VAE codebook of `models/vqvae.py`). This
module converts the parsed objects to pixels and masks.

Model output is not always well formed. Nothing here raises on bad text: every object that
cannot be parsed is returned in an `invalid` list of (text, reason), so that evaluators can
count it.
"""
import numpy as np
from PIL import Image

from big_vision_lite import tokenizer
from big_vision_lite.models import vqvae


def _pixels(box, height, width):
  ymin, xmin, ymax, xmax = (float(v) for v in box)
  return (ymin * height, xmin * width, ymax * height, xmax * width)


def detections(text, height, width):
  """Parses a detection answer into pixel boxes.

  Args:
    text: decoded answer of a "detect ..." prompt.
    height: image height in pixels.
    width: image width in pixels.

  Returns:
    (dets, invalid): dets is a list of (label, ymin, xmin, ymax, xmax) with float pixel
    coordinates; invalid a list of (text, reason).
  """
  objects, invalid = tokenizer.parse_detections(text)
  return [(o.label, *_pixels(o.box, height, width)) for o in objects], invalid


def paste_mask(logits, box, height, width):
  """Resizes 64x64 mask logits into a box of an image-sized mask.

  Args:
    logits: float32[h, w] mask logits of the box (64x64 from the VQ-VAE).
    box: (ymin, xmin, ymax, xmax) pixel coordinates.
    height: image height.
    width: image width.

  Returns:
    bool[height, width]: True where the bilinearly resized logits are > 0 inside the box.
  """
  y1, x1, y2, x2 = (int(round(v)) for v in box)
  y1, y2 = max(0, min(y1, height)), max(0, min(y2, height))
  x1, x2 = max(0, min(x1, width)), max(0, min(x2, width))
  mask = np.zeros((height, width), bool)
  if y2 > y1 and x2 > x1:
    img = Image.fromarray(np.asarray(logits, np.float32), mode="F")
    crop = np.asarray(img.resize((x2 - x1, y2 - y1), Image.BILINEAR))
    mask[y1:y2, x1:x2] = crop > 0
  return mask


def segmentations(text, height, width, vqvae_params):
  """Parses a segmentation answer into boxes and full-image masks.

  Args:
    text: decoded answer of a "segment ..." prompt.
    height: image height in pixels.
    width: image width in pixels.
    vqvae_params: from `models.vqvae.load_vqvae`.

  Returns:
    (segs, invalid): segs is a list of dicts with `label`, `box` (ymin, xmin, ymax, xmax
    pixels) and `mask` bool[height, width]; invalid a list of (text, reason) (objects
    without 16 seg tokens are invalid here).
  """
  objects, invalid = tokenizer.parse_segmentations(text)
  if not objects:
    return [], invalid
  logits = np.asarray(vqvae.decode_codes(vqvae_params, np.stack([o.codes for o in objects])))
  segs = []
  for o, lg in zip(objects, logits):
    box = _pixels(o.box, height, width)
    segs.append({"label": o.label, "box": box, "mask": paste_mask(lg, box, height, width)})
  return segs, invalid


def to_json(text, height, width, vqvae_params=None):
  """A JSON-ready summary of an answer: text, detections or segmentations, invalid parts.

  Answers with `<segNNN>` tokens are parsed as segmentations (masks as COCO RLE when
  `vqvae_params` is given, else the 16 codes), others with `<locNNNN>` tokens as
  detections; plain text (captions, answers) has no objects.

  Returns:
    dict(answer, objects=[{label, box: [ymin, xmin, ymax, xmax] pixels, (mask|codes)}],
    invalid=[{text, reason}]).
  """
  objects, invalid = [], []
  if "<loc" not in text:
    pass
  elif "<seg" in text and vqvae_params is not None:
    segs, invalid = segmentations(text, height, width, vqvae_params)
    for o in segs:
      objects.append({"label": o["label"], "box": [round(v, 2) for v in o["box"]],
                      "mask": mask_to_rle(o["mask"])})
  elif "<seg" in text:
    parsed, invalid = tokenizer.parse_segmentations(text)
    for o in parsed:
      objects.append({"label": o.label, "box": [round(v, 2) for v in
                                                _pixels(o.box, height, width)],
                      "codes": [int(c) for c in o.codes]})
  else:
    dets, invalid = detections(text, height, width)
    for label, *box in dets:
      objects.append({"label": label, "box": [round(v, 2) for v in box]})
  return {"answer": text, "objects": objects,
          "invalid": [{"text": t, "reason": r} for t, r in invalid]}


def mask_to_rle(mask):
  """COCO run-length encoding of bool[H, W] (column-major counts, as pycocotools)."""
  flat = np.asarray(mask, bool).reshape(-1, order="F")
  change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
  bounds = np.concatenate([[0], change, [flat.size]])
  counts = np.diff(bounds).tolist()
  if flat.size and flat[0]:
    counts = [0] + counts
  return {"size": list(mask.shape), "counts": counts}


MAX_MASK_PIXELS = 2**28


def _is_int(v):
  return isinstance(v, int) and not isinstance(v, bool)


def rle_to_mask(rle):
  """Inverse of `mask_to_rle`: bool[H, W].

  A malformed RLE (not {"size": [h, w], "counts": [ints]}, negative or non-int counts,
  counts not summing to h * w, more than `MAX_MASK_PIXELS` pixels) is a ValueError
  saying what is wrong, checked before any memory is allocated.
  """
  valid = ('valid: {"size": [height, width], "counts": [non-negative ints summing to '
           'height * width]}')
  if not isinstance(rle, dict) or not {"size", "counts"} <= set(rle):
    raise ValueError(f"RLE mask {str(rle)[:100]} lacks size/counts; {valid}.")
  size, counts = rle["size"], rle["counts"]
  if (not isinstance(size, (list, tuple)) or len(size) != 2
      or not all(_is_int(v) and v >= 0 for v in size)):
    raise ValueError(f"RLE mask size {str(size)[:60]} is not two non-negative ints; {valid}.")
  h, w = size
  if h * w > MAX_MASK_PIXELS:
    raise ValueError(f"RLE mask size {h}x{w} exceeds {MAX_MASK_PIXELS} pixels; {valid}.")
  if not isinstance(counts, (list, tuple)) or not all(_is_int(c) and c >= 0 for c in counts):
    bad = counts if not isinstance(counts, (list, tuple)) else next(
        c for c in counts if not (_is_int(c) and c >= 0))
    raise ValueError(f"RLE mask counts hold {str(bad)[:40]}, not a non-negative int; "
                     f"{valid}.")
  if sum(counts) != h * w:
    raise ValueError(f"RLE mask counts sum to {sum(counts)}, not {h}x{w} = {h * w}; "
                     f"{valid}.")
  values = np.arange(len(counts)) % 2 == 1
  flat = np.repeat(values, counts)
  return flat.reshape((h, w), order="F")
