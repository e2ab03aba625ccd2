"""tf.data input pipelines: training mixtures with exact resume, and padded evaluation.

Training config (`config.input`), big_vision style:

  input.batch_size = 256                 # global; each host gets batch_size // hosts
  input.data = dict(name="shapes", task="caption", data_dir="/d/shapes")
  input.pp = "decode|resize(224)|..."    # a pp string or a callable on example dicts
  # or a weighted mixture, each source with its own data and pp:
  input.data = {"cap": 0.7, "vqa": 0.3}
  input.cap = dict(data=dict(name="jsonl", fname=...), pp="...")
  input.vqa = dict(data=dict(...))       # no pp: falls back to input.pp
  input.shuffle_buffer_size = 10_000     # per source (JSONL sources shuffle fully)
  input.prefetch = 2                     # batches
  input.skip_errors = False              # True: drop and count rows that fail

Per source: an infinite seeded shuffled stream -> pp (parallel, deterministic order) ->
`_source` id; sources are mixed by `sample_from_datasets` with a seed; then host
batches. The whole pipeline is deterministic given the seed and process index.

Each example reaches pp with `_seed` int64[2] = (source seed, example number), from
which random pp ops draw statelessly; pp outputs lose `_seed`.

Resume: `get_state()` returns tf.data's own serialized iterator state (shuffle buffers
and positions included) plus the counters, as numpy arrays; `set_state` on a freshly
built pipeline with the same config continues with exactly the batches that would have
come next (random pp ops must draw from `_seed`: TensorFlow's stateful random ops inside
`map` are not part of the iterator state). The state holds tf.data's buffers: JSONL
sources shuffle int64 row indices (small), TFDS sources shuffle encoded examples, so
their state grows with shuffle_buffer_size.
"""
import math
import re

import numpy as np
import tensorflow as tf

from big_vision_lite import datasets
from big_vision_lite import registry

_TRAIN_KEYS = ("data", "pp", "batch_size", "shuffle_buffer_size", "prefetch",
               "skip_errors")
_PRIVATE = ("_source", "_skipped", "_seq", "_mask", "_seed", "_ok")


def _to_dict(x):
  return x.to_dict() if hasattr(x, "to_dict") else dict(x)


def get_pp_fn(pp):
  """Returns the preprocessing function of a pp string (via pp.builder) or a callable."""
  if callable(pp):
    return pp
  if not isinstance(pp, str):
    raise TypeError(f"pp must be a pp string or a callable on example dicts, got {pp!r}.")
  from big_vision_lite.pp import builder  # pylint: disable=import-outside-toplevel
  return builder.get_preprocess_fn(pp)


def _options():
  options = tf.data.Options()
  options.deterministic = True
  # Stateless py_functions (e.g. tokenizers) must not block iterator checkpoints.
  options.experimental_external_state_policy = (
      tf.data.experimental.ExternalStatePolicy.IGNORE)
  return options


def _numpy(batch):
  return tf.nest.map_structure(lambda t: t.numpy(), batch)


def _clean(message):
  """The first line of a TF error message without TF's function/node/op decorations."""
  line = re.sub(r"\{\{[^}]*\}\}\s*", "", message).strip().splitlines()[0]
  line = re.sub(r"\s*\[Op:\w+\].*$", "", line)
  line = re.sub(r"^Error in user-defined function .*? with iterator: [\w:]+: ", "", line)
  return line.rstrip(". ")


def _find_bad_row(source, pp_fn, process_index, process_count, max_rows):
  """Returns the first index of a process's ordered stream that fails, or None."""
  ds = source.get_tfdata(ordered=True, process_index=process_index,
                         process_count=process_count).take(max_rows).enumerate()
  ds = ds.map(lambda i, ex: (i, pp_fn(ex)), num_parallel_calls=tf.data.AUTOTUNE)
  expected = 0
  for i, _ in ds.ignore_errors().with_options(_options()):
    if int(i) != expected:
      return expected
    expected += 1
  n = min(max_rows, source.shard_size(process_index, process_count))
  return expected if expected < n else None


