"""`shapes`: a bundled, seeded, procedurally generated multi-task dataset (no download).

Each image shows 1-4 non-overlapping coloured shapes (circle, square, triangle, diamond;
six colours; three sizes) on a light background, and on some images a short word drawn
with PIL's default font. `ensure_shapes(out_dir, ...)` (or `python -m
big_vision_lite.datasets.shapes --out DIR`) writes, once and atomically:

  out_dir/info.json                 the generation parameters
  out_dir/corpus.txt                every prefix and suffix (loc/seg tokens removed), for
                                    training a tokenizer
  out_dir/{train,validation}/
    images/NNNNNN.png, masks/NNNNNN.png
    caption.jsonl   prefix "caption en"; `captions` (5 references; suffix is one)
    vqa.jsonl       prefix "answer en <question>"; `question`, `question_type` (count,
                    color, shape, position, yesno), `answers` (10, VQA style)
    ocr.jsonl       prefix "ocr", suffix the drawn word (images with a word only)
    detect.jsonl    prefix "detect <shape>", suffix "<locA><locB><locC><locD> <shape> ; ..."
                    and `objects` {bbox float[N, 4] normalized [ymin, xmin, ymax, xmax],
                    label str[N]}
    segment.jsonl   prefix "segment <shape>" for a shape drawn once, `mask` (PNG path,
                    255 inside), `box` [ymin, xmin, ymax, xmax], `label`; the suffix is
                    empty: it needs the VQ-VAE, so the pp op `mask_to_seg` makes it at
                    training time. The `shapes` source serves these rows as
                    `objects/mask` uint8[1, H, W, 1], `objects/bbox` float32[1, 4] and
                    `objects/label` string[1], the keys `mask_to_seg` reads.
    scenes.jsonl    the full ground truth of every image (for evaluators and tests)

Every row has `image` (path relative to its split folder). The same arguments give
byte-identical files (per-image RNG seeds, fixed PNG settings, sorted JSON keys).

The video split (clips of a moving shape: tasks "video_caption" and "video_qa") is its own
source, `shapes_video`, built on this module's public drawing and wording helpers; it is
generated into `out_dir/videos` on first use.
"""
import json
import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

from big_vision_lite import cli
from big_vision_lite import tokenizer
from big_vision_lite.datasets import jsonl

VERSION = 1
SPLITS = ("train", "validation")
TASKS = ("caption", "vqa", "ocr", "detect", "segment")
SHAPES = ("circle", "square", "triangle", "diamond")
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
          "yellow": (235, 200, 30), "purple": (140, 60, 180), "orange": (240, 130, 30)}
SIZES = {"small": (0.14, 0.18), "medium": (0.22, 0.27), "large": (0.31, 0.36)}
WORDS = ("cat", "dog", "sun", "tree", "book", "fish", "moon", "bird", "car", "cup",
         "hat", "key", "box", "pen", "map", "egg")
NUMBERS = ("zero", "one", "two", "three", "four")
DESIGN_DEFAULTS = {"size_scale": 1.0, "max_objects": 4, "font_scale": 1.0}


def _overlaps(a, b, margin):
  return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or
              a[3] + margin <= b[1] or b[3] + margin <= a[1])


def place(rng, res, side_px, taken, h=None):
  """Returns a free pixel box (y0, x0, y1, x1) of size side_px (x h) or None.

  The box keeps a 2 px margin from every box in `taken`; 50 random tries, drawn from `rng`.
  """
  h = side_px if h is None else h
  for _ in range(50):
    y0, x0 = int(rng.integers(0, res - h + 1)), int(rng.integers(0, res - side_px + 1))
    box = (y0, x0, y0 + h, x0 + side_px)
    if not any(_overlaps(box, t, 2) for t in taken):
      return box
  return None


