r"""PaliGemma transfer to AI2D (diagram multiple choice; published recipe).

  python -m big_vision_lite.train --config transfers/ai2d.py:res=448,data_dir=/tfds \
      --workdir /tmp/ai2d

Prompt "answer en  {question} choose from: {option 1} \t {option 2} ..." (the published
prompt, two spaces after "en"); the target is the correct option's text. Data: TFDS
`ai2d` (keys image, question, possible_answers [n], answer, id). Evaluator: accuracy
(exact match; the options are in the prompt, so no lower-casing).
"""
import ml_collections

from transfers import common

PROMPT = ('strjoin(" \\t ", inkey="possible_answers", outkey="ansstr")'
          '|strfmt("answer en  {question} choose from: {ansstr}", outkey="prefix")')


def get_config(arg=None):
  """Best published hyper-parameters: 10 epochs, lr 1e-5, wd 1e-6, batch 256."""
  a = common.parse(arg, res=224, text_len=128, batch_size=256, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = PROMPT

  # Input.
  split = "train" if a.final_split else "train[:-1024]"
  c.input = dict(data=common.tfds("ai2d", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'copy(inkey="answer", outkey="suffix")',
                                    antialias=True))
  c.total_epochs = 10

  # Model.
  c.model_name = "paligemma"
  c.model = common.model(a)
  c.model_init = common.checkpoint(a)  # Read at startup; README: where to get it.
  c.tokenizer = a.tokenizer

  # Optimizer: Adam, cosine schedule with 5% warmup, gradient norm clipped at 1.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.999)
  c.lr = 1e-5
  c.wd = 1e-6
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.0
  cosine = dict(decay_type="cosine", warmup_percent=0.05)
  c.schedule = [("img/.*", cosine), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  pp = common.eval_pp(a, prompt, 'copy(inkey="id", outkey="question_id")',
                      keep=("answer", "question_id"))
  c.evals = {}
  for name, split in [("minival", "train[-1024:]"), ("eval", "test")]:
    c.evals[f"ai2d/{name}"] = common.decode_eval(
        "vqa", common.tfds("ai2d", split, a), pp, a, log_percent=0.125)
  c.evals["ai2d/eval/pplx"] = common.pplx_eval(
      common.tfds("ai2d", "test", a), c.input.pp, log_percent=0.125)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
