"""A local PaliGemma server: HTTP JSON API and demo page over batched on-device decoding.

Modules: `engine` (checks and decodes padded batches), `batcher` (groups concurrent
requests into one decode), `stream` (token streaming), `app` (FastAPI: JSON API and the
demo page in `static/`), `server` (uvicorn). CLI: `python -m tools.serve`.
"""
