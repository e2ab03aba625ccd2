r"""PaliGemma transfer to A-OKVQA, multiple-choice mode (published recipe).

  python -m big_vision_lite.train --config transfers/aokvqa_mc.py:res=224,data_dir=/tfds \
      --workdir /tmp/aokvqa_mc

Prompt "answer en  {question} choose from: {choice 1} \t {choice 2} ..." (the published
prompt, two spaces after "en"); the target is the correct choice's text. Data: TFDS
`aokvqa` (keys image, question, question_id, multiple_choice_possible_answers [n],
multiple_choice_correct_idx). Evaluator: accuracy (exact match).
"""
import ml_collections

from transfers import common

OPTS = "multiple_choice_possible_answers"
PROMPT = (f'strjoin(" \\t ", inkey="{OPTS}", outkey="ansstr")'
          '|strfmt("answer en  {question} choose from: {ansstr}", outkey="prefix")')


def target(outkey):
  """The correct choice's text -> `outkey`."""
  return f'getidx(inkey="{OPTS}", index_key="multiple_choice_correct_idx", outkey="{outkey}")'


def get_config(arg=None):
  """Best published hyper-parameters: 15 epochs, lr 5e-6, wd 0, batch 128."""
  a = common.parse(arg, res=224, text_len=128, batch_size=128, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = PROMPT

  # Input.
  split = "train+val" if a.final_split else "train"
  c.input = dict(data=common.tfds("aokvqa", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, target("suffix"), antialias=True))
  c.total_epochs = 15

  # Model.
  c.model_name = "paligemma"
  c.model = common.model(a)
  c.model_init = common.checkpoint(a)  # Read at startup; README: where to get it.
  c.tokenizer = a.tokenizer

  # Optimizer: Adam, cosine schedule with 5% warmup, gradient norm clipped at 1.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.999)
  c.lr = 5e-6
  c.wd = 0.0
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.0
  cosine = dict(decay_type="cosine", warmup_percent=0.05)
  c.schedule = [("img/.*", cosine), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  pp = common.eval_pp(a, prompt, target("answer"), keep=("answer", "question_id"), antialias=True)
  c.evals = {}
  for name, split in [("minitrain", "train[:5%]"), ("eval", "val")]:
    c.evals[f"aokvqa_mc/{name}"] = common.decode_eval(
        "vqa", common.tfds("aokvqa", split, a), pp, a, log_percent=0.25)
  c.evals["aokvqa_mc/eval/pplx"] = common.pplx_eval(
      common.tfds("aokvqa", "val", a), c.input.pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
