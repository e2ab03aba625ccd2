r"""Draws detection boxes, labels and segmentation masks over an image; writes a PNG.

  python -m tools.visualize --image cat.jpg --out cat_dets.png \
      --answer "<loc0100><loc0200><loc0800><loc0900> cat ; ..." [--vqvae vae-oid.npz]
  python -m tools.predict ... --json > pred.jsonl
  python -m tools.visualize --image cat.jpg --pred pred.jsonl --out cat_dets.png

Boxes are (ymin, xmin, ymax, xmax) in pixels of the original image, as printed by
`tools.predict --json`; masks come from the VQ-VAE (`--vqvae`) or the RLE in `--pred`.
"""
import argparse
import json
import sys

import numpy as np
from PIL import Image
from PIL import ImageDraw

from big_vision_lite import cli
from big_vision_lite import postprocess
from big_vision_lite.models import vqvae

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


def objects_from_record(rec):
  """Objects for `render` from a `postprocess.to_json` record (RLE masks decoded)."""
  objects = []
  for o in rec["objects"]:
    obj = {"label": o["label"], "box": o["box"]}
    if "mask" in o:
      obj["mask"] = postprocess.rle_to_mask(o["mask"])
    objects.append(obj)
  return objects


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
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
  image = Image.open(args.image).convert("RGB")
  if args.pred:
    with open(args.pred, encoding="utf-8") as f:
      rec = json.loads(f.readline())
  else:
    vq = vqvae.load_vqvae(args.vqvae) if args.vqvae else None
    rec = postprocess.to_json(args.answer, image.height, image.width, vq)
  for bad in rec["invalid"]:
    print(f"Skipped invalid object {bad['text']!r}: {bad['reason']}")
  render(image, objects_from_record(rec)).save(args.out, format="PNG")
  print(f"Wrote {args.out} with {len(rec['objects'])} objects.")
  return rec


if __name__ == "__main__":
  cli.run(main)
