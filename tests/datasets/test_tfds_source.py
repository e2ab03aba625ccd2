"""Tests of the TFDS source on a tiny builder prepared offline, and on mock coco data."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from big_vision_lite import datasets


class BvlTinyShapes(tfds.core.GeneratorBasedBuilder):
  """10 train / 3 test examples with an image and nested objects."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(8, 8, 3)),
        "id": tfds.features.Scalar(np.int64),
        "objects": tfds.features.Sequence({"bbox": tfds.features.Tensor(
            shape=(4,), dtype=np.float32)}),
    }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(10), "test": self._generate_examples(3)}

  def _generate_examples(self, n):
    for i in range(n):
      image = np.full((8, 8, 3), i, np.uint8)
      yield i, {"image": image, "id": i, "objects": {"bbox": [[0.1, 0.2, 0.5, 0.6]] * (
          i % 2)}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tfds"))
  BvlTinyShapes(data_dir=path).download_and_prepare()
  return path


def test_even_splits_per_process(data_dir):
  src = datasets.get("tfds:bvl_tiny_shapes", split="train", data_dir=data_dir)
  assert src.total_examples == 10
  ids = [sorted(int(e["id"]) for e in src.get_tfdata(
      process_index=p, process_count=3, seed=0).as_numpy_iterator()) for p in range(3)]
  assert sorted(sum(ids, [])) == list(range(10)) and [len(i) for i in ids] == [4, 3, 3]
  assert [src.shard_size(p, 3) for p in range(3)] == [4, 3, 3]


def test_images_stay_encoded_and_objects_flat(data_dir):
  src = datasets.get("bvl_tiny_shapes", split="train[:4]", data_dir=data_dir)
  examples = list(src.get_tfdata(ordered=True).as_numpy_iterator())
  assert len(examples) == 4 and examples[0]["image"][:4] == b"\x89PNG"
  assert examples[1]["objects/bbox"].shape == (1, 4)
  assert "row" not in src.describe_row(2) and "example 2" in src.describe_row(2)


def test_unknown_name_and_split(data_dir):
  with pytest.raises(ValueError, match=r"Unknown TFDS dataset 'bvl_tiny_shapez'"):
    datasets.get("bvl_tiny_shapez", data_dir=data_dir)
  with pytest.raises(ValueError, match=r"split 'val' not found"):
    _ = datasets.get("bvl_tiny_shapes", split="val", data_dir=data_dir).total_examples


def test_mock_coco_captions():
  # tfds's mock data breaks with SkipDecoding, so images are decoded here.
  with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
    src = datasets.get("tfds:coco_captions", split="train", skip_decode=())
    examples = list(src.get_tfdata(ordered=True).as_numpy_iterator())
  assert len(examples) == 4 and examples[0]["image"].dtype == np.uint8
  assert "captions/text" in examples[0] and "objects/bbox" in examples[0]
