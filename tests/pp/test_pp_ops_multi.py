"""Tests of strjoin, getidx, lower, stack_images, draw_bbox and sci_qa_choices_shuffle."""
import numpy as np
import pytest
import tensorflow as tf

from big_vision_lite.pp import builder


def run(pp, **ex):
  return builder.get_preprocess_fn(pp)({k: tf.constant(v) for k, v in ex.items()})


def test_strjoin_and_getidx_build_the_multiple_choice_prompt():
  out = run("strjoin(' \\t ', inkey='opts', outkey='ansstr')"
            "|strfmt('answer en {q} choose from: {ansstr}', outkey='prefix')"
            "|getidx(inkey='opts', index_key='idx', outkey='suffix')",
            opts=["Red", "blue", "green"], idx=np.int64(1), q="color?")
  assert out["prefix"].numpy() == b"answer en color? choose from: Red \t blue \t green"
  assert out["suffix"].numpy() == b"blue"


def test_getidx_and_strjoin_errors():
  with pytest.raises(tf.errors.InvalidArgumentError, match="'idx' is outside"):
    run("getidx('opts', 'idx', 'x')", opts=["a", "b"], idx=2)
  with pytest.raises(ValueError, match="integer scalar 'idx'"):
    run("getidx('opts', 'idx', 'x')", opts=["a", "b"], idx=[0])
  with pytest.raises(ValueError, match=r"'opts' is int32.*must be string\[n\]"):
    run("strjoin(',', 'opts', 'x')", opts=[1, 2])
  with pytest.raises(ValueError, match="sep=1 must be a str"):
    builder.get_preprocess_fn("strjoin(1, 'a', 'b')")


def test_lower():
  out = run("lower('t')", t=["The Cat", "ÄB"])
  assert [s.decode() for s in out["t"].numpy()] == ["the cat", "äb"]


def test_stack_images_makes_frames_and_checks_sizes():
  a, b = np.zeros((4, 6, 3), np.uint8), np.ones((4, 6, 3), np.uint8)
  out = run("stack_images(['l', 'r'], 'image')", l=a, r=b)
  assert set(out) == {"image"} and out["image"].shape == (2, 4, 6, 3)
  np.testing.assert_array_equal(out["image"].numpy()[1], b)
  with pytest.raises(tf.errors.InvalidArgumentError, match="differ in size"):
    run("stack_images(['l', 'r'])", l=a, r=np.zeros((5, 6, 3), np.uint8))
  with pytest.raises(ValueError, match="non-empty list of keys"):
    builder.get_preprocess_fn("stack_images('l')")


def test_draw_bbox_draws_a_red_outline():
  image = np.zeros((10, 10, 3), np.uint8)
  out = run("draw_bbox", image=image, bbox=np.array([0.2, 0.2, 0.6, 0.6], np.float32))
  im = out["image"].numpy()
  assert im.dtype == np.uint8
  red = np.all(im == [255, 0, 0], axis=-1)
  # TF maps a coordinate c to pixel floor(c * (size - 1)): rows/columns 1 to 5.
  assert red[1, 1:6].all() and red[5, 1:6].all() and red[1:6, 1].all() and red[1:6, 5].all()
  assert red.sum() == 16  # Outline only.
  with pytest.raises(ValueError, match="color=.*must be 3 numbers"):
    builder.get_preprocess_fn("draw_bbox(color=(1, 2))")


def _shuffle(seed, choices=("apple", "banana", "cherry"), answer=1):
  return run("sci_qa_choices_shuffle", choices=list(choices), answer=np.int64(answer),
             _seed=np.array(seed, np.int64))


def test_sci_qa_choices_shuffle_is_seeded_consistent_and_covers_orders():
  orders = set()
  for s in range(40):
    out = _shuffle([s, 7])
    text = out["indexed_choices"].numpy().decode()
    letter = out["indexed_answer"].numpy().decode()
    parts = text.split(", ")
    assert [p[:4] for p in parts] == ["(A) ", "(B) ", "(C) "]
    assert sorted(p[4:] for p in parts) == ["apple", "banana", "cherry"]
    assert parts["ABC".index(letter)][4:] == "banana"  # The letter follows the answer.
    orders.add(text)
    assert _shuffle([s, 7])["indexed_choices"].numpy().decode() == text  # Stateless.
  assert len(orders) == 6


def test_sci_qa_choices_shuffle_errors():
  with pytest.raises(tf.errors.InvalidArgumentError, match="'answer' is outside"):
    _shuffle([0, 0], answer=3)
  with pytest.raises(ValueError, match="'answer' must be an integer scalar"):
    run("sci_qa_choices_shuffle", choices=["a"], answer="a")
  with pytest.raises(ValueError, match="seed='x' must be an int"):
    builder.get_preprocess_fn("sci_qa_choices_shuffle(seed='x')")
