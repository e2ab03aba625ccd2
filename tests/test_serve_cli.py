"""tools/serve.py: the CLI in a subprocess, and serving a training run's checkpoint."""
import base64
import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request

import jax
import numpy as np
import pytest

from big_vision_lite import checkpoint
from big_vision_lite.serve import engine as engine_lib
from big_vision_lite.serve import server as server_lib
from configs import demo
from tests import serve_fixtures as sf
from tools import serve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _post(url, body):
  req = urllib.request.Request(url + "/v1/generate", data=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
  with urllib.request.urlopen(req, timeout=300) as r:
    return json.loads(r.read())


@pytest.mark.slow
def test_cli_serves_a_checkpoint(tmp_path):
  tok = sf.make_tokenizer(str(tmp_path / "tok.model"))
  model, params = sf.random_model(tok)
  ckpt = str(tmp_path / "tiny.npz")
  checkpoint.save_params(params, ckpt)
  image = sf.images(1)[0]
  expected = sf.engine(model, params, tok).generate(
      [sf.engine(model, params, tok).preprocess(image, "caption en")],
      [engine_lib.Options(max_tokens=8)])[0]
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.Popen(
      [sys.executable, "-m", "tools.serve", "--ckpt", ckpt, "--tokenizer", tok.model_path,
       "--port", "0", "--max_tokens", "8", "--max_batch", "2", "--text_len", "32",
       "--no-warmup"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)
  lines = queue.Queue()
  threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
  try:
    seen, deadline = [], time.monotonic() + 240
    while not (seen and seen[-1].startswith("Serving on ")):
      try:
        seen.append(lines.get(timeout=max(1.0, deadline - time.monotonic())))
      except queue.Empty:
        pytest.fail(f"tools.serve printed no 'Serving on' line: {''.join(seen)}")
    assert seen[-1].startswith("Serving on http://127.0.0.1:"), "".join(seen)
    url = seen[-1].split()[2].rstrip("/")
    rec = _post(url, {"image": base64.b64encode(image).decode(), "prompt": "caption en",
                      "max_tokens": 8})
    assert rec["tokens"] == expected["tokens"]
  finally:
    proc.terminate()
    proc.wait(timeout=60)


def test_cli_flag_errors():
  class Flags:  # The parsed flags build_engine reads.
    ckpt = config = workdir = tokenizer = vqvae = model_cfg = variant = res = None
    cache_dtype = None
    text_len, max_tokens, max_batch = 32, 8, 2
  with pytest.raises(ValueError, match="either --ckpt"):
    serve.build_engine(Flags)
  Flags.ckpt = "x.npz"
  with pytest.raises(ValueError, match="--ckpt needs --tokenizer"):
    serve.build_engine(Flags)
  Flags.ckpt, Flags.config = None, demo.get_config("total_steps=1")
  with pytest.raises(ValueError, match="--config needs --workdir"):
    serve.build_engine(Flags)


@pytest.mark.slow  # Shapes data + tokenizer generation and 2 train steps.
def test_serves_a_training_runs_latest_checkpoint(tmp_path):
  from big_vision_lite import train  # pylint: disable=import-outside-toplevel
  c = demo.get_config(f"data_dir={tmp_path / 'shapes'},num_train=64,num_val=8,"
                      "total_steps=2,batch_size=8,stage0_steps=0")
  c.evals = {}
  workdir = str(tmp_path / "work")
  trained = train.train(c, workdir)["params"]
  engine, step = serve.engine_from_workdir(c, workdir, max_tokens=8, max_batch=2)
  assert step == 2 and engine.res == demo.RES
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(trained),
               jax.device_get(engine.params))
  split = tmp_path / "shapes" / "validation"
  with open(split / "detect.jsonl") as f:
    row = json.loads(f.readline())
  image = (split / row["image"]).read_bytes()
  with server_lib.Server(engine) as s:
    rec = _post(s.url, {"image": base64.b64encode(image).decode(), "prompt": row["prefix"],
                        "max_tokens": 8})
  assert rec["image_size"] == [demo.RES, demo.RES] and rec["batch"]["text_len"] == 16
  # Two steps in, the model may well stop at once; what matters is that it ran.
  assert len(rec["tokens"]) <= 8 and rec["finish_reason"] in ("eos", "length")
