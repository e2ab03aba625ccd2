"""Streaming readers and writers for safetensors directories and big_vision npz.

Checkpoint conversion touches one tensor (or one layer of a stacked tensor) at a
time, so a 28B checkpoint converts without holding it in memory:
  * safetensors are memory-mapped and sliced per tensor (bfloat16 via ml_dtypes);
  * npz members are read from the zip stream header first, then layer by layer;
  * npz members are written straight into the zip (bfloat16 as 2-byte void, the
    big_vision convention), safetensors shards are written from a precomputed
    header. Both are written under a temporary name and renamed at the end.
"""
import contextlib
import glob
import json
import os
import struct
import tokenize
import zipfile
import zlib

import ml_dtypes
import numpy as np

from big_vision_lite import registry

DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16),
          "float16": np.dtype(np.float16)}
_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
              "BF16": ml_dtypes.bfloat16, "I64": np.int64, "I32": np.int32,
              "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}
_BF16_VOID = np.dtype("V2")


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, SyntaxError,
                tokenize.TokenError, ValueError)


@contextlib.contextmanager
def _reading(where):
  """Re-raises a read/parse error of a corrupt file as a ValueError naming `where`."""
  try:
    yield
  except _READ_ERRORS as e:
    if isinstance(e, ValueError) and str(e).startswith(("Member '", "Could not read")):
      raise
    raise ValueError(f"Could not read {where}: {type(e).__name__}: {e}. The file is "
                     "corrupt or not a numpy .npz; re-download or re-convert it.") from e


def read_json(path: str, what: str = "config.json") -> dict:
  """Reads a JSON object file; a missing, non-UTF-8 or non-JSON file is a ValueError
  naming the file (FileNotFoundError when missing)."""
  try:
    with open(path, encoding="utf-8") as f:
      out = json.load(f)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{what} {path!r} does not exist; pass an existing JSON file "
                            "(an HF model directory holds config.json).") from e
  except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, OSError) as e:
    detail = " ".join(str(e).split())[:200]
    raise ValueError(f"{what} {path!r} is not a UTF-8 JSON file ({type(e).__name__}: "
                     f"{detail}); fix or re-download it.") from e
  if not isinstance(out, dict):
    raise ValueError(f"{what} {path!r} holds a JSON {type(out).__name__}; expected a JSON "
                     "object {...}.")
  return out


def cast(x: np.ndarray, dtype: str) -> np.ndarray:
  """Casts to "float32" | "bfloat16" | "float16" (round to nearest even)."""
  if dtype not in DTYPES:
    raise registry.unknown_name("dtype", dtype, DTYPES)
  return x if x.dtype == DTYPES[dtype] else x.astype(DTYPES[dtype])


class SafetensorsDir:
  """All tensors of an HF model directory (one file or shards + index)."""

  def __init__(self, path: str):
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
      try:
        with open(index, encoding="utf-8") as f:
          weight_map = json.load(f)["weight_map"]
        valid = isinstance(weight_map, dict) and all(
            isinstance(v, str) for v in weight_map.values())
      except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{index}: corrupt index ({type(e).__name__}: {e}); it must be "
                         'JSON {"weight_map": {tensor: file}}.') from e
      if not valid:
        raise ValueError(f"{index}: weight_map must map tensor names to file names.")
      self.files = sorted({os.path.join(path, v) for v in weight_map.values()})
    else:
      weight_map = None
      self.files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
    if not self.files:
      raise FileNotFoundError(f"No *.safetensors in {path}; expected model.safetensors "
                              "or shards listed in model.safetensors.index.json.")
    self._where, self._maps = {}, {}
    for fname in self.files:
      for key, entry in _read_header(fname).items():
        if key in self._where:
          raise KeyError(f"Tensor '{key}' is in both {self._where[key][0]} and {fname}.")
        self._where[key] = (fname, *entry)
    if weight_map is not None:
      for key, fname in weight_map.items():
        if key not in self._where:
          raise KeyError(f"{index} lists '{key}' in {fname}, but no file holds it.")

  def keys(self) -> list[str]:
    return list(self._where)

  def file_of(self, key: str) -> str:
    return self._where[key][0]

  def get(self, key: str, floating: bool = False) -> np.ndarray:
    """Returns the tensor as a read-only view of the memory-mapped file.

    With `floating`, a tensor that is not F32/BF16/F16/F64 is a ValueError naming it
    (model weights are floating point; an int or bool one means a wrong file).
    """
    fname, dtype, shape, start, end = self._where[key]
    if floating and dtype.kind != "f" and dtype != np.dtype(ml_dtypes.bfloat16):
      raise ValueError(f"Tensor '{key}' in {fname} has dtype {_ST_NAMES[dtype]}; model "
                       "weights must be floating point (F32, BF16, F16 or F64). The file "
                       "is not a PaliGemma checkpoint or was written wrongly.")
    if fname not in self._maps:
      self._maps[fname] = np.memmap(fname, dtype=np.uint8, mode="r")
    return self._maps[fname][start:end].view(dtype).reshape(shape)


