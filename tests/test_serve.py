"""The server on the loopback address with tiny models: API, errors, batching, buckets."""
import base64
import concurrent.futures
import json
import re
import socket
import threading
import urllib.error
import urllib.request
import uuid

from jax import monitoring
import numpy as np
import pytest

from big_vision_lite.postprocess import rle_to_mask
from big_vision_lite.serve import batcher as batcher_lib
from big_vision_lite.serve import engine as engine_lib
from big_vision_lite.serve import server as server_lib
from tests import serve_fixtures as sf
from tools import predict

PROMPTS = ["caption en", "detect cat", "answer en what color is it ?", "ocr"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  d = tmp_path_factory.mktemp("serve")
  tok = sf.make_tokenizer(str(d / "tok.model"))
  model, params = sf.random_model(tok)
  return dict(dir=d, tok=tok, model=model, params=params, images=sf.images(4))


@pytest.fixture(scope="module")
def served(tiny):
  engine = sf.engine(tiny["model"], tiny["params"], tiny["tok"], max_pixels=40_000)
  with server_lib.Server(engine, max_wait_s=0.0, max_bytes=300_000) as s:
    yield s


def post_json(url, body, timeout=120):
  """(status, decoded JSON) of a POST of `body` (dict -> JSON, bytes sent as they are)."""
  data = body if isinstance(body, bytes) else json.dumps(body).encode()
  req = urllib.request.Request(url + "/v1/generate", data=data,
                               headers={"Content-Type": "application/json"})
  return _send(req, timeout)


def post_form(url, image, fields, timeout=120):
  """(status, decoded JSON) of a multipart POST with `image` bytes as file field `image`."""
  boundary = uuid.uuid4().hex
  parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
           .encode() for k, v in fields.items()]
  parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
               f'filename="x.png"\r\nContent-Type: image/png\r\n\r\n'.encode() + image
               + b"\r\n")
  req = urllib.request.Request(
      url + "/v1/generate", data=b"".join(parts) + f"--{boundary}--\r\n".encode(),
      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
  return _send(req, timeout)


def _send(req, timeout):
  try:
    with urllib.request.urlopen(req, timeout=timeout) as r:
      return r.status, json.loads(r.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def b64(image):
  return base64.b64encode(image).decode()


def test_health_and_page(served):
  with urllib.request.urlopen(served.url + "/healthz", timeout=30) as r:
    health = json.loads(r.read())
  assert health["status"] == "ok"
  assert health["engine"]["batch_sizes"] == [1, 2, 4]
  assert health["engine"]["text_lens"] == [16, 32]
  with urllib.request.urlopen(served.url + "/", timeout=30) as r:
    page = r.read().decode()
  assert "/static/app.js" in page and 'id="overlay"' in page
  with urllib.request.urlopen(served.url + "/static/app.js", timeout=30) as r:
    assert b"/v1/generate" in r.read()


def test_generate_json_and_upload_match_predict(served, tiny):
  image = tiny["images"][0]
  status, rec = post_json(served.url, {"image": b64(image), "prompt": "caption en",
                                       "max_tokens": 8})
  assert status == 200, rec
  assert set(rec) >= {"text", "tokens", "finish_reason", "objects", "invalid",
                      "image_size", "timings", "batch"}
  assert set(rec["timings"]) == {"preprocess_ms", "queue_ms", "decode_ms",
                                 "postprocess_ms", "total_ms"}
  assert rec["image_size"] == [20, 30] and rec["batch"]["size"] == 1
  status, form = post_form(served.url, image, {"prompt": "caption en", "max_tokens": "8"})
  assert status == 200, form
  assert form["tokens"] == rec["tokens"]
  # The same answer as tools/predict.py's batch decode (its own pp and text_len 64).
  path = tiny["dir"] / "im.png"
  path.write_bytes(image)
  examples = predict.make_examples([{"image": str(path), "prompt": "caption en"}],
                                   tiny["tok"].model_path, sf.RES, 64)
  answer, = predict.predict(served.batcher.engine.model, served.batcher.engine.params,
                            tiny["tok"], examples, max_decode_len=8, batch_size=1)
  assert rec["text"] == answer
  # Fewer tokens: a prefix of the longer greedy answer.
  status, short = post_json(served.url, {"image": b64(image), "prompt": "caption en",
                                         "max_tokens": 3})
  assert status == 200 and short["tokens"] == rec["tokens"][:3]


def test_concurrent_requests_batch_and_match_single(served, tiny):
  reqs = [{"image": b64(im), "prompt": p, "max_tokens": 8}
          for im, p in zip(tiny["images"], PROMPTS)]
  single = [post_json(served.url, r) for r in reqs]
  assert all(s == 200 and rec["batch"]["size"] == 1 for s, rec in single), single
  served.batcher.max_wait_s = 5.0  # All 4 join one batch (it leaves when full).
  try:
    barrier = threading.Barrier(len(reqs))

    def send(r):
      barrier.wait(timeout=60)
      return post_json(served.url, r)
    with concurrent.futures.ThreadPoolExecutor(len(reqs)) as pool:
      together = list(pool.map(send, reqs))
  finally:
    served.batcher.max_wait_s = 0.0
  assert all(s == 200 for s, _ in together), together
  assert [rec["batch"]["size"] for _, rec in together] == [4] * 4
  assert [rec["tokens"] for _, rec in together] == [rec["tokens"] for _, rec in single]
  assert len({tuple(rec["tokens"]) for _, rec in single}) > 1  # Inputs matter.


@pytest.mark.slow
def test_shapes_are_bucketed_no_recompiles(served, tiny):
  compiles = []
  active = [True]
  monitoring.register_event_duration_secs_listener(
      lambda event, _, **kw: active[0] and event.endswith("backend_compile_duration")
      and compiles.append(event))
  engine = served.batcher.engine
  try:
    engine.warmup(batch_sizes=(1, 2), text_lens=(16, 32))
    compiles.clear()
    prompts = ["ocr", "caption en", "answer en what color is it ?"]
    for i, prompt in enumerate(prompts):
      for n in (1, 2):
        exs = [engine.preprocess(im, prompt) for im in tiny["images"][:n]]
        opts = [engine.check_options("greedy", 1 + (i * 3 + n) % 8)] * n
        out = engine.generate(exs, opts)
        assert out[0]["batch"]["padded"] == n
    assert {engine.preprocess(tiny["images"][0], p).prompt_tokens > 16 for p in prompts} == {
        True, False}  # Both prompt buckets were used.
    assert not compiles, f"{len(compiles)} compiles after warm-up"
  finally:
    active[0] = False


@pytest.mark.parametrize("body,field,status,match", [
    ({"image": "IMAGE", "prompt": ""}, "prompt", 400, "non-empty"),
    ({"image": "IMAGE", "prompt": "cat " * 40}, "prompt", 400, "tokens; at most 30"),
    ({"image": "IMAGE", "prompt": "ocr", "sampler": "greed"}, "sampler", 400, "sampler"),
    ({"image": "IMAGE", "prompt": "ocr", "max_tokens": 0}, "max_tokens", 400, r"\[1, 8\]"),
    ({"image": "IMAGE", "prompt": "ocr", "max_tokens": 9}, "max_tokens", 400, r"\[1, 8\]"),
    ({"image": "IMAGE", "prompt": "ocr", "max_tokens": "x"}, "max_tokens", 400, "integer"),
    ({"image": "IMAGE", "prompt": "ocr", "seed": -1}, "seed", 400, "seed"),
    ({"image": "IMAGE", "prompt": "ocr", "temp": 1}, "temp", 400,
     r"Unknown request field 'temp'\. .*Valid: \['image'"),
    ({"prompt": "ocr"}, "image", 400, "no image"),
    ({"image": "%%%", "prompt": "ocr"}, "image", 400, "base64"),
    ({"image": b64(b"not an image at all"), "prompt": "ocr"}, "image", 400,
     "could not be decoded"),
    ({"image": b64(sf.png_bytes(np.zeros((250, 250, 3)))), "prompt": "ocr"}, "image", 413,
     "pixels"),
])
def test_errors(served, tiny, body, field, status, match):
  body = {k: b64(tiny["images"][0]) if v == "IMAGE" else v for k, v in body.items()}
  got, rec = post_json(served.url, body)
  assert got == status, rec
  assert rec["error"]["field"] == field
  assert re.search(match, rec["error"]["message"]), rec


def test_errors_transport(served, tiny):
  assert post_json(served.url, b"{not json")[0] == 400
  assert post_json(served.url, b"[1, 2]")[0] == 400
  # A declared body over --max_bytes is refused before it is read.
  host, port = served.sock.getsockname()[:2]
  with socket.create_connection((host, port), timeout=60) as conn:
    conn.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/json\r\nContent-Length: 400000\r\n\r\n")
    reply = conn.makefile("rb").read()
  assert reply.startswith(b"HTTP/1.1 413") and b"at most 300000" in reply, reply
  req = urllib.request.Request(served.url + "/v1/generate", data=b"hello",
                               headers={"Content-Type": "text/plain"})
  status, rec = _send(req, 30)
  assert status == 415 and "multipart/form-data" in rec["error"]["message"]
  status, rec = post_form(served.url, tiny["images"][0], {"prompt": "ocr", "max_tokens": "a"})
  assert status == 400 and rec["error"]["field"] == "max_tokens"
  # The server still answers after all of these.
  assert post_json(served.url, {"image": b64(tiny["images"][0]), "prompt": "ocr"})[0] == 200


def test_queue_limit_close_and_arg_errors(tiny):
  engine = sf.engine(tiny["model"], tiny["params"], tiny["tok"])
  with pytest.raises(ValueError, match="max_batch=5 must be in"):
    batcher_lib.Batcher(engine, max_batch=5)
  batcher = batcher_lib.Batcher(engine, max_wait_s=600, max_queue=1)
  ex = engine.preprocess(tiny["images"][0], "ocr")
  first = batcher.submit(ex, engine.check_options("greedy", 8))
  with pytest.raises(engine_lib.RequestError, match="1 requests are waiting") as e:
    batcher.submit(ex, engine.check_options("greedy", 8))
  assert e.value.status == 503
  batcher.close(timeout=120)  # Decodes what is pending without waiting 600 s.
  assert first.result(timeout=0)["batch"]["size"] == 1
  with pytest.raises(engine_lib.RequestError, match="shutting down"):
    batcher.submit(ex, engine.check_options("greedy", 8))
  with pytest.raises(ValueError, match="vocabulary"):
    sf.engine(tiny["model"], tiny["params"], _BigTok(tiny["tok"]))
  assert engine_lib.buckets(40, 8) == (8, 16, 32, 40)
  assert engine_lib.buckets(8, 8) == (8,)


class _BigTok:
  """A tokenizer claiming a larger vocabulary than the model's."""

  def __init__(self, tok):
    self.model_path, self.vocab_size = tok.model_path, tok.vocab_size + 1


def test_detection_and_segmentation_answers(tiny):
  """A model whose answer is known: boxes in pixels of the original image, masks as RLE."""
  engine = sf.engine(tiny["model"], tiny["params"], tiny["tok"])
  sep = sf.separator_id(engine)
  seg = "".join(f"<seg{i:03d}>" for i in range(16))
  model, params = sf.chain_model(tiny["tok"], f"<loc0100><loc0200><loc0700><loc0800>{seg} cat",
                                 sep)
  engine = sf.engine(model, params, tiny["tok"], max_tokens=32, vqvae_params=sf.tiny_vqvae())
  with server_lib.Server(engine) as s:
    status, rec = post_json(s.url, {"image": b64(tiny["images"][2]), "prompt": "segment cat",
                                    "max_tokens": 32})
  assert status == 200, rec
  assert rec["finish_reason"] == "eos" and rec["invalid"] == []
  h, w = rec["image_size"]
  assert (h, w) == (34, 40)
  obj, = rec["objects"]
  assert obj["label"] == "cat"
  np.testing.assert_allclose(obj["box"], [100 / 1023 * h, 200 / 1023 * w, 700 / 1023 * h,
                                          800 / 1023 * w], atol=0.01)
  mask = rle_to_mask(obj["mask"])
  assert mask.shape == (h, w)
  assert not mask[:3].any() and not mask[:, :7].any()  # Nothing outside the box.


def test_stream_sends_tokens_as_made_and_matches_generate(served, tiny):
  body = {"image": b64(tiny["images"][1]), "prompt": "detect cat", "max_tokens": 8}
  status, ref = post_json(served.url, body)
  assert status == 200
  req = urllib.request.Request(served.url + "/v1/generate",
                               data=json.dumps(dict(body, stream=True)).encode(),
                               headers={"Content-Type": "application/json"})
  with urllib.request.urlopen(req, timeout=120) as r:
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[len(b"data: "):]) for line in r if line.startswith(b"data: ")]
  *tokens, final = events
  assert final["done"] and final["tokens"] == ref["tokens"] == [e["token"] for e in tokens]
  assert final["text"] == ref["text"] == (tokens[-1]["text"] if tokens else "")
  assert final["finish_reason"] == ref["finish_reason"]
  status, rec = post_json(served.url, dict(body, stream=True, sampler="beam(2)"))
  assert status == 400 and rec["error"]["field"] == "stream"
  status, rec = post_json(served.url, dict(body, stream="yes"))
  assert status == 400 and "true or false" in rec["error"]["message"]