def _failing_op(source, pp, index, process_index, process_count):
  """Returns (" in pp op '...'" or " while reading it", its error message or None)."""
  ds = source.get_tfdata(ordered=True, process_index=process_index,
                         process_count=process_count).skip(index).take(1)
  try:
    example = next(iter(ds))
  except tf.errors.OpError as e:
    return " while reading it", _clean(e.message)
  if not isinstance(pp, str):
    return " in the pp function", None
  from big_vision_lite.pp import builder  # pylint: disable=import-outside-toplevel
  for op in builder.split_pp(pp):
    try:
      example = get_pp_fn(op)(example)
    except Exception as e:  # pylint: disable=broad-except
      return f" in pp op {op!r}", _clean(getattr(e, "message", None) or str(e))
  return "", None


def diagnose(error, sources, process_index, process_count, max_rows=100_000):
  """Returns a ValueError naming the source, row and pp op behind a tf.data `error`.

  Args:
    error: the tf.errors.OpError raised by the pipeline.
    sources: list of (name, source, pp, pp_fn).
  """
  for name, source, pp, pp_fn in sources:
    index = _find_bad_row(source, pp_fn, process_index, process_count, max_rows)
    if index is not None:
      row = source.describe_row(index, process_index, process_count)
      where, message = _failing_op(source, pp, index, process_index, process_count)
      return ValueError(
          f"Input source {name!r}: {row} failed{where}: "
          f"{message or _clean(error.message)}. Fix or drop the row, or set "
          "input.skip_errors=True to skip and count failing rows.")
  return ValueError(f"Input pipeline failed: {_clean(error.message)}. No single "
                    f"row of {[s[0] for s in sources]} fails alone (first {max_rows} "
                    "rows checked); check that pp outputs have fixed shapes and the "
                    "same keys and dtypes in every source.")


def _source_specs(input_cfg):
  """Returns [(name, weight, data kwargs, pp, shuffle_buffer_size)] of a config."""
  data = _to_dict(input_cfg["data"])
  default_buf = input_cfg.get("shuffle_buffer_size", 10_000)
  if "name" in data:
    if "pp" not in input_cfg:
      raise KeyError("config.input.pp is missing: set the pp string for input.data.")
    return [(data["name"], 1.0, data, input_cfg["pp"], default_buf)]
  specs = []
  for name, weight in data.items():
    if (not isinstance(weight, (int, float)) or isinstance(weight, bool)
        or not math.isfinite(weight) or weight < 0):
      raise ValueError(f"input.data[{name!r}] = {weight!r}: a mixture maps source names "
                       "to weights >= 0; a single source needs input.data.name.")
    if name not in input_cfg:
      raise KeyError(f"Mixture source {name!r} has no config: set input.{name} = "
                     "dict(data=dict(name=...), pp='...').")
    sub = _to_dict(input_cfg[name])
    pp = sub.get("pp", input_cfg.get("pp"))
    if pp is None:
      raise KeyError(f"Mixture source {name!r} has no pp: set input.{name}.pp or input.pp.")
    if weight > 0:
      if "data" not in sub:
        raise KeyError(f"Mixture source {name!r} has no data: set input.{name}.data = "
                       "dict(name=...).")
      buf = sub.get("shuffle_buffer_size", default_buf)
      _check_int(f"config.input.{name}.shuffle_buffer_size", buf, 1)
      specs.append((name, float(weight), _to_dict(sub["data"]), pp, buf))
  if not specs:
    raise ValueError(f"input.data {data} has no source with a weight > 0.")
  return specs


ALL_FAIL = "every row fails"


