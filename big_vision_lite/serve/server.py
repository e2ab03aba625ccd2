"""Runs the app under uvicorn: `Server` serves an engine on a socket in a background thread.

Used by `tools/serve.py`, the serving benchmark and the tests.
"""
import socket
import threading
import time

import uvicorn

from big_vision_lite.serve import app as app_lib
from big_vision_lite.serve import batcher as batcher_lib


def bind_socket(host="127.0.0.1", port=0):
  """A listening TCP socket on `host:port` (port 0: a free one, sock.getsockname()[1]).

  Connections made before the server runs wait in the backlog instead of being refused.
  """
  sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  sock.bind((host, port))
  sock.listen(2048)
  return sock


class Server:
  """The app of `engine` under uvicorn in a background thread, on `sock`.

  Use as a context manager: `with Server(engine) as s: urlopen(s.url + "/healthz")`.
  """

  def __init__(self, engine, *, sock=None, max_batch=None, max_wait_s=0.01, max_queue=256,
               max_bytes=app_lib.DEFAULT_MAX_BYTES):
    self.batcher = batcher_lib.Batcher(engine, max_batch=max_batch, max_wait_s=max_wait_s,
                                       max_queue=max_queue)
    self.app = app_lib.make_app(engine, self.batcher, max_bytes=max_bytes)
    self.sock = sock or bind_socket()
    host, port = self.sock.getsockname()[:2]
    self.url = f"http://{host}:{port}"
    self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning"))
    self._thread = None

  def start(self, timeout=30.0):
    """Starts serving; returns once uvicorn accepts connections."""
    self._thread = threading.Thread(target=self._server.run,
                                    kwargs=dict(sockets=[self.sock]), daemon=True)
    self._thread.start()
    deadline = time.monotonic() + timeout
    while not self._server.started:
      if not self._thread.is_alive() or time.monotonic() > deadline:
        raise RuntimeError(f"uvicorn did not start on {self.url} within {timeout} s.")
      time.sleep(0.02)
    return self

  def run(self):
    """Serves in the calling thread until interrupted (Ctrl-C), then stops the batcher."""
    try:
      self._server.run(sockets=[self.sock])
    finally:
      self.batcher.close(30.0)
      self.sock.close()

  def stop(self, timeout=30.0):
    """Stops uvicorn and the batcher, and closes the socket."""
    self._server.should_exit = True
    if self._thread is not None:
      self._thread.join(timeout)
    self.batcher.close(timeout)
    self.sock.close()

  def __enter__(self):
    return self.start()

  def __exit__(self, *exc):
    self.stop()
