"""Serving benchmark: requests/s and latency of the HTTP server under concurrent clients.

A random-init model (bench-small by default) is served on the loopback address by the
real server (`serve.server.Server`: FastAPI + uvicorn, batcher, bucketed decode). Each
round runs, one after the other:

  sequential   the same requests decoded one at a time in this process (`Engine.preprocess`
               + `Engine.generate` of a batch of 1, no HTTP): the single-request baseline;
  clients=C    C client threads POSTing JSON requests (base64 PNG) until `requests` are
               answered; the server batches what arrives together.

Rates are requests / wall time; latencies are per request (client side); `speedup` is the
median over rounds of (rate / sequential rate of the same round), so a slow drift of a
shared machine affects both sides alike. Every request asks for `new_tokens` greedy
tokens (a random model may emit EOS earlier: `mean_tokens` is what was decoded), and
`same_tokens` says whether every server run returned the sequential run's tokens.
"""
import base64
import concurrent.futures
import io
import json
import os
import statistics
import tempfile
import threading
import time
import urllib.request

import jax
import numpy as np
from PIL import Image

from big_vision_lite.bench import decode as bd
from big_vision_lite import tokenizer as tokenizer_lib
from big_vision_lite.serve import engine as engine_lib
from big_vision_lite.serve import server as server_lib

PROMPTS = ("caption en", "detect circle", "answer en how many ?", "ocr")


def _requests(n, seed=0):
  """n JSON request bodies: random 96x128 PNG images, prompts cycling over PROMPTS."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(buf, "PNG")
    out.append(dict(image=base64.b64encode(buf.getvalue()).decode(),
                    prompt=PROMPTS[i % len(PROMPTS)]))
  return out


def _post(url, body):
  req = urllib.request.Request(url + "/v1/generate", data=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
  with urllib.request.urlopen(req, timeout=600) as r:
    return json.loads(r.read())


def _pct(values, q):
  return float(np.percentile(np.asarray(values) * 1000, q))


def run_clients(url, bodies, clients):
  """POSTs `bodies` from `clients` threads; returns (wall s, latencies s, responses)."""
  todo, lock = list(enumerate(bodies)), threading.Lock()
  latencies, responses = [0.0] * len(bodies), [None] * len(bodies)

  def client():
    while True:
      with lock:
        if not todo:
          return
        i, body = todo.pop(0)
      start = time.perf_counter()
      responses[i] = _post(url, body)
      latencies[i] = time.perf_counter() - start
  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    for f in [pool.submit(client) for _ in range(clients)]:
      f.result()
  return time.perf_counter() - start, latencies, responses


def run_sequential(engine, bodies, options):
  """Decodes `bodies` one at a time in-process; returns (wall s, latencies s, results)."""
  latencies, results = [], []
  start = time.perf_counter()
  for body in bodies:
    t = time.perf_counter()
    ex = engine.preprocess(base64.b64decode(body["image"]), body["prompt"])
    results.append(engine.generate([ex], [options])[0])
    latencies.append(time.perf_counter() - t)
  return time.perf_counter() - start, latencies, results


def bench_serve(model_cfg, *, res, clients=(1, 8, 32), requests=64, new_tokens=16,
                rounds=2, max_wait_ms=5.0):
  """Runs the benchmark (module docstring); returns {"rows", "config", "same_tokens"}."""
  with tempfile.TemporaryDirectory() as d:
    tok_path = os.path.join(d, "tok.model")
    tokenizer_lib.train_tokenizer([p + " a red circle and a blue square" for p in PROMPTS]
                                  * 50, tok_path, vocab_size=300)
    tok = tokenizer_lib.Tokenizer(tok_path)
    # The model keeps its vocabulary; the engine masks the ids the tokenizer lacks.
    cfg = dict(model_cfg, llm=dict(model_cfg["llm"], vocab_size=max(
        tok.vocab_size, model_cfg["llm"].get("vocab_size", 0))))
    model, params = bd.make_model(cfg, res=res, prompt_len=16)
    engine = engine_lib.Engine(model, params, tok, res=res, text_len=64,
                               max_tokens=new_tokens, max_batch=max(clients))
    bodies = [dict(b, max_tokens=new_tokens) for b in _requests(requests)]
    used = sorted({engine.shapes(1, engine.preprocess(base64.b64decode(b["image"]),
                                                      b["prompt"]).prompt_tokens,
                                 new_tokens)[1] for b in bodies})
    start = time.perf_counter()
    compiled = engine.warmup(text_lens=used)
    compile_s = time.perf_counter() - start
    options = engine.check_options("greedy", new_tokens)
    per = {"sequential": []} | {c: [] for c in clients}
    same = True
    with server_lib.Server(engine, max_wait_s=max_wait_ms / 1000,
                           max_queue=max(256, requests)) as server:
      for _ in range(rounds):
        wall, lat, ref = run_sequential(engine, bodies, options)
        per["sequential"].append(dict(wall=wall, lat=lat, batch=[1] * len(lat),
                                      tokens=[len(r["tokens"]) for r in ref]))
        for c in clients:
          wall, lat, got = run_clients(server.url, bodies, c)
          same &= [g["tokens"] for g in got] == [r["tokens"] for r in ref]
          per[c].append(dict(wall=wall, lat=lat, batch=[g["batch"]["size"] for g in got],
                             tokens=[len(g["tokens"]) for g in got]))
  rows = []
  base = [len(r["lat"]) / r["wall"] for r in per["sequential"]]
  for key, runs in per.items():
    lat = [x for r in runs for x in r["lat"]]
    rates = [len(r["lat"]) / r["wall"] for r in runs]
    rows.append(dict(
        mode="sequential (no HTTP)" if key == "sequential" else "server",
        clients=1 if key == "sequential" else key,
        requests_per_s=statistics.median(rates), p50_ms=_pct(lat, 50), p95_ms=_pct(lat, 95),
        mean_batch=float(np.mean([b for r in runs for b in r["batch"]])),
        mean_tokens=float(np.mean([t for r in runs for t in r["tokens"]])),
        speedup=statistics.median(r / b for r, b in zip(rates, base))))
  return dict(rows=rows, same_tokens=bool(same),
              config=dict(res=res, requests=requests, new_tokens=new_tokens, rounds=rounds,
                          max_wait_ms=max_wait_ms, clients=list(clients),
                          batch_sizes=list(engine.batch_sizes), compiled=compiled,
                          compile_s=compile_s, backend=jax.default_backend()))
