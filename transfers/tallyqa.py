r"""PaliGemma transfer to TallyQA (counting; published recipe).

  python -m big_vision_lite.train --config transfers/tallyqa.py:res=224,data_dir=/tfds \
      --workdir /tmp/tallyqa

Data: TFDS `tallyqa` (keys image, question, answer (int), issimple). Prompt
"answer en {question}", target the count in digits. Evaluator: accuracy, simple and
complex splits.
"""
import ml_collections

from transfers import common

MOCK_PP = 'copy(inkey="suffix", outkey="answer")|const(1, key="issimple")'
# res -> (lr, wd) of the published sweep; 2 epochs everywhere.
BEST = {224: (1e-5, 0.0), 448: (1e-5, 1e-6), 896: (7e-6, 7e-7)}


def get_config(arg=None):
  """Best published hyper-parameters per resolution (BEST), batch 256."""
  a = common.parse(arg, res=224, text_len=32, batch_size=256)
  c = ml_collections.ConfigDict()
  lr, wd = BEST.get(a.res, BEST[224])
  prompt = 'strfmt("answer en {question}", outkey="prefix")'

  # Input.
  c.input = dict(data=common.tfds("tallyqa", "train", a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'strfmt("{answer}", outkey="suffix")',
                                    antialias=True))
  c.total_epochs = 2

  # Model.
  common.model(c, a)

  # Optimizer.
  common.optimizer(c, lr=lr, wd=wd)

  # Sharding.
  common.fsdp(c)

  # Evaluation.
  pp = common.eval_pp(a, prompt, 'strfmt("{answer}", outkey="answer")',
                      keep=("answer", "issimple"), antialias=True)
  c.evals = {}
  for name, split, freq in [("minitrain", "train[:5%]", 0.1), ("eval", "test", 0.25)]:
    c.evals[f"tallyqa/{name}"] = common.decode_eval(
        "tallyqa", common.tfds("tallyqa", split, a), pp, a, log_percent=freq)
  c.evals["tallyqa/eval/pplx"] = common.pplx_eval(
      common.tfds("tallyqa", "test", a), c.input.pp, log_percent=0.1)
  return common.finish(c, a, mock_task="vqa", mock_pp=MOCK_PP)
