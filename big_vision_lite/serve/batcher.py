"""Groups requests that arrive together into one on-device decode.

One worker thread takes the oldest pending request and waits at most `max_wait_s` (from
that request's arrival) for more requests of the same `Options.group()`, up to `max_batch`;
then it decodes them with `Engine.generate` in one padded batch and resolves their futures.
Requests of other groups wait for a later batch, in arrival order. At most `max_queue`
requests may wait: more are refused (HTTP 503) instead of queueing without bound.
"""
import collections
import concurrent.futures
import dataclasses
import threading
import time

from big_vision_lite.serve import engine as engine_lib


@dataclasses.dataclass
class _Pending:
  example: object
  options: object
  future: concurrent.futures.Future
  arrived: float


class Batcher:
  """Runs `engine.generate` on batches of submitted requests in a worker thread.

  Args:
    engine: an `engine.Engine`.
    max_batch: the most requests per decode (<= engine.max_batch).
    max_wait_s: the longest a request waits for others to join its batch.
    max_queue: the most requests waiting at once.
  """

  def __init__(self, engine, *, max_batch=None, max_wait_s=0.01, max_queue=256):
    max_batch = engine.max_batch if max_batch is None else max_batch
    if not 1 <= max_batch <= engine.max_batch:
      raise ValueError(f"max_batch={max_batch} must be in [1, {engine.max_batch}] (the "
                       "engine's max_batch).")
    if max_wait_s < 0 or max_queue < 1:
      raise ValueError(f"max_wait_s={max_wait_s} must be >= 0 and max_queue={max_queue} "
                       ">= 1.")
    self.engine, self.max_batch = engine, max_batch
    self.max_wait_s, self.max_queue = max_wait_s, max_queue
    self._pending = collections.deque()
    self._cond = threading.Condition()
    self._closed = False
    self.batch_sizes = collections.Counter()  # {requests in a batch: number of batches}
    self._thread = threading.Thread(target=self._run, name="serve-batcher", daemon=True)
    self._thread.start()

  def submit(self, example, options):
    """Queues one request; returns a Future of its `Engine.generate` result dict."""
    future = concurrent.futures.Future()
    with self._cond:
      if self._closed:
        raise engine_lib.RequestError("The server is shutting down.", status=503)
      if len(self._pending) >= self.max_queue:
        raise engine_lib.RequestError(
            f"{len(self._pending)} requests are waiting (the server's --max_queue); "
            "retry later.", status=503)
      self._pending.append(_Pending(example, options, future, time.monotonic()))
      self._cond.notify_all()
    return future

  def stats(self):
    """{"pending": int, "batches": {size: count}}."""
    with self._cond:
      return {"pending": len(self._pending),
              "batches": {str(k): v for k, v in sorted(self.batch_sizes.items())}}

  def close(self, timeout=None):
    """Stops the worker after the pending requests; waits up to `timeout` seconds."""
    with self._cond:
      self._closed = True
      self._cond.notify_all()
    self._thread.join(timeout)

  def _take(self):
    """Blocks until a batch is due; returns its list of `_Pending` (empty: closed)."""
    with self._cond:
      while True:
        if not self._pending:
          if self._closed:
            return []
          self._cond.wait()
          continue
        group = self._pending[0].options.group()
        same = [p for p in self._pending if p.options.group() == group]
        left = self._pending[0].arrived + self.max_wait_s - time.monotonic()
        if len(same) >= self.max_batch or left <= 0 or self._closed:
          batch = same[:self.max_batch]
          for p in batch:
            self._pending.remove(p)
          return batch
        self._cond.wait(left)

  def _run(self):
    while True:
      batch = self._take()
      if not batch:
        return
      started = time.monotonic()
      try:
        results = self.engine.generate([p.example for p in batch],
                                       [p.options for p in batch])
      except Exception as e:  # pylint: disable=broad-except
        for p in batch:
          p.future.set_exception(e)
        continue
      self.batch_sizes[len(batch)] += 1
      for p, r in zip(batch, results):
        r["timings"]["queue_ms"] = round(1000 * (started - p.arrived), 2)
        p.future.set_result(r)
