"""Kill -9 / SIGTERM / restart of `python -m big_vision_lite.train` in one workdir.

One uninterrupted reference run and one interrupted chain (run concurrently, sharing a
compilation cache): SIGKILL at a random step, SIGKILL while a checkpoint is being
written, SIGTERM (must save and exit 0), then a run to the end. Checks: every restart
resumes from the newest complete checkpoint on disk (never a partial one), the final
params and every logged metric equal the reference run's, and no step appears twice in
metrics.jsonl.
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from big_vision_lite import train
from configs import tiny

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS, CKPT = 8, 2
TIMING_KEYS = ("steps_per_sec", "examples_per_sec", "eta_sec")


CONFIG = f"""
from configs import tiny


def get_config(arg=None):
  c = tiny.get_config(arg)
  c.ckpt_steps, c.keep_ckpts = {CKPT}, 2  # Keep one to fall back to.
  return c
"""


def _start(data_dir, workdir, log, cache):
  config = os.path.join(os.path.dirname(log), "kill_config.py")
  with open(config, "w") as f:
    f.write(CONFIG)
  cmd = [sys.executable, "-m", "big_vision_lite.train", "--config",
         f"{config}:data_dir={data_dir},total_steps={STEPS}", "--workdir", workdir]
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  out = open(log, "w")  # pylint: disable=consider-using-with
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
  proc.log, proc.out = log, out
  return proc


def _finish(proc, timeout=300):
  try:
    proc.wait(timeout)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
    proc.out.close()
  with open(proc.log) as f:
    return proc.returncode, f.read()


def _metrics(workdir):
  """The parsed lines of metrics.jsonl (a torn last line is skipped)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  out = []
  with open(path) as f:
    for line in f:
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:
        pass
  return out


def _train_steps(workdir):
  return [m["step"] for m in _metrics(workdir) if "loss" in m]


def _complete_steps(workdir):
  d = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(d):
    return []
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()
                and os.path.exists(os.path.join(d, n, "commit_success.txt")))


def _saving(workdir):
  """True while a checkpoint is being written (orbax tmp dir or data-state tmp file)."""
  for sub in ("checkpoints", "data_state"):
    d = os.path.join(workdir, sub)
    if os.path.isdir(d) and any("tmp" in n for n in os.listdir(d)):
      return True
  return False


def _wait(proc, cond, timeout=240):
  end = time.monotonic() + timeout
  while time.monotonic() < end:
    if cond():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(0.002)
  raise TimeoutError(f"condition not met in {timeout}s; log {proc.log}")


def _restored_step(log_text):
  """The step restored last (after any fallback past corrupt ones), or 0."""
  found = re.findall(r"Restoring checkpoint from \S+/checkpoints/(\d+)", log_text)
  return int(found[-1]) if found else 0


def _final_state(workdir):
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                               item_names=("params", "opt", "meta"))
  step = mngr.latest_step()  # Plain orbax reads the named leaves (no code of ours).
  out = mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(),
                                                   opt=ocp.args.StandardRestore()))
  mngr.close()
  flat = jax.tree_util.tree_flatten_with_path({"params": out["params"], "opt": out["opt"]})[0]
  assert any("img" in jax.tree_util.keystr(p) for p, _ in flat)
  return step, {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted_run(tmp_path):
  rng = random.Random(0)  # Fixed for CI; the kill points are drawn, then logged.
  data_dir, cache = str(tmp_path / "data"), str(tmp_path / "jit")
  train.prepare(tiny.get_config(f"data_dir={data_dir}"))  # Data once, before both.
  ref_dir, chain = str(tmp_path / "ref"), str(tmp_path / "chain")
  ref = _start(data_dir, ref_dir, str(tmp_path / "ref.log"), cache)
  faults, runs = [], 0

  def restart(kind, cond, expect=None):
    nonlocal runs
    before = [expect] if expect is not None else _complete_steps(chain)
    proc = _start(data_dir, chain, str(tmp_path / f"chain{runs}.log"), cache)
    runs += 1
    hit = _wait(proc, cond)
    if kind == "term":
      proc.send_signal(signal.SIGTERM)
    elif hit:
      proc.kill()
    rc, text = _finish(proc)
    assert _restored_step(text) == (before[-1] if before else 0), (kind, before, text[-3000:])
    faults.append((kind, hit, before[-1] if before else 0, _train_steps(chain)[-1:]))
    return rc, text

  k1 = rng.randint(3, 4)  # After the first checkpoint (step 2) is complete.
  restart("kill_at_step", lambda: (_train_steps(chain) or [0])[-1] >= k1
          and _complete_steps(chain))
  n = len(_train_steps(chain))
  restart("kill_mid_save", lambda: _saving(chain) and len(_train_steps(chain)) > n)
  k3 = rng.randint(min(max(_train_steps(chain) or [0]) + 1, STEPS - 1), STEPS - 1)
  rc, text = restart("term", lambda: _train_steps(chain) and _train_steps(chain)[-1] >= k3)
  assert rc == 0, text[-3000:]
  stopped = json.loads(text.strip().splitlines()[-1])
  if stopped["stopped"]:
    assert _complete_steps(chain)[-1] == stopped["step"]
  # Corrupt the newest checkpoint: the last run must fall back to the one before, saying so.
  *_, previous, newest = _complete_steps(chain)
  for name in os.listdir(os.path.join(chain, "checkpoints", str(newest), "params", "d")):
    with open(os.path.join(chain, "checkpoints", str(newest), "params", "d", name), "r+b") as f:
      f.truncate(7)
  rc, text = restart("finish", lambda: False, expect=previous)
  assert rc == 0 and json.loads(text.strip().splitlines()[-1])["step"] == STEPS, text[-3000:]
  assert re.search(rf"checkpoints/{newest} is unreadable .*falling back", text), text[-3000:]
  rc, ref_text = _finish(ref)
  assert rc == 0, ref_text[-3000:]

  steps = _train_steps(chain)
  assert steps == list(range(1, STEPS + 1)), f"steps logged {steps}; faults {faults}"
  ref_m = {m["step"]: m for m in _metrics(ref_dir) if "loss" in m}
  for m in _metrics(chain):
    if "loss" in m:
      want = {k: v for k, v in ref_m[m["step"]].items() if k not in TIMING_KEYS}
      assert {k: v for k, v in m.items() if k not in TIMING_KEYS} == want, m["step"]
  (ref_step, ref_state), (step, state) = _final_state(ref_dir), _final_state(chain)
  assert ref_step == step == STEPS and ref_state.keys() == state.keys()
  for k in state:
    np.testing.assert_array_equal(state[k], ref_state[k], err_msg=k)
  print(f"faults injected: {faults}")
  assert any(kind == "kill_mid_save" and hit for kind, hit, *_ in faults), faults
  assert all(restored > 0 for _, _, restored, _ in faults[1:]), faults
