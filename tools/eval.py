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

from big_vision_lite import cli
from big_vision_lite import eval_params
from big_vision_lite import models
from big_vision_lite import registry
from big_vision_lite import train
from big_vision_lite.evaluators import common


def load_eval_params(config, workdir, params_file=None):
  """Returns (params, step): the workdir's latest checkpoint, or `params_file` (step 0).

  Without `params_file`, a workdir without a checkpoint fails first: nothing is
  created, read or generated.
  """
  if params_file is None:
    return eval_params.restore_params(config, workdir)
  return eval_params.load_params(config, params_file), 0


def evaluate(config, workdir, *, params_file=None, only=None, write_note=print):
  """Runs `config.evals` (or the names in `only`) once; returns {"name/metric": value}."""
  known = sorted((config.get("evals") or {}).keys())
  for name in sorted(set(only or ()) - set(known)):
    raise registry.unknown_name("--only name", name, known,
                                context="(the names of config.evals)")
  params, step = load_eval_params(config, workdir, params_file)
  name, compute_dtype = config.get("model_name", "paligemma"), config.get("compute_dtype")
  model = models.get_module(name).Model(**models.model_kwargs(name, config.model,
                                                               compute_dtype))
  tok = None
  if config.get("tokenizer"):
    from big_vision_lite import tokenizer  # pylint: disable=import-outside-toplevel
    tok = tokenizer.Tokenizer(config.tokenizer)
  fns = common.make_predict_fns(model, train.make_mesh(config), tokenizer=tok,
                                rules=config.get("sharding_rules", ()),
                                compute_dtype=compute_dtype)
  evaluators = common.from_config(config, fns, tokenizer=tok, workdir=workdir,
                                  total_steps=max(step, 1), write_note=write_note)
  out = {"step": step}
  for name, evaluator, _ in evaluators:
    if only and name not in only:
      continue
    out.update({f"{name}/{k}": v for k, v in evaluator.run(params)})
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "eval_metrics.json"), "w", encoding="utf-8") as f:
      json.dump(out, f, indent=1)
  return out


EXAMPLES = (
    "python -m tools.eval --config configs/demo.py --workdir workdirs/demo",
    "python -m tools.eval --config transfers/forkme.py --workdir /tmp/eval \\\n"
    "      --params /ckpts/paligemma_224.npz --only=val,test",
)


def main(argv):
  """Parses flags and calls `evaluate`; errors print one line (see `cli.run`)."""
  p = cli.parser(__doc__, EXAMPLES, prog="python -m tools.eval")
  train.add_flags(p)
  p.add_argument("--params", help="A params file (.npz) to evaluate instead of the "
                 "workdir's latest checkpoint.")
  p.add_argument("--only", help="Comma-separated names of config.evals to run.")
  args = cli.parse(p, argv)
  train.setup_process(args)
  only = [n for n in (args.only or "").split(",") if n]
  out = evaluate(args.config, args.workdir, params_file=args.params, only=only,
                 write_note=print if jax.process_index() == 0 else (lambda _: None))
  if jax.process_index() == 0:
    print(json.dumps(out))


if __name__ == "__main__":
  cli.run(main)
