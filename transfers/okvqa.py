r"""PaliGemma transfer to OK-VQA (published recipe).

  python -m big_vision_lite.train --config transfers/okvqa.py:res=224,data_dir=/tfds \
      --workdir /tmp/okvqa

Data: TFDS `okvqa` (keys image, question, answers [10], question_id). Prompt
"answer en {question}"; the target is one of the answers. Evaluator: VQA accuracy.
"""
import ml_collections

from transfers import common

MOCK_PP = 'const(0, key="question_id")'


def get_config(arg=None):
  """Published hyper-parameters: 10 epochs, lr 5e-6, wd 0, batch 128."""
  a = common.parse(arg, res=224, text_len=32, batch_size=128, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("answer en {question}", outkey="prefix")'

  # Input.
  split = "train" if a.final_split else "train[:-10%]"
  c.input = dict(data=common.tfds("okvqa", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'choice(inkey="answers", outkey="suffix")',
                                    antialias=True))
  c.total_epochs = 10

  # Model.
  common.model(c, a)

  # Optimizer.
  common.optimizer(c, lr=5e-6, wd=0.0)

  # Sharding.
  common.fsdp(c)

  # Evaluation.
  pp = common.eval_pp(a, prompt, keep=("answers", "question_id"), antialias=True)
  c.evals = {}
  for name, split in [("minival", "train[-10%:]"), ("eval", "val")]:
    c.evals[f"okvqa/{name}"] = common.decode_eval(
        "vqa", common.tfds("okvqa", split, a), pp, a, log_percent=0.25)
  c.evals["okvqa/eval/pplx"] = common.pplx_eval(
      common.tfds("okvqa", "val", a), c.input.pp, log_percent=0.05)
  return common.finish(c, a, mock_task="vqa", mock_pp=MOCK_PP)
