"""Shared checks of the bad-input fuzz suite (tests/reliability/test_fuzz_*.py).

Each bad input must give either a one-line error that names where (file/row/key), the
bad value and what is valid, or a counted skip. `COUNTS` tallies the inputs tried per
family; each test file ends with a test asserting its families' totals.
"""
import collections
import re

import hypothesis

COUNTS = collections.Counter()
# Deterministic, quick: hypothesis draws the same inputs on every run.
FUZZ = dict(deadline=None, derandomize=True, database=None,
            suppress_health_check=list(hypothesis.HealthCheck))
VALID_WORDS = re.compile(r"\b(valid|must|expected|need|needs|use|set|only|supported|"
                         r"known|fix|pass|give|outside|exceeds|not a|is not)\b", re.I)


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


def check_skip(family, skipped, expected):
  """A counted skip: the count the code reports equals the bad rows given."""
  COUNTS[family] += 1
  assert skipped == expected, f"[{family}] skipped {skipped}, expected {expected}"
