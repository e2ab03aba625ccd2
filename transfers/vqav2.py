r"""PaliGemma transfer to VQAv2 (published recipe; reference score in README).

  python -m big_vision_lite.train --config transfers/vqav2.py:res=224,data_dir=/tfds \
      --workdir /tmp/vqav2

Data: the prepared TFDS dataset `vqa` (keys image, question_text, answers [10],
answer_type, question_type, question_id). Prompt "answer en {question_text}"; the
target is one of the 10 answers. Evaluator: VQAv2 accuracy.
"""
import ml_collections

from transfers import common

# Shapes vqa rows -> the VQAv2 feature format (mode=mock).
MOCK_PP = ('copy(inkey="question", outkey="question_text")|const("other", key="answer_type")'
           '|const(0, key="question_id")')


def get_config(arg=None):
  """Best published hyper-parameters: 10 epochs, lr 1e-5, wd 1e-6 (224) / 0 (448)."""
  a = common.parse(arg, res=224, text_len=32, batch_size=256, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("answer en {question_text}", outkey="prefix")'

  # Input.
  split = "train+validation" if a.final_split else "train+validation[:-10240]"
  c.input = dict(data=common.tfds("vqa", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'choice(inkey="answers", outkey="suffix")',
                                    antialias=True))
  c.total_epochs = 10

  # Model.
  common.model(c, a)

  # Optimizer.
  common.optimizer(c, lr=1e-5, wd=1e-6 if a.res == 224 else 0.0)

  # Sharding.
  common.fsdp(c)

  # Evaluation.
  keep = ("answers", "answer_type", "question_type", "question_id")
  pp = common.eval_pp(a, prompt, keep=keep, antialias=True)
  c.evals = {}
  for name, split, freq in [("minitrain", "train[:5120]", 0.25),
                            ("minival", "validation[-10240:]", 0.25)]:
    # big_vision's normalisation, as its logged minival numbers; test-std/test-dev
    # predictions go to the server, which scores them with the official script (README).
    c.evals[f"vqav2/{name}"] = common.decode_eval(
        "vqav2", common.tfds("vqa", split, a), pp, a, log_percent=freq,
        normalize="big_vision")
  c.evals["vqav2/minival/pplx"] = common.pplx_eval(
      common.tfds("vqa", "validation[-10240:]", a), c.input.pp, log_percent=0.25)
  return common.finish(c, a, mock_task="vqa", mock_pp=MOCK_PP)