def _read_header(fname):
  """Returns {name: (dtype, shape, start, end)} with absolute byte offsets."""
  size = os.path.getsize(fname)
  with open(fname, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0] if size >= 8 else size
    if n + 8 > size:
      raise ValueError(f"{fname} is not a safetensors file (header length {n}, size {size}).")
    try:
      header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise ValueError(f"{fname}: corrupt safetensors header (not UTF-8 JSON: {e}); "
                       "re-download or re-convert the file.") from e
  if not isinstance(header, dict):
    raise ValueError(f"{fname}: corrupt safetensors header (a JSON "
                     f"{type(header).__name__}, not an object).")
  header.pop("__metadata__", None)
  out = {}
  for key, e in header.items():
    if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= set(e):
      raise ValueError(f"Tensor '{key}' in {fname}: corrupt header entry {e!r} (needs "
                       "dtype, shape and data_offsets).")
    if e["dtype"] not in _ST_DTYPES:
      raise ValueError(f"Tensor '{key}' in {fname} has dtype {e['dtype']}; supported: "
                       f"{sorted(_ST_DTYPES)}.")
    offsets, shape = e["data_offsets"], e["shape"]
    if (not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape)
        or not isinstance(offsets, list) or len(offsets) != 2
        or not all(type(o) is int and o >= 0 for o in offsets)):
      raise ValueError(f"Tensor '{key}' in {fname}: corrupt shape {shape!r} or "
                       f"data_offsets {offsets!r} (need non-negative ints, offsets "
                       "[begin, end]).")
    start, end = (8 + n + o for o in offsets)
    dtype = np.dtype(_ST_DTYPES[e["dtype"]])
    if end - start != dtype.itemsize * int(np.prod(shape)) or end > size:
      raise ValueError(f"Tensor '{key}' in {fname}: offsets {offsets} do not fit "
                       f"shape {shape} {e['dtype']} (file truncated?); re-download or "
                       "re-convert it.")
    out[key] = (dtype, tuple(shape), start, end)
  return out


