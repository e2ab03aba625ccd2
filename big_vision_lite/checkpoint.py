"""Params I/O in big_vision's `.npz` format.

A big_vision params file is an uncompressed `.npz` whose keys are the flattened param
paths joined by "/" (`img/embedding/kernel`), optionally all prefixed by `params/`.
numpy has no bfloat16, so bfloat16 arrays are stored as 2-byte void (`|V2`) and viewed
back as `ml_dtypes.bfloat16` on load. `path.npz:img` selects the `img` subtree.
"""
import os
import tokenize
import zipfile
import zlib

import ml_dtypes
import numpy as np

from big_vision_lite import registry

_SEP = "/"


def flatten(tree, prefix=""):
  """Flattens nested dicts into {"a/b/c": leaf}.

  Args:
    tree: nested mapping of arrays (dicts, FrozenDicts, ...).
    prefix: prepended to every key (used by the recursion).

  Returns:
    dict[str, array] with keys joined by "/".
  """
  flat = {}
  for k, v in tree.items():
    key = f"{prefix}{k}"
    if hasattr(v, "items"):
      sub = flatten(v, key + _SEP)
      if not sub:
        raise ValueError(f"Empty subtree at '{key}': params trees must end in arrays.")
      flat.update(sub)
    else:
      flat[key] = v
  return flat


def unflatten(flat):
  """Inverse of `flatten`: {"a/b/c": leaf} -> {"a": {"b": {"c": leaf}}}."""
  tree = {}
  for key, v in flat.items():
    *parents, last = key.split(_SEP)
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
      if not isinstance(node, dict):
        raise ValueError(f"Key '{key}' nests below a leaf '{p}'; the keys conflict. "
                         "Keys must name leaves only (no array at a subtree's path).")
    if last in node:
      raise ValueError(f"Key '{key}' is both a leaf and a subtree (or given twice); the "
                       "keys conflict. Keys must name leaves only.")
    node[last] = v
  return tree


def split_subtree(path):
  """Splits "file.npz:sub/tree" into ("file.npz", "sub/tree"); a plain file gives None."""
  if os.path.exists(path) or ":" not in path:
    return path, None
  fname, sub = path.rsplit(":", 1)
  return fname, sub


# Leaf dtypes a params file may hold: real numbers and booleans (bfloat16 as 2-byte void).
_KINDS = {"f": "float", "i": "int", "u": "uint", "b": "bool"}
_BF16_VOID = np.dtype("V2")


def _read_header(f, where):
  """Returns (shape, fortran_order, dtype) of the .npy stream `f`; raises naming `where`."""
  version = np.lib.format.read_magic(f)
  if version not in ((1, 0), (2, 0), (3, 0)):
    raise ValueError(f"{where}: npy format version {version} is not supported.")
  read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
      version, np.lib.format.read_array_header_2_0)
  shape, fortran, dtype = read(f, max_header_size=10_000)
  if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
    raise ValueError(f"{where}: dtype {dtype} (object or structured arrays) cannot be a "
                     "param; params are float/int/bool arrays (pickled objects are never "
                     "loaded).")
  if dtype == _BF16_VOID:
    return shape, fortran, np.dtype(ml_dtypes.bfloat16), dtype
  if dtype.kind not in _KINDS:
    raise ValueError(f"{where}: dtype {dtype} is not a param dtype; valid: float "
                     "(float32, bfloat16 as 2-byte void, float16, float64), int, uint, "
                     "bool.")
  return shape, fortran, dtype, dtype


def _read_member(zf, info, fname):
  """Reads one .npy member of an open npz zip with its header checked against its size."""
  where = f"Member '{info.filename}' of params file '{fname}'"
  with zf.open(info) as f:
    shape, fortran, dtype, disk_dtype = _read_header(f, where)
    nbytes = disk_dtype.itemsize * int(np.prod(shape, dtype=object))
    if f.tell() + nbytes != info.file_size:
      raise ValueError(f"{where}: its header claims shape {shape} {disk_dtype} = {nbytes} "
                       f"bytes, but the member holds {info.file_size - f.tell()} data bytes "
                       "(a corrupt or forged file); re-download or re-convert it.")
    buf = bytearray(nbytes)
    if f.readinto(buf) != nbytes or f.read(1):  # read(1) at the end checks the CRC.
      raise ValueError(f"{where}: truncated data; re-download or re-convert it.")
  arr = np.frombuffer(buf, disk_dtype).reshape(shape, order="F" if fortran else "C")
  return arr.view(dtype) if dtype != disk_dtype else arr