def draw_shape(draw, shape, box, fill):
  """Draws one of SHAPES filling the pixel box (y0, x0, y1, x1) on a PIL ImageDraw."""
  y0, x0, y1, x1 = box
  cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
  if shape == "circle":
    draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=fill)
  elif shape == "square":
    draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fill)
  elif shape == "triangle":
    draw.polygon([(cx, y0), (x0, y1 - 1), (x1 - 1, y1 - 1)], fill=fill)
  else:
    draw.polygon([(cx, y0), (x1 - 1, cy), (cx, y1 - 1), (x0, cy)], fill=fill)


def font_size(res, font_scale=1.0):
  """The drawn word's font size in px: res / 10 x font_scale, rounded down, at least 8."""
  return max(8, int(res * font_scale // 10))


def make_scene(seed, split_index, index, res, size_scale=1.0, max_objects=4, kinds=None,
               sizes=None, font_scale=1.0):
  """Returns the scene of one image: objects (shape, color, size, pixel box) and word.

  `size_scale` multiplies the side ranges of SIZES; `max_objects` (1-4) bounds the
  number of shapes drawn; `font_scale` (0.5-4) multiplies the word's font size; `kinds` /
  `sizes` (None: all) restrict the shapes / size names drawn to a subset of SHAPES /
  SIZES. The defaults give the original scenes, draw for draw.
  """
  if not 1 <= max_objects <= 4 or not 0 < size_scale <= 2 or not 0.5 <= font_scale <= 4:
    raise ValueError(f"max_objects={max_objects} must be in 1..4, size_scale="
                     f"{size_scale} in (0, 2] and font_scale={font_scale} in [0.5, 4].")
  kinds = SHAPES if kinds is None else tuple(kinds)
  sizes = tuple(SIZES) if sizes is None else tuple(sizes)
  if not kinds or set(kinds) - set(SHAPES) or not sizes or set(sizes) - set(SIZES):
    raise ValueError(f"kinds={kinds} must be a non-empty subset of {SHAPES} and sizes="
                     f"{sizes} of {tuple(SIZES)}.")
  rng = np.random.default_rng([seed, split_index, index])
  scene = {"bg": tuple(int(v) for v in rng.integers(225, 256, 3)), "objects": []}
  taken = []
  for _ in range(int(rng.integers(1, max_objects + 1))):
    shape = kinds[rng.integers(len(kinds))]
    color = list(COLORS)[rng.integers(len(COLORS))]
    size = sizes[rng.integers(len(sizes))]
    lo, hi = (v * size_scale for v in SIZES[size])
    box = place(rng, res, max(4, int(round(rng.uniform(lo, hi) * res))), taken)
    if box is not None:
      taken.append(box)
      scene["objects"].append({"shape": shape, "color": color, "size": size, "px": box})
  scene["word"], scene["word_px"] = "", (0, 0, 0, 0)
  if rng.random() < 0.35:
    word = WORDS[rng.integers(len(WORDS))]
    font = ImageFont.load_default(size=font_size(res, font_scale))
    left, top, right, bottom = font.getbbox(word)
    box = place(rng, res, right - left + 2, taken, h=bottom - top + 2)
    if box is not None:
      scene["word"], scene["word_px"] = word, box
      scene["font_size"] = font_size(res, font_scale)
      scene["word_xy"] = (box[1] + 1 - left, box[0] + 1 - top)
  scene["objects"].sort(key=lambda o: (o["px"][1], o["px"][0]))  # Left to right.
  return scene


def render(scene, res):
  """Returns (RGB PIL image, [per-object L masks]) of a scene."""
  image = Image.new("RGB", (res, res), scene["bg"])
  draw = ImageDraw.Draw(image)
  masks = []
  for o in scene["objects"]:
    draw_shape(draw, o["shape"], o["px"], COLORS[o["color"]])
    mask = Image.new("L", (res, res), 0)
    draw_shape(ImageDraw.Draw(mask), o["shape"], o["px"], 255)
    masks.append(mask)
  if scene["word"]:
    font = ImageFont.load_default(size=scene["font_size"])
    draw.text(scene["word_xy"], scene["word"], fill=(20, 20, 20), font=font)
  return image, masks


def _norm(px, res):
  return [round(v / res, 4) for v in px]


def article(words):
  """"a"/"an" + words, e.g. "an orange circle"."""
  return ("an " if words[0] in "aeiou" else "a ") + words


def join_words(items):
  """["a", "b", "c"] -> "a, b and c"."""
  return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _captions(scene, rng):
  objs = scene["objects"]
  plain = [article(f"{o['color']} {o['shape']}") for o in objs]
  sized = [article(f"{o['size']} {o['color']} {o['shape']}") for o in objs]
  n = len(objs)
  word = f" and the word {scene['word']}" if scene["word"] else ""
  caps = [join_words(plain) + word,
          f"{NUMBERS[n]} shape{'s' * (n > 1)}: {join_words(sized)}{word}",
          f"a picture of {join_words(plain)} on a plain background{word}",
          f"an image with {join_words(sized)}{word}",
          f"{NUMBERS[n]} colored shape{'s' * (n > 1)}{word}"]
  return caps, caps[int(rng.integers(len(caps)))]


def _questions(scene, res, rng):
  """Returns every applicable (type, question, answer) of a scene."""
  objs = scene["objects"]
  count = lambda key, v: sum(o[key] == v for o in objs)
  out = [("count", "how many shapes are there?", str(len(objs)))]
  for s in SHAPES:
    out.append(("count", f"how many {s}s are there?", str(count("shape", s))))
  for o in objs:
    if count("shape", o["shape"]) == 1:
      out.append(("color", f"what color is the {o['shape']}?", o["color"]))
      cx = (o["px"][1] + o["px"][3]) / 2 / res
      if abs(cx - 0.5) > 0.1:
        out.append(("position", f"is the {o['shape']} on the left or the right?",
                    "left" if cx < 0.5 else "right"))
    if count("color", o["color"]) == 1:
      out.append(("shape", f"what shape is the {o['color']} object?", o["shape"]))
  c, s = list(COLORS)[rng.integers(len(COLORS))], SHAPES[rng.integers(len(SHAPES))]
  present = any(o["color"] == c and o["shape"] == s for o in objs)
  out.append(("yesno", f"is there a {c} {s}?", "yes" if present else "no"))
  return out


def _answers(answer, rng):
  """10 VQA-style answers: the answer, with number words for a few counts."""
  alt = NUMBERS[int(answer)] if answer.isdigit() and int(answer) < len(NUMBERS) else None
  return [alt if alt and rng.random() < 0.2 else answer for _ in range(10)]


def make_rows(scene, index, res, rng):
  """Returns {task: [rows]} and the scene row for one image."""
  image = f"images/{index:06d}.png"
  objs = scene["objects"]
  caps, cap = _captions(scene, rng)
  rows = {t: [] for t in TASKS}
  rows["caption"].append(dict(image=image, prefix="caption en", suffix=cap, captions=caps))
  qs = _questions(scene, res, rng)
  for k in rng.choice(len(qs), size=min(2, len(qs)), replace=False):
    qtype, q, a = qs[int(k)]
    rows["vqa"].append(dict(image=image, prefix=f"answer en {q}", suffix=a, question=q,
                            question_type=qtype, answers=_answers(a, rng)))
  if scene["word"]:
    rows["ocr"].append(dict(image=image, prefix="ocr", suffix=scene["word"]))
  shape = objs[int(rng.integers(len(objs)))]["shape"]
  boxes = [_norm(o["px"], res) for o in objs if o["shape"] == shape]
  rows["detect"].append(dict(
      image=image, prefix=f"detect {shape}",
      suffix=tokenizer.boxes_to_loc_str(boxes, [shape] * len(boxes)),
      objects={"bbox": boxes, "label": [shape] * len(boxes)}))
  single = [i for i, o in enumerate(objs) if sum(p["shape"] == o["shape"] for p in objs) == 1]
  if single:
    i = single[int(rng.integers(len(single)))]
    rows["segment"].append(dict(image=image, prefix=f"segment {objs[i]['shape']}",
                                suffix="", mask=f"masks/{index:06d}.png",
                                box=_norm(objs[i]["px"], res), label=objs[i]["shape"]))
  scene_row = dict(image=image, objects={
      "bbox": [_norm(o["px"], res) for o in objs], "label": [o["shape"] for o in objs],
      "color": [o["color"] for o in objs], "size": [o["size"] for o in objs]},
                   word=scene["word"], word_box=_norm(scene["word_px"], res))
  return rows, scene_row


def _dumps(row):
  return json.dumps(row, sort_keys=True, ensure_ascii=False)


def _write_split(folder, split_index, num, res, seed, design):
  os.makedirs(os.path.join(folder, "images"))
  os.makedirs(os.path.join(folder, "masks"))
  files = {t: open(os.path.join(folder, f"{t}.jsonl"), "w", encoding="utf-8")
           for t in TASKS + ("scenes",)}
  corpus = []
  try:
    for i in range(num):
      scene = make_scene(seed, split_index, i, res, **design)
      rng = np.random.default_rng([seed, split_index, i, 1])
      rows, scene_row = make_rows(scene, i, res, rng)
      image, masks = render(scene, res)
      image.save(os.path.join(folder, scene_row["image"]), format="PNG", compress_level=6)
      if rows["segment"]:
        seg_obj = [o["shape"] for o in scene["objects"]].index(rows["segment"][0]["label"])
        masks[seg_obj].save(os.path.join(folder, rows["segment"][0]["mask"]), format="PNG",
                            compress_level=6)
      for t, task_rows in rows.items():
        for r in task_rows:
          files[t].write(_dumps(r) + "\n")
          corpus += [r["prefix"], r["suffix"]]
      files["scenes"].write(_dumps(scene_row) + "\n")
  finally:
    for f in files.values():
      f.close()
  return corpus


def _info(num_train, num_val, res, seed, design):
  info = {"version": VERSION, "num_train": num_train, "num_val": num_val, "res": res,
          "seed": seed}
  # Design keys are recorded only when they differ from the original data's, so that
  # data generated before they existed still matches its info.json byte for byte.
  info.update({k: v for k, v in design.items() if v != DESIGN_DEFAULTS[k]})
  return info


def _check_existing(out_dir, info):
  with open(os.path.join(out_dir, "info.json"), encoding="utf-8") as f:
    found = json.load(f)
  if found != info:
    raise ValueError(f"shapes data in {out_dir} was generated with {found}, not {info}. "
                     "Use another out_dir or delete that folder.")


def ensure_shapes(out_dir, num_train=2000, num_val=200, res=224, seed=0, size_scale=1.0,
                  max_objects=4, font_scale=1.0):
  """Writes the shapes dataset to `out_dir` unless it is there already; returns out_dir.

  `size_scale`, `max_objects` and `font_scale` set the data design (see `make_scene`).

  Generation goes to a temporary sibling folder that is renamed into place, so readers
  never see a half-written dataset, and concurrent callers (e.g. several hosts) are safe.

  Raises:
    ValueError: `out_dir` holds shapes data generated with other arguments.
  """
  out_dir = os.path.abspath(out_dir)
  design = dict(size_scale=size_scale, max_objects=max_objects, font_scale=font_scale)
  info = _info(num_train, num_val, res, seed, design)
  if os.path.exists(os.path.join(out_dir, "info.json")):
    _check_existing(out_dir, info)
    return out_dir
  if os.path.exists(out_dir) and os.listdir(out_dir):
    raise ValueError(f"{out_dir} exists, is not empty and has no shapes info.json; "
                     "choose an empty or new out_dir.")
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out_dir)}.tmp-")
  try:
    corpus = []
    for split_index, (split, num) in enumerate(zip(SPLITS, (num_train, num_val))):
      corpus += _write_split(os.path.join(tmp, split), split_index, num, res, seed, design)
    strip = re.compile(r"<(loc\d{4}|seg\d{3})>")
    lines = [strip.sub("", s).strip() for s in corpus]
    with open(os.path.join(tmp, "corpus.txt"), "w", encoding="utf-8") as f:
      f.write("\n".join(s for s in lines if s) + "\n")
    with open(os.path.join(tmp, "info.json"), "w", encoding="utf-8") as f:
      f.write(_dumps(info) + "\n")
    if os.path.isdir(out_dir):
      os.rmdir(out_dir)  # Empty (checked above).
    os.rename(tmp, out_dir)
  except OSError:
    if not os.path.exists(os.path.join(out_dir, "info.json")):
      raise
    _check_existing(out_dir, info)  # Another process finished first.
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return out_dir


