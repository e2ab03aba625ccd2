"""Corrupt checkpoints give a clear error naming the file, never wrong params.

Faults: truncation (several lengths), zero bytes, random garbage, flipped bytes (in the
data and in the headers), compressed members, and for safetensors corrupt JSON headers
(not UTF-8, not an object, missing fields, negative/overlapping offsets, huge lengths).
"""
import glob
import io
import json
import os
import re
import shutil
import struct

import numpy as np
import pytest

from big_vision_lite import checkpoint
from big_vision_lite.hf import io as hf_io

PARAMS = {"img": {"kernel": np.arange(2000, dtype=np.float32).reshape(40, 50),
                  "bias": np.ones(7, np.float32)}}


def _npz_faults(raw):
  """{name: corrupted bytes} of an npz file's bytes `raw`."""
  mid = len(raw) // 2
  out = {f"trunc{n}": raw[:n] for n in (0, 10, 100, mid, len(raw) - 1)}
  out["garbage"] = np.random.default_rng(0).bytes(len(raw))
  for name, pos in [("flip_data", mid), ("flip_first_header", 40), ("flip_tail", len(raw) - 30)]:
    b = bytearray(raw)
    b[pos] ^= 0xFF
    out[name] = bytes(b)
  return out


def _write_faults(tmp_path, faults, suffix=".npz"):
  paths = {}
  for name, data in faults.items():
    paths[name] = tmp_path / f"{name}{suffix}"
    paths[name].write_bytes(data)
  return paths


def _read_all_npz_reader(path):
  with hf_io.NpzReader(str(path)) as reader:
    return {k: np.array(reader.array(k)) for k in reader.shapes()}


@pytest.mark.parametrize("compressed", [False, True])
def test_corrupt_npz_named_or_exact(tmp_path, compressed):
  good = tmp_path / "good.npz"
  flat = checkpoint.flatten(PARAMS)
  (np.savez_compressed if compressed else np.savez)(good, **flat)
  faults = _npz_faults(good.read_bytes())
  tried = 0
  for name, path in _write_faults(tmp_path, faults).items():
    for load in (lambda p: checkpoint.flatten(checkpoint.load_params(str(p))),
                 _read_all_npz_reader):
      tried += 1
      try:
        got = load(path)
      except ValueError as e:
        assert str(path) in str(e), (name, str(e))
        continue
      # A fault the format cannot see (e.g. in zip padding) must leave the params exact.
      assert got.keys() == flat.keys(), name
      for k in flat:
        np.testing.assert_array_equal(got[k], flat[k], err_msg=name)
  assert tried == 2 * len(faults)


def test_flipped_byte_in_stored_data_is_detected_by_crc(tmp_path):
  good = tmp_path / "good.npz"
  checkpoint.save_params(PARAMS, str(good))
  raw = bytearray(good.read_bytes())
  pos = raw.find(np.arange(2000, dtype=np.float32).tobytes()[4000:4016])
  assert pos > 0
  raw[pos] ^= 0x01
  bad = tmp_path / "bad.npz"
  bad.write_bytes(bytes(raw))
  with pytest.raises(ValueError, match=rf"'{bad}'.*(CRC|Bad CRC)"):
    checkpoint.load_params(str(bad))
  with pytest.raises(ValueError, match=rf"img/kernel.npy' of npz file '{bad}': CRC mismatch"):
    _read_all_npz_reader(bad)


def _safetensors(tmp_path):
  d = tmp_path / "st_good"
  flat = checkpoint.flatten(PARAMS)
  entries = [(k, v.shape, v.dtype) for k, v in flat.items()]
  hf_io.write_safetensors(str(d), entries, iter(flat.items()), 1 << 30)
  return (d / "model.safetensors").read_bytes(), flat


def _with_header(header, body):
  blob = json.dumps(header).encode() if not isinstance(header, bytes) else header
  return struct.pack("<Q", len(blob)) + blob + body


def test_corrupt_safetensors_named(tmp_path):
  raw, flat = _safetensors(tmp_path)
  n = struct.unpack("<Q", raw[:8])[0]
  header, body = json.loads(raw[8:8 + n]), raw[8 + n:]
  first = sorted(k for k in header if k != "__metadata__")[0]
  faults = {f"trunc{k}": raw[:k] for k in (0, 4, 8, 20, 8 + n, len(raw) - 1)}
  faults.update({
      "garbage": np.random.default_rng(1).bytes(len(raw)),
      "huge_len": struct.pack("<Q", 1 << 62) + raw[8:],
      "not_utf8": _with_header(b"\xff\xfe" + b" " * 6, body),
      "not_json": _with_header(b"{dtype: F32}", body),
      "json_list": _with_header([1, 2], body),
      "no_dtype": _with_header({first: {"shape": [7], "data_offsets": [0, 28]}}, body),
      "bad_dtype": _with_header({first: dict(header[first], dtype="Q9")}, body),
      "neg_offset": _with_header({first: dict(header[first], data_offsets=[-28, 0])}, body),
      "float_shape": _with_header({first: dict(header[first], shape=[7.5])}, body),
      "offsets_too_long": _with_header({first: dict(header[first], data_offsets=[0, 1 << 40])},
                                       body),
      "entry_not_dict": _with_header({first: "F32"}, body),
  })
  for name, data in faults.items():
    d = tmp_path / f"st_{name}"
    d.mkdir()
    (d / "model.safetensors").write_bytes(data)
    with pytest.raises(ValueError, match=r"st_" + name + r"/model\.safetensors"):
      st = hf_io.SafetensorsDir(str(d))
      for k in st.keys():
        np.asarray(st.get(k)).sum()
  assert len(faults) == 17


