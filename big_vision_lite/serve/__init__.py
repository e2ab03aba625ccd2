"""A local PaliGemma server: `engine` (checks and decodes padded batches), `batcher`
(groups concurrent requests into one decode), `app` (FastAPI: JSON API and the demo page
in `static/`), `server` (loading and uvicorn). CLI: `python -m tools.serve`."""