def write_safetensors(dst_dir: str, entries, arrays, max_shard_bytes: int) -> list[str]:
  """Writes tensors into `dst_dir` as model.safetensors or shards + index.

  Args:
    dst_dir: output directory (created).
    entries: list of (name, shape, np.dtype) in the order `arrays` yields them.
    arrays: iterator of (name, array) matching `entries`.
    max_shard_bytes: start a new shard when the next tensor would exceed this.

  Returns:
    the file names written.
  """
  shards, size = [[]], 0
  for name, shape, dtype in entries:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if shards[-1] and size + nbytes > max_shard_bytes:
      shards.append([])
      size = 0
    shards[-1].append((name, shape, dtype, nbytes))
    size += nbytes
  n = len(shards)
  names = (["model.safetensors"] if n == 1 else
           [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)])
  os.makedirs(dst_dir, exist_ok=True)
  weight_map = {}
  for fname, shard in zip(names, shards):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, dtype, nbytes in shard:
      header[name] = {"dtype": _ST_NAMES[np.dtype(dtype)], "shape": list(shape),
                      "data_offsets": [offset, offset + nbytes]}
      offset += nbytes
      weight_map[name] = fname
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = os.path.join(dst_dir, fname + ".tmp")
    with open(tmp, "wb") as f:
      f.write(struct.pack("<Q", len(blob)) + blob)
      for name, shape, dtype, _ in shard:
        got_name, x = next(arrays)
        assert got_name == name and x.shape == tuple(shape) and x.dtype == dtype, (
            got_name, name, x.shape, shape, x.dtype, dtype)
        f.write(np.ascontiguousarray(x).reshape(-1).view(np.uint8).data)
    os.replace(tmp, os.path.join(dst_dir, fname))
  if n > 1:
    total = sum(e[3] for s in shards for e in s)
    with open(os.path.join(dst_dir, "model.safetensors.index.json"), "w") as f:
      json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
  return names


class NpzReader:
  """Reads a big_vision npz member by member.

  Keys are returned without a `params/` prefix; in a train state holding `params/`
  and other trees (`opt/...`) only the params are read. Uncompressed members
  (np.savez, big_vision) are memory-mapped; compressed ones are streamed.
  """

  def __init__(self, path: str):
    self.path = path
    try:
      self._zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
      raise ValueError(f"Could not read npz file '{path}': {type(e).__name__}: {e}. It "
                       "must be a numpy .npz (a zip of .npy files); re-download or "
                       "re-convert it.") from e
    self._crcs = {}
    self._members, self._headers, self._offsets = {}, {}, {}
    infos = self._zf.infolist()
    if any(i.filename.startswith("params/") for i in infos):
      infos = [i for i in infos if i.filename.startswith("params/")]
    for info in infos:
      name = info.filename
      key = name[:-4] if name.endswith(".npy") else name
      key = key[len("params/"):] if key.startswith("params/") else key
      self._members[key] = name
      with _reading(f"member '{name}' of npz file '{path}'"), self._zf.open(info) as f:
        self._headers[key] = _npy_header(f, f"{path}:{name}")
        if info.compress_type == zipfile.ZIP_STORED:
          self._offsets[key] = _data_start(self._zf.fp, info) + f.tell()
          self._crcs[key] = (info.CRC, f.tell(), info.file_size)

  def shapes(self) -> dict[str, tuple]:
    return {k: h[0] for k, h in self._headers.items()}

  def dtype(self, key: str) -> np.dtype:
    return self._headers[key][1]

  def array(self, key: str) -> np.ndarray:
    """The whole array (a read-only memory map when the member is uncompressed)."""
    shape, dtype = self._headers[key]
    if key in self._offsets:
      if not int(np.prod(shape)):
        return np.zeros(shape, dtype)
      self._check_stored(key, shape, dtype)
      return np.memmap(self.path, dtype, "r", offset=self._offsets[key], shape=shape)
    with _reading(f"member '{self._members[key]}' of npz file '{self.path}'"):
      with self._zf.open(self._members[key]) as f:
        _npy_header(f, key)
        return np.frombuffer(f.read(), dtype).reshape(shape)

  def _check_stored(self, key, shape, dtype):
    """Checks the zip CRC of a memory-mapped member (zipfile checks streamed ones)."""
    crc, header_len, file_size = self._crcs[key]
    nbytes = dtype.itemsize * int(np.prod(shape))
    where = f"Member '{self._members[key]}' of npz file '{self.path}'"
    if header_len + nbytes != file_size or self._offsets[key] + nbytes > os.path.getsize(
        self.path):
      raise ValueError(f"{where}: {nbytes} data bytes do not fit the member size "
                       f"{file_size} / the file (truncated?); re-download or re-convert.")
    data = np.memmap(self.path, np.uint8, "r", offset=self._offsets[key] - header_len,
                     shape=(file_size,))
    got = 0
    for i in range(0, file_size, 1 << 26):  # 64 MB at a time.
      got = zlib.crc32(data[i:i + (1 << 26)], got)
    if got != crc:
      raise ValueError(f"{where}: CRC mismatch (the file is corrupt); re-download or "
                       "re-convert it.")

  def iter_layers(self, key: str):
    """Yields `x[i]` for each index of the leading axis, reading one at a time."""
    shape, dtype = self._headers[key]
    if key in self._offsets:
      yield from self.array(key)
      return
    nbytes = dtype.itemsize * int(np.prod(shape[1:]))
    with _reading(f"member '{self._members[key]}' of npz file '{self.path}'"):
      with self._zf.open(self._members[key]) as f:
        _npy_header(f, key)
        for _ in range(shape[0]):
          yield np.frombuffer(f.read(nbytes), dtype).reshape(shape[1:])

  def __enter__(self):
    return self

  def __exit__(self, *unused):
    self._zf.close()


