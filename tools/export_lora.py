r"""Merges a LoRA run's adapters into the base weights and writes a big_vision `.npz`.

  python -m tools.export_lora --config configs/my_lora.py --workdir /tmp/run \
      --out /tmp/merged.npz

The config is the one the run trained with (`config.lora` set); the latest checkpoint
of `--workdir` is restored and W + alpha / rank * A @ B is written for every adapted
weight (dropout off), so the file loads with `model_init` like any released checkpoint.
"""
from absl import flags
import jax
from ml_collections import config_flags

from big_vision_lite import checkpoint
from big_vision_lite import config_args
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


def main(argv):
  del argv
  f = flags.FLAGS
  path, step = export(f.config, f.workdir, f.out)
  print(f"Wrote merged params of step {step} to {path}")


if __name__ == "__main__":
  config_args.configs_importable()  # --config files import transfers.common etc.
  config_flags.DEFINE_config_file("config", None, "The run's config file.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "The run's workdir.")
  flags.DEFINE_string("out", None, "Output .npz path.")
  flags.mark_flags_as_required(["config", "workdir", "out"])
  cli.run_absl(main)
