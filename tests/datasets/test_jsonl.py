"""Tests of the JSONL source: schema, types, fopen_keys, errors, per-process splits."""
import json

import numpy as np
import pytest

from big_vision_lite import datasets


def _write(tmp_path, rows, name="d.jsonl"):
  path = tmp_path / name
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                          for r in rows))
  return str(path)


def _rows(n):
  return [{"image": f"im/{i}.bin", "prefix": f"p{i}", "score": i, "boxes": [[0.1, 0.2,
           0.3, 0.4]] * (i % 3), "meta": {"id": i, "tags": ["a", "b"]}} for i in range(n)]


@pytest.fixture
def jsonl_file(tmp_path):
  (tmp_path / "im").mkdir()
  for i in range(10):
    (tmp_path / "im" / f"{i}.bin").write_bytes(bytes([i]) * (i + 1))
  rows = _rows(10)
  rows[3]["score"] = 2.5  # int and float -> float32
  return _write(tmp_path, rows)


def test_reads_values_files_and_types(jsonl_file):
  src = datasets.get("jsonl", fname=jsonl_file, fopen_keys=["image"])
  assert src.total_examples == 10
  examples = list(src.get_tfdata().as_numpy_iterator())
  assert [e["image"] for e in examples] == [bytes([i]) * (i + 1) for i in range(10)]
  assert examples[3]["score"] == np.float32(2.5) and examples[4]["score"].dtype == np.float32
  assert examples[2]["boxes"].shape == (2, 4) and examples[0]["boxes"].shape == (0, 4)
  assert examples[7]["meta/id"] == 7 and list(examples[7]["meta/tags"]) == [b"a", b"b"]
  assert examples[5]["prefix"] == b"p5"


def test_start_stop_and_even_process_splits(jsonl_file):
  src = datasets.get("jsonl", fname=jsonl_file, start=1, stop=8)
  assert src.total_examples == 7
  parts = [[int(e["meta/id"]) for e in src.get_tfdata(
      process_index=p, process_count=2).as_numpy_iterator()] for p in range(2)]
  assert parts == [[1, 2, 3], [4, 5, 6, 7]]
  assert src.describe_row(1, 1, 2) == f"row 5 ({jsonl_file} line 6)"


def test_bad_json_names_file_and_line(tmp_path):
  fname = _write(tmp_path, [_rows(1)[0], '{"image": "x",'])
  with pytest.raises(ValueError, match=r"d\.jsonl line 2: invalid JSON"):
    datasets.get("jsonl", fname=fname)


def test_missing_and_extra_keys_named(tmp_path):
  rows = _rows(3)
  del rows[2]["prefix"]
  rows[2]["extra"] = 1
  with pytest.raises(KeyError, match=r"line 3: keys differ.*missing \['prefix'\], "
                     r"unexpected \['extra'\]"):
    datasets.get("jsonl", fname=_write(tmp_path, rows))


def test_wrong_type_named(tmp_path):
  rows = _rows(3)
  rows[1]["prefix"] = 3
  with pytest.raises(TypeError, match=r"line 2 key 'prefix': expected str .*got int"):
    datasets.get("jsonl", fname=_write(tmp_path, rows))
  rows = _rows(3)
  rows[2]["meta"]["tags"] = [1]
  with pytest.raises(TypeError, match=r"line 3 key 'meta'"):
    datasets.get("jsonl", fname=_write(tmp_path, rows))


@pytest.mark.parametrize("path", ["../secret.png", "/etc/passwd", "im/../../x.png"])
def test_path_escaping_base_dir_rejected(tmp_path, path):
  rows = _rows(3)
  rows[1]["image"] = path
  with pytest.raises(ValueError, match=r"line 2 key 'image': path .* outside the base dir"):
    datasets.get("jsonl", fname=_write(tmp_path, rows), fopen_keys=["image"])


def test_absolute_path_inside_base_dir_ok(jsonl_file, tmp_path):
  rows = _rows(2)
  rows[0]["image"] = str(tmp_path / "im" / "4.bin")
  src = datasets.get("jsonl", fname=_write(tmp_path, rows, "abs.jsonl"),
                     fopen_keys={"image": str(tmp_path)})
  assert next(src.get_tfdata().as_numpy_iterator())["image"] == bytes([4]) * 5


def test_unknown_source_argument(jsonl_file):
  with pytest.raises(TypeError, match=r"data source 'jsonl'.*Signature: jsonl\(fname"):
    datasets.get("jsonl", fname=jsonl_file, fopen_key=["image"])


def test_training_stream_is_seeded_permutation_per_epoch(jsonl_file):
  src = datasets.get("jsonl", fname=jsonl_file)
  take = lambda seed: [int(e["meta/id"]) for e in src.get_training_tfdata(
      seed, 0).take(20).as_numpy_iterator()]
  a = take(1)
  assert sorted(a[:10]) == sorted(a[10:]) == list(range(10)) and a[:10] != a[10:]
  assert a == take(1) and a != take(2)


def test_process_without_rows_rejected(jsonl_file):
  src = datasets.get("jsonl", fname=jsonl_file, stop=1)
  with pytest.raises(ValueError, match=r"process 0 of 2 gets no rows of 1"):
    src.get_training_tfdata(0, 0, process_index=0, process_count=2)
