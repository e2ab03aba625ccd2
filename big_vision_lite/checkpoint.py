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
        raise ValueError(f"Key '{key}' nests below a leaf '{p}'; the keys conflict.")
    node[last] = v
  return tree


def _split_subtree(path):
  """Splits "file.npz:sub/tree" into ("file.npz", "sub/tree"); a plain file gives None."""
  if os.path.exists(path) or ":" not in path:
    return path, None
  fname, sub = path.rsplit(":", 1)
  return fname, sub


def _restore_dtype(arr):
  if arr.dtype == np.dtype("V2"):
    return arr.view(ml_dtypes.bfloat16)
  return arr


def load_params(path):
  """Loads a big_vision `.npz` params file as a nested dict of numpy arrays.

  Arrays are read one key at a time, so peak memory is about the size of the params
  (not a multiple of it) even for multi-GB files.

  Args:
    path: "file.npz" or "file.npz:sub/tree" (selects that subtree, e.g. ":img").

  Returns:
    nested dict[str, np.ndarray]; bfloat16 leaves come back as ml_dtypes.bfloat16.
  """
  fname, sub = _split_subtree(path)
  if not os.path.exists(fname):
    raise FileNotFoundError(
        f"Params file '{fname}' (from '{path}') does not exist. Pass the local path of a "
        "big_vision .npz file, optionally followed by ':subtree'. Released PaliGemma "
        "checkpoints (e.g. paligemma-3b-pt-224.npz, paligemma2-3b-pt-448.b16.npz) come "
        "from Kaggle (google/paligemma, google/paligemma-2, JAX variants) or Hugging Face "
        "(google/paligemma2-3b-pt-448-jax); Hugging Face safetensors convert with "
        "`python -m tools.convert_checkpoint HF_DIR out.npz`. Nothing is downloaded here.")
  flat = {}
  try:
    with np.load(fname, allow_pickle=False) as npz:
      for key in npz.files:
        flat[key] = _restore_dtype(npz[key])
  except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, SyntaxError,
          tokenize.TokenError) as e:
    raise ValueError(
        f"Could not read params file '{fname}': {type(e).__name__}: {e}. It must be an "
        "uncompressed numpy .npz written by save_params (or big_vision); pickled "
        "objects are never loaded.") from e
  tree = unflatten(flat)
  if set(tree) == {"params"} or ("params" in tree and "opt" in tree):
    tree = tree["params"]
  if sub:
    for part in sub.strip(_SEP).split(_SEP):
      if not isinstance(tree, dict) or part not in tree:
        known = sorted(tree) if isinstance(tree, dict) else []
        raise KeyError(
            f"Subtree '{sub}' not found in '{fname}': no key '{part}'. Known keys at "
            f"that level: {known}.")
      tree = tree[part]
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
