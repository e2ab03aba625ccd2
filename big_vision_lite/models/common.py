"""Shared model helpers: merging loaded params into init params, layer stacking."""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from big_vision_lite import checkpoint


def subtree(tree, key, where):
  """`tree[key]` as a dict ({} if absent); an array where a subtree belongs is an error."""
  sub = tree.get(key, {})
  if not hasattr(sub, "items"):
    name = f"{where}/{key}" if where else key
    raise ValueError(f"Loaded params: '{name}' is an array "
                     f"{getattr(sub, 'dtype', type(sub).__name__)}"
                     f"{tuple(getattr(sub, 'shape', ()))}, expected a subtree of params; "
                     "the checkpoint does not have this model's layout.")
  return dict(sub)


def read_params(init_file):
  """A tower's `load` input as a dict: "file.npz[:subtree]" is read, a dict is copied."""
  return dict(init_file if isinstance(init_file, dict) else
              checkpoint.load_params(init_file))


def compile_patterns(patterns):
  """dont_load regexes -> compiled patterns; a bad one is a ValueError naming it."""
  if isinstance(patterns, str):
    patterns = (patterns,)
  out = []
  for p in patterns:
    if not isinstance(p, str):
      raise ValueError(f"dont_load entry {p!r} must be a regex string; dont_load="
                       f"{list(patterns)}.")
    try:
      out.append(re.compile(p))
    except re.error as e:
      raise ValueError(f"Bad dont_load regex {p!r}: not a valid regex ({e}); fix it in "
                       f"dont_load={list(patterns)}.") from None
  return out


def _cast_like(x, dtype):
  """Casts float `x` to float `dtype` (numpy, ml_dtypes for bfloat16); else returns x."""
  dtype = np.dtype(dtype)
  if (getattr(x, "dtype", dtype) == dtype or not jnp.issubdtype(x.dtype, jnp.floating)
      or not jnp.issubdtype(dtype, jnp.floating)):
    return x
  if hasattr(x, "astype"):  # numpy, jax, or a lazily read array (cast when read).
    return x.astype(dtype)
  return np.asarray(x).astype(dtype)


def merge_params(loaded, init, dont_load=()):
  """Returns `init`'s tree filled with `loaded` values; checks that they match.

  Keys of `init` matching a `dont_load` regex (full match on "a/b/c") keep their init
  value. Every other init key must be in `loaded` with the same shape, and every loaded
  key must be used. `init` fixes the dtypes too: a loaded float leaf (float32, bfloat16
  or float16 checkpoints) is cast to the dtype of its init leaf, so the params compute
  in the precision the caller initialised (e.g. float32 params to train from a bfloat16
  release, or bfloat16 `ShapeDtypeStruct`s to serve a float32 one in half the memory).

  Args:
    loaded: nested dict of arrays (e.g. from `checkpoint.load_params`).
    init: nested dict of arrays (or ShapeDtypeStructs outside `dont_load`).
    dont_load: regexes of param names that are taken from `init`.

  Returns:
    nested dict with the structure of `init`.
  """
  loaded_flat = checkpoint.flatten(loaded)
  init_flat = checkpoint.flatten(init)
  regexes = compile_patterns(dont_load)
  skip = {k for k in init_flat if any(r.fullmatch(k) for r in regexes)}
  missing = sorted(k for k in init_flat if k not in loaded_flat and k not in skip)
  unused = sorted(k for k in loaded_flat
                  if k not in init_flat and not any(r.fullmatch(k) for r in regexes))
  if missing or unused:
    raise ValueError(
        f"Loaded params do not match the model. Missing (in model, not in checkpoint): "
        f"{missing}. Unused (in checkpoint, not in model): {unused}. Fix the model "
        "config (variant, scan, sizes) or add regexes of params to keep from init to "
        f"dont_load (now {list(dont_load)}).")
  merged, bad_shapes, bad_dtypes = {}, [], []
  for k, v in init_flat.items():
    if k in skip:
      merged[k] = v
      continue
    new = loaded_flat[k]
    if tuple(np.shape(new)) != tuple(v.shape):
      bad_shapes.append(f"{k}: checkpoint {tuple(np.shape(new))} != model {tuple(v.shape)}")
    new_dtype = np.dtype(getattr(new, "dtype", np.asarray(new).dtype))
    if jnp.issubdtype(v.dtype, jnp.floating) and not jnp.issubdtype(new_dtype, jnp.floating):
      bad_dtypes.append(f"{k}: checkpoint {new_dtype} != model {np.dtype(v.dtype)}")
    merged[k] = _cast_like(new, v.dtype)
  if bad_shapes:
    raise ValueError(f"Loaded params have wrong shapes: {bad_shapes}. Fix the model "
                     "config or add these names to dont_load.")
  if bad_dtypes:
    raise ValueError(f"Loaded params are not floating point where the model's are: "
                     f"{bad_dtypes[:10]} ({len(bad_dtypes)} in all). Valid: float32, "
                     "bfloat16, float16 or float64 leaves; the file is not a params "
                     "checkpoint of this model, or was written wrongly.")
  return checkpoint.unflatten(merged)


