"""Tests of copy, keep, drop, concat, const, strfmt and choice."""
import numpy as np
import pytest
import tensorflow as tf

from big_vision_lite.pp import builder


def run(pp, **ex):
  return builder.get_preprocess_fn(pp)({k: tf.constant(v) for k, v in ex.items()})


def test_copy_keep_drop_const():
  out = run("copy('a', 'b')|const('hi', 'c')|drop('a')|keep('b', 'c')", a=1, z=2)
  assert set(out) == {"b", "c"} and int(out["b"]) == 1 and out["c"].numpy() == b"hi"


def test_keep_missing_key_errors():
  with pytest.raises(KeyError, match=r"'keep' needs key 'nope'.*\['a'\]"):
    run("keep('nope')", a=1)


def test_strfmt_fills_fields():
  out = run("strfmt('answer en {question} {n} {{x}}', outkey='prefix')",
            question="what?", n=3)
  assert out["prefix"].numpy() == b"answer en what? 3 {x}"


def test_strfmt_without_fields_and_errors():
  assert run("strfmt('caption en')")["prompt"].numpy() == b"caption en"
  with pytest.raises(ValueError, match="must be a plain key name"):
    builder.get_preprocess_fn("strfmt('x {a:>3}')")
  with pytest.raises(ValueError, match="cannot parse template"):
    builder.get_preprocess_fn("strfmt('x {a')")
  with pytest.raises(KeyError, match="'strfmt' needs key 'q'"):
    run("strfmt('{q}')", a="x")


def test_choice_stateless_is_deterministic_and_covers_all():
  fn = builder.get_preprocess_fn("choice('caps', 'cap')")
  caps = tf.constant(["a", "b", "c"])
  picks = set()
  for i in range(30):
    ex = {"caps": caps, "_seed": tf.constant([i, 7], tf.int64)}
    first = fn(ex)["cap"].numpy()
    assert fn(ex)["cap"].numpy() == first
    picks.add(first)
  assert picks == {b"a", b"b", b"c"}


def test_choice_several_keys_use_same_index():
  fn = builder.get_preprocess_fn("choice(['q', 'a'])")
  for i in range(10):
    out = fn({"q": tf.constant(["q0", "q1", "q2"]), "a": tf.constant(["a0", "a1", "a2"]),
              "_seed": tf.constant([i, 1])})
    assert out["q"].numpy()[1:] == out["a"].numpy()[1:]


def test_choice_op_seed_without_example_seed():
  out = run("choice('caps', 'cap', seed=3)", caps=["x", "y"])
  assert out["cap"].numpy() in (b"x", b"y")


def test_choice_errors():
  with pytest.raises(ValueError, match="as many keys as"):
    builder.get_preprocess_fn("choice(['q', 'a'], outkey='x')")
  with pytest.raises(ValueError, match="seed='a' must be an int"):
    builder.get_preprocess_fn("choice('q', seed='a')")
  with pytest.raises(ValueError, match="'q' is a scalar"):
    run("choice('q')", q="x")
  with pytest.raises(tf.errors.InvalidArgumentError, match="is empty"):
    run("choice('caps')", caps=np.zeros([0], np.bytes_))


def test_concat_and_dtype_error():
  out = run("concat(inkeys=('a', 'b'), outkey='c')", a=[1.0, 2.0], b=[3.0])
  np.testing.assert_array_equal(out["c"].numpy(), [1, 2, 3])
  with pytest.raises(TypeError, match=r"different dtypes \{'a': 'float32', 'b': 'int32'\}"):
    run("concat(inkeys=['a', 'b'], outkey='c')", a=[1.0], b=[3])
  with pytest.raises(KeyError, match="'concat' needs key 'z'"):
    run("concat(inkeys=['a', 'z'], outkey='c')", a=[1.0])
