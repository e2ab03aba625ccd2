"""The FastAPI app: JSON API, health endpoint and the demo page.

  POST /v1/generate   multipart/form-data (fields `image` file, `prompt`, optional
                      `sampler`, `max_tokens`, `seed`, `stream`) or application/json
                      ({"image": base64 or data URL, "prompt": ..., ...}); returns
                      {text, tokens, finish_reason, objects, invalid, image_size,
                      timings {preprocess_ms, queue_ms, decode_ms, postprocess_ms,
                      total_ms}, batch {size, padded, text_len, decode_len}}.
                      With `stream` true (greedy / temperature / topk / nucleus), the
                      answer comes as server-sent events: `data: {"token", "text"}` per
                      token, then `data: {text, tokens, finish_reason, objects,
                      invalid, image_size, timings {decode_ms, total_ms}, done: true}`.
  GET  /healthz       {"status": "ok", "engine": {...}, "batcher": {...}}
  GET  /              the page (static/index.html, with static/app.js and style.css)

Errors are {"error": {"message": ..., "field": ...}} with 400 (bad image, prompt or
option), 413 (too large), 415 (other content types) or 503 (queue full).
"""
import asyncio
import base64
import binascii
import json
import os
import time

import fastapi
from fastapi import responses
from fastapi import staticfiles
from starlette import exceptions as starlette_exceptions

from big_vision_lite import registry
from big_vision_lite.serve import engine as engine_lib
from big_vision_lite.serve import stream as stream_lib

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
FIELDS = ("image", "prompt", "sampler", "max_tokens", "seed", "stream")
DEFAULT_MAX_BYTES = 20 << 20


def _error(status, message, field=None):
  return responses.JSONResponse({"error": {"message": message, "field": field}},
                                status_code=status)


def _int_field(name, value):
  """Form fields arrive as strings: '12' -> 12; JSON ints pass; other values raise."""
  if value is None or (isinstance(value, int) and not isinstance(value, bool)):
    return value
  if isinstance(value, str) and value.strip().lstrip("-").isdigit():
    return int(value.strip())
  raise engine_lib.RequestError(f"{name}={value!r} must be an integer.", field=name)


def _bool_field(name, value):
  """JSON booleans, or form strings 'true' / 'false' (any case)."""
  if isinstance(value, bool):
    return value
  if isinstance(value, str) and value.strip().lower() in ("true", "false"):
    return value.strip().lower() == "true"
  raise engine_lib.RequestError(f"{name}={value!r} must be true or false.", field=name)


def _events(engine, streamer, example, options, start):
  """Server-sent events of a stream: one per token, then the full answer (`done`)."""
  ids = []
  decode_start = time.perf_counter()
  for token in streamer.tokens(example, options):
    ids.append(token)
    yield f"data: {json.dumps({'token': token, 'text': engine.tok.to_str(ids)})}\n\n"
  decode_ms = 1000 * (time.perf_counter() - decode_start)
  result = engine.answer(example, ids, len(ids) < options.max_tokens)
  result["timings"] = dict(decode_ms=round(decode_ms, 2),
                           total_ms=round(1000 * (time.perf_counter() - start), 2))
  yield f"data: {json.dumps(dict(result, done=True))}\n\n"


def _b64_image(value):
  if not isinstance(value, str):
    raise engine_lib.RequestError(
        f"image must be a base64 string (or a data: URL) in JSON requests, got "
        f"{type(value).__name__}; or upload it as multipart/form-data.", field="image")
  if value.startswith("data:"):
    value = value.split(",", 1)[-1]
  try:
    return base64.b64decode(value, validate=True)
  except (binascii.Error, ValueError) as e:
    raise engine_lib.RequestError(f"image is not valid base64 ({e}).", field="image") from e


