"""Tests of tok, combine_and_keep_train / combine_and_keep_eval and truncation counting."""
import numpy as np
import pytest
import tensorflow as tf

from big_vision_lite import tokenizer as tokenizer_lib
from big_vision_lite.pp import builder

CORPUS = ["caption en", "answer en what is the color of the dog?", "a brown dog",
          "the cat sits on the mat", "red green blue"] * 10


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tok") / "t.model")
  return tokenizer_lib.train_tokenizer(CORPUS, path, 320)


@pytest.fixture(scope="module")
def tok(model):
  return tokenizer_lib.Tokenizer(model)


def run(pp, **ex):
  return builder.get_preprocess_fn(pp)({k: tf.constant(v) for k, v in ex.items()})


def toks(model, sep="\n"):
  return (f"tok(key='prefix', bos='yes', model='{model}')|"
          f"tok(key='suffix', eos='yes', model='{model}')|"
          f"tok(key='septok', text={sep!r}, model='{model}')")


def test_tok_bos_eos_and_length(model, tok):
  ids = tok.encode("a brown dog")
  out = run(f"tok(model='{model}')", text="a brown dog")["text"].numpy()
  np.testing.assert_array_equal(out, ids)
  out = run(f"tok(key='q', bos='yes', eos='yes', model='{model}')", q="a brown dog")
  np.testing.assert_array_equal(out["q"], [tok.bos_id] + ids + [tok.eos_id])
  out = run(f"tok(inkey='q', outkey='t', eos='yes', length=20, model='{model}')", q="a")
  assert out["t"].shape == (20,) and int(out["_truncated"]) == 0
  assert list(out["t"].numpy()).count(tok.pad_id) == 20 - len(tok.encode("a")) - 1


def test_tok_truncation_sticky_eos(model, tok):
  ids = tok.encode("the cat sits on the mat")
  out = run(f"tok(eos='sticky', length=3, model='{model}')", text="the cat sits on the mat")
  np.testing.assert_array_equal(out["text"], ids[:2] + [tok.eos_id])
  assert int(out["_truncated"]) == 1
  out = run(f"tok(eos='yes', length=3, model='{model}')", text="the cat sits on the mat")
  np.testing.assert_array_equal(out["text"], ids[:3])


def test_tok_errors(model):
  with pytest.raises(ValueError, match=r"eos 'maybe'\..*'sticky'"):
    builder.get_preprocess_fn(f"tok(eos='maybe', model='{model}')")
  with pytest.raises(TypeError, match="missing a required argument: 'model'"):
    builder.get_preprocess_fn("tok(key='prefix')")
  with pytest.raises(FileNotFoundError, match="Cannot read tokenizer model '/no/t.model'"):
    builder.get_preprocess_fn("tok(model='/no/t.model')")


def train_row(model, tok, prefix, suffix, text_len):
  pp = f"{toks(model)}|combine_and_keep_train({text_len})"
  return {k: v.numpy() for k, v in run(pp, prefix=prefix, suffix=suffix,
                                      image=np.zeros((2, 2, 3), np.float32)).items()}


def test_combine_train_layout(model, tok):
  out = train_row(model, tok, "caption en", "a brown dog", 24)
  p = [tok.bos_id] + tok.encode("caption en")
  s = tok.encode("\n")
  x = tok.encode("a brown dog") + [tok.eos_id]
  n, pad = len(p) + len(s) + len(x), 24 - len(p) - len(s) - len(x)
  assert set(out) == {"image", "text", "mask_ar", "mask_loss", "mask_input", "_truncated"}
  np.testing.assert_array_equal(out["text"], p + s + x + [tok.pad_id] * pad)
  np.testing.assert_array_equal(out["mask_ar"], [0] * (len(p) + len(s)) + [1] * (len(x) + pad))
  np.testing.assert_array_equal(out["mask_loss"],
                                [0] * (len(p) + len(s)) + [1] * len(x) + [0] * pad)
  np.testing.assert_array_equal(out["mask_input"], [1] * n + [0] * pad)
  assert out["_truncated"] == 0
  for k in ["text", "mask_ar", "mask_loss", "mask_input"]:
    assert out[k].dtype == np.int32


