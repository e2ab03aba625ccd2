"""Error reporting shared by the command-line tools: one line on stderr, no traceback.

Every tool ends with `cli.run(main)` (argparse tools) or `cli.run_absl(main)` (absl
tools). A failure prints `error: <message>` as one line on stderr and exits with status
1; argparse usage errors keep argparse's own exit status 2. `--traceback` anywhere on the
command line (removed before the tool parses its arguments) re-raises instead, for bug
reports.
"""
import sys

TRACEBACK_FLAG = "--traceback"
EXIT_ERROR = 1


def one_line(error):
  """The message of an exception as one line: `Type: message` for unexpected types.

  KeyError's message is used without the quotes that `str(KeyError)` adds; ValueError,
  KeyError, FileNotFoundError and friends carry messages written for users, so their
  type name is dropped.
  """
  if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
    text = error.args[0]
  else:
    text = str(error)
  text = " ".join(text.split())  # Newlines and runs of spaces -> single spaces.
  if isinstance(error, (MemoryError, RecursionError)) or not text:
    text = f"{type(error).__name__}: {text or 'no message'}"
  elif not isinstance(error, (ValueError, KeyError, TypeError, OSError)):
    text = f"{type(error).__name__}: {text}"
  return text


def _strip_traceback_flag(argv):
  keep = [a for a in argv if a != TRACEBACK_FLAG]
  return keep, len(keep) != len(argv)


def report(error, stream=None):
  """Prints `error: <one line>` to `stream` (default stderr)."""
  print(f"error: {one_line(error)}", file=stream or sys.stderr, flush=True)


def run(main, argv=None):
  """Calls `main(argv)` (argv defaults to sys.argv[1:]); exits 1 with one line on error."""
  argv, traceback = _strip_traceback_flag(sys.argv[1:] if argv is None else list(argv))
  try:
    return main(argv)
  except KeyboardInterrupt:
    print("error: interrupted", file=sys.stderr, flush=True)
    raise SystemExit(130) from None
  except Exception as e:  # pylint: disable=broad-except
    if traceback:
      raise
    report(e)
    raise SystemExit(EXIT_ERROR) from None


def run_absl(main):
  """`absl.app.run(main)` with the same one-line error reporting as `run`."""
  from absl import app  # pylint: disable=import-outside-toplevel
  argv, traceback = _strip_traceback_flag(sys.argv)

  def guarded(args):
    try:
      return main(args)
    except Exception as e:  # pylint: disable=broad-except
      if traceback:
        raise
      report(e)
      raise SystemExit(EXIT_ERROR) from None
  try:
    app.run(guarded, argv=argv)
  except Exception as e:  # pylint: disable=broad-except  (e.g. a config file's error)
    if traceback:
      raise
    report(e)
    raise SystemExit(EXIT_ERROR) from None
