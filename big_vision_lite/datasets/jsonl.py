"""JSONL data source: one JSON object per line, files referenced by relative paths.

Every row must have the first row's keys (nested dicts too) with values of one type per
key: strings, numbers, booleans, lists of those, lists of equal-length number lists
(e.g. boxes `[[ymin, xmin, ymax, xmax], ...]`) and dicts of all these. In the tf.data
stream a string is `tf.string[]`, an int `tf.int64[]`, a float `tf.float32[]`, a list
`[N]` and a list of number lists `[N, M]`. A key holding ints in some rows and floats in
others becomes float32. Nested dicts are flattened to "outer/inner" keys (as the pp ops
address them, e.g. `objects/bbox`).

`fopen_keys` names keys whose values are file paths relative to a base dir (default: the
JSONL file's folder); the stream holds the file's bytes (`tf.string[]`) under that key.
A path that leaves the base dir, or names no file, is rejected when the source is built.

The whole file is parsed and checked (even outside start/stop) when the source is built,
so a bad row fails with the file, line and key before any training starts: text that is
not UTF-8, invalid JSON, NaN/Infinity, integers outside int64, floats beyond float32,
lone surrogates, nesting deeper than `MAX_DEPTH`, keys that clash after flattening
(`"m/x"` and `{"m": {"x": ...}}`), an empty file. fopen paths are checked after
resolving symlinks, so a link inside the base dir pointing outside it is rejected.
Rows live in memory as columns; the training stream shuffles row indices (a full
permutation per epoch), so shuffle buffers and iterator checkpoints hold int64 indices,
not file bytes.
"""
import json
import math
import os

import numpy as np
import tensorflow as tf

_NUMBER_KINDS = ("int", "float")
_F32_MAX = float(np.finfo(np.float32).max)
MAX_DEPTH = 32  # Nesting of objects/lists in a row (deeper rows are rejected, not recursed).


def _depth(value, limit):
  """Nesting depth of a parsed JSON value, counting at most `limit` (iteratively)."""
  deepest, stack = 0, [(value, 1)]
  while stack:
    v, d = stack.pop()
    if isinstance(v, (dict, list)):
      deepest = max(deepest, d)
      if d > limit:
        return d
      stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
  return deepest


def _kind(value, where):
  """Returns a hashable description of `value`'s type, or raises naming `where`."""
  if isinstance(value, bool):
    return ("bool",)
  if isinstance(value, int):
    if not -2**63 <= value < 2**63:
      raise ValueError(f"{where}: integer {str(value)[:30]}{'...' if len(str(value)) > 30 else ''}"
                       f" ({len(str(abs(value)))} digits) is outside int64 [-2**63, "
                       "2**63); store it as a string or a float.")
    return ("int",)
  if isinstance(value, float):
    if not math.isfinite(value):
      raise ValueError(f"{where}: {value} is not a finite number; use finite numbers "
                       "(NaN/Infinity are not JSON).")
    if abs(value) > _F32_MAX:
      raise ValueError(f"{where}: {value} overflows float32 (max {_F32_MAX:.3g}); store "
                       "it as a string or rescale it.")
    return ("float",)
  if isinstance(value, str):
    try:
      value.encode("utf-8")
    except UnicodeEncodeError as e:
      raise ValueError(f"{where}: string {value[:40]!r} holds a lone surrogate "
                       f"({e.reason} at {e.start}); strings must be valid Unicode (escape "
                       "pairs like \\ud83d\\ude00 must come in pairs).") from None
    return ("str",)
  if isinstance(value, dict):
    return ("dict", tuple((k, _kind(v, f"{where}/{k}")) for k, v in sorted(value.items())))
  if isinstance(value, list):
    if not value:
      return ("list", None)
    inner = _merge([_kind(v, f"{where}[{i}]") for i, v in enumerate(value)], where)
    if inner[0] in ("bool", "int", "float", "str"):
      return ("list", inner[0], ())
    if inner[0] == "list" and inner[1] in _NUMBER_KINDS and inner[2] == ():
      lengths = {len(v) for v in value}
      if len(lengths) == 1:
        return ("list", inner[1], (lengths.pop(),))
    raise TypeError(f"{where}: valid lists hold strings, numbers, booleans or equal-length "
                    f"lists of numbers, got {json.dumps(value)[:200]}.")
  raise TypeError(f"{where}: unsupported value {value!r} ({type(value).__name__}); use "
                  "strings, numbers, booleans, lists or objects (no null).")


