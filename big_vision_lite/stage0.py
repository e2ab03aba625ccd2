r"""Stage 0 inside a run: SigLIP image-text pre-training of the image tower (`config.stage0`).

PaliGemma starts from a pre-trained SigLIP image tower. When `config.stage0` is set,
`train.train` first trains a `models/siglip.py` two-tower model with the sigmoid loss on
image-text pairs, saves it to `workdir/stage0/siglip.npz` (+ `stage0/metrics.jsonl`), and
initialises the main model's image tower from its `img` subtree (the SigLIP pooling head
and projection are not loaded; the rest of the model starts from scratch). Re-running in
the same workdir reuses the saved stage-0 checkpoint.

  config.stage0 = dict(
      model=dict(image=dict(...ViT kwargs, pool_type="gap"), text=dict(vocab_size=...,
                 width=..., depth=..., mlp_dim=..., num_heads=...), out_dim=128,
                 temperature_init=10.0, bias_init=-10.0),
      input=dict(data=dict(name=...), pp="...", batch_size=...),  # yields image, labels
      total_steps=300, lr=1e-3, wd=1e-4, schedule=dict(...), optax_name="scale_by_adam",
      optax=dict(), grad_clip_norm=1.0,
      positives="same_text",   # or "diagonal"
      img_dont_load=("head/.*", "MAPHead/.*"))   # ViT params the main model keeps

`input.pp` must produce `image` float32[H, W, 3] and `labels` int32[L] (the text, padded
with EOS for the text tower's "last" pooling), e.g. `...|tok(key='caption',
outkey='labels', eos='sticky', length=L, pad_value=1, model=...)|keep('image', 'labels')`.
"""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from big_vision_lite import checkpoint
from big_vision_lite import metrics_log
from big_vision_lite import optim
from big_vision_lite import registry
from big_vision_lite import sharding
from big_vision_lite.models import siglip

KEYS = ("model", "input", "total_steps", "lr", "wd", "schedule", "optax_name", "optax",
        "grad_clip_norm", "lr_mults", "wd_mults", "positives", "img_dont_load",
        "log_training_steps", "seed")
POSITIVES = ("same_text", "diagonal")
CKPT = "siglip.npz"


def _check(cfg):
  for key in sorted(set(cfg) - set(KEYS)):
    raise registry.unknown_name("config.stage0 key", key, KEYS)
  for key in ("model", "input", "total_steps"):
    if key not in cfg:
      raise ValueError(f"config.stage0 needs `{key}` (see big_vision_lite/stage0.py).")
  if cfg.get("positives", "same_text") not in POSITIVES:
    raise registry.unknown_name("config.stage0.positives", cfg["positives"], POSITIVES)


