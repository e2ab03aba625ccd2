r"""PaliGemma transfer to A-OKVQA, multiple-choice mode (published recipe).

  python -m big_vision_lite.train --config transfers/aokvqa_mc.py:res=224,data_dir=/tfds \
      --workdir /tmp/aokvqa_mc

Prompt "answer en {question} choose from: {choice 1} \t {choice 2} ..."; the target is
the correct choice. Data: rows with image, question, question_id, `choices_str` (the
choices joined by " \t ") and `answer` (the correct choice's text); prepare these two
keys from A-OKVQA's `multiple_choice_possible_answers` / `multiple_choice_correct_idx`
when exporting the data (TFDS or JSONL). Evaluator: accuracy (exact match).
"""
import ml_collections

from transfers import common

MOCK_PP = ('const("yes \\t no \\t red \\t three", key="choices_str")'
           '|copy(inkey="suffix", outkey="answer")|const(0, key="question_id")')


def get_config(arg=None):
  """Best published hyper-parameters: 15 epochs, lr 5e-6, wd 0, batch 128."""
  a = common.parse(arg, res=224, text_len=128, batch_size=128, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("answer en {question} choose from: {choices_str}", outkey="prefix")'

  # Input.
  split = "train+val" if a.final_split else "train"
  c.input = dict(data=common.tfds("aokvqa", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'copy(inkey="answer", outkey="suffix")'))
  c.total_epochs = 15

  # Model.
  common.model(c, a)

  # Optimizer.
  common.optimizer(c, lr=5e-6, wd=0.0)

  # Sharding.
  common.fsdp(c)

  # Evaluation.
  pp = common.eval_pp(a, prompt, keep=("answer", "question_id"))
  c.evals = {}
  for name, split in [("minitrain", "train[:5%]"), ("eval", "val")]:
    c.evals[f"aokvqa_mc/{name}"] = common.decode_eval(
        "vqa", common.tfds("aokvqa", split, a), pp, a, log_percent=0.25)
  c.evals["aokvqa_mc/eval/pplx"] = common.pplx_eval(
      common.tfds("aokvqa", "val", a), c.input.pp, log_percent=0.05)
  return common.finish(c, a, mock_task="vqa", mock_pp=MOCK_PP)
