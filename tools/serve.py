r"""Serves a PaliGemma checkpoint: JSON API and a demo page in the browser.

  python -m tools.serve --ckpt /ckpts/pt_224.npz --tokenizer /ckpts/pg_tokenizer.model \
      [--vqvae vae-oid.npz] [--port 8000]
  python -m tools.serve --config configs/demo.py --workdir workdirs/demo   # a training run

Then open http://127.0.0.1:8000/ or `curl -F image=@cat.jpg -F prompt="detect cat"
http://127.0.0.1:8000/v1/generate`. With --config and --workdir the latest checkpoint of
that run is served with the config's model and tokenizer. Requests that arrive within
--max_wait_ms of each other are decoded in one batch (up to --max_batch); shapes are
padded to fixed buckets (see `big_vision_lite/serve/engine.py`) and --warmup compiles them
before the first request.
"""
import argparse
import json

import jax
import numpy as np

from big_vision_lite import checkpoint
from big_vision_lite import cli
from big_vision_lite import tokenizer as tokenizer_lib
from big_vision_lite.models import vqvae
from big_vision_lite.serve import engine as engine_lib
from big_vision_lite.serve import server as server_lib
from tools import predict


def _vqvae(path):
  return vqvae.load_vqvae(path) if path else None


def engine_from_checkpoint(ckpt, tokenizer, *, vqvae_path=None, model_cfg=None, variant=None,
                           res=None, **engine_kw):
  """An `Engine` for a `.npz` checkpoint (`path.npz[:subtree]`) and SentencePiece model.

  The architecture (and `res`) are inferred from the checkpoint as `tools/predict.py` does
  unless `model_cfg` / `variant` / `res` are given; `engine_kw` go to `Engine`.
  """
  tok = tokenizer_lib.Tokenizer(tokenizer)
  model, params, _, res = predict.load_model(ckpt, model_cfg, variant, res)
  return engine_lib.Engine(model, params, tok, res=res, vqvae_params=_vqvae(vqvae_path),
                           **engine_kw)


def restore_workdir_params(config, workdir):
  """(params, step) of the latest checkpoint of the training run in `workdir`."""
  from big_vision_lite import eval_params  # pylint: disable=import-outside-toplevel
  return eval_params.restore_params(config, workdir)


def engine_from_workdir(config, workdir, *, tokenizer=None, vqvae_path=None, res=None,
                        **engine_kw):
  """An `Engine` for the latest checkpoint of the run `config` trained in `workdir`.

  The tokenizer is `config.tokenizer` unless given; the image side is the one the
  checkpoint's position embedding was trained at unless `res` is given.

  Returns:
    (engine, step).
  """
  from big_vision_lite import models  # pylint: disable=import-outside-toplevel
  tokenizer = tokenizer or config.get("tokenizer")
  if not tokenizer:
    raise ValueError("The config has no `tokenizer` key; pass --tokenizer.")
  params, step = restore_workdir_params(config, workdir)
  params = jax.device_get(params)
  shapes = {k: np.shape(v) for k, v in checkpoint.flatten(params).items()}
  res = res or predict.checkpoint_res(shapes)
  if not res:
    raise ValueError("Cannot infer the image side from the params; pass --res.")
  name = config.get("model_name", "paligemma")
  model = models.get_module(name).Model(**models.model_kwargs(name, config.get("model"),
                                                             config.get("compute_dtype")))
  engine = engine_lib.Engine(model, jax.device_put(params),
                             tokenizer_lib.Tokenizer(tokenizer), res=res,
                             vqvae_params=_vqvae(vqvae_path), **engine_kw)
  return engine, step


EXAMPLES = (
    "python -m tools.serve --ckpt /ckpts/pt_224.npz --tokenizer /ckpts/pg_tokenizer.model \\\n"
    "      --vqvae vae-oid.npz --port 8000",
    "python -m tools.serve --config configs/demo.py --workdir workdirs/demo",
    "python -m tools.serve --ckpt /ckpts/pt_224.npz --tokenizer /ckpts/pg_tokenizer.model \\\n"
    "      --host 0.0.0.0 --max_batch 16 --no-warmup",
)


