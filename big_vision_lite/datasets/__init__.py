"""Data sources: `get(name, **kw)` returns an object with `.get_tfdata(...)`.

Names: "jsonl" (see `jsonl.DataSource`), "shapes" (the bundled generated dataset, see
`shapes.DataSource`), "shapes_video" (its video clips, see `shapes_video.DataSource`),
"tfds:<name>" or a bare TFDS name (see `tfds.DataSource`).

Every source has `total_examples` (over all processes), `get_tfdata(ordered=False,
process_index=0, process_count=1, seed=None)` (a finite stream of example dicts: this
process's even part of the data), `get_training_tfdata(seed, shuffle_buffer_size,
process_index=0, process_count=1)` (an infinite shuffled stream) and
`shard_size(process_index=0, process_count=1)` and `describe_row(index, process_index=0,
process_count=1)` (names an example for error messages).
"""
import importlib

from big_vision_lite import registry

# Source modules are imported on first use: TFDS is slow to import and only needed for
# TFDS sources, and `python -m big_vision_lite.datasets.shapes` runs cleanly.
_LOCAL = ("jsonl", "shapes", "shapes_video")


def get(name, **kw):
  """Returns the data source `name` built with the keyword arguments `kw`.

  Raises:
    TypeError: `kw` does not fit the source's arguments (the message lists them).
  """
  if name.startswith("tfds:"):
    module, args = "tfds", (name[len("tfds:"):],)
  elif name in _LOCAL:
    module, args = name, ()
  else:
    module, args = "tfds", (name,)
  cls = importlib.import_module(f"big_vision_lite.datasets.{module}").DataSource
  registry.check_arguments(cls, args, kw, name=name, what=f"data source {name!r}")
  return cls(*args, **kw)
