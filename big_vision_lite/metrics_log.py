"""Training metrics: `metrics.jsonl`, TensorBoard events and a console progress line.

Only process 0 writes. One JSON object per logged training step (evaluator results are
lines of their own, keys prefixed by the evaluator's name: `{"step": 100, "vqa/acc": 0.8}`),
e.g.
`{"step": 10, "loss": 2.3, "lr": 0.001, "grad_norm": ..., "examples_seen/shapes": 320,
"steps_per_sec": 3.1, "examples_per_sec": 99.2, "eta_sec": 42.0}`. The TensorBoard events
(`workdir/tb`) hold the same values: one `tf.summary.scalar` per key, tagged by the key.
"""
import json
import os
import time


def _summary_writer(logdir):
  """A `tf.summary` file writer on the CPU, so TF takes no accelerator that JAX uses.

  The pinned tensorflow-cpu has no GPU support at all; with a GPU build of TF, GPUs are
  hidden from TF here unless TF has already initialised its devices (then the
  visibility can no longer change and is left as the process set it).
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # Devices already initialised: visibility can no longer change.
    pass
  with tf.device("/cpu:0"):
    return tf.summary.create_file_writer(logdir)


class MetricsWriter:
  """Appends metrics to `workdir/metrics.jsonl` and TensorBoard files in `workdir/tb`.

  Args:
    workdir: the run folder. total_steps: for the ETA. batch_size: global batch size.
    enabled: False on hosts other than 0 (they write nothing).
    write_note: function(str) for the console line.
    resume_step: the step training resumes from; lines logged after it are dropped.
  """

  def __init__(self, workdir, *, total_steps, batch_size, enabled=True,
               write_note=print, resume_step=0):
    self.total_steps = total_steps
    self.batch_size = batch_size
    self.enabled = enabled
    self.write_note = write_note
    self._last = None  # (time, step) of the previous log line.
    self._tb = None
    self._path = os.path.join(workdir, "metrics.jsonl")
    if enabled:
      self.drop_after(resume_step)
      self._tb = _summary_writer(os.path.join(workdir, "tb"))

  def drop_after(self, resume_step):
    """Drops lines of steps after `resume_step` (logged before a crash, about to be
    redone) and a torn last line, so no step appears twice; atomic rewrite."""
    if not self.enabled or not os.path.exists(self._path):
      return
    keep = []
    with open(self._path) as f:
      for line in f:
        try:
          if json.loads(line)["step"] <= resume_step:
            keep.append(line if line.endswith("\n") else line + "\n")
        except (ValueError, KeyError):
          continue
    tmp = self._path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(keep)
    os.replace(tmp, self._path)

  def start(self, step):
    """Marks the clock (call right before the first timed step)."""
    self._last = (time.monotonic(), step)

  def write(self, step, metrics, *, prefix="train"):
    """Logs `metrics` (dict of floats) at `step`; adds speeds and ETA for training."""
    out = {"step": int(step)}
    name = (lambda k: k) if prefix == "train" else (lambda k: f"{prefix}/{k}")
    out.update({name(k): float(v) for k, v in metrics.items()})
    if prefix == "train" and self._last is not None:
      now = time.monotonic()
      dt, ds = now - self._last[0], step - self._last[1]
      if ds > 0 and dt > 0:
        out["steps_per_sec"] = ds / dt
        out["examples_per_sec"] = ds * self.batch_size / dt
        out["eta_sec"] = (self.total_steps - step) * dt / ds
      self._last = (now, step)
    if not self.enabled:
      return out
    with open(self._path, "a") as f:
      f.write(json.dumps(out) + "\n")
    self._write_tb(step, out)
    self.write_note(self._line(out, prefix))
    return out

  def _write_tb(self, step, out):
    """One `tf.summary.scalar` per value of the line, tagged as in metrics.jsonl."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    with self._tb.as_default(step=int(step)):
      for k, v in out.items():
        if k != "step":
          tf.summary.scalar(k, v)
    self._tb.flush()

  def _line(self, out, prefix):
    if prefix != "train":
      items = ", ".join(f"{k.split('/', 1)[1]}={v:.4g}" for k, v in out.items()
                        if k != "step")
      return f"[{prefix}] step {out['step']}: {items}"
    # One lr, or one per schedule group (`lr/sched_0`, ...: config.schedule is a list).
    lrs = [f"{v:.3g}" for k, v in out.items() if k == "lr" or k.startswith("lr/")] or ["0"]
    line = (f"step {out['step']}/{self.total_steps} loss {out.get('loss', float('nan')):.4f}"
            f" lr {' '.join(lrs)} |g| {out.get('grad_norm', 0.0):.3g}")
    if "steps_per_sec" in out:
      eta = int(out["eta_sec"])
      line += (f" {out['steps_per_sec']:.2f} steps/s {out['examples_per_sec']:.1f} ex/s"
               f" ETA {eta // 60}m{eta % 60:02d}s")
    return line

  def close(self):
    if self._tb is not None:
      self._tb.flush()
      self._tb.close()