def _read_npz(fname):
  """{key: array} of every member; duplicated or non-.npy members are errors."""
  flat = {}
  with zipfile.ZipFile(fname) as zf:
    for info in zf.infolist():
      name = info.filename
      if not name.endswith(".npy"):
        raise ValueError(f"Member '{name}' of params file '{fname}' is not a .npy array; "
                         "a params .npz holds only KEY.npy members (as np.savez writes).")
      if name[:-4] in flat:
        raise ValueError(f"Member '{name}' of params file '{fname}' appears twice in the "
                         "zip (a corrupt or tampered file); which copy is meant is "
                         "ambiguous. Re-download or re-convert it.")
      flat[name[:-4]] = _read_member(zf, info, fname)
  return flat


def load_params(path):
  """Loads a big_vision `.npz` params file as a nested dict of numpy arrays.

  Arrays are read one member at a time, each header checked against the member's size
  before any memory is allocated, so peak memory is about the size of the params (not a
  multiple of it) even for multi-GB files, and a forged header cannot allocate more.

  Args:
    path: "file.npz" or "file.npz:sub/tree" (selects that subtree, e.g. ":img").

  Returns:
    nested dict[str, np.ndarray]; bfloat16 leaves come back as ml_dtypes.bfloat16.
    Leaves are real numbers or booleans (complex, string, void and object members are
    rejected, naming the member).
  """
  fname, sub = split_subtree(path)
  if not os.path.exists(fname):
    raise FileNotFoundError(
        f"Params file '{fname}' (from '{path}') does not exist. Pass the local path of a "
        "big_vision .npz file, optionally followed by ':subtree'. Released PaliGemma "
        "checkpoints (e.g. paligemma-3b-pt-224.npz, paligemma2-3b-pt-448.b16.npz) come "
        "from Kaggle (google/paligemma, google/paligemma-2, JAX variants) or Hugging Face "
        "(google/paligemma2-3b-pt-448-jax); Hugging Face safetensors convert with "
        "`python -m tools.convert_checkpoint HF_DIR out.npz`. Nothing is downloaded here.")
  try:
    flat = _read_npz(fname)
  except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, SyntaxError,
          tokenize.TokenError, MemoryError, NotImplementedError) as e:
    if isinstance(e, ValueError) and str(e).startswith("Member '"):
      raise
    detail = " ".join(str(e).split())[:300]
    raise ValueError(
        f"Could not read params file '{fname}': {type(e).__name__}: {detail}. It must be "
        "an uncompressed numpy .npz written by save_params (or big_vision); pickled "
        "objects are never loaded.") from e
  if not flat:
    raise ValueError(f"Params file '{fname}' holds no arrays; it must be a params .npz "
                     "written by save_params (or big_vision).")
  try:
    tree = unflatten(flat)
  except ValueError as e:
    raise ValueError(f"Params file '{fname}': {e}") from None
  if set(tree) == {"params"} or ("params" in tree and "opt" in tree):
    tree = tree["params"]
  if sub:
    for part in sub.strip(_SEP).split(_SEP):
      if not isinstance(tree, dict) or part not in tree:
        known = sorted(tree) if isinstance(tree, dict) else []
        raise registry.unknown_name("params key", part, known,
                                    context=f"(subtree '{sub}' not found in '{fname}')")
      tree = tree[part]
    if not isinstance(tree, dict):
      raise KeyError(f"'{sub}' in '{fname}' is an array {tree.dtype}{tree.shape}, not a "
                     "subtree; pass the path of a subtree (e.g. ':img' or ':llm').")
  return tree


def save_params(params, path):
  """Writes params as a big_vision `.npz` atomically (tmp file, then rename).

  Args:
    params: nested dict of arrays (numpy, jax; bfloat16 is stored as 2-byte void).
    path: destination file name; a crash never leaves a half-written file there.
  """
  flat = {k: np.asarray(v) for k, v in flatten(params).items()}
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      np.savez(f, **flat)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