def _data_start(fp, info):
  """Byte offset in the zip file where the member's (stored) data begins."""
  fp.seek(info.header_offset)
  local = fp.read(30)  # Local file header; name and extra field lengths at 26..30.
  if local[:4] != b"PK\x03\x04":
    raise ValueError(f"Corrupt zip: no local header for {info.filename}.")
  name_len, extra_len = struct.unpack("<HH", local[26:30])
  return info.header_offset + 30 + name_len + extra_len


def _npy_header(f, where):
  version = np.lib.format.read_magic(f)
  if version == (1, 0):
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
  elif version == (2, 0):
    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
  else:
    raise ValueError(f"{where}: npy format version {version} is not supported (1.0, 2.0).")
  if fortran or dtype.hasobject:
    raise ValueError(f"{where}: Fortran-ordered or object arrays are not supported "
                     "(big_vision writes C-ordered numeric arrays; pickles are never loaded).")
  return shape, (np.dtype(ml_dtypes.bfloat16) if dtype == _BF16_VOID else dtype)


class NpzWriter:
  """Writes npz members one at a time (uncompressed, zip64); atomic on close."""

  def __init__(self, path: str):
    self.path, self._tmp = path, path + ".tmp"
    self._zf = zipfile.ZipFile(self._tmp, "w", zipfile.ZIP_STORED, allowZip64=True)

  def write(self, key: str, x: np.ndarray):
    self.write_layers(key, 1, iter([x]), stacked=False)

  def write_layers(self, key: str, num: int, layers, stacked: bool = True):
    """Writes `np.stack(layers)` (num of them) holding one layer at a time."""
    x = next(layers)
    shape, dtype = x.shape, x.dtype
    disk_dtype = _BF16_VOID if dtype == ml_dtypes.bfloat16 else dtype
    header = {"descr": np.lib.format.dtype_to_descr(disk_dtype), "fortran_order": False,
              "shape": ((num,) if stacked else ()) + shape}
    count = 0
    with self._zf.open(key + ".npy", "w", force_zip64=True) as f:
      np.lib.format.write_array_header_1_0(f, header)
      while x is not None:
        if x.shape != shape or x.dtype != dtype:
          raise ValueError(f"'{key}': layer {count} is {x.dtype}{x.shape}, layer 0 is "
                           f"{dtype}{shape}; all layers must match.")
        f.write(np.ascontiguousarray(x).reshape(-1).view(np.uint8).data)
        count += 1
        x = None  # Drop this layer before the next one is made.
        x = next(layers, None) if stacked else None
    assert count == (num if stacked else 1), (key, count, num)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *unused):
    self._zf.close()
    if exc_type is None:
      os.replace(self._tmp, self.path)
    else:
      os.remove(self._tmp)

