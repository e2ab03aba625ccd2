"""Tests for config_args: parse_arg, and configs importable from any working directory."""
import glob
import os
import subprocess
import sys

import pytest

from big_vision_lite import config_args
from big_vision_lite.config_args import parse_arg

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def test_types_follow_defaults():
  c = parse_arg("res=448,batch_size=8,lr=3e-5,variant=So400m/14,freeze_vit",
                res=224, batch_size=32, lr=1e-5, variant="tiny", freeze_vit=False)
  assert (c.res, c.batch_size, c.lr, c.variant, c.freeze_vit) == (
      448, 8, 3e-5, "So400m/14", True)
  assert isinstance(c.res, int) and isinstance(c.lr, float)


def test_defaults_when_empty():
  for arg in (None, "", " , "):
    c = parse_arg(arg, res=224, mode="full")
    assert c.res == 224 and c.mode == "full"


@pytest.mark.parametrize("text,value", [("true", True), ("No", False), ("1", True),
                                        ("off", False)])
def test_strict_booleans(text, value):
  assert parse_arg(f"flag={text}", flag=not value).flag is value


def test_bad_boolean():
  with pytest.raises(ValueError, match=r"flag='maybe' is not a boolean"):
    parse_arg("flag=maybe", flag=False)


def test_unknown_key_lists_valid_keys_and_close_match():
  with pytest.raises(ValueError, match=r"Unknown config arg 'batchsize'.*"
                     r"Did you mean 'batch_size'.*Valid: \['batch_size', 'res'\]"):
    parse_arg("batchsize=8", res=224, batch_size=32)


def test_bad_value_type():
  with pytest.raises(ValueError, match=r"res='big' is not a valid int"):
    parse_arg("res=big", res=224)


def test_bare_flag_only_for_booleans():
  with pytest.raises(ValueError, match=r"'res' needs a value"):
    parse_arg("res", res=224)


def test_none_default_takes_string_and_lazy_keeps_unknown():
  c = parse_arg("ckpt=/a/b.npz,extra=3", lazy=True, ckpt=None)
  assert c.ckpt == "/a/b.npz" and c.extra == "3"
  assert parse_arg("ckpt=none", ckpt=None).ckpt is None


def _outside_checkout(tmp_path):
  """A working directory where big_vision_lite imports (a link to the package, as an
  installed copy) but the checkout's configs/ and transfers/ are not on the path."""
  cwd = tmp_path / "elsewhere"
  cwd.mkdir()
  os.symlink(os.path.join(REPO, "big_vision_lite"), cwd / "big_vision_lite")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  return cwd, env


def test_configs_load_from_any_working_directory(tmp_path):
  """`--config /abs/path/transfers/x.py` parses from a folder outside the checkout: the
  config loader (`cli.load_config`, used by every tool's --config) puts the checkout on
  sys.path (config_args.configs_importable)."""
  cwd, env = _outside_checkout(tmp_path)
  configs = sorted(glob.glob(os.path.join(REPO, "transfers", "[!_]*.py")) +
                   glob.glob(os.path.join(REPO, "configs", "pt_stage*.py")))
  configs = [f for f in configs if not f.endswith("common.py")]
  script = (
      "import sys\n"
      "from big_vision_lite import cli\n"
      "for f in sys.argv[1:]:\n"
      "  print(f, cli.load_config(f'{f}:res=448').input.batch_size)\n")
  out = subprocess.run([sys.executable, "-c", script, *configs], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.splitlines()
  assert [l.split()[0] for l in lines] == configs and len(configs) > 25, lines
  assert config_args.configs_importable() == REPO


@pytest.mark.slow
def test_train_cli_runs_from_another_working_directory(tmp_path):
  """`python -m big_vision_lite.train --config /abs/configs/tiny.py` (which imports
  configs.common) trains from a folder outside the checkout."""
  cwd, env = _outside_checkout(tmp_path)
  config = os.path.join(REPO, "configs", "tiny.py")
  out = subprocess.run(
      [sys.executable, "-m", "big_vision_lite.train",
       f"--config={config}:data_dir={tmp_path}/shapes,total_steps=1",
       f"--workdir={tmp_path}/work"], cwd=cwd, env=env, capture_output=True, text=True,
      timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert os.path.exists(tmp_path / "work" / "metrics.jsonl")