def _merge(kinds, where):
  """Merges the kinds of one key over rows (int+float -> float, empty list -> any)."""
  out = kinds[0]
  for k in kinds[1:]:
    out = _merge2(out, k, where)
  return out


def _merge2(a, b, where):
  if a == b:
    return a
  if {a[0], b[0]} == {"int", "float"}:
    return ("float",)
  if a[0] == b[0] == "list":
    if a[1] is None or b[1] is None:
      return b if a[1] is None else a
    if a[2] == b[2] and {a[1], b[1]} == {"int", "float"}:
      return ("list", "float", a[2])
  if a[0] == b[0] == "dict" and [k for k, _ in a[1]] == [k for k, _ in b[1]]:
    return ("dict", tuple((k, _merge2(ka, kb, f"{where}/{k}"))
                          for (k, ka), (_, kb) in zip(a[1], b[1])))
  raise TypeError(f"{where}: expected {_describe(a)} (as in the first row), got "
                  f"{_describe(b)}. Give the key one type in every row.")


def _describe(kind):
  if kind[0] == "dict":
    return "object with keys " + str([k for k, _ in kind[1]])
  if kind[0] == "list":
    return "list" if kind[1] is None else f"list of {kind[1]}" + (
        f" lists of length {kind[2][0]}" if kind[2] else "")
  return kind[0]


_DTYPES = {"bool": tf.bool, "int": tf.int64, "float": tf.float32, "str": tf.string}
_NP_DTYPES = {"bool": np.bool_, "int": np.int64, "float": np.float32, "str": object}


def _leaves(kind, value, prefix=()):
  """Yields (path, kind, value) for the leaves of a nested row value."""
  if kind[0] == "dict":
    for k, sub in kind[1]:
      yield from _leaves(sub, value[k], prefix + (k,))
  else:
    yield prefix, kind, value


def _check_keys(row, ref, where):
  """Raises naming the missing or extra keys of `row` versus the first row `ref`."""
  if row.keys() != ref.keys():
    missing = sorted(set(ref) - set(row))
    extra = sorted(set(row) - set(ref))
    raise KeyError(f"{where}: keys differ from the first row's {sorted(ref)}: "
                   f"missing {missing}, unexpected {extra}. Every row needs the same keys.")
  for k, v in row.items():
    if isinstance(v, dict) and isinstance(ref[k], dict):
      _check_keys(v, ref[k], f"{where} key '{k}'")


def _reject_constant(name):
  raise ValueError(f"{name} is not a finite number")


def _parse_line(line, where):
  """One JSON object, checked for depth and key clashes; raises naming `where`."""
  try:
    row = json.loads(line, parse_constant=_reject_constant)
  except json.JSONDecodeError as e:
    raise ValueError(f"{where}: invalid JSON ({e.msg} at column {e.colno}): "
                     f"{line.strip()[:200]!r}; valid: one JSON object per line.") from None
  except RecursionError:
    raise ValueError(f"{where}: JSON nested too deeply (valid: at most {MAX_DEPTH} levels "
                     "of objects and lists).") from None
  except ValueError as e:  # NaN/Infinity constants, int strings beyond Python's limit.
    raise ValueError(f"{where}: {' '.join(str(e).split())[:200]}; use finite numbers "
                     "within int64/float32 (or strings).") from None
  if not isinstance(row, dict):
    raise ValueError(f"{where}: expected a JSON object per line, got "
                     f"{type(row).__name__}.")
  if _depth(row, MAX_DEPTH) > MAX_DEPTH:
    raise ValueError(f"{where}: JSON nested more than {MAX_DEPTH} levels; flatten the row "
                     f"(valid: at most {MAX_DEPTH} levels of objects and lists).")
  _check_flat_names(row, where)
  return row


