"""General pp ops: copy, keep, drop, concat, strfmt, choice, const.

Each op is a factory (called when the pp string is built) returning
`fn(data: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]`.
"""
import string

import tensorflow as tf

from big_vision_lite.pp import builder
from big_vision_lite.pp.builder import PP_OPS


def _as_keys(op, name, keys):
  """Returns a tuple of str keys from a str or a list/tuple of str."""
  if isinstance(keys, str):
    return (keys,)
  if isinstance(keys, (list, tuple)) and keys and all(isinstance(k, str) for k in keys):
    return tuple(keys)
  raise ValueError(f"pp op '{op}': {name}={keys!r} must be a key (str) or a non-empty "
                   "list of keys.")


def _check_key_args(op, keys):
  """Each of an op's `*keys` arguments must be one str key."""
  for k in keys:
    _as_keys(op, "key", k)


def _need(data, op, key):
  if key not in data:
    raise KeyError(f"pp op '{op}' needs key {key!r}, the example has {sorted(data)}. Add an "
                   "op that creates it earlier in the pp string, or fix the key name.")
  return data[key]


@PP_OPS.register("copy")
def get_copy(inkey, outkey):
  """Copies `data[inkey]` to `data[outkey]`."""
  _as_keys("copy", "inkey", inkey)
  _as_keys("copy", "outkey", outkey)

  def _copy(data):
    data = dict(data)
    data[outkey] = _need(data, "copy", inkey)
    return data
  return _copy


@PP_OPS.register("keep")
def get_keep(*keys):
  """Keeps only `keys` (missing keys are an error)."""
  _check_key_args("keep", keys)
  return lambda data: {k: _need(data, "keep", k) for k in keys}


@PP_OPS.register("drop")
def get_drop(*keys):
  """Removes `keys` (keys that are absent are ignored)."""
  _check_key_args("drop", keys)

  def _drop(data):
    return {k: v for k, v in data.items() if k not in keys}
  return _drop


@PP_OPS.register("concat")
def get_concat(inkeys, outkey, axis=-1):
  """`data[outkey]` = the tensors `data[inkeys]` concatenated along `axis` (same dtype)."""
  inkeys = _as_keys("concat", "inkeys", inkeys)
  _as_keys("concat", "outkey", outkey)

  def _concat(data):
    data = dict(data)
    values = [_need(data, "concat", k) for k in inkeys]
    dtypes = {k: v.dtype.name for k, v in zip(inkeys, values)}
    if len(set(dtypes.values())) > 1:
      raise TypeError(f"pp op 'concat': the inputs have different dtypes {dtypes}; cast "
                      "them to one dtype first.")
    data[outkey] = tf.concat(values, axis=axis)
    return data
  return _concat


@PP_OPS.register("const")
def get_const(value, key):
  """Sets `data[key]` to the constant `value` (str, number or list of them)."""
  _as_keys("const", "key", key)

  def _const(data):
    data = dict(data)
    data[key] = tf.constant(value)
    return data
  return _const


@PP_OPS.register("strfmt")
def get_strfmt(template, outkey="prompt"):
  """Fills `{key}` fields of `template` with the example's values -> tf.string scalar.

  Example: `strfmt("answer en {question}", outkey="prefix")`. Non-string values are
  formatted with `tf.strings.as_string`; `{{` and `}}` give literal braces.
  """
  if not isinstance(template, str):
    raise ValueError(f"pp op 'strfmt': template={template!r} must be a str.")
  _as_keys("strfmt", "outkey", outkey)
  try:
    parts = list(string.Formatter().parse(template))
  except ValueError as e:
    raise ValueError(f"pp op 'strfmt': cannot parse template {template!r}: {e}. Use "
                     "'{key}' fields and '{{'/'}}' for literal braces.") from e
  for _, field, spec, conv in parts:
    if field is not None and (not field or spec or conv):
      raise ValueError(f"pp op 'strfmt': field {{{field}}} in {template!r} must be a plain "
                       "key name, without format spec or conversion.")

  def _strfmt(data):
    data = dict(data)
    pieces = []
    for literal, field, _, _ in parts:
      if literal:
        pieces.append(tf.constant(literal))
      if field is not None:
        value = _need(data, "strfmt", field)
        if value.dtype != tf.string:
          value = tf.strings.as_string(value)
        pieces.append(value)
    data[outkey] = tf.strings.join(pieces) if pieces else tf.constant("")
    return data
  return _strfmt


@PP_OPS.register("choice")
def get_choice(inkey, outkey=None, seed=None):
  """Picks one element (along axis 0) of `data[inkey]` at random, e.g. one caption.

  `inkey` may be a list of keys: the same index is used for all of them (questions and
  answers). Random from the example's `_seed` (stateless) or else from `seed`.

  Args:
    inkey: key or list of keys, each a tensor [n, ...] with n >= 1.
    outkey: key or list of keys (same length as inkey); default: overwrite inkey.
    seed: int op seed, used only when the example has no `_seed`.
  """
  inkeys = _as_keys("choice", "inkey", inkey)
  outkeys = inkeys if outkey is None else _as_keys("choice", "outkey", outkey)
  if len(outkeys) != len(inkeys):
    raise ValueError(f"pp op 'choice': outkey={outkey!r} must have as many keys as "
                     f"inkey={inkey!r}.")
  if seed is not None and not isinstance(seed, int):
    raise ValueError(f"pp op 'choice': seed={seed!r} must be an int or None.")

  def _choice(data):
    data = dict(data)
    values = [_need(data, "choice", k) for k in inkeys]
    for k, v in zip(inkeys, values):
      if v.shape.rank == 0:
        raise ValueError(f"pp op 'choice': {k!r} is a scalar; it needs a list [n, ...] "
                         "to choose from.")
    n = tf.shape(values[0])[0]
    checks = [tf.debugging.assert_positive(
        n, message=f"pp op 'choice': {inkeys[0]!r} is empty, nothing to choose from.")]
    for k, v in zip(inkeys[1:], values[1:]):
      checks.append(tf.debugging.assert_equal(
          tf.shape(v)[0], n, message=f"pp op 'choice': {k!r} and {inkeys[0]!r} differ "
          "in length."))
    with tf.control_dependencies(checks):
      i = builder.uniform(data, "choice", (), 0, tf.maximum(n, 1), tf.int32, seed)
    for k, v in zip(outkeys, values):
      data[k] = tf.gather(v, i)
    return data
  return _choice
