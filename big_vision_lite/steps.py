"""Loss and the update step (micro-batching, frozen params, LoRA, mixed precision).

Train state: `{"params": trainable tree, "opt": optax state}`. Without LoRA the
trainable tree is the whole model (frozen params get zero updates and no optimizer
state, and enter the loss through `stop_gradient`, so no gradient is computed for them);
with LoRA it is the adapter tree and the base params are a separate, constant argument.
With `compute_dtype="bfloat16"` the loss casts the (f32 master) params to bf16 before
the forward pass: gradients, updates and the optimizer state stay f32.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from big_vision_lite.models import lora as lora_lib


def suffix_xent(logits, targets, mask_loss, label_smoothing=0.0):
  """Next-token cross entropy averaged over each example's loss tokens, then the batch.

  Args:
    logits: float32[B, T, V], predictions for `targets` (already shifted by one).
    targets: int32[B, T] token ids.
    mask_loss: int32/bool[B, T], 1 on tokens that carry loss (suffix + EOS).
    label_smoothing: float in [0, 1).
  Returns:
    (loss float32[], per_example float32[B]). Examples without loss tokens count 0.
  """
  if logits.shape[:2] != targets.shape or targets.shape != mask_loss.shape:
    raise ValueError(f"logits {logits.shape} / targets {targets.shape} / mask_loss "
                     f"{mask_loss.shape} must agree on (B, T).")
  logits = logits.astype(jnp.float32)
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  if label_smoothing:
    # Uniform-target term without a [B, T, V] one-hot: lse - mean(logits).
    smooth = jax.nn.logsumexp(logits, -1) - jnp.mean(logits, -1)
    nll = (1.0 - label_smoothing) * nll + label_smoothing * smooth
  mask = mask_loss.astype(jnp.float32)
  per_ex = jnp.sum(nll * mask, -1) / jnp.maximum(jnp.sum(mask, -1), 1.0)
  return jnp.mean(per_ex), per_ex


def cast_floats(tree, dtype):
  """Casts the floating leaves of `tree` to `dtype` (None: unchanged)."""
  if dtype is None:
    return tree
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating)
                      else x, tree)


def make_loss_fn(model, *, label_smoothing=0.0, lora_cfg=None, rules=(), frozen_mask=None,
                 compute_dtype=None):
  """Returns `loss(trainable, base, batch, rng) -> (loss, per_example)`.

  `batch`: image f32[B, H, W, 3], text int32[B, L], mask_ar int32[B, L],
  mask_loss int32[B, L], optional mask_input int32[B, L]. The model sees text[:, :-1]
  and predicts text[:, 1:].

  Args:
    frozen_mask: tree of bools like `trainable` (True: trained); False leaves pass
      through `stop_gradient`.
    compute_dtype: e.g. "bfloat16": params are cast to it for the forward pass (the
      model itself should compute in it too: `models.model_kwargs`).
  """
  def loss(trainable, base, batch, rng):
    params = trainable
    if frozen_mask is not None:
      params = jax.tree.map(lambda p, m: p if m else jax.lax.stop_gradient(p), params,
                            frozen_mask)
    if lora_cfg:
      params = lora_lib.merge(base, trainable, rng=jax.random.fold_in(rng, 1),
                              **lora_cfg)
    params = cast_floats(params, compute_dtype)
    kw = {}
    if "mask_input" in batch:
      kw["input_mask"] = batch["mask_input"][:, :-1]
    with nn.logical_axis_rules(list(rules or ())):
      logits, _ = model.apply({"params": params}, batch["image"],
                              batch["text"][:, :-1], batch["mask_ar"][:, :-1], **kw,
                              train=True, rngs={"dropout": jax.random.fold_in(rng, 0)})
    return suffix_xent(logits, batch["text"][:, 1:], batch["mask_loss"][:, 1:],
                       label_smoothing)
  return loss


def _split_micro(batch, n):
  """[B, ...] -> [n, B/n, ...]; micro-batch i takes rows i, i+n, ... (any order works:
  the loss is a mean of per-example means, so the sum over micro-batches is exact)."""
  def one(x):
    if x.shape[0] % n:
      raise ValueError(f"batch size {x.shape[0]} is not divisible by "
                       f"grad_accum_steps={n}.")
    x = x.reshape((x.shape[0] // n, n) + x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(one, batch)


def grads_and_loss(loss_fn, trainable, base, batch, rng, accum):
  """Mean loss and gradients over the batch, in `accum` sequential micro-batches."""
  vg = jax.value_and_grad(lambda p, b, r: loss_fn(p, base, b, r)[0])
  if accum <= 1:
    return vg(trainable, batch, rng)
  micro = _split_micro(batch, accum)
  def body(carry, xs):
    i, mb = xs
    l, g = vg(trainable, mb, jax.random.fold_in(rng, i))
    return jax.tree.map(jnp.add, carry, (l, g)), None
  zeros = (jnp.zeros([], jnp.float32), jax.tree.map(jnp.zeros_like, trainable))
  (l, g), _ = jax.lax.scan(body, zeros, (jnp.arange(accum), micro))
  return l / accum, jax.tree.map(lambda x: x / accum, g)


def _norm(tree, mask=None):
  leaves = jax.tree.leaves(tree if mask is None else jax.tree.map(
      lambda x, m: x if m else jnp.zeros([], x.dtype), tree, mask))
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


def make_update_fn(loss_fn, tx, *, trainable_mask, accum=1):
  """Returns `update(state, base, batch, rng) -> (state, metrics)` (not jitted).

  metrics: loss, grad_norm / param_norm / update_norm (trainable params only).
  """
  def update(state, base, batch, rng):
    params = state["params"]
    loss, grads = grads_and_loss(loss_fn, params, base, batch, rng, accum)
    updates, opt = tx.update(grads, state["opt"], params)
    new_params = optax.apply_updates(params, updates)
    metrics = {"loss": loss, "grad_norm": _norm(grads, trainable_mask),
               "param_norm": _norm(new_params, trainable_mask),
               "update_norm": _norm(updates, trainable_mask)}
    return {"params": new_params, "opt": opt}, metrics
  return update
