"""Tests of the pp builder: parsing, registry errors, identity, tf.data use."""
import pytest
import tensorflow as tf

from big_vision_lite.pp import builder


def test_split_respects_quotes_and_brackets():
  parts = builder.split_pp("a|strfmt('x|y {q}')| b((1, 2), k=[3|4]) |")
  assert parts == ["a", "strfmt('x|y {q}')", "b((1, 2), k=[3|4])"]


def test_empty_string_is_identity():
  fn = builder.get_preprocess_fn("")
  ex = {"a": tf.constant(1)}
  assert fn(ex)["a"].numpy() == 1


def test_every_module_registers_ops():
  names = builder.PP_OPS.names()
  for op in ["decode", "resize", "central_crop", "value_range", "strfmt", "copy", "keep",
             "drop", "choice", "tok", "combine_and_keep_train", "combine_and_keep_eval",
             "box_to_loc", "mask_to_seg", "random_resize", "jpeg", "flip_lr"]:
    assert op in names


def test_unknown_op_suggests_close_match():
  with pytest.raises(KeyError, match=r"Unknown pp op 'resiz'. Did you mean 'resize'\?.*"
                     r"Valid: .*value_range.*pp op #1 'resiz\(3\)'"):
    builder.get_preprocess_fn("decode|resiz(3)")


def test_bad_argument_names_op_and_signature():
  with pytest.raises(TypeError, match=r"pp op 'resize'.*'methd'.*Signature: resize\(size"):
    builder.get_preprocess_fn("resize(3, methd='x')")


def test_bad_value_fails_at_build():
  with pytest.raises(ValueError, match=r"method 'cubic'\..*bilinear"):
    builder.get_preprocess_fn("resize(3, method='cubic')")


def test_non_literal_argument_rejected():
  with pytest.raises(ValueError, match=r"must be Python literals.*pp op #1"):
    builder.get_preprocess_fn("copy('a', 'b')|value_range(__import__('os'))")


def test_non_string_pp():
  with pytest.raises(TypeError, match="pp string must be a str"):
    builder.get_preprocess_fn(["decode"])


def test_works_in_tf_data_map():
  fn = builder.get_preprocess_fn("copy('a', 'b')|drop('a')")
  ds = tf.data.Dataset.from_tensor_slices({"a": [1, 2, 3]}).map(fn)
  assert [int(x["b"]) for x in ds] == [1, 2, 3]
  assert all(set(x) == {"b"} for x in ds)


def test_stateless_seed_differs_per_op():
  data = {"_seed": tf.constant([3, 4], tf.int64)}
  a = builder.uniform(data, "choice")
  b = builder.uniform(data, "flip_lr")
  assert float(a) != float(b)
  assert float(a) == float(builder.uniform(data, "choice"))
