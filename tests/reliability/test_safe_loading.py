"""Loading is safe: no pickle, no eval/exec of strings from data or checkpoints.

Config files are Python by design (the only code we run); everything read from data,
checkpoints or the command line is parsed as data.
"""
import ast
import os

import numpy as np
import pytest

from big_vision_lite import checkpoint
from big_vision_lite.hf import io as hf_io
from big_vision_lite import registry

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCANNED = ("big_vision_lite", "tools", "configs", "transfers")
BANNED_CALLS = {"eval", "exec", "compile", "__import__", "execfile"}
BANNED_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
UNSAFE_ATTR_CALLS = {("yaml", "load"), ("yaml", "unsafe_load"), ("torch", "load")}
# The one module allowed to import code from outside the package: the side-by-side
# benchmark imports big_vision's PaliGemma (fixed module names) from the checkout the
# user passes as `--big_vision PATH`; nothing read from data or checkpoints decides it.
EXTERNAL_IMPORTS_OK = {os.path.join("big_vision_lite", "bench", "bv.py")}


def _sources():
  for top in SCANNED:
    for root, _, files in os.walk(os.path.join(REPO, top)):
      for f in files:
        if f.endswith(".py"):
          yield os.path.relpath(os.path.join(root, f), REPO)


def _problems(path):
  with open(os.path.join(REPO, path), encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    where = f"{path}:{getattr(node, 'lineno', '?')}"
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      names = [a.name for a in node.names] + ([node.module] if getattr(
          node, "module", None) else [])
      for n in names:
        if n.split(".")[0] in BANNED_MODULES:
          yield f"{where}: imports {n}"
    if isinstance(node, ast.Call):
      fn = node.func
      if isinstance(fn, ast.Name) and fn.id in BANNED_CALLS:
        yield f"{where}: calls {fn.id}()"
      if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name):
        if (fn.value.id, fn.attr) in UNSAFE_ATTR_CALLS:
          yield f"{where}: calls {fn.value.id}.{fn.attr}()"
        if fn.attr == "import_module" and path in EXTERNAL_IMPORTS_OK:
          continue
        if fn.attr == "import_module" and node.args and not (
            isinstance(node.args[0], ast.JoinedStr) or isinstance(node.args[0], ast.Constant)):
          yield f"{where}: import_module of a computed name"
        if fn.attr == "import_module" and node.args:
          arg = node.args[0]
          first = arg.values[0] if isinstance(arg, ast.JoinedStr) else arg
          if not (isinstance(first, ast.Constant) and str(first.value).startswith(
              "big_vision_lite.")):
            yield f"{where}: import_module outside big_vision_lite."
      for kw in node.keywords:
        if kw.arg == "allow_pickle" and not (
            isinstance(kw.value, ast.Constant) and kw.value.value is False):
          yield f"{where}: allow_pickle={ast.unparse(kw.value)}"
        if kw.arg == "weights_only" and not (
            isinstance(kw.value, ast.Constant) and kw.value.value is True):
          yield f"{where}: weights_only={ast.unparse(kw.value)}"


def test_package_source_has_no_pickle_eval_or_exec():
  files = list(_sources())
  assert len(files) > 40, files  # The scan really sees the package.
  problems = [p for f in files for p in _problems(f)]
  assert not problems, "\n".join(problems)


def test_scanner_catches_what_it_should(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("import pickle\nimport numpy as np\nx = eval('1')\n"
                 "np.load('f', allow_pickle=True)\nexec('y = 2')\n"
                 "import importlib\nimportlib.import_module(name)\n")
  found = list(_problems(str(bad)))
  assert len(found) == 6, found  # Both import_module checks fire.


class _Payload:
  """Unpickling this runs `os.system`-like code: creates a marker file."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, "w"))


def _pickle_npz(tmp_path, name="evil.npz"):
  marker = tmp_path / "pwned"
  path = tmp_path / name
  np.savez(path, **{"params/img/embedding/kernel": np.zeros((2, 2), np.float32),
                    "params/img/evil": np.array([_Payload(str(marker))], dtype=object)})
  return path, marker


def test_load_params_refuses_pickle_bearing_npz(tmp_path):
  path, marker = _pickle_npz(tmp_path)
  with pytest.raises(ValueError, match=rf"Member 'params/img/evil.npy' of params file "
                     rf"'{path}'.*pickle"):
    checkpoint.load_params(str(path))
  assert not marker.exists()


def test_npz_reader_refuses_pickle_bearing_npz(tmp_path):
  path, marker = _pickle_npz(tmp_path)
  with pytest.raises(ValueError, match=r"evil.*object arrays are not supported"):
    with hf_io.NpzReader(str(path)) as reader:
      for key in reader.shapes():
        reader.array(key)
  assert not marker.exists()


def test_vqvae_and_data_state_refuse_pickles(tmp_path):
  from big_vision_lite.models import vqvae  # pylint: disable=import-outside-toplevel
  path, marker = _pickle_npz(tmp_path)
  with pytest.raises(ValueError, match=r"allow_pickle"):
    vqvae.load_vqvae(str(path))
  assert not marker.exists()


def test_strings_from_configs_are_parsed_as_literals_only(tmp_path):
  marker = tmp_path / "pwned"
  attack = f"resize(__import__('os').system('touch {marker}'))"
  with pytest.raises((ValueError, SyntaxError)):
    registry.parse_call(attack)
  with pytest.raises((ValueError, SyntaxError)):
    registry.parse_call(f"resize(open('{marker}', 'w'))")
  assert not marker.exists()
  assert registry.parse_call("resize(224, method='bilinear')") == (
      "resize", (224,), {"method": "bilinear"})
