"""The package layout stays what README.md says it is.

* Every module of `big_vision_lite` imports in any order, in a fresh interpreter (sorted,
  reversed and shuffled with fixed seeds), and no import statement anywhere in the
  package (top level or inside a function) closes a cycle between its modules.
* No module of the package or of `tools/` uses a private name (`_x`) of another module.
* Every module has a docstring; the README's layout table names every module file of the
  package and of `tools/`, and names no file that does not exist.
"""
import ast
import os
import random
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "big_vision_lite"


def _py_files(top):
  """Paths (relative to the repo) of the .py files under `top`."""
  out = []
  for root, dirs, files in os.walk(os.path.join(REPO, top)):
    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
    out += [os.path.relpath(os.path.join(root, f), REPO) for f in sorted(files)
            if f.endswith(".py")]
  return out


def _module_name(path):
  parts = path[:-len(".py")].split(os.sep)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in _py_files(PACKAGE)}


def _parse(path):
  with open(os.path.join(REPO, path), encoding="utf-8") as f:
    return ast.parse(f.read(), path)


def _imports(path):
  """(node, imported module or None, names) of each package import in a file.

  `from a.b import c` yields module "a.b.c" when that is a module of the package (then
  `c` is bound to it), else module "a.b" with the imported names.
  """
  for node in ast.walk(_parse(path)):
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name.split(".")[0] == PACKAGE:
          yield node, a.name, a.asname or a.name, ()
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
        node.module.split(".")[0] == PACKAGE):
      for a in node.names:
        sub = f"{node.module}.{a.name}"
        if sub in MODULES:
          yield node, sub, a.asname or a.name, ()
        else:
          yield node, node.module, None, (a.name,)


@pytest.mark.slow  # Each order starts a fresh interpreter that imports TF, JAX and transformers.
@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffle0", "shuffle1"])
def test_every_module_imports_in_any_order(order):
  names = sorted(MODULES)
  if order == "reversed":
    names.reverse()
  elif order.startswith("shuffle"):
    random.Random(int(order[len("shuffle"):])).shuffle(names)
  code = "import importlib\nfor m in %r:\n  importlib.import_module(m)\n" % (names,)
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                     text=True, timeout=300, check=False)
  assert r.returncode == 0, f"importing in {order} order {names[:3]}...: {r.stderr[-3000:]}"


def test_no_import_cycle_between_package_modules():
  graph = {m: set() for m in MODULES}
  for m, path in MODULES.items():
    for _, target, _, _ in _imports(path):
      while target not in MODULES:  # `from pkg.mod import name` -> pkg.mod.
        target = target.rpartition(".")[0]
      if target != m:
        graph[m].add(target)
  state, stack = {}, []

  def visit(m):
    state[m] = "open"
    stack.append(m)
    for t in sorted(graph[m]):
      if state.get(t) == "open":
        cycle = stack[stack.index(t):] + [t]
        # A package's __init__ importing its own submodules is how packages work;
        # the reverse edge (submodule -> its package) would be a cycle.
        raise AssertionError("import cycle: " + " -> ".join(cycle))
      if t not in state:
        visit(t)
    stack.pop()
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m)


def test_no_module_uses_a_private_name_of_another():
  bad = []
  for path in _py_files(PACKAGE) + _py_files("tools"):
    aliases = set()
    for node, target, alias, names in _imports(path):
      bad += [f"{path}:{node.lineno}: imports {target}.{n}" for n in names
              if n.startswith("_") and not n.startswith("__")]
      if alias and "." not in alias:
        aliases.add(alias)
    for node in ast.walk(_parse(path)):
      if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
          and node.value.id in aliases and node.attr.startswith("_")
          and not node.attr.startswith("__")):
        bad.append(f"{path}:{node.lineno}: uses {node.value.id}.{node.attr}")
  assert not bad, "\n".join(bad)


@pytest.mark.parametrize("top", [PACKAGE, "tools"])
def test_every_module_has_a_docstring(top):
  missing = [p for p in _py_files(top)
             if not (ast.get_docstring(_parse(p)) or "").split("\n")[0].strip()]
  assert not missing, f"modules without a docstring saying what they own: {missing}"


def _layout_table():
  """{folder: set of backquoted names in its rows} of README's "What is here" table."""
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    text = f.read()
  section = text.split("## What is here\n", 1)[1].split("\n## ", 1)[0]
  table = {}
  for line in section.splitlines():
    cells = line.split("|")
    if len(cells) < 4 or set(cells[1].strip()) <= set("-"):
      continue
    folder = re.findall(r"`([^`]+)`", cells[1])
    if folder:
      table.setdefault(folder[0], set()).update(re.findall(r"`([^`]+)`", cells[2]))
  return table


def _needs_listing(path):
  """Every module except an `__init__.py` that is only a docstring."""
  body = _parse(path).body
  return os.path.basename(path) != "__init__.py" or len(body) > 1 or not (
      body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant))


def test_readme_layout_table_names_every_module():
  table = _layout_table()
  folders = sorted({os.path.dirname(p) for p in _py_files(PACKAGE) + _py_files("tools")})
  problems = []
  for folder in folders:
    listed = {n for n in table.get(folder + "/", set()) if n.endswith(".py")}
    files = {os.path.basename(p) for p in _py_files(PACKAGE) + _py_files("tools")
             if os.path.dirname(p) == folder}
    needed = {os.path.basename(p) for p in _py_files(folder)
              if os.path.dirname(p) == folder and _needs_listing(p)}
    if needed - listed:
      problems.append(f"{folder}/: not in README's layout table: {sorted(needed - listed)}")
    if listed - files:
      problems.append(f"{folder}/: README names missing files {sorted(listed - files)}")
  for folder in table:
    if not os.path.exists(os.path.join(REPO, folder)):
      problems.append(f"README's layout table names {folder!r}, which does not exist")
  assert not problems, "\n".join(problems)
