"""Name lookups: `Registry`, the named-call parser and the one "unknown name" error.

One Registry instance exists per kind (pp ops, sharding tactics, samplers); it is filled
only by decorators at import time. Strings are parsed with `ast`, arguments with
`ast.literal_eval`, never `eval`.

Every lookup of a name in a fixed set (registries, model and evaluator modules, config
keys and values, tool flags) reports a miss with `unknown_name(kind, name, known)`:

  Unknown pp op 'resiz'. Did you mean 'resize'? Valid: ['central_crop', ...].

The `UnknownNameError` it returns is both a KeyError and a ValueError, so callers catch
whichever fits the lookup.
"""
import ast
import difflib
import inspect


def parse_call(spec):
  """Parses "name", "name(1, k='v')" or "name(...)" into (name, args, kwargs).

  Args:
    spec: the string; arguments must be Python literals.

  Raises:
    ValueError: when the string is not a single name or call with literal arguments.
  """
  try:
    node = ast.parse(spec.strip(), mode="eval").body
  except SyntaxError as e:
    raise ValueError(f"Cannot parse {spec!r}: {e.msg}. Expected 'name' or "
                     "'name(arg, key=value)' with literal arguments.") from e
  if isinstance(node, ast.Name):
    return node.id, (), {}
  if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
    raise ValueError(f"Cannot parse {spec!r}: expected 'name' or "
                     "'name(arg, key=value)' with literal arguments.")
  try:
    args = tuple(ast.literal_eval(a) for a in node.args)
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
  except ValueError as e:
    raise ValueError(f"Arguments of {spec!r} must be Python literals "
                     "(numbers, strings, tuples, lists, dicts, None, True/False).") from e
  return node.func.id, args, kwargs


class UnknownNameError(KeyError, ValueError):
  """A name that is not in its set; a KeyError and a ValueError. str() is one clean line.

  Attributes: kind, name, known (sorted valid names), suggestion (the closest valid name
  or None).
  """

  def __str__(self):
    return str(self.args[0]) if self.args else ""


def unknown_name(kind, name, known, *, context=""):
  """The error for `name` missing from `known`: kind, bad value, closest match, valid names.

  Args:
    kind: what was looked up, e.g. "pp op" or "config.model_name".
    name: the value given (any type; shown with repr).
    known: the valid names (any iterable; shown sorted).
    context: optional text appended after the list, e.g. where the name came from.

  Returns:
    an `UnknownNameError` to raise, with the message
    "Unknown {kind} {name!r}. Did you mean {closest!r}? Valid: [...]." (no "Did you
    mean" without a close match).
  """
  known = sorted(known, key=str)
  close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1)
  hint = f" Did you mean {close[0]!r}?" if close else ""
  tail = f" {context}" if context else ""
  error = UnknownNameError(f"Unknown {kind} {name!r}.{hint} Valid: {known}.{tail}")
  error.kind, error.name, error.known = kind, name, known
  error.suggestion = close[0] if close else None
  return error


class Registry:
  """A named collection of factories, filled by the `register` decorator."""

  def __init__(self, kind):
    self.kind = kind
    self._items = {}

  def register(self, name):
    def decorator(fn):
      if name in self._items:
        raise KeyError(f"{self.kind} '{name}' is registered twice "
                       f"({self._items[name].__module__} and {fn.__module__}).")
      self._items[name] = fn
      return fn
    return decorator

  def names(self):
    return sorted(self._items)

  def __contains__(self, name):
    return name in self._items

  def get(self, name):
    """Returns the factory called `name`; an unknown name raises `UnknownNameError`."""
    if name not in self._items:
      raise unknown_name(self.kind, name, self._items)
    return self._items[name]

  def call(self, spec):
    """Parses `spec` ("name(args)"), checks the arguments and returns factory(*a, **kw).

    The arguments are bound with `inspect.signature` first so that a bad argument fails
    here (when a config is loaded), naming the {kind} and its signature.
    """
    name, args, kwargs = parse_call(spec)
    factory = self.get(name)
    check_arguments(factory, args, kwargs, name=name, what=f"{self.kind} '{name}' in {spec!r}")
    return factory(*args, **kwargs)


def check_arguments(factory, args, kwargs, *, name, what):
  """Raises a TypeError naming `what` and `factory`'s signature unless the arguments bind.

  Checked with `inspect.signature(factory).bind` before the call, so that a bad argument
  fails when a config is read, not deep inside the factory.
  """
  sig = inspect.signature(factory)
  try:
    sig.bind(*args, **kwargs)
  except TypeError as e:
    raise TypeError(f"Bad arguments for {what}: {e}. Signature: {name}{sig}") from e