class DataSource(jsonl.DataSource):
  """One task of one split of the shapes dataset, generated on first use.

  Args:
    task: one of TASKS (the video tasks are the `shapes_video` source), or "scenes": each
      image's full ground truth (`objects/bbox`, `objects/label`, `objects/color`,
      `objects/size`, `word`, `word_box`), e.g. the targets of stage 0's classifier.
    split: "train" or "validation".
    data_dir: where the dataset lives (or is generated).
    num_train, num_val, res, seed, size_scale, max_objects, font_scale: generation
      arguments (see `ensure_shapes`).
    start, stop: keep rows [start, stop).
  """

  def __init__(self, task, split="train", *, data_dir, num_train=2000, num_val=200,
               res=224, seed=0, size_scale=1.0, max_objects=4, font_scale=1.0, start=0,
               stop=None):
    if task not in TASKS + ("scenes",) or split not in SPLITS:
      raise ValueError(f"shapes: task {task!r} / split {split!r} invalid; tasks are "
                       f"{TASKS + ('scenes',)} (video tasks: the 'shapes_video' source), "
                       f"splits {SPLITS}.")
    ensure_shapes(data_dir, num_train, num_val, res, seed, size_scale, max_objects,
                  font_scale)
    self.task = task
    keys = ("image", "mask") if task == "segment" else ("image",)
    super().__init__(os.path.join(data_dir, split, f"{task}.jsonl"), fopen_keys=keys,
                     start=start, stop=stop)

  def _example(self, i):
    example = super()._example(i)
    if self.task == "segment":
      mask = tf.io.decode_png(example.pop("mask"), channels=1)
      example["objects/mask"] = mask[None]
      example["objects/bbox"] = example.pop("box")[None]
      example["objects/label"] = example.pop("label")[None]
    return example


EXAMPLES = (
    "python -m big_vision_lite.datasets.shapes --out workdirs/shapes",
    "python -m big_vision_lite.datasets.shapes --out /tmp/shapes_448 --res 448 \\\n"
    "      --num_train 500 --num_val 50 --seed 1",
)


def main(argv=None):
  parser = cli.parser(__doc__, EXAMPLES, prog="python -m big_vision_lite.datasets.shapes")
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--num_train", type=int, default=2000)
  parser.add_argument("--num_val", type=int, default=200)
  parser.add_argument("--res", type=int, default=224)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--size_scale", type=float, default=1.0)
  parser.add_argument("--max_objects", type=int, default=4)
  parser.add_argument("--font_scale", type=float, default=1.0)
  args = parser.parse_args(argv)
  print(ensure_shapes(args.out, args.num_train, args.num_val, args.res, args.seed,
                      args.size_scale, args.max_objects, args.font_scale))


if __name__ == "__main__":
  cli.run(main)