def stack_layers(tree, prefix, depth):
  """Moves per-layer subtrees `{prefix}{i}` into one `stacked` tree (layer axis first).

  Args:
    tree: dict holding keys f"{prefix}0" .. f"{prefix}{depth-1}"; not modified.
    prefix: e.g. "encoderblock_".
    depth: number of layers.

  Returns:
    (rest, stacked): `tree` without the layer keys, and the stacked subtree.
  """
  names = [f"{prefix}{i}" for i in range(depth)]
  missing = [n for n in names if n not in tree]
  if missing:
    raise ValueError(f"Cannot stack layers: keys {missing} are missing; have {sorted(tree)}.")
  rest = {k: v for k, v in tree.items() if k not in names}
  flats = []
  for n in names:
    if not hasattr(tree[n], "items"):
      raise ValueError(f"Cannot stack layers: '{n}' is an array, expected a subtree of "
                       "layer params.")
    flats.append(checkpoint.flatten(tree[n]))
  for n, f in zip(names[1:], flats[1:]):
    if set(f) != set(flats[0]):
      raise ValueError(f"Cannot stack layers: '{n}' has keys {sorted(set(f) ^ set(flats[0]))} "
                       f"that '{names[0]}' lacks or has; every layer needs the same keys.")
  stacked = {}
  for k in flats[0]:
    shapes = [np.shape(f[k]) for f in flats]
    if len(set(shapes)) != 1:
      i = next(i for i, s in enumerate(shapes) if s != shapes[0])
      raise ValueError(f"Cannot stack layers: '{names[i]}/{k}' has shape {shapes[i]}, "
                       f"'{names[0]}/{k}' has {shapes[0]}; every layer must match.")
    stacked[k] = np.stack([np.asarray(f[k]) for f in flats])
  return rest, checkpoint.unflatten(stacked)


def unstack_layers(stacked, prefix):
  """Splits a stacked subtree (layer axis first) into {f"{prefix}{i}": layer_tree}."""
  flat = checkpoint.flatten(stacked)
  scalars = sorted(k for k, v in flat.items() if not np.shape(v))
  if scalars:
    raise ValueError(f"Stacked layer params {scalars[:5]} are scalars; each needs the layer "
                     "axis first.")
  depth = {k: np.shape(v)[0] for k, v in flat.items()}
  if len(set(depth.values())) != 1:
    raise ValueError(f"Stacked layers disagree on the layer axis (first dimension): "
                     f"{depth}; every stacked param needs the same number of layers.")
  depth = next(iter(depth.values()))
  return {f"{prefix}{i}": checkpoint.unflatten({k: np.asarray(v)[i] for k, v in flat.items()})
          for i in range(depth)}


def fit_vocab(emb, rows, seed=0):
  """Adapts embedding rows to the model's vocab size.

  Checkpoints with 256128 rows carry 128 unused padding rows: they are dropped first.
  Missing rows are appended as N(0, 0.02) draws from a fixed seed (reproducible).

  Args:
    emb: float[V_ckpt, D]; rows: V of the model; seed: for the new rows.

  Returns:
    float[rows, D] in the dtype of `emb`.
  """
  if emb.shape[0] == rows:
    return emb  # Unchanged (a lazily read array stays unread).
  emb = np.asarray(emb)
  if emb.shape[0] == 256_128 and rows != 256_128:
    emb = emb[:256_000]
  if emb.shape[0] > rows:
    raise ValueError(f"Checkpoint has {emb.shape[0]} embedding rows but the model's "
                     f"vocab_size is {rows}; set vocab_size >= {emb.shape[0]}.")
  new = np.random.default_rng(seed).normal(size=(rows - emb.shape[0], emb.shape[1])) * 0.02
  return np.concatenate([emb, new.astype(emb.dtype)]) if len(new) else emb


class Unrolled(nn.Module):
  """Per-layer (unscanned) blocks named "0", "1", ...; same interface as the scan."""
  block: type
  depth: int
  kw: dict

  @nn.compact
  def __call__(self, x, xs, *args):
    layer_ids, caches = xs
    kvs = []
    for i in range(self.depth):
      cache_i = None if caches is None else jax.tree.map(lambda c, i=i: c[i], caches)
      x, kv = self.block(name=str(i), **self.kw)(x, (layer_ids[i], cache_i), *args)
      kvs.append(kv)
    if kvs[0] is None:
      return x, None
    return x, jax.tree.map(lambda *a: jnp.stack(a), *kvs)
