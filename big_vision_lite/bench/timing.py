"""Measurement helpers of `tools/benchmark.py`: timers, same-process peaks, memory, tables.

Peaks are measured in the process that runs the benchmark, right before it, so a ratio
(MFU, roofline) compares two numbers taken under the same load on the same machine.
"""
import datetime
import json
import os
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np


def time_calls(fn, *, iters, warmup=1):
  """Wall seconds of `iters` calls of `fn()` after `warmup` calls.

  `fn` must block until its result is ready (e.g. end with `jax.block_until_ready`).

  Returns:
    dict(times [s], median, min, warmup_s (seconds of the warm-up calls, compile incl.)).
  """
  t0 = time.perf_counter()
  for _ in range(warmup):
    fn()
  warm = time.perf_counter() - t0
  times = []
  for _ in range(iters):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return dict(times=times, median=float(np.median(times)), min=float(np.min(times)),
              warmup_s=warm)


def matmul_peak(dtype="float32", n=2048, iters=5):
  """FLOP/s of an n x n x n matmul in `dtype` (best of `iters`): the same-process peak.

  Returns:
    dict(flops_per_s, n, dtype, seconds).
  """
  a = jnp.asarray(np.random.RandomState(0).normal(size=(n, n)), dtype)
  f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
  r = time_calls(lambda: jax.block_until_ready(f(a, a)), iters=iters)
  return dict(flops_per_s=2.0 * n**3 / r["min"], n=n, dtype=str(dtype), seconds=r["min"])


def memory_bandwidth(nbytes=256 << 20, iters=5):
  """Read bandwidth in bytes/s: a jitted sum over an f32 array of `nbytes` (best of).

  Weight streaming in batch-1 decoding is a read of every weight once per token; this
  is the same access pattern.
  """
  x = jnp.ones((nbytes // 4,), jnp.float32)
  f = jax.jit(jnp.sum)
  r = time_calls(lambda: jax.block_until_ready(f(x)), iters=iters)
  return dict(bytes_per_s=nbytes / r["min"], nbytes=nbytes, seconds=r["min"])


def host_rss():
  """dict(rss_bytes (now), peak_rss_bytes (max so far)) of this process."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux.
  now = peak
  try:
    with open("/proc/self/statm") as f:
      now = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
  except OSError:
    pass
  return dict(rss_bytes=now, peak_rss_bytes=peak)


def compiled_memory(compiled):
  """Bytes per device from `compiled.memory_analysis()`.

  Returns:
    dict(argument, output, alias, temp, peak = argument + output - alias + temp), or
    {} when the backend gives no analysis.
  """
  m = compiled.memory_analysis()
  if m is None:
    return {}
  out = dict(argument=m.argument_size_in_bytes, output=m.output_size_in_bytes,
             alias=m.alias_size_in_bytes, temp=m.temp_size_in_bytes)
  out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
  return out


def device_peak_memory():
  """Peak bytes in use on device 0 when the backend reports it (GPU/TPU), else None."""
  stats = jax.devices()[0].memory_stats()
  return None if not stats else stats.get("peak_bytes_in_use")


def machine():
  """Where the numbers were taken: dict(host, cpus, backend, devices, date_utc)."""
  return dict(host=platform.processor() or platform.machine(), cpus=os.cpu_count(),
              backend=jax.default_backend(), device_kind=jax.devices()[0].device_kind,
              devices=jax.device_count(), jax=jax.__version__,
              date_utc=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
              load_avg_1m=os.getloadavg()[0])


def fmt(v):
  """Short human form of a number (3 significant digits, SI suffix above 1e4)."""
  if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
    return str(v)
  v = float(v)
  for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
    if abs(v) >= max(div, 1e4):
      return f"{v / div:.3g}{suffix}"
  return f"{v:.3g}"


def table(title, rows):
  """Formats `rows` (list of flat dicts sharing keys) as a Markdown table under `title`."""
  if not rows:
    return f"{title}\n(no rows)"
  keys = list(rows[0])
  for r in rows[1:]:
    keys += [k for k in r if k not in keys]
  lines = [f"### {title}", "| " + " | ".join(keys) + " |",
           "|" + "|".join("---" for _ in keys) + "|"]
  lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
  return "\n".join(lines)


def write_json(path, result):
  """Writes `result` (plus `machine()`) as indented JSON; creates the folder."""
  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump({"machine": machine(), **result}, f, indent=2, default=float)
