r"""PaliGemma transfer to NLVR2 (is the sentence true of the image pair?; published recipe).

  python -m big_vision_lite.train --config transfers/nlvr2.py:res=224,data_dir=/tfds \
      --workdir /tmp/nlvr2

Prompt "answer en {sentence}", target "True"/"False". Data: rows with image, sentence,
label and example_id, where `image` shows the left and right images side by side (the
reference feeds the two images as two frames; this repo's pp has no op stacking two
images, so compose them when exporting the data). Evaluator: accuracy.
"""
import ml_collections

from transfers import common

MOCK_PP = ('copy(inkey="question", outkey="sentence")|copy(inkey="suffix", outkey="label")'
           '|const(0, key="example_id")')
# res -> (lr, wd, epochs) of the published sweep.
BEST = {224: (1e-5, 1e-6, 3), 448: (3e-6, 3e-7, 10)}


def get_config(arg=None):
  """Best published hyper-parameters per resolution (BEST), batch 256."""
  a = common.parse(arg, res=224, text_len=64, batch_size=256, final_split=False)
  c = ml_collections.ConfigDict()
  lr, wd, epochs = BEST.get(a.res, BEST[448])
  prompt = 'strfmt("answer en {sentence}", outkey="prefix")'

  # Input.
  split = "train+dev" if a.final_split else "train"
  c.input = dict(data=common.tfds("nlvr2", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'copy(inkey="label", outkey="suffix")'))
  c.total_epochs = epochs

  # Model.
  common.model(c, a)

  # Optimizer.
  common.optimizer(c, lr=lr, wd=wd)

  # Sharding.
  common.fsdp(c)

  # Evaluation.
  pp = common.eval_pp(a, prompt, 'copy(inkey="label", outkey="answer")',
                      'copy(inkey="example_id", outkey="question_id")',
                      keep=("answer", "question_id"))
  c.evals = {}
  for name, split in [("dev", "dev"), ("test", "test")]:
    c.evals[f"nlvr2/{name}"] = common.decode_eval(
        "vqa", common.tfds("nlvr2", split, a), pp, a, log_percent=0.1)
  c.evals["nlvr2/dev/pplx"] = common.pplx_eval(
      common.tfds("nlvr2", "dev", a), c.input.pp, log_percent=0.05)
  return common.finish(c, a, mock_task="vqa", mock_pp=MOCK_PP)
