"""`process_sum` / `gather_json` across two real JAX processes (CPU, gloo)."""
import json
import os
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_SCRIPT = """
import json, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
from big_vision_lite.evaluators import common
i = jax.process_index()
records = [{"host": i, "text": "\\u00e9" * (3 * i + 1)}] * (i + 1)  # Unequal sizes.
print("RESULT" + json.dumps({"sum": common.process_sum({"a": i + 1.5, "b": [i, 2]}),
                             "all": common.gather_json(records)}))
"""


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_sum_and_gather():
  addr = f"127.0.0.1:{_free_port()}"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO,
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT, addr, str(i)], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
           for i in range(2)]
  outs = [p.communicate(timeout=300)[0].decode() for p in procs]
  assert all(p.returncode == 0 for p in procs), outs[0][-2000:] + outs[1][-2000:]
  results = [json.loads(o.split("RESULT", 1)[1].splitlines()[0]) for o in outs]
  want_all = [{"host": 0, "text": "\u00e9"}] + [{"host": 1, "text": "\u00e9" * 4}] * 2
  for r in results:
    assert r["sum"] == {"a": 4.0, "b": [1.0, 4.0]}
    assert r["all"] == want_all
