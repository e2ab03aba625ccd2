r"""PaliGemma transfer to A-OKVQA, direct-answer mode (published recipe).

  python -m big_vision_lite.train --config transfers/aokvqa_da.py:res=224,data_dir=/tfds \
      --workdir /tmp/aokvqa_da

Data: TFDS `aokvqa` (keys image, question, direct_answers [10], question_id). Prompt
"answer en {question}"; the target is one of the direct answers. Evaluator: VQA accuracy
(min(1, #matches / 3)).
"""
import ml_collections

from transfers import common

MOCK_PP = 'copy(inkey="answers", outkey="direct_answers")|const(0, key="question_id")'


def get_config(arg=None):
  """Best published hyper-parameters: 10 epochs, lr 5e-6, wd 0, batch 128."""
  a = common.parse(arg, res=224, text_len=32, batch_size=128, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("answer en {question}", outkey="prefix")'

  # Input.
  split = "train+val" if a.final_split else "train"
  c.input = dict(data=common.tfds("aokvqa", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt,
                                    'choice(inkey="direct_answers", outkey="suffix")',
                                    antialias=True))
  c.total_epochs = 10

  # Model.
  common.model(c, a)

  # Optimizer.
  common.optimizer(c, lr=5e-6, wd=0.0)

  # Sharding.
  common.fsdp(c)

  # Evaluation.
  pp = common.eval_pp(a, prompt, 'copy(inkey="direct_answers", outkey="answers")',
                      keep=("answers", "question_id"), antialias=True)
  c.evals = {}
  for name, split in [("minitrain", "train[:5%]"), ("eval", "val")]:
    c.evals[f"aokvqa_da/{name}"] = common.decode_eval(
        "vqa", common.tfds("aokvqa", split, a), pp, a, log_percent=0.25)
  c.evals["aokvqa_da/eval/pplx"] = common.pplx_eval(
      common.tfds("aokvqa", "val", a), c.input.pp, log_percent=0.05)
  return common.finish(c, a, mock_task="vqa", mock_pp=MOCK_PP)
