"""The pp op registry and the builder that turns a pp string into a function.

A pp string is a `|`-separated list of named calls with literal arguments:
`"decode|resize(224)|value_range(-1, 1)|strfmt('caption en', outkey='prefix')"`.
Every op is a factory registered with `@PP_OPS.register("name")`; the factory checks its
arguments and returns a function `dict[str, tf.Tensor] -> dict[str, tf.Tensor]` that runs
inside `tf.data.Dataset.map`. All ops are built (and their arguments checked) when
`get_preprocess_fn` is called, i.e. when the config is loaded.

Random ops draw from a stateless seed: the example's `_seed` key (int32/int64[2], added by
the input pipeline) folded with a per-op salt; without `_seed` they use the op's `seed`
argument with TF's stateful random ops.
"""
import zlib

import tensorflow as tf

from big_vision_lite import registry
from big_vision_lite.registry import Registry

PP_OPS = Registry("pp op")
SEED_KEY = "_seed"


def split_pp(pp_str):
  """Splits "a|b('x|y')|c" on top-level `|` (not inside quotes or brackets) -> list[str]."""
  parts, depth, quote, cur = [], 0, None, []
  for ch in pp_str:
    if quote:
      quote = None if ch == quote else quote
    elif ch in "'\"":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    elif ch == "|" and depth == 0:
      parts.append("".join(cur))
      cur = []
      continue
    cur.append(ch)
  parts.append("".join(cur))
  return [p.strip() for p in parts if p.strip()]


def get_preprocess_fn(pp_str, log_steps=False):
  """Builds the preprocessing function described by `pp_str`.

  Args:
    pp_str: e.g. "decode|resize(224)|value_range(-1, 1)"; "" gives the identity.
    log_steps: print each op as it is built.

  Returns:
    fn(dict[str, tf.Tensor]) -> dict[str, tf.Tensor], for `tf.data.Dataset.map`.

  Raises:
    KeyError: unknown op (with a close match and the known ops).
    TypeError/ValueError: bad arguments, naming the op and the pp string.
  """
  if not isinstance(pp_str, str):
    raise TypeError(f"pp string must be a str, got {type(pp_str).__name__}: {pp_str!r}.")
  ops = []
  for i, spec in enumerate(split_pp(pp_str)):
    try:
      ops.append(PP_OPS.call(spec))
    except (KeyError, TypeError, ValueError) as e:
      msg = e.args[0] if e.args else str(e)
      located = type(e)(f"{msg} [pp op #{i} {spec!r} in {pp_str!r}]")
      located.__dict__.update(e.__dict__)  # UnknownNameError's name, known, suggestion.
      raise located from e
    if log_steps:
      print(f"pp op #{i}: {spec}")

  def preprocess(data):
    data = dict(data)
    for op in ops:
      data = op(data)
    return data

  return preprocess


def op_salt(name):
  """A stable int32 salt for an op name (so ops draw independent random numbers)."""
  return zlib.crc32(name.encode()) & 0x7FFFFFFF


def stateless_seed(data, name):
  """Returns int32[2] seed from the example's `_seed` folded with `name`, or None."""
  if SEED_KEY not in data:
    return None
  seed = tf.cast(tf.reshape(data[SEED_KEY], [2]), tf.int64)
  return tf.random.experimental.stateless_fold_in(seed, op_salt(name))


def uniform(data, name, shape=(), minval=0.0, maxval=1.0, dtype=tf.float32, seed=None):
  """Random uniform numbers for op `name`: stateless from `_seed` if present.

  Integer dtypes draw from [minval, maxval).
  """
  s = stateless_seed(data, name)
  if s is not None:
    return tf.random.stateless_uniform(shape, s, minval=minval, maxval=maxval, dtype=dtype)
  return tf.random.uniform(shape, minval=minval, maxval=maxval, dtype=dtype, seed=seed)


def check_choice(op, name, value, valid):
  """Raises `registry.UnknownNameError` (a ValueError) unless `value` is one of `valid`."""
  if value not in valid:
    raise registry.unknown_name(f"pp op '{op}' {name}", value, valid)
