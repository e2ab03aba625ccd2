"""Tests of `prefetch.Prefetcher`: order, one item per request, errors, shutdown."""
import threading
import time

import pytest

from big_vision_lite import prefetch


def _counter(log=None):
  it = iter(range(100))
  def produce():
    item = next(it)
    if log is not None:
      log.append((item, threading.current_thread().name))
    return item
  return produce


def test_items_come_in_order_made_on_the_worker_thread():
  log = []
  p = prefetch.Prefetcher(_counter(log), name="worker-x")
  got = []
  for _ in range(5):
    p.request()
    got.append(p.get())
  p.close()
  assert got == [0, 1, 2, 3, 4]
  assert log == [(i, "worker-x") for i in range(5)]


def test_worker_makes_one_item_per_request_and_never_reads_ahead():
  log = []
  p = prefetch.Prefetcher(_counter(log))
  p.request()
  assert p.get() == 0
  time.sleep(0.2)  # Time to read ahead, if it did.
  assert [i for i, _ in log] == [0]
  p.request()
  assert p.get() == 1
  p.close()
  assert [i for i, _ in log] == [0, 1]


def test_item_is_made_while_the_caller_works():
  started, release = threading.Event(), threading.Event()
  def produce():
    started.set()
    release.wait(5)
    return "batch"
  p = prefetch.Prefetcher(produce)
  p.request()  # Returns at once.
  assert started.wait(5)
  release.set()
  assert p.get() == "batch"
  p.close()


@pytest.mark.parametrize("error", [ValueError("bad row 7 in /data/x.jsonl"),
                                   StopIteration("input ended")])
def test_worker_exception_is_raised_by_get_with_its_message(error):
  def produce():
    raise error
  p = prefetch.Prefetcher(produce)
  p.request()
  with pytest.raises(type(error), match=str(error)) as info:
    p.get()
  assert info.value is error
  assert "produce" in _frame_names(info.tb)  # The worker's frames are kept.
  p.close()
  assert not p._thread.is_alive()  # pylint: disable=protected-access


def _frame_names(tb):
  names = []
  while tb is not None:
    names.append(tb.tb_frame.f_code.co_name)
    tb = tb.tb_next
  return names


def test_close_ends_the_thread_idle_or_with_an_item_in_flight():
  p = prefetch.Prefetcher(_counter())
  p.close()
  assert not p._thread.is_alive()  # pylint: disable=protected-access
  p.close()  # Twice is fine.

  release = threading.Event()
  def slow():
    release.wait(5)
    return 1
  p = prefetch.Prefetcher(slow)
  p.request()
  closer = threading.Thread(target=p.close)
  closer.start()
  time.sleep(0.1)
  assert closer.is_alive()  # Waits for the item in flight...
  release.set()
  closer.join(5)
  assert not closer.is_alive() and not p._thread.is_alive()  # pylint: disable=protected-access


def test_misuse_is_refused():
  p = prefetch.Prefetcher(_counter())
  with pytest.raises(RuntimeError, match="without request"):
    p.get()
  p.request()
  with pytest.raises(RuntimeError, match="one item at a time"):
    p.request()
  assert p.get() == 0
  p.close()
  with pytest.raises(RuntimeError, match="after close"):
    p.request()