def test_combine_train_with_model_tokenizes_itself(model, tok):
  a = train_row(model, tok, "caption en", "a brown dog", 24)
  out = run(f"combine_and_keep_train(24, model='{model}')", prefix="caption en",
            suffix="a brown dog")
  for k in ["text", "mask_ar", "mask_loss", "mask_input"]:
    np.testing.assert_array_equal(out[k], a[k])


def test_truncation_long_prefix_keeps_whole_suffix(model, tok):
  prefix = "answer en " + "the cat sits on the mat " * 5
  out = train_row(model, tok, prefix, "red", 16)
  x = tok.encode("red") + [tok.eos_id]
  assert out["_truncated"] == 1 and out["mask_input"].sum() == 16
  np.testing.assert_array_equal(out["text"][-len(x):], x)
  np.testing.assert_array_equal(out["mask_loss"][-len(x):], 1)
  assert out["text"][0] == tok.bos_id
  assert out["text"][16 - len(x) - 1] == tok.encode("\n")[0]


def test_truncation_long_suffix_keeps_eos(model, tok):
  suffix = "the cat sits on the mat " * 5
  out = train_row(model, tok, "caption en", suffix, 16)
  p = [tok.bos_id] + tok.encode("caption en") + tok.encode("\n")
  x = tok.encode(suffix)
  assert out["_truncated"] == 1
  np.testing.assert_array_equal(out["text"][:len(p)], p)
  np.testing.assert_array_equal(out["text"][len(p):], x[:16 - len(p) - 1] + [tok.eos_id])
  assert out["mask_loss"].sum() == 16 - len(p)


def test_truncation_both_long_splits_budget(model, tok):
  long = "the cat sits on the mat " * 5
  out = train_row(model, tok, long, long, 20)
  assert out["_truncated"] == 1
  assert out["mask_loss"].sum() == 10 and out["text"][-1] == tok.eos_id


def test_truncation_counted_in_tf_data(model):
  pp = f"{toks(model)}|combine_and_keep_train(12)"
  ds = tf.data.Dataset.from_tensor_slices({
      "prefix": ["caption en", "caption en"],
      "suffix": ["red", "the cat sits on the mat " * 3]}).map(builder.get_preprocess_fn(pp))
  assert [int(x["_truncated"]) for x in ds] == [0, 1]


def test_combine_eval(model, tok):
  pp = (f"tok(key='prefix', bos='yes', model='{model}')|"
        f"tok(key='septok', text='\\n', model='{model}')|"
        "combine_and_keep_eval(16, keep=('answers',))")
  out = run(pp, prefix="answer en what is the color", answers=["red", "blue"])
  p = [tok.bos_id] + tok.encode("answer en what is the color") + tok.encode("\n")
  pad = 16 - len(p)
  assert set(out) == {"text", "mask_ar", "mask_input", "_truncated", "answers"}
  np.testing.assert_array_equal(out["text"], p + [0] * pad)
  np.testing.assert_array_equal(out["mask_ar"], [0] * len(p) + [1] * pad)
  np.testing.assert_array_equal(out["mask_input"], [1] * len(p) + [0] * pad)
  assert int(out["_truncated"]) == 0
  out = run(f"combine_and_keep_eval(6, model='{model}')", prefix="the cat sits on the mat")
  assert int(out["_truncated"]) == 1 and out["text"][-1] == tok.encode("\n")[0]


