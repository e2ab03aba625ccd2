"""Turns decoded PaliGemma text into detections and segmentation masks.

Detection and segmentation answers are `;`-separated objects, each
`<locYMIN><locXMIN><locYMAX><locXMAX>[<segXXX> x 16] label`, with loc values k in
[0, 1023] meaning the coordinate k / 1023 of the image side (the inverse of the
`round(v * 1023)` binning used for training targets) and seg values indices of the VQ-VAE
codebook (`models/vqvae.py`).

Model output is not always well formed. Nothing here raises on bad text: every object that
cannot be parsed is returned in an `invalid` list (with the reason), so that evaluators can
count it.
"""
import dataclasses
import re

from big_vision_lite.models import vqvae
import numpy as np
from PIL import Image

NUM_LOC = 1024
NUM_SEG = 128
NUM_SEG_TOKENS = 16

_OBJ_RE = re.compile(r"^\s*((?:<loc\d+>){4})((?:\s*<seg\d+>)*)\s*(.*?)\s*$", re.S)
_NUM_RE = re.compile(r"<(?:loc|seg)(\d+)>")


@dataclasses.dataclass
class Object:
  """One parsed object.

  Attributes:
    label: the text after the location (and segmentation) tokens.
    loc: (ymin, xmin, ymax, xmax) loc bins, ints in [0, 1023].
    seg: the 16 segmentation codes (ints in [0, 127]) or None for a detection.
  """
  label: str
  loc: tuple
  seg: tuple = None

  def box(self, height, width):
    """(ymin, xmin, ymax, xmax) as float pixel coordinates of a height x width image."""
    ymin, xmin, ymax, xmax = (v / (NUM_LOC - 1) for v in self.loc)
    return (ymin * height, xmin * width, ymax * height, xmax * width)


@dataclasses.dataclass
class Invalid:
  """An object that could not be parsed: its text and why."""
  text: str
  reason: str


def parse_objects(text):
  """Parses `;`-separated loc/seg objects.

  Args:
    text: the decoded answer, e.g. "<loc0100><loc0200><loc0800><loc0900> cat ; ...".

  Returns:
    (objects, invalid): list of `Object`, list of `Invalid`. Empty chunks (a trailing
    `;`, an empty answer) are neither.
  """
  objects, invalid = [], []
  for chunk in text.split(";"):
    if not chunk.strip():
      continue
    m = _OBJ_RE.match(chunk)
    if not m:
      invalid.append(Invalid(chunk.strip(), "does not start with 4 <locXXXX> tokens"))
      continue
    loc = tuple(int(v) for v in _NUM_RE.findall(m.group(1)))
    seg = tuple(int(v) for v in _NUM_RE.findall(m.group(2))) or None
    label = m.group(3)
    reason = None
    if any(v >= NUM_LOC for v in loc):
      reason = f"loc value out of range [0, {NUM_LOC - 1}]: {loc}"
    elif loc[0] > loc[2] or loc[1] > loc[3]:
      reason = f"box with min > max: {loc}"
    elif seg is not None and len(seg) != NUM_SEG_TOKENS:
      reason = f"{len(seg)} <segXXX> tokens, expected {NUM_SEG_TOKENS}"
    elif seg is not None and any(v >= NUM_SEG for v in seg):
      reason = f"seg value out of range [0, {NUM_SEG - 1}]: {seg}"
    elif "<" in label or ">" in label:
      reason = f"stray special tokens in the label {label!r}"
    if reason:
      invalid.append(Invalid(chunk.strip(), reason))
    else:
      objects.append(Object(label, loc, seg))
  return objects, invalid


def detections(text, height, width):
  """Parses a detection answer into pixel boxes.

  Args:
    text: decoded answer of a "detect ..." prompt.
    height: image height in pixels.
    width: image width in pixels.

  Returns:
    (dets, invalid): dets is a list of (label, ymin, xmin, ymax, xmax) with float pixel
    coordinates; invalid a list of `Invalid`.
  """
  objects, invalid = parse_objects(text)
  return [(o.label, *o.box(height, width)) for o in objects], invalid


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
    pixels) and `mask` bool[height, width]; objects without seg tokens are listed in
    `invalid` (a segmentation answer needs them).
  """
  objects, invalid = parse_objects(text)
  with_seg = []
  for o in objects:
    if o.seg is None:
      invalid.append(Invalid(f"{''.join(f'<loc{v:04d}>' for v in o.loc)} {o.label}",
                             "no <segXXX> tokens"))
    else:
      with_seg.append(o)
  if not with_seg:
    return [], invalid
  logits = np.asarray(vqvae.decode_codes(vqvae_params, np.array([o.seg for o in with_seg])))
  segs = []
  for o, lg in zip(with_seg, logits):
    box = o.box(height, width)
    segs.append({"label": o.label, "box": box, "mask": paste_mask(lg, box, height, width)})
  return segs, invalid


def mask_to_rle(mask):
  """COCO run-length encoding of bool[H, W] (column-major counts, as pycocotools)."""
  flat = np.asarray(mask, bool).reshape(-1, order="F")
  change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
  bounds = np.concatenate([[0], change, [flat.size]])
  counts = np.diff(bounds).tolist()
  if flat.size and flat[0]:
    counts = [0] + counts
  return {"size": list(mask.shape), "counts": counts}


def rle_to_mask(rle):
  """Inverse of `mask_to_rle`: bool[H, W]."""
  h, w = rle["size"]
  values = np.arange(len(rle["counts"])) % 2 == 1
  flat = np.repeat(values, rle["counts"])
  return flat.reshape((h, w), order="F")
