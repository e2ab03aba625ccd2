r"""PaliGemma transfer to TextVQA (published recipe).

  python -m big_vision_lite.train --config transfers/textvqa.py:res=448,data_dir=/tfds \
      --workdir /tmp/textvqa

Data: TFDS `textvqa` (keys image, question, answers [10], question_id). Prompt
"answer en {question}". Evaluator: VQAv2-style accuracy (answer_type "other").
"""
import ml_collections

from transfers import common

MOCK_PP = 'const(0, key="question_id")'
# res -> (lr, wd, epochs) of the published sweep.
BEST = {224: (3e-6, 0.0, 5), 448: (3e-6, 3e-7, 10), 896: (3e-6, 0.0, 10)}


def get_config(arg=None):
  """Best published hyper-parameters per resolution (BEST), batch 256."""
  a = common.parse(arg, res=224, text_len=32, batch_size=256, final_split=False)
  c = ml_collections.ConfigDict()
  lr, wd, epochs = BEST.get(a.res, BEST[224])
  prompt = 'strfmt("answer en {question}", outkey="prefix")'

  # Input.
  split = "train+val" if a.final_split else "train"
  c.input = dict(data=common.tfds("textvqa", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'choice(inkey="answers", outkey="suffix")',
                                    antialias=True))
  c.total_epochs = epochs

  # Model.
  common.model(c, a)

  # Optimizer.
  common.optimizer(c, lr=lr, wd=wd)

  # Sharding.
  common.fsdp(c)

  # Evaluation.
  pp = common.eval_pp(a, prompt, 'const("other", key="answer_type")',
                      keep=("answers", "answer_type", "question_id"), antialias=True)
  c.evals = {}
  for name, split in [("minitrain", "train[:5120]"), ("eval", "val")]:
    # big_vision's VQAv2 normalisation: the reference's logged val numbers (README).
    c.evals[f"textvqa/{name}"] = common.decode_eval(
        "vqav2", common.tfds("textvqa", split, a), pp, a, log_percent=0.125,
        normalize="big_vision")
  c.evals["textvqa/eval/pplx"] = common.pplx_eval(
      common.tfds("textvqa", "val", a), c.input.pp, log_percent=0.05)
  return common.finish(c, a, mock_task="vqa", mock_pp=MOCK_PP)
