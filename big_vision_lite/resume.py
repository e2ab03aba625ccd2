"""Orbax train-state checkpoints: save (async, atomic), keep policy, resume.

`restore_latest` resumes from the newest checkpoint that reads back: a corrupt one (bad
metadata, missing or damaged array files, damaged data position) is reported and the
previous kept checkpoint (`keep_ckpts` > 1) is used instead.

A checkpoint `WORKDIR/checkpoints/<step>/` holds the train state's leaves (params,
optimizer state) in `state/` and a JSON `meta/` with the step and the RNG key. Each
process's data iterator position (a dict of numpy arrays; hosts differ) goes to
`WORKDIR/data_state/<step>_p<process>.npz`, written atomically before the
orbax save starts, so a complete orbax step always has its data files. Orbax writes each step into a temporary folder and renames it
when complete, so a crash mid-save leaves the previous checkpoint as the latest good
one. The leaves are stored flat (`"000001": array`) and restored into the structure of
the state that `init_train_state` builds, with that state's shardings.
"""
import os
import re
import zipfile

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
  """A readable checkpoint that does not fit this config (never skipped)."""


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
    self._mngr = ocp.CheckpointManager(self.directory, options=options,
                                       item_names=("state", "meta"))
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
    """Starts saving; returns at once when async (call `wait` before reading it)."""
    self._mngr.wait_until_finished()  # The previous step is complete before pruning.
    self._write_data(step, data_state)
    leaves = {f"{i:06d}": x for i, x in enumerate(jax.tree.leaves(state))}
    meta = {"step": int(step), "rng": np.asarray(jax.random.key_data(rng)).tolist()}
    self._mngr.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(leaves), meta=ocp.args.JsonSave(meta)), force=True)

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

  def restore_state(self, step, abstract_state):
    """Returns the train state of checkpoint `step`.

    Args:
      abstract_state: tree of `jax.ShapeDtypeStruct` with `.sharding` set; the saved
        arrays are laid out like it.
    """
    leaves, treedef = jax.tree.flatten(abstract_state)
    target = {f"{i:06d}": x for i, x in enumerate(leaves)}
    meta = self._mngr.item_metadata(int(step))
    n_saved = len(meta["state"]) if meta and meta.get("state") is not None else None
    if n_saved is not None and n_saved != len(leaves):
      raise CheckpointMismatchError(
          f"Checkpoint {self.directory}/{step} has {n_saved} arrays but "
          f"this config's train state has {len(leaves)}: the config changed "
          "(model, optimizer, LoRA or frozen params). Use a fresh workdir.")
    out = self._mngr.restore(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))
    return jax.tree.unflatten(treedef, [out["state"][f"{i:06d}"]
                                        for i in range(len(leaves))])

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