def _skip_failures(ds, apply, name, max_failures):
  """`apply` on each (i, example) of `ds`; failing examples are dropped and counted.

  Each example is tried alone; a failure leaves a marker, so the drop count is exact and
  a source whose rows all fail raises (after `max_failures` in a row) instead of
  waiting forever for a good example. Rows that fail before `apply` (reading) leave gaps
  in the example numbers, which are counted as well.
  """
  spec = ds.map(apply).element_spec
  def marker(i):
    zeros = {key: tf.zeros([d or 0 for d in s.shape], s.dtype) for key, s in spec.items()}
    return dict(zeros, _seq=i, _ok=tf.constant(False))

  def try_one(i, example):
    good = tf.data.Dataset.from_tensors((i, example)).map(apply)
    good = good.map(lambda out: dict(out, _ok=tf.constant(True))).ignore_errors()
    return good.concatenate(tf.data.Dataset.from_tensors(marker(i))).take(1)

  def count(state, example):
    last, pending = state
    example = dict(example)
    seq, ok = example.pop("_seq"), example.pop("_ok")
    pending = pending + seq - last - 1 + tf.cast(tf.logical_not(ok), tf.int64)
    check = tf.debugging.assert_less(
        pending, tf.constant(max_failures, tf.int64), message=(
            f"Input source {name!r}: {max_failures} rows in a row failed with "
            f"skip_errors=True; {ALL_FAIL} (first failure below)"))
    with tf.control_dependencies([check]):
      skipped = tf.cast(tf.where(ok, pending, 0), tf.int32)
    return (seq, tf.where(ok, tf.constant(0, tf.int64), pending)), dict(
        example, _skipped=skipped, _ok=ok)

  ds = ds.interleave(try_one, cycle_length=tf.data.AUTOTUNE, block_length=1,
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.scan((tf.constant(-1, tf.int64), tf.constant(0, tf.int64)), count)
  ds = ds.filter(lambda ex: ex["_ok"]).map(
      lambda ex: {key: v for key, v in ex.items() if key != "_ok"})
  return ds.map(lambda ex: {key: tf.ensure_shape(v, spec[key].shape if key in spec
                                                 else []) for key, v in ex.items()})


def _check_int(key, value, lo):
  if not isinstance(value, int) or isinstance(value, bool) or value < lo:
    raise ValueError(f"{key}={value!r} must be an int >= {lo} (got "
                     f"{type(value).__name__}).")


def _host_batch_size(batch_size, process_count):
  _check_int("batch_size", batch_size, 1)
  if batch_size % process_count:
    raise ValueError(f"batch_size {batch_size} is not divisible by the {process_count} "
                     "processes; use a multiple of the process count.")
  return batch_size // process_count


class Training:
  """Infinite iterator of host batches (dicts of numpy arrays, leading dim b).

  Args:
    input_cfg: `config.input` (see the module docstring).
    seed: the pipeline seed (shuffling and mixing).
    process_index, process_count: this host and the number of hosts.
  """

  def __init__(self, input_cfg, *, seed, process_index=0, process_count=1):
    if not hasattr(input_cfg.get("data"), "items"):
      raise ValueError(f"config.input.data={input_cfg.get('data')!r} must be a dict: "
                       "dict(name=..., ...) for one source or {source name: weight} for a "
                       "mixture.")
    valid = set(_TRAIN_KEYS) | set(_to_dict(input_cfg["data"]))
    for key in sorted(set(input_cfg) - valid):
      raise registry.unknown_name("config.input key", key, valid,
                                  context="(the mixture's source names are keys too)")
    self.process_index, self.process_count = process_index, process_count
    if "batch_size" not in input_cfg:
      raise KeyError("config.input.batch_size is missing: set the global batch size.")
    self.batch_size = _host_batch_size(input_cfg["batch_size"], process_count)
    _check_int("seed", seed, 0)
    _check_int("config.input.prefetch", input_cfg.get("prefetch", 2), 0)
    _check_int("config.input.shuffle_buffer_size", input_cfg.get("shuffle_buffer_size", 1), 1)
    skip_errors = input_cfg.get("skip_errors", False)
    if not isinstance(skip_errors, bool):
      raise ValueError(f"config.input.skip_errors={skip_errors!r} must be True or False.")
    specs = _source_specs(input_cfg)
    seeds = np.random.SeedSequence([seed, process_index]).generate_state(len(specs) + 1)
    self.names = [s[0] for s in specs]
    self.total_examples = 0  # Over all sources and processes (defines an epoch).
    self._sources, streams = [], []
    for k, (name, _, data, pp, buf) in enumerate(specs):
      source = datasets.get(**data)
      pp_fn = get_pp_fn(pp)
      self._sources.append((name, source, pp, pp_fn))
      self.total_examples += source.total_examples
      ds = source.get_training_tfdata(int(seeds[k]), buf, process_index, process_count)
      # With skip_errors, this many failures in a row mean that every row fails.
      max_failures = 2 * source.shard_size(process_index, process_count) + buf
      streams.append(self._preprocess(ds, k, name, pp_fn, skip_errors, int(seeds[k]),
                                      max_failures))
    for name, s in zip(self.names[1:], streams[1:]):
      if s.element_spec != streams[0].element_spec:
        raise ValueError(f"Mixture sources give different examples after pp: "
                         f"{self.names[0]!r} {streams[0].element_spec} vs {name!r} "
                         f"{s.element_spec}. Make their pp produce the same keys, "
                         "dtypes and shapes.")
    if len(streams) == 1:
      ds = streams[0]
    else:
      weights = [s[1] / sum(s[1] for s in specs) for s in specs]
      ds = tf.data.Dataset.sample_from_datasets(streams, weights, seed=int(seeds[-1]))
    ds = ds.batch(self.batch_size, drop_remainder=True)
    self.dataset = ds.prefetch(input_cfg.get("prefetch", 2)).with_options(_options())
    self.element_spec = {k: v for k, v in streams[0].element_spec.items()
                         if k not in _PRIVATE}
    self._iterator = iter(self.dataset)
    self._counts = np.zeros(len(specs), np.int64)
    self._skipped = np.zeros(len(specs), np.int64)
    self.batches = 0

  @staticmethod
  def _preprocess(ds, k, name, pp_fn, skip_errors, seed, max_failures):
    def apply(i, example):
      # Per-example stateless seed for random pp ops; resumes exactly with the stream.
      out = pp_fn(dict(example, _seed=tf.stack([tf.constant(seed, tf.int64), i])))
      out = dict(out) if isinstance(out, dict) else out
      if isinstance(out, dict):
        out.pop("_seed", None)
      if not isinstance(out, dict) or set(out) & set(_PRIVATE):
        raise ValueError(f"pp of source {name!r} must return a dict without the keys "
                         f"{_PRIVATE}, got {out!r}.")
      return dict(out, _source=tf.constant(k, tf.int32), _seq=i)

    ds = ds.enumerate()
    if not skip_errors:
      def count_gaps(last, example):
        example = dict(example)
        seq = example.pop("_seq")
        return seq, dict(example, _skipped=tf.cast(seq - last - 1, tf.int32))
      ds = ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
      return ds.scan(tf.constant(-1, tf.int64), count_gaps)
    return _skip_failures(ds.ignore_errors(), apply, name, max_failures)

  def __iter__(self):
    return self

  def __next__(self):
    """Returns the next host batch: dict of numpy arrays with leading dim b."""
    try:
      batch = next(self._iterator)
    except tf.errors.OpError as e:
      error = diagnose(e, self._sources, self.process_index, self.process_count)
      found = re.search(r"(Input source [^\]]*" + ALL_FAIL + r"[^\]]*)", e.message)
      if found:
        error = ValueError(f"{found.group(1).replace(chr(92), '').rstrip('. ')}. {error}")
      raise error from e
    batch = _numpy(batch)
    source = batch.pop("_source")
    self._counts += np.bincount(source, minlength=len(self.names))
    np.add.at(self._skipped, source, batch.pop("_skipped"))
    self.batches += 1
    return batch

  def counts(self):
    """Returns {source name: examples of it in the batches returned so far}."""
    return dict(zip(self.names, self._counts.tolist()))

  def skipped(self):
    """Returns {source name: rows dropped by skip_errors so far} (exact up to the rows
    still in flight behind the last returned example)."""
    return dict(zip(self.names, self._skipped.tolist()))

  def get_state(self):
    """Returns the position as a dict of numpy arrays (for np.savez / checkpoints)."""
    iterator = self._iterator._save().numpy()  # pylint: disable=protected-access
    return {"iterator": np.frombuffer(iterator, np.uint8).copy(),
            "counts": self._counts.copy(), "skipped": self._skipped.copy(),
            "batches": np.int64(self.batches),
            "process": np.asarray([self.process_index, self.process_count]),
            "names": np.asarray(self.names)}

  def set_state(self, state):
    """Continues from `get_state()` of a pipeline built with the same config and seed."""
    got = (list(np.asarray(state["names"]).tolist()),
           np.asarray(state["process"]).tolist())
    want = (self.names, [self.process_index, self.process_count])
    if got != want:
      raise ValueError(f"Input state of sources/process {got} does not fit this "
                       f"pipeline's {want}; resume with the same input config and "
                       "number of processes.")
    self._iterator._restore(  # pylint: disable=protected-access
        tf.constant(np.asarray(state["iterator"], np.uint8).tobytes()))
    self._counts = np.asarray(state["counts"], np.int64).copy()
    self._skipped = np.asarray(state["skipped"], np.int64).copy()
    self.batches = int(state["batches"])


def training(input_cfg, *, seed, process_index=0, process_count=1):
  """Returns the `Training` iterator of host batches for `config.input`."""
  return Training(input_cfg, seed=seed, process_index=process_index,
                  process_count=process_count)


class Evaluation:
  """Finite, ordered, re-iterable padded host batches; every host yields `num_batches`.

  Each batch is a dict of numpy arrays with leading dim b = batch_size // process_count
  and `_mask` bool[b] (False on padding rows, whose values are zeros / "").
  """

  def __init__(self, data_cfg, pp, batch_size, *, process_index=0, process_count=1):
    data = _to_dict(data_cfg)
    self.source = datasets.get(**data)
    self.name = data["name"]
    self.pp, self.pp_fn = pp, get_pp_fn(pp)
    self.process_index, self.process_count = process_index, process_count
    self.batch_size = _host_batch_size(batch_size, process_count)
    self.total_examples = self.source.total_examples
    per_host = math.ceil(self.total_examples / process_count)
    self.num_batches = math.ceil(per_host / self.batch_size)

  def __len__(self):
    return self.num_batches

  def get_tfdata(self):
    """Returns the padded, batched tf.data.Dataset of this host."""
    ds = self.source.get_tfdata(ordered=True, process_index=self.process_index,
                                process_count=self.process_count)
    ds = ds.map(lambda ex: dict(self.pp_fn(ex), _mask=tf.constant(True)),
                num_parallel_calls=tf.data.AUTOTUNE)
    zeros = tf.nest.map_structure(
        lambda s: tf.zeros([d or 0 for d in s.shape], s.dtype), ds.element_spec)
    ds = ds.concatenate(tf.data.Dataset.from_tensors(zeros).repeat())
    ds = ds.take(self.num_batches * self.batch_size).padded_batch(self.batch_size)
    return ds.prefetch(2).with_options(_options())

  def __iter__(self):
    iterator = iter(self.get_tfdata())
    while True:
      try:
        batch = next(iterator)
      except StopIteration:
        return
      except tf.errors.OpError as e:
        raise diagnose(e, [(self.name, self.source, self.pp, self.pp_fn)],
                       self.process_index, self.process_count) from e
      yield _numpy(batch)


def evaluation(data_cfg, pp_fn_str, batch_size, *, process_index=0, process_count=1):
  """Returns the `Evaluation` batches of `data_cfg` (source kwargs incl. name)."""
  return Evaluation(data_cfg, pp_fn_str, batch_size, process_index=process_index,
                    process_count=process_count)
