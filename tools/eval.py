r"""Runs the evaluators of a config (`config.evals`) once, without training.

  python -m tools.eval --config transfers/forkme.py:res=224 --workdir /tmp/run
  python -m tools.eval --config transfers/forkme.py --workdir /tmp/eval \
      --params /ckpts/paligemma_224.npz [--only=val,test]

Without --params the latest checkpoint of `workdir` is evaluated (LoRA merged, as the
trainer does); with --params that file is loaded like `config.model_init`. Each
evaluator writes `{workdir}/{name}_predictions.json`; host 0 prints the metrics as one
JSON line and writes them to `{workdir}/eval_metrics.json`. Multi-host: run the same
command on every host with --distributed.
"""
import json
import os

import jax
import ml_collections

from big_vision_lite import train
from big_vision_lite import train_setup
from big_vision_lite.evaluators import common


def load_eval_params(config, workdir, params_file=None):
  """Returns (params, step): the workdir's latest checkpoint, or `params_file` (step 0)."""
  if params_file is None:
    return train.restore_params(config, workdir)
  config = ml_collections.ConfigDict(config.to_dict())  # Never mutate the caller's.
  config.model_init = params_file
  mesh = train.make_mesh(config)
  run = train_setup.setup(config, workdir)
  try:
    ts = train.init_train_state(config, run["model_mod"], run["model"], mesh,
                                run["first"], run["total_steps"], run["rng"])
    return train.eval_params_fn(config, ts)(), 0
  finally:
    run["ckpt"].close()
    run["writer"].close()


def evaluate(config, workdir, *, params_file=None, only=None, write_note=print):
  """Runs `config.evals` (or the names in `only`) once; returns {"name/metric": value}."""
  params, step = load_eval_params(config, workdir, params_file)
  known = sorted((config.get("evals") or {}).keys())
  unknown = sorted(set(only or ()) - set(known))
  if unknown:
    raise ValueError(f"--only names {unknown} are not in config.evals; known: {known}.")
  model = train_setup.get_model_module(config.get("model_name", "paligemma")).Model(
      **config.model)
  tok = None
  if config.get("tokenizer"):
    from big_vision_lite import tokenizer  # pylint: disable=import-outside-toplevel
    tok = tokenizer.Tokenizer(config.tokenizer)
  mesh = train.make_mesh(config)
  fns = train_setup.make_predict_fns(config, model, mesh, tok)
  evaluators = common.from_config(config, fns, tokenizer=tok, workdir=workdir,
                                  total_steps=max(step, 1), write_note=write_note)
  out = {"step": step}
  for name, evaluator, _ in evaluators:
    if only and name not in only:
      continue
    out.update({f"{name}/{k}": v for k, v in evaluator.run(params)})
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "eval_metrics.json"), "w", encoding="utf-8") as f:
      json.dump(out, f, indent=1)
  return out


def main(argv):
  """Parses flags and calls `evaluate` (see the module docstring)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  del argv
  f = flags.FLAGS
  if f.distributed:
    train_setup.init_distributed(f.coordinator_address, f.num_processes, f.process_id)
  only = [n for n in (f.only or "").split(",") if n]
  out = evaluate(f.config, f.workdir, params_file=f.params, only=only,
                 write_note=print if jax.process_index() == 0 else (lambda _: None))
  if jax.process_index() == 0:
    print(json.dumps(out))


if __name__ == "__main__":
  train_setup.define_flags()
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags as absl_flags  # pylint: disable=g-import-not-at-top
  absl_flags.DEFINE_string("params", None, "A params file (.npz) to evaluate instead of "
                           "the workdir's latest checkpoint.")
  absl_flags.DEFINE_string("only", None, "Comma-separated names of config.evals to run.")
  app.run(main)
