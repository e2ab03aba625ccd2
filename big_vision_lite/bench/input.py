"""Input benchmark: examples/s of the tf.data training pipeline with a pp string.

Runs `input_pipeline.training` on the bundled shapes data (generated once into
`data_dir`, with a tokenizer trained on its corpus) and times host batches after a
warm-up, to compare with the examples/s that the train step consumes.
"""
import os

from big_vision_lite.bench import timing
from big_vision_lite import input_pipeline
from big_vision_lite import tokenizer
from big_vision_lite.datasets import shapes

DEFAULT_PP = ("decode|resize({res})|value_range(-1, 1)"
              "|combine_and_keep_train({text_len}, model={tok!r})")


def prepare_data(data_dir, *, res, num_train=64, vocab_size=400):
  """Generates shapes data (images of `res` px) and its tokenizer; returns (data, tok)."""
  data = dict(out_dir=os.path.join(data_dir, f"shapes_{res}"), num_train=num_train,
              num_val=8, res=res, seed=0)
  shapes.ensure_shapes(**data)
  tok = os.path.join(data["out_dir"], "tokenizer.model")
  if not os.path.exists(tok):
    with open(os.path.join(data["out_dir"], "corpus.txt"), encoding="utf-8") as f:
      tokenizer.train_tokenizer([l.rstrip("\n") for l in f], tok, vocab_size)
  return data, tok


def input_config(data, pp, batch_size, task="caption"):
  """`config.input` of one shapes task with pp string `pp`."""
  return dict(batch_size=batch_size, shuffle_buffer_size=64, pp=pp,
              data=dict(name="shapes", task=task, split="train", data_dir=data["out_dir"],
                        num_train=data["num_train"], num_val=data["num_val"],
                        res=data["res"], seed=data["seed"]))


def bench_input(data_dir, *, resolutions=(224, 448), batch_size=8, text_len=32,
                batches=10, pp_template=DEFAULT_PP, train_examples_per_s=None):
  """The `input` sub-command: one row per resolution.

  Args:
    pp_template: pp string with `{res}`, `{text_len}`, `{tok}` fields.
    train_examples_per_s: {res: examples/s of the train step} to compare with.

  Returns:
    dict(rows) with examples_per_s, and input_over_train where the train rate is known.
  """
  rows = []
  for res in resolutions:
    data, tok = prepare_data(data_dir, res=res)
    pp = pp_template.format(res=res, text_len=text_len, tok=tok)
    it = iter(input_pipeline.training(input_config(data, pp, batch_size), seed=0))
    r = timing.time_calls(lambda: next(it), iters=batches, warmup=2)
    rate = batch_size / r["median"]
    row = dict(res=res, batch=batch_size, batch_s=r["median"], examples_per_s=rate)
    train = (train_examples_per_s or {}).get(res)
    if train:
      row.update(train_examples_per_s=train, input_over_train=rate / train)
    rows.append(row)
  return dict(rows=rows, config=dict(batch=batch_size, text_len=text_len,
                                     pp_template=pp_template))
