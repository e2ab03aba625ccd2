"""Orbax train-state checkpoints: save (async, atomic), keep policy, resume.

`restore_latest` resumes from the newest checkpoint that reads back: a corrupt one (bad
metadata, missing or damaged array files, damaged data position) is reported and the
previous kept checkpoint (`keep_ckpts` > 1) is used instead.

A checkpoint `WORKDIR/checkpoints/<step>/` holds three orbax items: `params/` (the
trainable params, a standard orbax save of the named tree `img/embedding/kernel`, ...),
`opt/` (the optax state, named by its tree paths) and a JSON `meta/` with the step and
the RNG key. So params restore alone (`restore_params`, no optimizer built; shapes from
the checkpoint's own metadata) and any orbax program reads them:
`ocp.StandardCheckpointer().restore(".../checkpoints/100/params")`. Each process's data
iterator position (a dict of numpy arrays; hosts differ) goes to
`WORKDIR/data_state/<step>_p<process>.npz`, written atomically before the orbax save
starts, so a complete orbax step always has its data files. Orbax writes each step into
a temporary folder and renames it when complete, so a crash mid-save leaves the previous
checkpoint as the latest good one.
"""
import os
import re
import zipfile

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
  """A readable checkpoint that does not fit this config (never skipped)."""


ITEMS = ("params", "opt")  # The train state's parts, each an orbax item.
_UNREADABLE = (ValueError, OSError, KeyError, EOFError, TypeError, zipfile.BadZipFile)


class Checkpointer:
  """Saves and restores the train state, data positions and RNG under `workdir`.

  Args:
    workdir: the run's folder (shared by all hosts).
    keep: keep this many most recent checkpoints.
    keep_period: also keep every checkpoint whose step is a multiple of this.
    async_save: write in a background thread (the next steps run meanwhile).
  """

  def __init__(self, workdir, *, keep=1, keep_period=None, async_save=True):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, keep_period=keep_period or None, create=True,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
    handlers = {k: ocp.StandardCheckpointHandler() for k in ITEMS}
    self._mngr = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers=dict(handlers, meta=ocp.JsonCheckpointHandler()))
    self._data_dir = os.path.join(os.path.abspath(workdir), "data_state")

  def _data_path(self, step):
    return os.path.join(self._data_dir, f"{int(step)}_p{jax.process_index()}.npz")

  def _write_data(self, step, data_state):
    os.makedirs(self._data_dir, exist_ok=True)
    path = self._data_path(step)
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **{k: np.asarray(v) for k, v in data_state.items()})
    os.replace(tmp, path)
    self._prune_data(keep=set(self._mngr.all_steps()) | {int(step)})

  def _prune_data(self, keep):
    if not os.path.isdir(self._data_dir):
      return
    for name in os.listdir(self._data_dir):
      m = re.fullmatch(rf"(\d+)_p{jax.process_index()}\.npz", name)
      if m and int(m.group(1)) not in keep:
        os.remove(os.path.join(self._data_dir, name))

  def latest_step(self):
    """The step of the newest complete checkpoint, or None."""
    return self._mngr.latest_step()

  def save(self, step, state, *, data_state, rng):
    """Starts saving `state` ({"params", "opt"}); returns at once when async (call
    `wait` before reading it)."""
    self._mngr.wait_until_finished()  # The previous step is complete before pruning.
    if int(step) in self._mngr.all_steps():  # Only one that resuming fell back past
      self._mngr.delete(int(step))  # (unreadable) is redone; replace it.
    self._write_data(step, data_state)
    meta = {"step": int(step), "rng": np.asarray(jax.random.key_data(rng)).tolist()}
    items = {k: ocp.args.StandardSave(state[k]) for k in ITEMS}
    self._mngr.save(int(step), args=ocp.args.Composite(
        **items, meta=ocp.args.JsonSave(meta)), force=True)

  def restore_meta(self, step):
    """Returns `(data_state, rng)` of checkpoint `step` (read before the state)."""
    out = self._mngr.restore(int(step), args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))
    rng = jax.random.wrap_key_data(np.asarray(out["meta"]["rng"], np.uint32))
    path = self._data_path(step)
    if not os.path.exists(path):
      raise FileNotFoundError(f"Checkpoint step {step} has no data position {path} for "
                              f"process {jax.process_index()}; resume with the same "
                              "number of processes and workdir.")
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}, rng

  def abstract_params(self, step, shardings_fn):
    """The saved params' shapes and dtypes (from the checkpoint's metadata).

    Args:
      shardings_fn: fn(tree of ShapeDtypeStructs) -> tree of shardings.
    Returns:
      tree of ShapeDtypeStructs with `.sharding` set.
    """
    meta = self._mngr.item_metadata(int(step))
    if meta is None or meta.get("params") is None:
      raise CheckpointMismatchError(f"Checkpoint {self.directory}/{step} has no `params` "
                                    "item (written by an older version?).")
    tree = getattr(meta["params"], "tree", meta["params"])
    shapes = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        shapes, shardings_fn(shapes))

  def restore_state(self, step, abstract_state, items=ITEMS):
    """Returns the train state (or the `items` of it) of checkpoint `step`.

    Args:
      abstract_state: dict item -> tree of `jax.ShapeDtypeStruct` with `.sharding` set;
        the saved arrays are laid out like it.
      items: which items to read (("params",) restores the params alone).
    """
    meta = self._mngr.item_metadata(int(step))
    for k in items:
      saved = meta.get(k) if meta is not None else None
      saved = getattr(saved, "tree", saved)
      want = abstract_state[k]
      n_saved, n_want = len(jax.tree.leaves(saved)), len(jax.tree.leaves(want))
      if saved is not None and n_saved != n_want:
        raise CheckpointMismatchError(
            f"Checkpoint {self.directory}/{step} item {k!r} has {n_saved} arrays but "
            f"this config's train state has {n_want}: the config changed (model, "
            "optimizer, LoRA or frozen params). Use a fresh workdir.")
    out = self._mngr.restore(int(step), args=ocp.args.Composite(
        **{k: ocp.args.StandardRestore(abstract_state[k]) for k in items}))
    return {k: out[k] for k in items}

  def restore_latest(self, abstract_state, write_note=print):
    """Returns `(step, state, data_state, rng)` of the newest readable checkpoint.

    Returns None when there is no checkpoint. A checkpoint that fails to read is
    reported through `write_note` and skipped; if none reads, raises ValueError.
    """
    failed = []
    for step in sorted(self._mngr.all_steps(), reverse=True):
      try:
        data_state, rng = self.restore_meta(step)
        return step, self.restore_state(step, abstract_state), data_state, rng
      except CheckpointMismatchError:
        raise
      except _UNREADABLE as e:  # Corrupt files: fall back to the previous checkpoint.
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:400]
        failed.append(f"{step} ({why})")
        write_note(f"Checkpoint {self.directory}/{step} is unreadable ({why}); falling "
                   "back to the previous checkpoint.")
    if failed:
      raise ValueError(f"No readable checkpoint in {self.directory}: {failed}. Delete the "
                       "corrupt step folders or use a fresh workdir.")
    return None

  def wait(self):
    """Blocks until an in-flight async save is complete on disk."""
    self._mngr.wait_until_finished()

  def close(self):
    self._mngr.wait_until_finished()
    self._prune_data(keep=set(self._mngr.all_steps()))
    self._mngr.close()
