"""The `shapes_video` source: seeded, generated short clips of one shape moving among others.

Each clip has NUM_FRAMES frames: 1-3 shapes (as in the image data) on a light
background, one of which moves left, right, up or down at constant speed while the
others stay still. `ensure_videos(out_dir, ...)` writes, once and atomically:

  out_dir/info.json
  out_dir/corpus.txt                      every prefix and suffix
  out_dir/{train,validation}/
    frames/NNNNNN_K.png                   frame K of clip NNNNNN
    video_caption.jsonl   `frames` (paths relative to the split folder), `video_id`,
                          prefix "caption en", suffix one of `captions` (5 references)
    video_qa.jsonl        prefix "answer en <question>" (e.g. "what moves left?"),
                          `question`, `question_id`, `answer`, `answers` (10, VQA style)

The `shapes_video` data source (`DataSource`, tasks "video_caption" / "video_qa") serves
these rows with `image` string[NUM_FRAMES] holding the encoded PNG frames (the "encoded
frames" video format of the `video_sample` pp op). It takes the arguments of the `shapes`
source and lives in that source's `data_dir` (images and videos share one folder); the
shapes, colours, sizes and wording come from `shapes`' public helpers. Same arguments
give byte-identical files.
"""
import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from big_vision_lite.datasets import jsonl
from big_vision_lite.datasets import shapes

VERSION = 1
NUM_FRAMES = 8
TASKS = ("video_caption", "video_qa")
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
TRAVEL = 0.35  # The moving shape crosses this fraction of the frame over the clip.