def _check_flat_names(row, where):
  """Keys flatten to "outer/inner": a literal "m/x" key must not clash with {"m": {"x"}}."""
  leaves = {}  # flattened name -> key path
  stack = [(row, ())]
  while stack:
    node, path = stack.pop()
    for k, v in node.items():
      if isinstance(v, dict) and v:
        stack.append((v, path + (k,)))
        continue
      name = "/".join(path + (k,))
      if name in leaves:
        raise ValueError(f"{where}: keys {list(leaves[name])} and {list(path + (k,))} both "
                         f"flatten to {name!r} (nested keys are joined with '/'); rename "
                         "one (valid: names unique after flattening).")
      leaves[name] = path + (k,)


class DataSource:
  """Examples from a JSONL file.

  Args:
    fname: path of the .jsonl file.
    fopen_keys: keys whose values are file paths to read: a list of keys (relative to
      `base_dir`) or a dict {key: base dir for that key}.
    base_dir: base dir of relative paths; default: the folder of `fname`.
    start, stop: keep rows [start, stop) (Python slice semantics, before sharding).
  """

  def __init__(self, fname, fopen_keys=(), base_dir=None, start=0, stop=None):
    self.fname = fname
    if isinstance(fopen_keys, str):
      fopen_keys = (fopen_keys,)
    base = os.path.dirname(os.path.abspath(fname)) if base_dir is None else base_dir
    if isinstance(fopen_keys, dict):
      self.fopen_dirs = {k: os.path.abspath(v) for k, v in fopen_keys.items()}
    else:
      self.fopen_dirs = {k: os.path.abspath(base) for k in fopen_keys}
    rows, self._lines = self._read(fname)
    self._kind = self._infer(rows)  # The whole file: types do not depend on start/stop.
    self._row_ids = list(range(len(rows)))[start:stop]
    if not self._row_ids:
      raise ValueError(f"JSONL source {fname}: no rows in [start={start}, stop={stop}) "
                       f"of a file with {len(rows)} rows; fix start/stop.")
    rows, self._lines = rows[start:stop], self._lines[start:stop]
    self._columns = self._to_columns(rows)
    self.total_examples = len(rows)

  def _where(self, i):
    return f"{self.fname} line {self._lines[i]}"

  def _read(self, fname):
    if not os.path.exists(fname):
      raise FileNotFoundError(f"JSONL file {fname!r} does not exist.")
    rows, lines = [], []
    with open(fname, "rb") as f:
      for lineno, raw in enumerate(f, 1):
        try:
          line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
          raise ValueError(f"{fname} line {lineno}: not UTF-8 (byte {raw[e.start:e.start + 1]!r}"
                           f" at column {e.start + 1}); JSONL files must be UTF-8 "
                           "encoded.") from None
        if not line.strip():
          continue
        row = _parse_line(line, f"{fname} line {lineno}")
        rows.append(row)
        lines.append(lineno)
    if not rows:
      raise ValueError(f"JSONL file {fname!r} has no rows (it is empty or blank); it needs "
                       "one JSON object per line.")
    return rows, lines

  def _infer(self, rows):
    ref = rows[0]
    for k in self.fopen_dirs:
      if k not in ref:
        raise KeyError(f"{self._where(0)}: fopen key '{k}' not in the row's keys "
                       f"{sorted(ref)}.")
    kinds, files = {}, []
    for i, row in enumerate(rows):
      _check_keys(row, ref, self._where(i))
      for k, v in row.items():
        where = f"{self._where(i)} key '{k}'"
        kind = _kind(v, where)
        kinds[k] = kind if k not in kinds else _merge2(kinds[k], kind, where)
        if k in self.fopen_dirs:
          files.append((where, v, self._check_path(v, k, where)))
    for where, value, full in files:  # After the path checks of the whole file.
      if not os.path.isfile(full):
        raise FileNotFoundError(f"{where}: file {value!r} ({full}) does not exist or is "
                                "not a file. Fix the path or drop the row.")
    for k, kind in kinds.items():
      for path, leaf, _ in _leaves(kind, rows[0][k], (k,)):
        if leaf[0] == "list" and leaf[1] is None:
          raise TypeError(f"{self.fname}: key '{'/'.join(path)}' is an empty list in "
                          "every row, so its type is unknown. Drop the key or fill it.")
    return ("dict", tuple(sorted(kinds.items())))

  def _check_path(self, value, key, where):
    if not isinstance(value, str):
      raise TypeError(f"{where}: fopen key values must be file paths (strings), got "
                      f"{value!r}.")
    base = os.path.realpath(self.fopen_dirs[key])
    full = os.path.realpath(os.path.join(base, value))  # Symlinks resolved, then checked.
    if os.path.commonpath([full, base]) != base:
      raise ValueError(f"{where}: path {value!r} resolves to {full}, outside the base dir "
                       f"{base}. Paths must stay inside it (no '..' or absolute paths "
                       "elsewhere); move the file or set base_dir/fopen_keys={key: dir}.")
    return full

  def _to_columns(self, rows):
    """Returns {path tuple: tf tensors} holding every leaf of every row."""
    cols = {}
    leaves_per_row = [list(_leaves(self._kind, r)) for r in rows]
    for j, (path, kind, _) in enumerate(leaves_per_row[0]):
      values = [lr[j][2] for lr in leaves_per_row]
      if path[0] in self.fopen_dirs and len(path) == 1:
        base = self.fopen_dirs[path[0]]
        values = [os.path.abspath(os.path.join(base, v)) for v in values]
      if kind[0] != "list":
        cols[path] = (tf.constant(np.asarray(values, _NP_DTYPES[kind[0]]), _DTYPES[
            kind[0]]),)
        continue
      lengths = np.asarray([len(v) for v in values], np.int64)
      flat = [x for v in values for x in v]
      flat = np.asarray(flat, _NP_DTYPES[kind[1]]).reshape((-1,) + kind[2])
      splits = np.concatenate([[0], np.cumsum(lengths)])
      cols[path] = (tf.constant(flat, _DTYPES[kind[1]]), tf.constant(splits))
    return cols

  def _example(self, i):
    """Returns the flat example dict of row index `i` (an int64 scalar tensor)."""
    out = {}
    for path, col in self._columns.items():
      if len(col) == 1:
        value = tf.gather(col[0], i)
      else:
        value = col[0][col[1][i]:col[1][i + 1]]
      if len(path) == 1 and path[0] in self.fopen_dirs:
        value = tf.io.read_file(value)
      out["/".join(path)] = value
    return out

  def shard_range(self, process_index=0, process_count=1):
    """Returns the rows [begin, end) that process `process_index` reads (even split)."""
    n = self.total_examples
    return process_index * n // process_count, (process_index + 1) * n // process_count

  def shard_size(self, process_index=0, process_count=1):
    """Returns the number of rows process `process_index` reads."""
    begin, end = self.shard_range(process_index, process_count)
    return end - begin

  def describe_row(self, index, process_index=0, process_count=1):
    """Names the `index`-th example of a process's ordered stream (for error messages)."""
    begin, _ = self.shard_range(process_index, process_count)
    return f"row {self._row_ids[begin + index]} ({self._where(begin + index)})"

  def get_tfdata(self, ordered=False, process_index=0, process_count=1, seed=None):
    """Returns the finite tf.data.Dataset of this process's rows, in file order.

    `ordered` and `seed` are accepted for a uniform source API; rows are always read in
    order here (shuffling happens in `get_training_tfdata`).
    """
    del ordered, seed
    begin, end = self.shard_range(process_index, process_count)
    return tf.data.Dataset.range(begin, end).map(self._example)

  def get_training_tfdata(self, seed, shuffle_buffer_size, process_index=0,
                          process_count=1):
    """Returns an infinite stream: each epoch a new seeded permutation of the rows."""
    del shuffle_buffer_size  # The index permutation is an exact full shuffle.
    begin, end = self.shard_range(process_index, process_count)
    if end == begin:
      raise ValueError(f"JSONL source {self.fname}: process {process_index} of "
                       f"{process_count} gets no rows of {self.total_examples}; use more "
                       "rows than processes.")
    ds = tf.data.Dataset.range(begin, end)
    ds = ds.shuffle(end - begin, seed=seed, reshuffle_each_iteration=True).repeat()
    return ds.map(self._example, num_parallel_calls=tf.data.AUTOTUNE)
