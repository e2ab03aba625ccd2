"""Loads a params checkpoint straight into a sharded layout: each device reads its shard.

`open_npz(path)` maps a big_vision `.npz` without reading it: its leaves are `NpzArray`s
whose `arr[index]` reads only that slice (a memory map of the uncompressed zip member;
numpy's own `np.savez` and big_vision write them uncompressed). `load(...)` runs the
model module's own `load` (name checks, scan <-> per-layer conversion, vocab rows) on
`jax.ShapeDtypeStruct`s instead of a random init, then builds each param with
`jax.make_array_from_callback`, so every device copies only its shard from the file
(cast on the way, e.g. a bf16 release into f32 master params). Params kept from init
(`dont_load`) are initialised sharded, by the jitted init cut to just those leaves.

Host memory stays about one leaf's size above the device arrays, except where a
conversion must read a whole tensor (stacking per-layer checkpoints into a scanned
model, resizing the position embedding or vocab rows): those leaves are read in full,
one at a time, and freed once placed.
"""
import os
import zipfile

import jax
import ml_dtypes
import numpy as np

from big_vision_lite import checkpoint
from big_vision_lite import registry


class NpzArray:
  """One array of an `.npz`, read lazily; `x[index]` reads only that slice.

  Attributes: shape, dtype (the dtype it returns: bfloat16 for 2-byte void members,
  or the `astype` target), ndim.
  """

  def __init__(self, fname, key, shape, stored, offset, fortran, dtype=None):
    self.fname, self.key, self.shape = fname, key, tuple(shape)
    self._stored, self._offset, self._fortran = stored, offset, fortran
    natural = ml_dtypes.bfloat16 if stored == np.dtype("V2") else stored
    self.dtype = np.dtype(dtype or natural)
    self.ndim = len(self.shape)

  def astype(self, dtype):
    """A lazy view that casts each slice read to `dtype`."""
    return NpzArray(self.fname, self.key, self.shape, self._stored, self._offset,
                    self._fortran, dtype)

  def __getitem__(self, index):
    if self._offset is None or not self.shape or not np.prod(self.shape):
      with np.load(self.fname, allow_pickle=False) as f:  # Compressed or empty member.
        x = np.asarray(f[self.key])[index]
    else:
      mm = np.memmap(self.fname, dtype=self._stored, mode="r", offset=self._offset,
                     shape=self.shape, order="F" if self._fortran else "C")
      x = np.array(mm[index])  # Copies just the slice; the map closes with `mm`.
      del mm
    if x.dtype == np.dtype("V2"):
      x = x.view(ml_dtypes.bfloat16)
    return x.astype(self.dtype, copy=False)

  def __array__(self, dtype=None, copy=None):
    del copy
    x = self[()]
    return x if dtype is None else x.astype(dtype)

  def __repr__(self):
    return f"NpzArray({self.fname}:{self.key}, {self.shape}, {self.dtype})"


def _members(fname):
  """{key: NpzArray} of every `.npy` member of `fname`."""
  out = {}
  with open(fname, "rb") as raw, zipfile.ZipFile(raw) as zf:
    for info in zf.infolist():
      if not info.filename.endswith(".npy"):
        continue
      with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
        header_len = f.tell()
      if dtype.hasobject:
        raise ValueError(f"'{fname}' member {info.filename} holds Python objects; params "
                         "files hold numeric arrays only (pickles are never loaded).")
      offset = None
      if info.compress_type == zipfile.ZIP_STORED:
        raw.seek(info.header_offset)
        local = raw.read(30)  # Local file header: name and extra lengths at 26 and 28.
        offset = (info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                  + int.from_bytes(local[28:30], "little") + header_len)
      out[info.filename[:-4]] = NpzArray(fname, info.filename[:-4], shape, dtype, offset,
                                         fortran)
  return out


def open_npz(path):
  """Like `checkpoint.load_params(path)` but nothing is read: leaves are `NpzArray`s.

  Args:
    path: "file.npz" or "file.npz:sub/tree".
  Returns:
    nested dict of NpzArray (the `params/` prefix dropped as `load_params` does).
  """
  fname, sub = checkpoint.split_subtree(path)
  if not os.path.exists(fname):
    checkpoint.load_params(path)  # Raises its FileNotFoundError (what to pass, where from).
  try:
    tree = checkpoint.unflatten(_members(fname))
  except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
    raise ValueError(f"Could not read params file '{fname}': {type(e).__name__}: {e}. It "
                     "must be an uncompressed numpy .npz written by save_params (or "
                     "big_vision).") from e
  if set(tree) == {"params"} or ("params" in tree and "opt" in tree):
    tree = tree["params"]
  for part in (sub or "").strip("/").split("/") if sub else ():
    if not isinstance(tree, dict) or part not in tree:
      known = sorted(tree) if isinstance(tree, dict) else []
      raise registry.unknown_name("params key", part, known,
                                  context=f"(subtree '{sub}' not found in '{fname}')")
    tree = tree[part]
  return tree


def _open(init_file):
  """config.model_init (a path or {tower: path or tree}) -> lazily opened trees."""
  if isinstance(init_file, str):
    return open_npz(init_file)
  return {k: open_npz(v) if isinstance(v, str) else v for k, v in dict(init_file).items()}


def load(model_mod, abstract, init_file, model_cfg, dont_load, init_fn):
  """Loads `init_file` into the layout of `abstract`; returns params (global arrays).

  Args:
    model_mod: the model module (its `load(init_params, init_file, model_cfg,
      dont_load)` converts and checks names and shapes).
    abstract: params tree of `jax.ShapeDtypeStruct`s with `.sharding` (dtypes: the
      master params' dtypes; loaded values are cast to them).
    init_file: config.model_init.
    model_cfg: config.model (plain dict).
    dont_load: regexes of params kept from init.
    init_fn: `() -> params` (jittable, the model init with a fixed rng) for `dont_load`.
  """
  merged = checkpoint.flatten(model_mod.load(abstract, _open(init_file), model_cfg,
                                             tuple(dont_load)))
  target = checkpoint.flatten(abstract)
  fresh_keys = [k for k, v in merged.items() if isinstance(v, jax.ShapeDtypeStruct)]
  fresh = {}
  if fresh_keys:
    pick = lambda: {k: checkpoint.flatten(init_fn())[k] for k in fresh_keys}
    fresh = jax.jit(pick, out_shardings={k: target[k].sharding for k in fresh_keys})()
  out = {}
  for k in list(merged):
    value, want = merged.pop(k), target[k]
    if k in fresh:
      out[k] = fresh[k]
      continue
    if tuple(np.shape(value)) != want.shape:
      raise ValueError(f"Loaded {k} has shape {np.shape(value)}, the model {want.shape}.")
    out[k] = jax.make_array_from_callback(
        want.shape, want.sharding,
        lambda index, v=value, d=want.dtype: np.asarray(v[index]).astype(d, copy=False))
    del value  # Leaves read in full by a conversion are freed once placed.
  return checkpoint.unflatten(out)