def add_flags(p):
  """Adds the server's flags to the argparse parser `p`."""
  p.add_argument("--ckpt", help="big_vision .npz (or path.npz:subtree) to serve.")
  p.add_argument("--tokenizer", help="SentencePiece .model (default with --config: "
                 "config.tokenizer).")
  cli.add_config_flag(p, required=False, help_text="Training config (path.py[:arg]), with "
                      "--workdir: serve that run's latest checkpoint.")
  p.add_argument("--workdir", help="Workdir of the training run (with --config).")
  p.add_argument("--vqvae", help="vae-oid.npz, to turn <seg> answers into masks.")
  p.add_argument("--host", default="127.0.0.1",
                 help="Address to bind (0.0.0.0: every interface; default %(default)s).")
  p.add_argument("--port", type=int, default=8000, help="Port to bind (default %(default)s).")
  p.add_argument("--res", type=int, help="Image side (default: the checkpoint's).")
  p.add_argument("--model_cfg", help="JSON of paligemma.Model kwargs (--ckpt; default: "
                 "inferred from the checkpoint).")
  p.add_argument("--variant", help=f"One of {sorted(predict.VARIANTS)} (--ckpt).")
  p.add_argument("--text_len", type=int, default=64,
                 help="Longest token row: BOS + prompt + separator (default %(default)s).")
  p.add_argument("--max_tokens", type=int, default=64,
                 help="The most new tokens a request may ask for (default %(default)s).")
  p.add_argument("--max_batch", type=int, default=8,
                 help="The most requests decoded together (default %(default)s).")
  p.add_argument("--max_wait_ms", type=float, default=10.0,
                 help="How long a request waits for others to join (default %(default)s).")
  p.add_argument("--max_queue", type=int, default=256,
                 help="The most waiting requests (more get 503; default %(default)s).")
  p.add_argument("--max_bytes", type=int, default=20 << 20,
                 help="The largest request body (more get 413; default %(default)s).")
  p.add_argument("--cache_dtype", help="KV cache dtype (default bf16 on accelerators).")
  p.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                 help="Compile every batch size before serving.")


def build_engine(f):
  """The `Engine` that the parsed flags `f` ask for."""
  kw = dict(text_len=f.text_len, max_tokens=f.max_tokens, max_batch=f.max_batch,
            cache_dtype=f.cache_dtype)
  if (f.ckpt is None) == (f.config is None):
    raise ValueError("Pass either --ckpt (with --tokenizer) or --config with --workdir.")
  if f.ckpt is not None:
    if not f.tokenizer:
      raise ValueError("--ckpt needs --tokenizer (the SentencePiece .model).")
    model_cfg = json.loads(f.model_cfg) if f.model_cfg else None
    return engine_from_checkpoint(f.ckpt, f.tokenizer, vqvae_path=f.vqvae,
                                  model_cfg=model_cfg, variant=f.variant, res=f.res, **kw)
  if not f.workdir:
    raise ValueError("--config needs --workdir (the training run to serve).")
  engine, step = engine_from_workdir(f.config, f.workdir, tokenizer=f.tokenizer,
                                     vqvae_path=f.vqvae, res=f.res, **kw)
  print(f"Serving {f.workdir} at step {step}.", flush=True)
  return engine


def main(argv):
  """Parses flags, loads the model and serves until interrupted."""
  p = cli.parser(__doc__, EXAMPLES, prog="python -m tools.serve")
  add_flags(p)
  f = cli.parse(p, argv)
  engine = build_engine(f)
  if f.warmup:
    print(f"Compiling batch sizes {engine.batch_sizes}...", flush=True)
    engine.warmup()
  server = server_lib.Server(engine, sock=server_lib.bind_socket(f.host, f.port),
                             max_batch=f.max_batch, max_wait_s=f.max_wait_ms / 1000,
                             max_queue=f.max_queue, max_bytes=f.max_bytes)
  print(f"Serving on {server.url}/ (API: POST {server.url}/v1/generate). Ctrl-C stops.",
        flush=True)
  server.run()


if __name__ == "__main__":
  cli.run(main)
