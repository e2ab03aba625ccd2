"""TFDS data source: a prepared TensorFlow Datasets builder read from `data_dir`.

Each process reads its own part of the split, `tfds.even_splits(split, process_count)`.
Image features named in `skip_decode` stay encoded bytes (`tf.string[]`) so that the pp
`decode` op treats TFDS and JSONL images alike. Nested features are flattened to
"outer/inner" keys (`objects/bbox`), as the pp ops address them. Nothing is downloaded:
the dataset must already be prepared in `data_dir` (e.g. with `tfds build`).
"""
import tensorflow as tf
import tensorflow_datasets as tfds


def flatten(example, prefix=""):
  """{"objects": {"bbox": t}} -> {"objects/bbox": t} (any depth)."""
  out = {}
  for k, v in example.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}/"))
    else:
      out[f"{prefix}{k}"] = v
  return out


class DataSource:
  """Examples from a prepared TFDS dataset.

  Args:
    name: TFDS name, optionally with config/version ("coco_captions", "ref_coco/refcoco").
    split: a TFDS split string ("train", "validation[:10%]", "train+validation").
    data_dir: the TFDS data folder; None uses TFDS's default.
    skip_decode: image features to keep as encoded bytes.
  """

  def __init__(self, name, split="train", data_dir=None, skip_decode=("image",)):
    self.name, self.split = name, split
    try:
      self.builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise ValueError(f"Unknown TFDS dataset {name!r} (data_dir={data_dir!r}): {e}. "
                       "Use a registered TFDS name, or 'jsonl'/'shapes'.") from e
    features = self.builder.info.features
    self._decoders = {k: tfds.decode.SkipDecoding() for k in skip_decode
                      if k in features and isinstance(features[k], tfds.features.Image)}

  @property
  def total_examples(self):
    """Number of examples in `split` over all processes."""
    try:
      return self.builder.info.splits[self.split].num_examples
    except (KeyError, ValueError) as e:
      raise ValueError(f"TFDS {self.name!r}: split {self.split!r} not found in "
                       f"{self.builder.data_dir}: {e}. Prepare the dataset there "
                       "(tfds build) or fix data_dir/split.") from e

  def _process_split(self, process_index, process_count):
    return tfds.even_splits(self.split, n=process_count,
                            drop_remainder=False)[process_index]

  def shard_size(self, process_index=0, process_count=1):
    """Returns the number of examples process `process_index` reads."""
    return self.builder.info.splits[
        self._process_split(process_index, process_count)].num_examples

  def describe_row(self, index, process_index=0, process_count=1):
    """Names the `index`-th example of a process's ordered stream (for error messages)."""
    return (f"example {index} of TFDS {self.name!r} split "
            f"{self._process_split(process_index, process_count)}")

  def get_tfdata(self, ordered=False, process_index=0, process_count=1, seed=None):
    """Returns this process's finite tf.data.Dataset of example dicts.

    Args:
      ordered: if False, the files are read in a `seed`-shuffled order.
      process_index, process_count: which even part of the split to read.
      seed: the file-shuffling seed (deterministic given the seed).
    """
    read_config = tfds.ReadConfig(shuffle_seed=seed, skip_prefetch=True)
    ds = self.builder.as_dataset(
        split=self._process_split(process_index, process_count),
        shuffle_files=not ordered, read_config=read_config,
        decoders=self._decoders or None)  # tfds mock data breaks on decoders={}.
    return ds.map(flatten)

  def get_training_tfdata(self, seed, shuffle_buffer_size, process_index=0,
                          process_count=1):
    """Returns an infinite stream: files shuffled, then a `shuffle_buffer_size` buffer."""
    ds = self.get_tfdata(False, process_index, process_count, seed=seed).repeat()
    if shuffle_buffer_size:
      ds = ds.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    return ds
