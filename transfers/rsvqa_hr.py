r"""PaliGemma transfer to RSVQA-HR (high-resolution aerial images), non-numeric questions (published recipe).

  python -m big_vision_lite.train --config transfers/rsvqa_hr.py:res=224,data_dir=/tfds \
      --workdir /tmp/rsvqa_hr

Data: TFDS `rsvqa_hr/nonum` (keys image, question, answers, question_type, question_id).
Prompt "answer en {question}". Evaluator: accuracy per question type and their average,
answers lower-cased as the reference evaluation does.
"""
import ml_collections

from transfers import common

MOCK_PP = 'const("presence", key="question_type")|const(0, key="question_id")'


def get_config(arg=None):
  """Best published hyper-parameters: 1 epoch(s), lr 1e-5, wd 0, batch 256."""
  a = common.parse(arg, res=224, text_len=32, batch_size=256, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("answer en {question}", outkey="prefix")'

  # Input.
  split = "train+val" if a.final_split else "train"
  c.input = dict(data=common.tfds("rsvqa_hr/nonum", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'choice(inkey="answers", outkey="suffix")',
                                    antialias=True))
  c.total_epochs = 1

  # Model.
  common.model(c, a)

  # Optimizer.
  common.optimizer(c, lr=1e-5, wd=0.0, label_smoothing=0.0)

  # Sharding.
  common.fsdp(c)

  # Evaluation.
  pp = common.eval_pp(a, prompt, keep=("answers", "question_type", "question_id"))
  c.evals = {}
  for name, split, freq in [("minival", "val", 0.1), ("test", "test", 1.0)]:
    c.evals[f"rsvqa_hr/{name}"] = common.decode_eval(
        "rsvqa", common.tfds("rsvqa_hr/nonum", split, a), pp, a, log_percent=freq,
        to_lower=True)
  c.evals["rsvqa_hr/minival/pplx"] = common.pplx_eval(
      common.tfds("rsvqa_hr/nonum", "val", a), c.input.pp, log_percent=0.1)
  return common.finish(c, a, mock_task="vqa", mock_pp=MOCK_PP)
