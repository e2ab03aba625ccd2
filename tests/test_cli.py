"""The one CLI convention: argparse everywhere, "Examples:" in --help, `--config` overrides."""
import contextlib
import importlib
import io
import os
import subprocess
import sys

import pytest

from big_vision_lite import cli
from big_vision_lite import registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "tools"))
               if f.endswith(".py") and f != "__init__.py")
ENTRY_POINTS = [f"tools.{t}" for t in TOOLS] + ["big_vision_lite.train",
                                                 "big_vision_lite.datasets.shapes"]
CONFIG = '''import ml_collections
def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.lr, c.name, c.steps = 0.1, arg or "none", 3
  c.input = dict(batch_size=8)
  return c
'''


def _help(module_name):
  """Runs `main(["--help"])` of the module in-process; returns (exit code, stdout)."""
  module = importlib.import_module(module_name)
  out = io.StringIO()
  with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
    module.main(["--help"])
  return info.value.code, out.getvalue()


def test_every_tool_is_listed():
  assert TOOLS == ["benchmark", "convert_checkpoint", "eval", "export_lora",
                   "make_tokenizer", "predict", "serve", "visualize"]


@pytest.mark.parametrize("module_name", ENTRY_POINTS)
def test_help_shows_examples(module_name):
  code, text = _help(module_name)
  assert code == 0, text
  assert text.startswith(f"usage: python -m {module_name}"), text[:200]
  examples = text.split("\nExamples:\n", 1)[1].splitlines()
  commands = [line for line in examples if line.startswith(f"  python -m {module_name} ")]
  assert 2 <= len(commands) <= 3, examples


@pytest.mark.parametrize("module_name", ENTRY_POINTS)
def test_entry_point_uses_the_convention(module_name):
  path = os.path.join(REPO, *module_name.split(".")) + ".py"
  with open(path, encoding="utf-8") as f:
    source = f.read()
  assert "cli.parser(__doc__, EXAMPLES" in source
  assert source.rstrip().endswith('if __name__ == "__main__":\n  cli.run(main)'), path
  assert "absl import flags" not in source and "config_flags" not in source


def test_help_in_a_real_process():
  """The `__main__` wiring: `python -m tools.export_lora --help` exits 0 with examples."""
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "tools.export_lora", "--help"], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "Examples:\n  python -m tools.export_lora --config" in proc.stdout


@pytest.fixture
def config_file(tmp_path):
  path = tmp_path / "c.py"
  path.write_text(CONFIG)
  return str(path)


def test_load_config_with_overrides(config_file):
  c = cli.load_config(f"{config_file}:hello", ["--config.lr=0.5", "--config.input.batch_size=4"])
  assert (c.lr, c.name, c.steps, c.input.batch_size) == (0.5, "hello", 3, 4)
  with pytest.raises(AttributeError):
    c.new_field = 1  # Locked, as big_vision's config flag leaves it.


def test_parse_splits_overrides(config_file):
  p = cli.parser("Doc.", ["python -m x --config c.py"], prog="x")
  cli.add_config_flag(p)
  p.add_argument("--workdir")
  args = cli.parse(p, ["--config", config_file, "--config.steps", "7", "--workdir", "w"])
  assert (args.config.steps, args.workdir) == (7, "w")


def test_config_errors_are_one_line(config_file, tmp_path):
  with pytest.raises(registry.UnknownNameError,
                     match=r"Unknown config key 'lrr'\. Did you mean 'lr'\?.*--config.lrr=1"):
    cli.load_config(config_file, ["--config.lrr=1"])
  with pytest.raises(registry.UnknownNameError, match="Unknown config key 'batch'"):
    cli.load_config(config_file, ["--config.input.batch=1"])
  with pytest.raises(ValueError, match=r"--config.steps=abc.*field's type") as info:
    cli.load_config(config_file, ["--config.steps=abc"])
  assert "\n" not in cli.one_line(info.value)
  with pytest.raises(FileNotFoundError, match=r"'nope\.py' not found; --config takes"):
    cli.load_config("nope.py")
  (tmp_path / "empty.py").write_text("X = 1\n")
  with pytest.raises(ValueError, match="defines no get_config"):
    cli.load_config(str(tmp_path / "empty.py"))


def test_trainer_cli_error_is_one_line(config_file, tmp_path, capsys):
  from big_vision_lite import train  # pylint: disable=import-outside-toplevel
  with pytest.raises(SystemExit) as info:
    cli.run(train.main, ["--config", config_file, "--config.stepz=2",
                         "--workdir", str(tmp_path / "w")])
  err = capsys.readouterr().err.strip().splitlines()
  assert info.value.code == 1 and len(err) == 1, err
  assert err[0].startswith("error: Unknown config key 'stepz'. Did you mean 'steps'?")
  assert not (tmp_path / "w").exists()
