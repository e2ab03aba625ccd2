"""The one command-line convention of every tool: argparse, examples in --help, one-line errors.

Every entry point (`python -m big_vision_lite.train`, `tools/*.py`,
`python -m big_vision_lite.datasets.shapes`) builds its flags with `cli.parser(__doc__,
examples)`, an `argparse.ArgumentParser` whose `--help` ends with an "Examples:" block of
real command lines, and ends with `cli.run(main)`:

- A failure prints `error: <message>` as one line on stderr and exits with status 1;
  argparse usage errors keep argparse's own exit status 2. `--traceback` anywhere on the
  command line (removed before the tool parses its arguments) re-raises instead, for bug
  reports.
- Tools that read a training config add `cli.add_config_flag(parser)` and parse with
  `cli.parse(parser, argv)`: `--config path.py[:arg]` is loaded the way big_vision's
  (ml_collections) config flag loads it, and `--config.key.sub=value` overrides a field
  (typed by the field's current value; an unknown key names the closest valid one).
- Booleans are `--flag` / `--no-flag` (`argparse.BooleanOptionalAction`).

Why argparse and not absl flags (which big_vision's trainer uses): most tools need
positional arguments or sub-commands (`make_tokenizer train|extend`, `benchmark
train|decode|...`) that absl does not have, absl's global FLAGS make two tools' flags
collide when tests call their `main`s in one process, and the one absl feature the
trainer relies on, ml_collections' `--config` with `--config.key=value` overrides, is kept
here on top of argparse.
"""
import argparse
import importlib.machinery
import importlib.util
import os
import sys

from big_vision_lite import config_args
from big_vision_lite import registry

TRACEBACK_FLAG = "--traceback"
EXIT_ERROR = 1
CONFIG_FLAG = "--config"


def parser(doc, examples, **kwargs):
  """An ArgumentParser: the first paragraph of `doc` on top, "Examples:" at the bottom.

  Args:
    doc: the tool's module docstring (its first paragraph is the description).
    examples: the example command lines (strings; long ones may hold "\\\n" breaks).
    **kwargs: passed to `argparse.ArgumentParser` (e.g. `prog`).
  """
  description = (doc or "").strip().split("\n\n", maxsplit=1)[0]
  epilog = "Examples:\n" + "\n".join(f"  {line}" for line in examples)
  return argparse.ArgumentParser(description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 **kwargs)


def add_config_flag(p, required=True, help_text="Config file (path.py[:arg])."):
  """Adds `--config path.py[:arg]` (parse with `cli.parse`, which loads it)."""
  p.add_argument(CONFIG_FLAG, required=required, metavar="PATH.py[:ARG]",
                 help=f"{help_text} Fields are overridden with --config.KEY=VALUE.")


def _split_overrides(argv):
  """argv -> (["--config.a.b=v", ...], the other arguments)."""
  overrides, rest, i = [], [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith(CONFIG_FLAG + "."):
      if "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
        arg, i = f"{arg}={argv[i + 1]}", i + 1
      overrides.append(arg)
    else:
      rest.append(arg)
    i += 1
  return overrides, rest


def parse(p, argv):
  """`p.parse_args(argv)`, then `--config` (if `p` has it) loaded with its overrides."""
  overrides, rest = _split_overrides(list(argv))
  args = p.parse_args(rest)
  spec = getattr(args, "config", None)
  if spec is not None:
    args.config = load_config(spec, overrides)
  elif overrides:
    p.error(f"{overrides[0]} overrides a config field; it needs --config")
  return args


def _load_module(path):
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Config file {path!r} not found; --config takes a path.py "
                            "(optionally path.py:arg) relative to the working directory "
                            f"{os.getcwd()!r} or absolute.")
  name = "config_" + os.path.splitext(os.path.basename(path))[0]
  loader = importlib.machinery.SourceFileLoader(name, path)
  module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
  loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"Config file {path!r} defines no get_config(); a config file must "
                     "define get_config(arg=None) returning a ConfigDict.")
  return module


def _check_override(config, override):
  """Raises `registry.UnknownNameError` unless the dotted key of `override` exists."""
  key = override[len(CONFIG_FLAG) + 1:].split("=", 1)[0]
  node = config
  for part in key.split("."):
    fields = node.keys() if hasattr(node, "keys") else ()
    if part not in fields:
      raise registry.unknown_name("config key", part, fields, context=f"(in {override})")
    node = node[part]


def load_config(spec, overrides=()):
  """Loads `path.py[:arg]` (get_config(arg)), applies `--config.key=value` overrides, locks.

  Args:
    spec: "path.py" or "path.py:arg".
    overrides: strings "--config.key.sub=value"; values are parsed by ml_collections'
      config flag, typed by the field's current value.

  Returns:
    the locked ConfigDict.
  """
  from absl import flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  path, _, arg = spec.partition(":")
  config_args.configs_importable()  # Config files import transfers.common etc.
  module = _load_module(path)
  config = module.get_config(arg) if arg else module.get_config()
  for override in overrides:
    _check_override(config, override)
  argv = ["config", *overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_dict("config", config, flag_values=values, sys_argv=argv,
                                  lock_config=True)
  try:
    values(argv)
  except flags.Error as e:
    raise ValueError(f"{e}; the value must parse as the field's type.") from None
  return values.config


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