async def _read_request(request, max_bytes):
  """Returns (image bytes, fields dict) of a JSON or multipart request."""
  length = request.headers.get("content-length")
  if length is not None and length.isdigit() and int(length) > max_bytes:
    raise engine_lib.RequestError(f"The request is {length} bytes; at most {max_bytes} "
                                  "(the server's --max_bytes).", status=413)
  ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
  if ctype == "application/json":
    body = await request.body()
    if len(body) > max_bytes:
      raise engine_lib.RequestError(f"The request is {len(body)} bytes; at most "
                                    f"{max_bytes}.", status=413)
    try:
      fields = json.loads(body)
    except ValueError as e:
      raise engine_lib.RequestError(f"The body is not valid JSON: {e}.") from e
    if not isinstance(fields, dict):
      raise engine_lib.RequestError(f"The JSON body must be an object with keys {FIELDS}, "
                                    f"got {type(fields).__name__}.")
    image = _b64_image(fields.get("image")) if fields.get("image") is not None else None
  elif ctype == "multipart/form-data":
    form = await request.form(max_files=1, max_fields=len(FIELDS))
    fields = dict(form)
    upload = fields.get("image")
    if upload is not None and not hasattr(upload, "read"):
      raise engine_lib.RequestError("image must be an uploaded file in multipart requests "
                                    "(or send JSON with a base64 image).", field="image")
    image = await upload.read() if upload is not None else None
  else:
    raise engine_lib.RequestError(
        f"Content-Type {ctype or '(none)'!r} is not supported; send application/json or "
        "multipart/form-data.", status=415)
  for name in sorted(set(fields) - set(FIELDS)):
    raise engine_lib.RequestError(str(registry.unknown_name("request field", name, FIELDS)),
                                  field=name)
  if image is None:
    raise engine_lib.RequestError("The request has no image; send field `image`.",
                                  field="image")
  return image, fields


def make_app(engine, batcher, *, max_bytes=DEFAULT_MAX_BYTES):
  """Returns the FastAPI app serving `engine` through `batcher`."""
  app = fastapi.FastAPI(title="big_vision_lite PaliGemma server")
  streamer = stream_lib.Streamer(engine)
  app.mount("/static", staticfiles.StaticFiles(directory=STATIC_DIR), name="static")

  @app.get("/")
  def index():
    return responses.FileResponse(os.path.join(STATIC_DIR, "index.html"))

  @app.get("/healthz")
  def healthz():
    return {"status": "ok", "engine": engine.info(), "batcher": batcher.stats()}

  @app.post("/v1/generate")
  async def generate(request: fastapi.Request):
    start = time.perf_counter()
    try:
      image, fields = await _read_request(request, max_bytes)
      options = engine.check_options(
          fields.get("sampler", "greedy"),
          _int_field("max_tokens", fields.get("max_tokens", min(32, engine.max_tokens))),
          _int_field("seed", fields.get("seed")))
      streaming = _bool_field("stream", fields.get("stream", False))
      if streaming:
        streamer.check(options)
      # PIL decoding and the pp ops run in a worker thread, off the event loop.
      example = await asyncio.to_thread(engine.preprocess, image, fields.get("prompt"))
      preprocess_ms = 1000 * (time.perf_counter() - start)
      if streaming:  # Starlette runs the generator in its thread pool.
        return responses.StreamingResponse(
            _events(engine, streamer, example, options, start),
            media_type="text/event-stream")
      result = await asyncio.wrap_future(batcher.submit(example, options))
    except engine_lib.RequestError as e:
      return _error(e.status, str(e), e.field)
    except starlette_exceptions.HTTPException as e:  # e.g. a malformed multipart body
      return _error(e.status_code, str(e.detail))
    except Exception as e:  # pylint: disable=broad-except
      # A failed decode reaches the client with its reason instead of a bare 500.
      return _error(500, f"{type(e).__name__}: {e}")
    result["timings"]["preprocess_ms"] = round(preprocess_ms, 2)
    result["timings"]["total_ms"] = round(1000 * (time.perf_counter() - start), 2)
    return result

  return app
