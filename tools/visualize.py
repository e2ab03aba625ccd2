r"""Draws detection boxes, labels and segmentation masks over an image; writes a PNG.

  python -m tools.visualize --image cat.jpg --out cat_dets.png \
      --answer "<loc0100><loc0200><loc0800><loc0900> cat ; ..." [--vqvae vae-oid.npz]
  python -m tools.predict ... --json > pred.jsonl
  python -m tools.visualize --image cat.jpg --pred pred.jsonl --out cat_dets.png

Boxes are (ymin, xmin, ymax, xmax) in pixels of the original image, as printed by
`tools.predict --json`; masks come from the VQ-VAE (`--vqvae`) or the RLE in `--pred`.
"""
import json
import math
import os
import sys

import numpy as np
from PIL import Image
from PIL import ImageDraw

from big_vision_lite import cli
from big_vision_lite import postprocess
from big_vision_lite.models import vqvae
from big_vision_lite.pp import ops_image

PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128))


def render(image, objects, mask_alpha=0.45, line_width=None):
  """Draws objects over an image.

  Args:
    image: uint8[H, W, 3] (or a PIL image).
    objects: list of dicts with `label` str, `box` (ymin, xmin, ymax, xmax) pixels and
      optional `mask` bool[H, W].
    mask_alpha: opacity of the mask colour.
    line_width: box line width (default: ~0.5% of the image side, at least 2).

  Returns:
    PIL.Image (RGB) of the same size.
  """
  img = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image,
                   np.float32)[..., :3].copy()
  h, w = img.shape[:2]
  for i, obj in enumerate(objects):
    mask = obj.get("mask")
    if mask is not None:
      color = np.asarray(PALETTE[i % len(PALETTE)], np.float32)
      m = np.asarray(mask, bool)
      if m.shape != (h, w):
        raise ValueError(f"object {i} mask {m.shape} != image {(h, w)}.")
      img[m] = (1 - mask_alpha) * img[m] + mask_alpha * color
  out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(out)
  lw = line_width or max(2, round(0.005 * max(h, w)))
  for i, obj in enumerate(objects):
    color = PALETTE[i % len(PALETTE)]
    ymin, xmin, ymax, xmax = obj["box"]
    draw.rectangle([xmin, ymin, xmax, ymax], outline=color, width=lw)
    label = obj.get("label") or ""
    if label:
      left, top, right, bottom = draw.textbbox((0, 0), label)
      tw, th = right - left, bottom - top
      y = ymin - th - 4 if ymin - th - 4 >= 0 else ymin
      draw.rectangle([xmin, y, xmin + tw + 4, y + th + 4], fill=color)
      draw.text((xmin + 2 - left, y + 2 - top), label, fill=(255, 255, 255))
  return out


def _check_box(box, where, height=None, width=None):
  """A box must be 4 finite numbers (ymin, xmin, ymax, xmax), min <= max."""
  ok = (isinstance(box, (list, tuple)) and len(box) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                and math.isfinite(v) for v in box))
  if not ok or box[0] > box[2] or box[1] > box[3]:
    raise ValueError(f"{where}: box {str(box)[:80]} is not valid; valid: [ymin, xmin, ymax, "
                     "xmax] finite pixel numbers with ymin <= ymax and xmin <= xmax.")
  limit = 1e7 if height is None else 4 * max(height, width, 1)
  if max(abs(v) for v in box) > limit:
    raise ValueError(f"{where}: box {box} is far outside the image; valid: pixel "
                     f"coordinates within about {limit:g}.")
  return [float(v) for v in box]