def num_videos(num_images):
  """Clips per split for an image split of `num_images` (a quarter, at least 1)."""
  return max(1, num_images // 4)


def make_clip(seed, split_index, index, res):
  """Returns a clip: background, objects (px box of frame 0, `move` (dy, dx) per frame)."""
  rng = np.random.default_rng([seed, split_index, index, 2])
  clip = {"bg": tuple(int(v) for v in rng.integers(225, 256, 3)), "objects": []}
  direction = list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
  travel = int(round(TRAVEL * res))
  taken = []
  for i in range(int(rng.integers(1, 4))):
    shape = shapes.SHAPES[rng.integers(len(shapes.SHAPES))]
    color = list(shapes.COLORS)[rng.integers(len(shapes.COLORS))]
    size = list(shapes.SIZES)[rng.integers(len(shapes.SIZES))]
    side = max(4, int(round(rng.uniform(*shapes.SIZES[size]) * res)))
    moving = i == 0
    dy, dx = DIRECTIONS[direction] if moving else (0, 0)
    # The box the shape sweeps over the clip must be free of the other shapes.
    w, h = side + abs(dx) * travel, side + abs(dy) * travel
    sweep = shapes.place(rng, res, w, taken, h=h)
    if sweep is None:
      if moving:
        raise AssertionError(f"res={res} leaves no room for a moving shape.")
      continue
    taken.append(sweep)
    y0 = sweep[0] + (travel if dy < 0 else 0)
    x0 = sweep[1] + (travel if dx < 0 else 0)
    clip["objects"].append({"shape": shape, "color": color, "size": size,
                            "px": (y0, x0, y0 + side, x0 + side), "moving": moving,
                            "direction": direction if moving else None,
                            "step": (dy * travel / (NUM_FRAMES - 1),
                                     dx * travel / (NUM_FRAMES - 1))})
  return clip


def render_frame(clip, k, res):
  """Frame k (PIL RGB) of a clip."""
  image = Image.new("RGB", (res, res), clip["bg"])
  draw = ImageDraw.Draw(image)
  for o in clip["objects"]:
    sy, sx = (int(round(k * s)) for s in o["step"])
    y0, x0, y1, x1 = o["px"]
    shapes.draw_shape(draw, o["shape"], (y0 + sy, x0 + sx, y1 + sy, x1 + sx),
                      shapes.COLORS[o["color"]])
  return image


def _captions(clip, rng):
  art = shapes.article
  mover = clip["objects"][0]
  name, d = f"{mover['color']} {mover['shape']}", mover["direction"]
  still = [art(f"{o['color']} {o['shape']}") for o in clip["objects"][1:]]
  past = f" past {shapes.join_words(still)}" if still else ""
  n = len(clip["objects"])
  caps = [f"{art(name)} moves {d}",
          f"{art(mover['size'] + ' ' + name)} moving {d}{past}",
          f"the {name} slides {d}",
          f"{shapes.NUMBERS[n]} shape{'s' * (n > 1)}; the {name} moves {d}",
          f"a video of {art(name)} moving {d}{past}"]
  return caps, caps[int(rng.integers(len(caps)))]


def _questions(clip):
  objs, mover = clip["objects"], clip["objects"][0]
  name, d = f"{mover['color']} {mover['shape']}", mover["direction"]
  out = [(f"what moves {d}?", name),
         (f"which way does the {name} move?", d),
         ("what color is the moving shape?", mover["color"]),
         ("how many shapes are there?", str(len(objs)))]
  if len(objs) > 1:
    o = objs[1]
    out.append((f"does the {o['color']} {o['shape']} move?", "no"))
  return out


def make_rows(clip, index, rng):
  """Returns {task: [rows]} of one clip."""
  frames = [f"frames/{index:06d}_{k}.png" for k in range(NUM_FRAMES)]
  vid = f"{index:06d}"
  caps, cap = _captions(clip, rng)
  rows = {"video_caption": [dict(frames=frames, video_id=vid, prefix="caption en",
                                 suffix=cap, captions=caps)], "video_qa": []}
  qs = _questions(clip)
  for j in [0, 1 + int(rng.integers(len(qs) - 1))]:
    q, a = qs[j]
    rows["video_qa"].append(dict(frames=frames, video_id=vid, prefix=f"answer en {q}",
                                 suffix=a, question=q, question_id=f"{vid}_{j}",
                                 answer=a, answers=[a] * 10))
  return rows


def _write_split(folder, split_index, num, res, seed):
  os.makedirs(os.path.join(folder, "frames"))
  corpus = []
  files = {t: open(os.path.join(folder, f"{t}.jsonl"), "w", encoding="utf-8")
           for t in TASKS}
  try:
    for i in range(num):
      clip = make_clip(seed, split_index, i, res)
      rows = make_rows(clip, i, np.random.default_rng([seed, split_index, i, 3]))
      for k, path in enumerate(rows["video_caption"][0]["frames"]):
        render_frame(clip, k, res).save(os.path.join(folder, path), format="PNG",
                                        compress_level=6)
      for t, task_rows in rows.items():
        for r in task_rows:
          files[t].write(json.dumps(r, sort_keys=True) + "\n")
          corpus += [r["prefix"], r["suffix"]]
  finally:
    for f in files.values():
      f.close()
  return corpus


def ensure_videos(out_dir, num_train=2000, num_val=200, res=224, seed=0):
  """Writes the video split into `out_dir` unless it is there; returns out_dir.

  `num_train`/`num_val` are the image split sizes of the shapes data; the video splits
  get `num_videos` of them. Written to a temporary sibling folder renamed into place.

  Raises:
    ValueError: `out_dir` holds clips generated with other arguments.
  """
  out_dir = os.path.abspath(out_dir)
  info = {"version": VERSION, "num_train": num_videos(num_train),
          "num_val": num_videos(num_val), "res": res, "seed": seed,
          "num_frames": NUM_FRAMES}
  info_file = os.path.join(out_dir, "info.json")

  def check():
    with open(info_file, encoding="utf-8") as f:
      found = json.load(f)
    if found != info:
      raise ValueError(f"shapes videos in {out_dir} were generated with {found}, not "
                       f"{info}. Use another data_dir or delete that folder.")
    return out_dir

  if os.path.exists(info_file):
    return check()
  os.makedirs(os.path.dirname(out_dir), exist_ok=True)
  tmp = tempfile.mkdtemp(dir=os.path.dirname(out_dir),
                         prefix=f".{os.path.basename(out_dir)}.tmp-")
  try:
    corpus = []
    for split_index, split in enumerate(shapes.SPLITS):
      num = info["num_train"] if split == "train" else info["num_val"]
      corpus += _write_split(os.path.join(tmp, split), split_index, num, res, seed)
    with open(os.path.join(tmp, "corpus.txt"), "w", encoding="utf-8") as f:
      f.write("\n".join(corpus) + "\n")
    with open(os.path.join(tmp, "info.json"), "w", encoding="utf-8") as f:
      f.write(json.dumps(info, sort_keys=True) + "\n")
    os.rename(tmp, out_dir)
  except OSError:
    if not os.path.exists(info_file):
      raise
    check()  # Another process finished first.
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return out_dir


class DataSource(jsonl.DataSource):
  """One video task of one split of the shapes data, generated on first use.

  Args:
    task: one of TASKS.
    split: "train" or "validation".
    data_dir, num_train, num_val, res, seed, size_scale, max_objects, font_scale: as for
      the `shapes` source (its image data is ensured too; the clips go into `data_dir/videos`, with
      `num_videos` clips per split).
    start, stop: keep rows [start, stop).
  """

  def __init__(self, task, split="train", *, data_dir, num_train=2000, num_val=200,
               res=224, seed=0, size_scale=1.0, max_objects=4, font_scale=1.0, start=0,
               stop=None):
    if task not in TASKS or split not in shapes.SPLITS:
      raise ValueError(f"shapes_video: task {task!r} / split {split!r} invalid; tasks are "
                       f"{TASKS}, splits {shapes.SPLITS}.")
    shapes.ensure_shapes(data_dir, num_train, num_val, res, seed, size_scale, max_objects,
                         font_scale)
    videos = ensure_videos(os.path.join(data_dir, "videos"), num_train, num_val, res, seed)
    self.task = task
    self._frames_dir = os.path.join(videos, split)
    super().__init__(os.path.join(self._frames_dir, f"{task}.jsonl"), start=start,
                     stop=stop)

  def _example(self, i):
    example = super()._example(i)
    paths = tf.strings.join([self._frames_dir + os.sep, example.pop("frames")])
    example["image"] = tf.map_fn(tf.io.read_file, paths, fn_output_signature=tf.string)
    return example
