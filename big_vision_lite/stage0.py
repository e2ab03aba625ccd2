r"""Stage 0 inside a run: pre-training of the image tower (`config.stage0`).

PaliGemma starts from a pre-trained image tower. When `config.stage0` is set,
`train.train` first trains it on image-text data with one of three objectives
(`objective`), saves it to `workdir/stage0/siglip.npz` (+ `stage0/metrics.jsonl`), and
initialises the main model's image tower from its `img` subtree (the pre-training head
is not loaded; the rest of the model starts from scratch). Re-running in the same workdir
reuses the saved stage-0 checkpoint.

- "siglip" (default): a `models/siglip.py` two-tower model with the pairwise sigmoid
  loss; `input.pp` yields `image` and `labels` int32[L] (the tokenized text).
- "sigmoid_xent": the image tower alone as a multi-label classifier (sigmoid
  cross-entropy summed over classes, as big_vision's ImageNet-21k ViT pre-training);
  `input.pp` yields `image` and `labels` float32[C] multi-hot, e.g. the
  `text_tags(inkey='captions', tags=[...])` phrases found in the image's captions;
  `model=dict(image=dict(...ViT kwargs))` (the head is sized C). Logged `acc` is
  precision@1 (the top class is a positive).
- "grouped_softmax": the same classifier with a softmax over each group of classes
  (`groups=((n, k), ...)`: n consecutive k-way groups, in label order), e.g. pp op
  `label_counts`' one-hot count of each class; logged `acc` is the share of groups right.
  When `input.pp` also yields `patch_labels` float32[P, K] (one K-way one-hot per image
  token, e.g. pp op `patch_labels`: which object covers each patch), the ViT runs with
  `pool_type="none"` and a head of C + K classes on every token: the mean over tokens of
  the first C logits is the image-level classifier (a linear head commutes with the
  mean: exactly the GAP classifier), the last K are per-token softmax targets (`patch_acc`),
  whose loss (summed over tokens) is weighted by `patch_weight` (default 1.0). When it
  also yields `patch_boxes` float32[P, 5] (pp op `patch_boxes`: per token, whether a box
  holds it and the distances to that box's 4 edges), 4 more outputs per token regress
  those distances (L1, summed over the 4 edges and the tokens a box holds, weighted by
  `box_weight`, default 1.0; logged `box_l1`, the mean error per edge).
  Keep the head's random init (`head_zeroinit=False`): from a zero head, the features
  get no gradient at first and the ViT barely learns in a few hundred steps (measured,
  see README).

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
from big_vision_lite.models import vit

DENSE = ("patch_labels", "patch_boxes")  # Optional per-token targets, in head order.
KEYS = ("model", "input", "total_steps", "lr", "wd", "schedule", "optax_name", "optax",
        "grad_clip_norm", "lr_mults", "wd_mults", "positives", "img_dont_load",
        "log_training_steps", "seed", "objective", "groups", "patch_weight", "box_weight")
POSITIVES = ("same_text", "diagonal")
OBJECTIVES = ("siglip", "sigmoid_xent", "grouped_softmax")
CLASSIFIERS = ("sigmoid_xent", "grouped_softmax")
CKPT = "siglip.npz"


def _check(cfg):
  for key in sorted(set(cfg) - set(KEYS)):
    raise registry.unknown_name("config.stage0 key", key, KEYS)
  for key in ("model", "input", "total_steps"):
    if key not in cfg:
      raise ValueError(f"config.stage0 needs `{key}` (see big_vision_lite/stage0.py).")
  if cfg.get("objective", "siglip") not in OBJECTIVES:
    raise registry.unknown_name("config.stage0.objective", cfg["objective"], OBJECTIVES)
  if cfg.get("positives", "same_text") not in POSITIVES:
    raise registry.unknown_name("config.stage0.positives", cfg["positives"], POSITIVES)
  for key, what in (("patch_weight", "per-token class"), ("box_weight", "per-token box")):
    weight = cfg.get(key, 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
      raise ValueError(f"config.stage0.{key}={weight!r} must be a number >= 0 (the "
                       f"weight of the {what} loss).")
  if cfg.get("objective") == "grouped_softmax":
    groups = cfg.get("groups")
    if (not isinstance(groups, (list, tuple)) or not groups or not all(
        isinstance(g, (list, tuple)) and len(g) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in g)
        for g in groups)):
      raise ValueError(f"config.stage0.groups={groups!r}: objective 'grouped_softmax' needs "
                       "a list of (number of groups, classes per group) int pairs >= 1, "
                       "in label order, e.g. ((4, 4), (24, 2)).")


def sigmoid_xent(logits, labels):
  """Multi-label loss: -sum_c [y log sigmoid(x) + (1 - y) log sigmoid(-x)], batch mean."""
  return -jnp.mean(jnp.sum(labels * jax.nn.log_sigmoid(logits)
                           + (1 - labels) * jax.nn.log_sigmoid(-logits), axis=-1))


def group_slices(groups):
  """((n, k), ...) -> [(start, stop, k)]: the label ranges of each run of n k-way groups."""
  out, start = [], 0
  for n, k in groups:
    out.append((start, start + n * k, k))
    start += n * k
  return out


def grouped_softmax_xent(logits, labels, groups):
  """Softmax cross-entropy within each group of classes, summed over groups, batch mean.

  The labels are one-hots laid out as `groups` ((n, k): n consecutive k-way groups, in
  order), e.g. pp op `label_counts`' per-class count one-hots. Returns (loss, share of
  groups whose top class is the labelled one).
  """
  total, hits, num = 0.0, 0.0, 0
  for start, stop, k in group_slices(groups):
    lg = logits[:, start:stop].reshape(logits.shape[0], -1, k)
    y = labels[:, start:stop].reshape(lg.shape)
    total = total - jnp.sum(y * jax.nn.log_softmax(lg), axis=(1, 2))
    top = jnp.take_along_axis(y, jnp.argmax(lg, -1)[..., None], -1)
    hits, num = hits + jnp.sum(top, axis=(1, 2)), num + lg.shape[1]
  return jnp.mean(total), jnp.mean(hits / num)


def make_update_fn(model, tx, positives="same_text", objective="siglip", groups=None,
                   patch_weight=1.0, box_weight=1.0):
  """Returns jitted `update(params, opt, batch, rng) -> (params, opt, metrics)`.

  batch: image float32[B, H, W, 3] and labels: int32[B, L] texts ("siglip") or float32[B,
  C] multi-hot ("sigmoid_xent") or grouped one-hots ("grouped_softmax", `groups`).
  metrics: loss, acc, grad_norm (+ t, b for "siglip"): acc is the share of images whose
  highest-scoring text of the batch is a positive ("siglip"), of images whose
  highest-scoring class is a positive ("sigmoid_xent"), or of groups whose top class is
  the labelled one ("grouped_softmax").
  """
  def xent_loss_fn(params, batch, rng):
    logits, _ = model.apply({"params": params}, batch["image"], train=True,
                            rngs={"dropout": rng})
    labels = batch["labels"].astype(jnp.float32)
    top = jnp.take_along_axis(labels, jnp.argmax(logits, -1)[:, None], 1)
    return sigmoid_xent(logits, labels), {"acc": jnp.mean(top)}

  def grouped_loss_fn(params, batch, rng):
    logits, _ = model.apply({"params": params}, batch["image"], train=True,
                            rngs={"dropout": rng})
    aux, dense_loss = {}, 0.0
    if "patch_boxes" in batch:  # The last 4 outputs per token: distances to box edges.
      target = batch["patch_boxes"].astype(jnp.float32)
      hit, err = target[..., :1], jnp.abs(logits[..., -4:] - target[..., 1:])
      dense_loss = box_weight * jnp.mean(jnp.sum(hit * err, axis=(1, 2)))
      aux["box_l1"] = jnp.sum(hit * err) / jnp.maximum(4 * jnp.sum(hit), 1.0)
      logits = logits[..., :-4]
    if "patch_labels" in batch:  # logits [B, P, C + K]: per token, last K are dense.
      dense_y = batch["patch_labels"].astype(jnp.float32)
      b, p, k = dense_y.shape
      dense, logits = logits[..., -k:], logits[..., :-k]
      patch_loss, aux["patch_acc"] = grouped_softmax_xent(
          dense.reshape(b, p * k), dense_y.reshape(b, p * k), ((p, k),))
      dense_loss = dense_loss + patch_weight * patch_loss
    if logits.ndim == 3:  # Per-token outputs: the image-level classifier is their mean.
      logits = jnp.mean(logits, axis=1)
    loss, acc = grouped_softmax_xent(logits, batch["labels"].astype(jnp.float32), groups)
    return loss + dense_loss, dict(aux, acc=acc)

  def siglip_loss_fn(params, batch, rng):
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

  loss_fn = {"sigmoid_xent": xent_loss_fn, "grouped_softmax": grouped_loss_fn,
             "siglip": siglip_loss_fn}[objective]

  @jax.jit
  def update(params, opt, batch, rng):
    (loss, m), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng)
    updates, opt = tx.update(grads, opt, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    gnorm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
    return params, opt, dict(m, loss=loss, grad_norm=gnorm)
  return update


def train_siglip(cfg, workdir, mesh):
  """Trains the stage-0 model; returns its params (host numpy tree, the image tower under
  `img`).

  Writes `workdir/metrics.jsonl` (loss, acc, + t, b for SigLIP, per logged step).
  """
  from big_vision_lite import input_pipeline  # pylint: disable=import-outside-toplevel
  cfg = ml_collections.ConfigDict(dict(cfg))
  os.makedirs(workdir, exist_ok=True)
  objective = cfg.get("objective", "siglip")
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
  if objective in CLASSIFIERS:
    if first["labels"].ndim != 2 or not np.issubdtype(first["labels"].dtype, np.floating):
      raise ValueError(f"config.stage0.input yields labels {first['labels'].dtype}"
                       f"{list(first['labels'].shape)}; objective {objective!r} needs "
                       "float32[B, C] multi-hot labels (e.g. pp ops `text_tags`, "
                       "`label_counts`).")
    want = sum(n * k for n, k in cfg.get("groups") or ())
    if objective == "grouped_softmax" and first["labels"].shape[1] != want:
      raise ValueError(f"config.stage0.groups={cfg.groups!r} cover {want} classes; the "
                       f"input yields labels with {first['labels'].shape[1]}.")
    image_kw = dict(cfg.model.get("image") or {})
    num_classes = first["labels"].shape[1]
    for key in DENSE:
      if key not in first:
        continue
      if objective != "grouped_softmax" or image_kw.get("pool_type") != "none":
        raise ValueError(f"config.stage0.input yields `{key}` (per-token targets): "
                         "they need objective 'grouped_softmax' and the image tower's "
                         f"pool_type 'none' (got {objective!r}, "
                         f"{image_kw.get('pool_type')!r}).")
      num_classes += first[key].shape[-1] - (key == "patch_boxes")  # Not the hit flag.
    model = vit.Model(**{"num_classes": num_classes, **image_kw})
    params = {"img": jax.jit(model.init, out_shardings=repl)(
        rng, first["image"][:1])["params"]}
    net = _Sub(model, "img")
  else:
    net = model = siglip.Model(**dict(cfg.model))
    params = jax.jit(model.init, out_shardings=repl)(
        rng, first["image"][:1], first["labels"][:1])["params"]
  total = int(cfg.total_steps)
  tx, sched_fns = optim.make(cfg, params, total)
  lr_fn = next(iter(sched_fns.values()))
  opt = jax.jit(tx.init, out_shardings=repl)(params)
  groups = [tuple(g) for g in cfg.get("groups") or ()]
  update = make_update_fn(net, tx, cfg.get("positives", "same_text"), objective, groups,
                          float(cfg.get("patch_weight", 1.0)),
                          float(cfg.get("box_weight", 1.0)))
  writer = metrics_log.MetricsWriter(workdir, total_steps=total,
                                     batch_size=cfg.input.batch_size,
                                     enabled=jax.process_index() == 0)
  log_every = int(cfg.get("log_training_steps", max(1, total // 10)))
  rules = [("act_batch", "data")]
  batch = first
  writer.start(0)
  for step in range(1, total + 1):
    gbatch = sharding.global_batch(
        {k: batch[k] for k in ("image", "labels") + DENSE if k in batch}, mesh, rules)
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


class _Sub:
  """`model.apply` on the `key` subtree of the params (the classifier's `img`)."""

  def __init__(self, model, key):
    self.model, self.key = model, key

  def apply(self, variables, *args, **kwargs):
    return self.model.apply({"params": variables["params"][self.key]}, *args, **kwargs)


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