def make_update_fn(model, tx, positives="same_text"):
  """Returns jitted `update(params, opt, batch, rng) -> (params, opt, metrics)`.

  batch: image float32[B, H, W, 3], labels int32[B, L]. metrics: loss, acc (images whose
  highest-scoring text of the batch is a positive), t, b, grad_norm.
  """
  def loss_fn(params, batch, rng):
    zimg, ztxt, out = model.apply({"params": params}, batch["image"], batch["labels"],
                                  train=True, rngs={"dropout": rng})
    labels = batch["labels"]
    pos = None
    if positives == "same_text":
      pos = jnp.all(labels[:, None, :] == labels[None, :, :], axis=-1)
    loss, logits = siglip.sigmoid_loss(zimg, ztxt, out["t"], out.get("b"), pos)
    if pos is None:
      pos = jnp.eye(labels.shape[0], dtype=bool)
    acc = jnp.mean(jnp.take_along_axis(pos, jnp.argmax(logits, 1)[:, None], 1))
    return loss, {"acc": acc, "t": out["t"][0], "b": out.get("b", jnp.zeros(1))[0]}

  @jax.jit
  def update(params, opt, batch, rng):
    (loss, m), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng)
    updates, opt = tx.update(grads, opt, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    gnorm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
    return params, opt, dict(m, loss=loss, grad_norm=gnorm)
  return update


def train_siglip(cfg, workdir, mesh):
  """Trains the stage-0 SigLIP model; returns its params (host numpy tree).

  Writes `workdir/metrics.jsonl` (loss, acc, t, b per logged step).
  """
  from big_vision_lite import input_pipeline  # pylint: disable=import-outside-toplevel
  cfg = ml_collections.ConfigDict(dict(cfg))
  os.makedirs(workdir, exist_ok=True)
  model = siglip.Model(**dict(cfg.model))
  data = input_pipeline.training(cfg.input, seed=cfg.get("seed", 0),
                                 process_index=jax.process_index(),
                                 process_count=jax.process_count())
  it = iter(data)
  first = next(it)
  for key in ("image", "labels"):
    if key not in first:
      raise ValueError(f"config.stage0.input yields {sorted(first)}; it must yield "
                       "`image` and `labels` (see big_vision_lite/stage0.py).")
  rng = jax.random.key(cfg.get("seed", 0))
  repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  params = jax.jit(model.init, out_shardings=repl)(
      rng, first["image"][:1], first["labels"][:1])["params"]
  total = int(cfg.total_steps)
  tx, sched_fns = optim.make(cfg, params, total)
  lr_fn = next(iter(sched_fns.values()))
  opt = jax.jit(tx.init, out_shardings=repl)(params)
  update = make_update_fn(model, tx, cfg.get("positives", "same_text"))
  writer = metrics_log.MetricsWriter(workdir, total_steps=total,
                                     batch_size=cfg.input.batch_size,
                                     enabled=jax.process_index() == 0)
  log_every = int(cfg.get("log_training_steps", max(1, total // 10)))
  rules = [("act_batch", "data")]
  batch = first
  writer.start(0)
  for step in range(1, total + 1):
    gbatch = sharding.global_batch({k: batch[k] for k in ("image", "labels")}, mesh, rules)
    with jax.set_mesh(mesh):
      params, opt, m = update(params, opt, gbatch, jax.random.fold_in(rng, step))
    if step % log_every == 0 or step == total:
      m = {k: float(v) for k, v in jax.device_get(m).items()}
      m["lr"] = float(lr_fn(step - 1))
      if not np.isfinite(m["loss"]):
        raise FloatingPointError(f"stage0: loss {m['loss']} at step {step}; lower "
                                 "config.stage0.lr or set grad_clip_norm.")
      writer.write(step, m)
    if step < total:
      batch = next(it)
  writer.close()
  return jax.device_get(params)


def init_from_stage0(config, workdir, mesh):
  """Runs stage 0 if `config.stage0` asks (once per workdir); returns the config to train.

  Without `stage0` the config is returned as it is. Otherwise a copy whose `model_init`
  loads the stage-0 image tower and whose `model_load.dont_load` keeps everything else
  (the LLM, the projector, `img_dont_load`) at its initialisation.
  """
  if not config.get("stage0"):
    return config
  cfg = dict(config.stage0)
  _check(cfg)
  if config.get("model_init"):
    raise ValueError(f"config.stage0 and config.model_init={config.model_init!r} are "
                     "both set; stage 0 provides the image tower's init: unset one.")
  folder = os.path.join(workdir, "stage0")
  path = os.path.join(folder, CKPT)
  if not os.path.exists(path):
    params = train_siglip(cfg, folder, mesh)
    if jax.process_index() == 0:
      checkpoint.save_params(params, path)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices("stage0")
  dont_load = [f"img/{r}" for r in cfg.get("img_dont_load", ("head/.*", "MAPHead/.*"))]
  out = ml_collections.ConfigDict(config.to_dict())
  out.model_init = {"img": f"{path}:img"}
  out.model_load = dict(dont_load=dont_load + ["img/head/.*", "llm/.*"])
  return out