def objects_from_record(rec, where="record", height=None, width=None):
  """Objects for `render` from a `postprocess.to_json` record (RLE masks decoded).

  Raises ValueError naming `where` and the object for a malformed record.
  """
  if not isinstance(rec, dict) or not isinstance(rec.get("objects"), list):
    raise ValueError(f"{where}: not a prediction record; valid: a JSON object with an "
                     '"objects" list, as `tools.predict --json` prints.')
  objects = []
  for i, o in enumerate(rec["objects"]):
    at = f"{where} object {i}"
    if not isinstance(o, dict) or "box" not in o:
      raise ValueError(f"{at}: {str(o)[:80]} must be an object with a box; valid: "
                       '{"label": str, "box": [ymin, xmin, ymax, xmax], "mask": RLE}.')
    label = o.get("label", "")
    if not isinstance(label, str):
      raise ValueError(f"{at}: label {label!r} must be a string.")
    obj = {"label": label, "box": _check_box(o["box"], at, height, width)}
    if "mask" in o:
      try:
        obj["mask"] = postprocess.rle_to_mask(o["mask"])
      except ValueError as e:
        raise ValueError(f"{at}: {e}") from None
      if height is not None and obj["mask"].shape != (height, width):
        raise ValueError(f"{at}: mask {obj['mask'].shape} != image {(height, width)}; "
                         "valid: a mask of the image's size (same --image as predict).")
    objects.append(obj)
  return objects


def read_record(path):
  """The first line of a `tools.predict --json` output file, as a dict."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--pred {path!r} does not exist; pass the output file of "
                            "`tools.predict --json`.")
  with open(path, "rb") as f:
    line = f.readline()
  try:
    return json.loads(line.decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
    raise ValueError(f"{path} line 1: not UTF-8 JSON ({type(e).__name__}: "
                     f"{' '.join(str(e).split())[:100]}); valid: a line of "
                     "`tools.predict --json` output.") from None


def open_image(path):
  """Opens an image as RGB, refusing non-images and more than MAX_PIXELS pixels."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Image {path!r} does not exist; pass the image file the "
                            "answer is about.")
  try:
    image = Image.open(path)
    if image.width * image.height > ops_image.MAX_PIXELS:
      raise ValueError(f"Image {path!r} is {image.width}x{image.height} pixels, more than "
                       f"{ops_image.MAX_PIXELS}; valid: smaller images, resize it.")
    return image.convert("RGB")
  except Image.DecompressionBombError as e:
    raise ValueError(f"Image {path!r}: {e}; valid: at most {ops_image.MAX_PIXELS} pixels.") \
        from None
  except (Image.UnidentifiedImageError, OSError, SyntaxError) as e:
    if isinstance(e, FileNotFoundError):
      raise
    raise ValueError(f"Image {path!r} is not a readable image ({' '.join(str(e).split())[:100]})"
                     "; valid: JPEG, PNG, GIF, BMP or WebP files.") from None


EXAMPLES = (
    "python -m tools.visualize --image cat.jpg --out cat_dets.png \\\n"
    "      --answer \"<loc0100><loc0200><loc0800><loc0900> cat\"",
    "python -m tools.visualize --image cat.jpg --pred pred.jsonl --out cat_dets.png",
)


def parse_args(argv):
  p = cli.parser(__doc__, EXAMPLES, prog="python -m tools.visualize")
  p.add_argument("--image", required=True, help="the image the answer is about")
  p.add_argument("--out", required=True, help="PNG to write")
  p.add_argument("--answer", help="decoded answer with <loc>/<seg> tokens")
  p.add_argument("--pred", help="output of `tools.predict --json` (first line is drawn)")
  p.add_argument("--vqvae", default=None, help="vae-oid.npz, to decode <seg> masks")
  args = p.parse_args(argv)
  if (args.answer is None) == (args.pred is None):
    p.error("pass exactly one of --answer and --pred")
  return args


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  image = open_image(args.image)
  if args.pred:
    rec = read_record(args.pred)
    where = f"{args.pred} line 1"
  else:
    vq = vqvae.load_vqvae(args.vqvae) if args.vqvae else None
    rec = postprocess.to_json(args.answer, image.height, image.width, vq)
    where = "--answer"
  objects = objects_from_record(rec, where, image.height, image.width)
  for bad in rec.get("invalid") or ():
    if isinstance(bad, dict):
      print(f"Skipped invalid object {bad.get('text')!r}: {bad.get('reason')}")
  render(image, objects).save(args.out, format="PNG")
  print(f"Wrote {args.out} with {len(rec['objects'])} objects.")
  return rec


if __name__ == "__main__":
  cli.run(main)
