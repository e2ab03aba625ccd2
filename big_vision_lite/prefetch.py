"""Makes the next training batch in a worker thread while the current step runs.

    batches = prefetch.Prefetcher(lambda: place(next(data)))
    batches.request()            # The worker starts on item 1.
    item = batches.get()         # Waits for it; the worker's exception is raised here.
    batches.request()            # Item 2 is made while the caller works on item 1.
    ...
    batches.close()              # After the item in flight, if any; the thread ends.

The worker makes one item per `request()` and never reads ahead on its own: the
trainer reads the input pipeline's position for a checkpoint between `get()` and the
next `request()`, when the worker is idle, so the position saved is that of the batches
the steps consumed (resuming stays bit-identical), without serialising the tf.data
iterator (with its shuffle and prefetch buffers) after every batch. Items come in
request order, each made by `produce()` alone on one thread: the same items in the same
order as calling `produce()` in the loop.
"""
import queue
import threading


class Prefetcher:
  """One worker thread calling `produce()` once per `request()`.

  Args:
    produce: `() -> item`; its exceptions (StopIteration included) are re-raised by the
      `get()` of that item, with their type, message and traceback.
    name: the thread's name (shows in stack dumps).
  """

  def __init__(self, produce, name="prefetch"):
    self._produce = produce
    self._requests = queue.Queue()  # True: make one item; False: end the thread.
    self._results = queue.Queue(maxsize=1)
    self._in_flight = False
    self._closed = False
    self._thread = threading.Thread(target=self._work, name=name, daemon=True)
    self._thread.start()

  def _work(self):
    while self._requests.get():
      try:
        result = (True, self._produce())
      except BaseException as e:  # pylint: disable=broad-exception-caught
        result = (False, e)  # Raised in the caller's thread by get().
      self._results.put(result)

  def request(self):
    """Starts making the next item (one at a time: `get()` the previous one first)."""
    if self._closed:
      raise RuntimeError("Prefetcher.request() after close().")
    if self._in_flight:
      raise RuntimeError("Prefetcher.request() twice without get(): one item at a time.")
    self._in_flight = True
    self._requests.put(True)

  def get(self):
    """Returns the requested item, waiting for it; raises the exception `produce` raised."""
    if not self._in_flight:
      raise RuntimeError("Prefetcher.get() without request().")
    ok, value = self._results.get()
    self._in_flight = False
    if not ok:
      raise value
    return value

  def close(self):
    """Ends the worker after the item in flight (dropped); safe to call twice."""
    if not self._closed:
      self._closed = True
      self._requests.put(False)
      self._thread.join()
