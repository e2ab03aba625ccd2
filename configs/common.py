"""Small helpers shared by the configs in this folder (no I/O, no jax)."""
import ml_collections

# Base SentencePiece vocab of the generated tokenizers; PaliGemma's 1024 loc + 128 seg
# pieces follow it, so the model vocab is TOKENIZER_BASE_VOCAB + 1152.
NUM_LOC_SEG = 1024 + 128


def shapes_pp(res, text_len, tokenizer, train=True, keep=()):
  """pp string for a shapes row: image -> [-1, 1], prefix/suffix -> token row.

  Eval rows prompt with the prefix only (suffix=None: the row's suffix is the answer).
  """
  img = f"decode|resize({res}, antialias=True)|value_range(-1, 1)"
  if train:
    return img + f"|combine_and_keep_train({text_len}, model={tokenizer!r})"
  return img + (f"|combine_and_keep_eval({text_len}, keep={tuple(keep)!r}, suffix=None, "
                f"model={tokenizer!r})")


def shapes_source(task, split, data):
  """Data source config of one shapes task (`data`: ensure_shapes kwargs)."""
  design = {k: data[k] for k in ("size_scale", "max_objects", "font_scale") if k in data}
  return dict(name="shapes", task=task, split=split, data_dir=data["out_dir"],
              num_train=data["num_train"], num_val=data["num_val"], res=data["res"],
              seed=data["seed"], **design)


def shapes_mixture(weights, *, data, res, text_len, tokenizer, batch_size,
                   shuffle_buffer_size=1000):
  """Training input over the shapes tasks in `weights` ({task: weight})."""
  c = ml_collections.ConfigDict()
  c.batch_size = batch_size
  c.shuffle_buffer_size = shuffle_buffer_size
  c.data = dict(weights)
  for task in weights:
    c[task] = dict(data=shapes_source(task, "train", data),
                   pp=shapes_pp(res, text_len, tokenizer))
  return c


def shapes_tokenizer(data, out_path, vocab_size):
  """`train_tokenizer` config: trains on the generated corpus at startup."""
  return dict(corpus_files=[data["out_dir"] + "/corpus.txt"], out_path=out_path,
              vocab_size=vocab_size)


def paligemma_model(*, img, llm, vocab_size):
  """`model` config of a small from-scratch PaliGemma."""
  return dict(img=dict(img), llm=dict(llm, vocab_size=vocab_size))
