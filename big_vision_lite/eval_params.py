"""Params to evaluate or export, without the train state: no optimizer is built.

`restore_params(config, workdir)`: the workdir's latest checkpoint. Its `params` item
is restored alone, with shapes from the checkpoint's own metadata, laid out by the
config's `sharding_strategy` (no model init, no data). With LoRA the adapters are
merged into the base params, which are loaded from `model_init` shard by shard.
`load_params(config, params_file)`: a params `.npz`, loaded as `model_init` is.
"""
import os

import jax
import ml_collections

from big_vision_lite import models
from big_vision_lite import resume
from big_vision_lite import sharding
from big_vision_lite import train


def _has_checkpoint(workdir):
  folder = os.path.join(workdir, "checkpoints")
  return os.path.isdir(folder) and any(n.isdigit() for n in os.listdir(folder))


def _base_params(config, mesh, model_init=None):
  """The model's params from `model_init` (or a sharded init without one)."""
  name = config.get("model_name", "paligemma")
  model_mod = models.get_module(name)
  model = model_mod.Model(**models.model_kwargs(name, config.get("model")))
  from big_vision_lite import input_pipeline  # pylint: disable=import-outside-toplevel
  data = input_pipeline.training(config.input, seed=config.get("seed", 0),
                                 process_index=jax.process_index(),
                                 process_count=jax.process_count())
  init = train.init_fn(model, next(data))
  rng = jax.random.key(config.get("seed", 0))
  shapes = jax.eval_shape(init, rng)
  abstract = train.with_shardings(shapes, _plan(config, mesh)(shapes))
  if model_init is not None:
    config = ml_collections.ConfigDict(config.to_dict())  # Never mutate the caller's.
    config.model_init = model_init
  return train.model_params(config, model_mod, abstract, init, rng)


def _plan(config, mesh):
  strategy = config.get("sharding_strategy", [(".*", "replicate")])
  return lambda shapes: sharding.to_shardings(sharding.make_plan(shapes, strategy, mesh),
                                              mesh)


def restore_params(config, workdir):
  """Returns `(eval params, step)` of the latest checkpoint in `workdir` (LoRA merged).

  Raises FileNotFoundError, before anything is created or read, when `workdir` has no
  checkpoint.
  """
  if not _has_checkpoint(workdir):
    raise FileNotFoundError(
        f"No checkpoint in {os.path.join(workdir, 'checkpoints')} (workdir "
        f"{'exists' if os.path.isdir(workdir) else 'does not exist'}): pass the workdir "
        "of a training run, or a params file with --params.")
  mesh = train.make_mesh(config)
  ckpt = resume.Checkpointer(workdir)
  try:
    step = ckpt.latest_step()
    abstract = ckpt.abstract_params(step, _plan(config, mesh))
    params = ckpt.restore_state(step, {"params": abstract}, items=("params",))["params"]
  finally:
    ckpt.close()
  merge = train.lora_merge_fn(config, None)
  if merge is None:
    return params, step
  base = _base_params(config, mesh)
  merge = train.lora_merge_fn(config, jax.tree.map(lambda x: x.sharding, base))
  return merge(base, params), step


def load_params(config, params_file):
  """Returns the params of `params_file` laid out for `config` (as `model_init`)."""
  return _base_params(config, train.make_mesh(config), model_init=params_file)
