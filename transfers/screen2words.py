r"""PaliGemma transfer to Screen2Words (UI screen summaries) (published recipe).

  python -m big_vision_lite.train --config transfers/screen2words.py:res=224,data_dir=/tfds \
      --workdir /tmp/screen2words

Data: TFDS `screen2_words` (keys image, image/id, summary [n]). Prompt "caption en"; the target is
one of the references. Evaluator: CIDEr.
"""
import ml_collections

from transfers import common

MOCK_PP = 'copy(inkey="captions", outkey="summary")|const(0, key="image/id")'


def get_config(arg=None):
  """Best published hyper-parameters: 10 epochs, lr 1e-5, wd 0.0, batch 256."""
  a = common.parse(arg, res=224, text_len=24, batch_size=256, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("caption en", outkey="prefix")'

  # Input.
  c.input = dict(data=common.tfds("screen2_words", "train+dev" if a.final_split else "train", a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'choice(inkey="summary", outkey="suffix")'))
  c.total_epochs = 10

  # Model.
  common.model(c, a, llm_dropout=0.3)

  # Optimizer.
  common.optimizer(c, lr=1e-5, wd=0.0, label_smoothing=0.2)

  # Sharding.
  common.fsdp(c)

  # Evaluation.
  pp = common.eval_pp(a, 'copy(inkey="summary", outkey="captions")', prompt,
                      keep=("image/id", "captions"))
  c.evals = {}
  for name, split in [("dev", "dev"), ("test", "test")]:
    c.evals[f"screen2words/{name}"] = common.decode_eval(
        "coco_caption", common.tfds("screen2_words", split, a), pp, a, log_percent=0.1)
  c.evals["screen2words/dev/pplx"] = common.pplx_eval(
      common.tfds("screen2_words", "dev", a), c.input.pp, log_percent=0.05)
  return common.finish(c, a, mock_task="caption", mock_pp=MOCK_PP)
