r"""Merges a LoRA run's adapters into the base weights and writes a big_vision `.npz`.

  python -m tools.export_lora --config transfers/forkme.py:lora=16 \
      --workdir /tmp/forkme_lora --out /tmp/merged.npz

The config is the one the run trained with (`config.lora` set); the latest checkpoint
of `--workdir` is restored and W + alpha / rank * A @ B is written for every adapted
weight (dropout off), so the file loads with `model_init` like any released checkpoint.
"""
import jax

from big_vision_lite import checkpoint
from big_vision_lite import cli
from big_vision_lite import eval_params


def export(config, workdir, out_path):
  """Writes the merged params of `workdir`'s latest checkpoint to `out_path`.

  Returns:
    (out_path, step).
  """
  if not config.get("lora"):
    raise ValueError("config.lora is not set: this run has no adapters to merge; its "
                     "params are already complete in the checkpoint.")
  params, step = eval_params.restore_params(config, workdir)
  if jax.process_index() == 0:
    checkpoint.save_params(jax.device_get(params), out_path)
  return out_path, step


EXAMPLES = (
    "python -m tools.export_lora --config transfers/forkme.py:lora=16 \\\n"
    "      --workdir /tmp/forkme_lora --out /tmp/merged.npz",
    "python -m tools.export_lora --config transfers/forkme.py:res=448,lora=16 \\\n"
    "      --workdir /tmp/forkme_lora_448 --out /tmp/merged_448.npz",
)


def main(argv):
  """Parses flags and writes the merged params; errors print one line (see `cli.run`)."""
  p = cli.parser(__doc__, EXAMPLES, prog="python -m tools.export_lora")
  cli.add_config_flag(p, help_text="The run's config file (path.py[:arg]).")
  p.add_argument("--workdir", required=True, help="The run's workdir.")
  p.add_argument("--out", required=True, help="Output .npz path.")
  args = cli.parse(p, argv)
  path, step = export(args.config, args.workdir, args.out)
  print(f"Wrote merged params of step {step} to {path}")


if __name__ == "__main__":
  cli.run(main)
