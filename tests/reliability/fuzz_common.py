"""Shared checks of the bad-input fuzz suite (tests/reliability/test_fuzz_*.py).

Each bad input must give either a one-line error that names where (file/row/key), the
bad value and what is valid, or a counted skip. `COUNTS` tallies the inputs tried per
family; each test file ends with a test asserting its families' totals.
"""
import collections
import contextlib
import re
import signal

import hypothesis

COUNTS = collections.Counter()
# Deterministic, quick: hypothesis draws the same inputs on every run.
FUZZ = dict(deadline=None, derandomize=True, database=None,
            suppress_health_check=list(hypothesis.HealthCheck))
BOUND_S = 60  # No single bad input may take longer than this (in-process).
# What is valid, or the fix (STYLE: "what is valid, and the fix").
VALID_WORDS = re.compile(r"\b(valid|must|expected|need|needs|use|set|only|supported|"
                         r"known|fix|pass|give|outside|exceeds|not a|is not|re-download|"
                         r"re-convert|rename|resize|store|drop)\b", re.I)


def message(error):
  """The user-facing text of an exception (KeyError without its repr quotes)."""
  if isinstance(error, KeyError) and len(error.args) == 1:
    return str(error.args[0])
  return str(error)


def check_error(family, fn, *needles, errors=(ValueError, KeyError, TypeError, OSError)):
  """Runs `fn()`, which must raise one of `errors` with a one-line message.

  The message must contain every needle (the file/row/key and the bad value, as the
  caller knows them) and say what is valid. Returns the message.
  """
  COUNTS[family] += 1
  try:
    with bounded(BOUND_S):
      fn()
  except errors as e:  # pylint: disable=broad-except
    text = message(e)
  else:
    raise AssertionError(f"[{family}] no error for needles {needles}")
  assert "\n" not in text.strip(), f"[{family}] multi-line error: {text!r}"
  assert "Traceback" not in text, text
  for needle in needles:
    assert str(needle) in text, f"[{family}] {needle!r} not in {text!r}"
  assert VALID_WORDS.search(text), f"[{family}] does not say what is valid: {text!r}"
  return text


@contextlib.contextmanager
def bounded(seconds):
  """Raises AssertionError (not an expected error type) if the body runs too long."""
  def alarm(*unused):
    raise AssertionError(f"a bad input ran longer than the {seconds} s bound")
  old = signal.signal(signal.SIGALRM, alarm)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def check_skip(family, skipped, lo, hi, n_inputs=1):
  """A counted skip of `n_inputs` bad inputs: the reported count is within [lo, hi]
  (tf.data reports rows dropped up to the last returned example, so a shuffled stream
  gives a count within one epoch's bad rows of the exact number)."""
  COUNTS[family] += n_inputs
  assert lo <= skipped <= hi, f"[{family}] skipped {skipped}, expected [{lo}, {hi}]"


def tiny_config(**overrides):
  """The tiny config (no I/O) with `a__b=value` overrides of `c.a.b`, types unchecked."""
  from configs import tiny  # pylint: disable=import-outside-toplevel
  c = tiny.get_config("data_dir=/nonexistent/never_read")
  for key, value in overrides.items():
    node = c
    *parents, last = key.split("__")
    for p in parents:
      node = node[p]
    with node.ignore_type():
      node[last] = value
  return c