def test_corrupt_index_and_missing_shard_named(tmp_path):
  raw, _ = _safetensors(tmp_path)
  d = tmp_path / "sharded"
  d.mkdir()
  (d / "model-00001-of-00002.safetensors").write_bytes(raw)
  (d / "model.safetensors.index.json").write_text(json.dumps(
      {"weight_map": {"img/bias": "model-00001-of-00002.safetensors",
                      "x": "model-00002-of-00002.safetensors"}}))
  with pytest.raises((FileNotFoundError, KeyError, ValueError), match=r"model-00002-of-00002"):
    hf_io.SafetensorsDir(str(d))
  (d / "model.safetensors.index.json").write_text("{not json")
  with pytest.raises(ValueError, match=r"model\.safetensors\.index\.json"):
    hf_io.SafetensorsDir(str(d))


def test_npz_with_io_bytes_roundtrip_still_loads(tmp_path):
  buf = io.BytesIO()
  np.savez(buf, **checkpoint.flatten(PARAMS))
  path = tmp_path / "ok.npz"
  path.write_bytes(buf.getvalue())
  got = checkpoint.flatten(checkpoint.load_params(str(path)))
  np.testing.assert_array_equal(got["img/kernel"], PARAMS["img"]["kernel"])
  assert os.path.getsize(path) > 0


def _orbax_faults():
  """{name: fn(step_dir, data_state_file)} corrupting one saved training checkpoint."""
  def trunc(path):
    with open(path, "rb") as f:
      data = f.read()
    with open(path, "wb") as f:
      f.write(data[:len(data) // 2])

  def garble(path):
    with open(path, "rb") as f:
      data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    data[0] ^= 0x55
    with open(path, "wb") as f:
      f.write(bytes(data))

  def each(fn, pattern):
    return lambda d, _: [fn(p) for p in glob.glob(os.path.join(d, pattern))]

  return {
      "trunc_arrays": each(trunc, "params/d/*"),
      "garble_arrays": each(garble, "params/d/*"),
      "empty_manifest": each(lambda p: open(p, "wb").close(), "params/manifest.ocdbt"),
      "garble_array_metadata": each(garble, "params/_METADATA"),
      "garble_meta": each(garble, "meta/metadata"),
      "no_state": lambda d, _: shutil.rmtree(os.path.join(d, "params")),
      "trunc_data_state": lambda _, f: trunc(f),
      "no_data_state": lambda _, f: os.remove(f),
  }


@pytest.fixture(scope="module")
def orbax_run(tmp_path_factory):
  """A workdir with training checkpoints at steps 1 and 2 of a small state."""
  import jax  # pylint: disable=import-outside-toplevel
  from big_vision_lite import resume  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path_factory.mktemp("orbax"))
  state = {"params": {"w": jax.numpy.arange(64.0).reshape(8, 8)}, "opt": [jax.numpy.ones(3)]}
  ckpt = resume.Checkpointer(workdir, keep=2)
  for step in (1, 2):
    ckpt.save(step, jax.tree.map(lambda x, s=step: x + s, state),
              data_state={"pos": np.asarray([step])}, rng=jax.random.key(step))
  ckpt.close()
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                         sharding=x.sharding), state)
  return workdir, abstract


@pytest.mark.parametrize("fault", sorted(_orbax_faults()))
def test_corrupt_latest_training_checkpoint_falls_back_saying_so(orbax_run, tmp_path, fault):
  from big_vision_lite import resume  # pylint: disable=import-outside-toplevel
  src, abstract = orbax_run
  workdir = str(tmp_path / "w")
  shutil.copytree(src, workdir)
  _orbax_faults()[fault](os.path.join(workdir, "checkpoints", "2"),
                         os.path.join(workdir, "data_state", "2_p0.npz"))
  notes = []
  ckpt = resume.Checkpointer(workdir, keep=2)
  step, state, data_state, _ = ckpt.restore_latest(abstract, write_note=notes.append)
  ckpt.close()
  assert step == 1 and int(data_state["pos"][0]) == 1
  np.testing.assert_array_equal(np.asarray(state["params"]["w"]),
                                np.arange(64.0).reshape(8, 8) + 1)
  assert len(notes) == 1 and re.search(r"checkpoints/2 is unreadable .*falling back",
                                       notes[0]), notes


def test_all_training_checkpoints_corrupt_is_one_clear_error(orbax_run, tmp_path):
  from big_vision_lite import resume  # pylint: disable=import-outside-toplevel
  src, abstract = orbax_run
  workdir = str(tmp_path / "w")
  shutil.copytree(src, workdir)
  for step in (1, 2):
    shutil.rmtree(os.path.join(workdir, "checkpoints", str(step), "params"))
  ckpt = resume.Checkpointer(workdir, keep=2)
  with pytest.raises(ValueError, match=r"No readable checkpoint in .*checkpoints: \['2 .*"
                     r"'1 .*Delete the corrupt step folders"):
    ckpt.restore_latest(abstract, write_note=lambda _: None)
  ckpt.close()