def test_combine_eval_continues_from_suffix(model, tok):
  """big_vision's eval row: [BOS] prefix sep suffix (no EOS), mask_ar [0 0 1], so the
  decoder continues from the given suffix; suffix=None ignores the key."""
  out = run(f"combine_and_keep_eval(16, model='{model}')", prefix="answer en what is",
            suffix="a brown")
  p = [tok.bos_id] + tok.encode("answer en what is") + tok.encode("\n")
  x = tok.encode("a brown")
  assert tok.eos_id not in x
  n, pad = len(p) + len(x), 16 - len(p) - len(x)
  np.testing.assert_array_equal(out["text"], p + x + [0] * pad)
  np.testing.assert_array_equal(out["mask_ar"], [0] * len(p) + [1] * (len(x) + pad))
  np.testing.assert_array_equal(out["mask_input"], [1] * n + [0] * pad)
  # The same row from the reference's token ops (tok with eos='no' on the suffix).
  pre = (f"tok(key='prefix', bos='yes', model='{model}')|"
         f"tok(key='suffix', model='{model}')|"
         f"tok(key='septok', text='\\n', model='{model}')|combine_and_keep_eval(16)")
  np.testing.assert_array_equal(run(pre, prefix="answer en what is", suffix="a brown")["text"],
                                out["text"])
  ignored = run(f"combine_and_keep_eval(16, suffix=None, model='{model}')",
                prefix="answer en what is", suffix="a brown")
  np.testing.assert_array_equal(ignored["text"], p + [0] * (16 - len(p)))
  cut = run(f"combine_and_keep_eval({len(p) + 1}, model='{model}')", prefix="answer en what is",
            suffix="a brown")
  np.testing.assert_array_equal(cut["text"], p + x[:1])
  assert int(cut["_truncated"]) == 1


def test_num_texts_counts_before_padding():
  ds = tf.data.Dataset.from_generator(
      lambda: iter([{"answers": ["", "a", ""]}, {"answers": [""]}]),
      output_signature={"answers": tf.TensorSpec([None], tf.string)})
  ds = ds.map(builder.get_preprocess_fn("num_texts('answers')")).padded_batch(2)
  batch = next(iter(ds))
  assert batch["answers"].numpy().tolist() == [[b"", b"a", b""], [b"", b"", b""]]
  assert batch["answers/num"].numpy().tolist() == [3, 1]
  assert int(run("num_texts('answer', outkey='n')", answer="x")["n"]) == 1
  assert set(run("num_texts('answers', missing_ok=True)", answer="x")) == {"answer"}
  with pytest.raises(KeyError, match="needs key 'answers'"):
    run("num_texts('answers')", answer="x")


def test_combine_errors(model):
  with pytest.raises(ValueError, match="text_len=1 must be an int >= 2"):
    builder.get_preprocess_fn("combine_and_keep_train(1)")
  with pytest.raises(ValueError, match=r"'prefix' is a string; tokenize it first"):
    run("combine_and_keep_train(8)", prefix="a", suffix="b", septok=[4])
  with pytest.raises(KeyError, match="keep key 'gt' not in the example"):
    run(f"combine_and_keep_eval(8, keep=['gt'], model='{model}')", prefix="a")


def test_text_tags_whole_words_any_caption():
  pp = "text_tags(inkey='captions', tags=['red circle', 'circle', 'square', 'blue', 'cat'])"
  got = run(pp, captions=["a small red  circle and a Blue square", "two shapes"])["labels"]
  np.testing.assert_array_equal(got.numpy(), [1, 1, 1, 1, 0])
  assert got.dtype == tf.float32
  # Whole words only: "circles", "redcircle", "scatter" match nothing; one string works too.
  got = run(pp, captions="a red circles, a redcircle, scatter")["labels"]
  np.testing.assert_array_equal(got.numpy(), [0, 0, 0, 0, 0])
  got = run("text_tags(inkey='c', tags=['blue square'], outkey='y')", c="blue square.")
  np.testing.assert_array_equal(got["y"].numpy(), [1])


def test_text_tags_errors():
  with pytest.raises(ValueError, match=r"tags=\[\] must be a non-empty list"):
    builder.get_preprocess_fn("text_tags(inkey='c', tags=[])")
  with pytest.raises(ValueError, match=r"tags \['red'\] appear more than once"):
    builder.get_preprocess_fn("text_tags(inkey='c', tags=['red', 'blue', 'red'])")
  with pytest.raises(KeyError, match=r"needs key 'c', the example has \['x'\]"):
    run("text_tags(inkey='c', tags=['red'])", x="red")
  with pytest.raises(ValueError, match=r"'c' is int32; it must be a string"):
    run("text_tags(inkey='c', tags=['red'])", c=3)
