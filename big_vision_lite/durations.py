"""Run lengths and periods from a config, in big_vision's names.

`total_steps|total_epochs|total_examples` (exactly one) sets the run's length; a period
`name` (`log_training`, `ckpt`, `keep_ckpt`) is set by at most one of
`{name}_steps|_epochs|_examples|_percent`.
"""
UNITS = ("steps", "epochs", "examples", "percent")


def duration(config, name, *, total_steps, batch_size, n_train, default=None):
  """Steps for duration `name` from `{name}_{steps|epochs|examples|percent}`."""
  set_ = [u for u in UNITS if config.get(f"{name}_{u}") is not None]
  if len(set_) > 1:
    raise ValueError(f"Config sets {[f'{name}_{u}' for u in set_]}; set exactly one "
                     f"of {[f'{name}_{u}' for u in UNITS]}.")
  if not set_:
    return default
  unit, v = set_[0], config.get(f"{name}_{set_[0]}")
  if unit == "steps":
    return int(v)
  if unit == "examples":
    return max(1, int(round(v / batch_size)))
  if unit == "percent":
    if total_steps is None:
      raise ValueError(f"{name}_percent needs total_steps.")
    return max(1, int(round(v * total_steps)))
  if not n_train:
    raise ValueError(f"{name}_epochs={v} needs the dataset size, which this input "
                     f"does not report; use {name}_steps or {name}_examples.")
  return max(1, int(round(v * n_train / batch_size)))


def total_steps(config, batch_size, n_train):
  """The run's length in steps (exactly one of total_steps|epochs|examples)."""
  set_ = [u for u in ("steps", "epochs", "examples")
          if config.get(f"total_{u}") is not None]
  if len(set_) != 1:
    raise ValueError(f"Config sets {[f'total_{u}' for u in set_] or 'none'} of "
                     "total_steps|total_epochs|total_examples; set exactly one.")
  return duration(config, "total", total_steps=None, batch_size=batch_size,
                  n_train=n_train)
