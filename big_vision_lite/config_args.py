"""Parses the `arg` of `get_config(arg)`: "res=448,batch_size=8,freeze_vit".

Config files are run as `--config transfers/vqa.py:res=448,freeze_vit`. The part after
the colon reaches `get_config(arg)` as a string; `parse_arg(arg, **defaults)` turns it
into an `ml_collections.ConfigDict` whose value types follow the defaults:

  c = parse_arg(arg, res=224, variant="tiny", freeze_vit=False, lr=1e-5)

- `key=value` sets a key; the value is converted to the default's type (int, float,
  str, bool). Booleans are strict: `true/false/yes/no/1/0` (any case), or the bare
  flag `freeze_vit` meaning True.
- An unknown key raises, listing the valid keys (with a close match when there is one).
- A default of `None` accepts any string (or `None`/`none`).
- Empty values (`data_dir=`) and non-finite floats (`lr=nan`) raise: an empty string
  would silently put files at the filesystem root or the working directory.

Config files import their shared modules as packages (`from transfers import common`,
`from configs import common`); `configs_importable()`, called by `cli.load_config` for
every tool that takes `--config`, makes those packages importable from any working
directory.
"""
import math
import os
import sys

import ml_collections

from big_vision_lite import registry

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def _to_bool(key, value):
  v = value.strip().lower()
  if v in _TRUE:
    return True
  if v in _FALSE:
    return False
  raise ValueError(f"Config arg {key}={value!r} is not a boolean; "
                   f"use one of {_TRUE + _FALSE} or the bare flag '{key}'.")


def _convert(key, value, default):
  if isinstance(default, bool):
    return _to_bool(key, value)
  if default is None:
    return None if value.strip().lower() == "none" else value
  if not value.strip() and default != "":
    raise ValueError(f"Config arg {key}={value!r} is empty; give a "
                     f"{type(default).__name__} value (default {default!r}) or leave "
                     f"{key} out.")
  try:
    out = type(default)(value)
  except (ValueError, TypeError) as e:
    raise ValueError(f"Config arg {key}={value!r} is not a valid "
                     f"{type(default).__name__} (default {default!r}).") from e
  if isinstance(out, float) and not math.isfinite(out):
    raise ValueError(f"Config arg {key}={value!r} is not a finite float (default "
                     f"{default!r}).")
  return out


def parse_arg(arg, lazy=False, **defaults):
  """Returns a ConfigDict of `defaults` overridden by the `key=value,flag` string `arg`.

  Args:
    arg: None, "" or a string like "res=448,batch_size=8,freeze_vit".
    lazy: if True, unknown keys are kept as strings instead of raising.
    **defaults: the valid keys, with their default values (which fix their types).
  """
  out, seen = dict(defaults), set()
  for item in (arg or "").split(","):
    item = item.strip()
    if not item:
      continue
    key, eq, value = item.partition("=")
    key = key.strip()
    if key in seen:
      raise ValueError(f"Config arg '{key}' is given twice in {arg!r}; give each key once.")
    seen.add(key)
    if key not in defaults:
      if lazy:
        out[key] = value if eq else True
        continue
      raise registry.unknown_name("config arg", key, defaults, context=f"(in {arg!r})")
    if not eq:
      if not isinstance(defaults[key], bool):
        raise ValueError(f"Config arg '{key}' needs a value ({key}=...); only "
                         f"boolean args can be bare flags. Default: {defaults[key]!r}")
      out[key] = True
    else:
      out[key] = _convert(key, value, defaults[key])
  return ml_collections.ConfigDict(out, type_safe=False)


def configs_importable():
  """Puts the checkout holding `configs/` and `transfers/` (this package's parent) on
  `sys.path`, so that `--config /abs/path/transfers/x.py` loads from any working directory.

  Appended, not prepended: a module of the caller's own never gets shadowed. Returns the
  folder added (or already there), None when the package sits outside a checkout.
  """
  root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
  if not any(os.path.isdir(os.path.join(root, d)) for d in ("configs", "transfers")):
    return None
  if not any(os.path.realpath(p or os.curdir) == root for p in sys.path):
    sys.path.append(root)
  return root
