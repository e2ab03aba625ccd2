r"""PaliGemma transfer to RSVQA-HR (high-resolution aerial images), non-numeric questions (published recipe).

  python -m big_vision_lite.train --config transfers/rsvqa_hr.py:res=224,data_dir=/tfds \
      --workdir /tmp/rsvqa_hr

Data: TFDS `rsvqa_hr/nonum` (keys image, question, answers, question_type, question_id).
Prompt "answer en {question}". Evaluator: accuracy per question type and their average,
answers lower-cased as the reference evaluation does.
"""
import ml_collections

from transfers import common


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
  c.model_name = "paligemma"
  c.model = common.model(a)
  c.model_init = common.checkpoint(a)  # Read at startup; README: where to get it.
  c.tokenizer = a.tokenizer

  # Optimizer: Adam, cosine schedule with 5% warmup, gradient norm clipped at 1.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.999)
  c.lr = 1e-5
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
  pp = common.eval_pp(a, prompt, keep=("answers", "question_type", "question_id"))
  c.evals = {}
  for name, split, freq in [("minival", "val", 0.1), ("test", "test", 1.0)]:
    c.evals[f"rsvqa_hr/{name}"] = common.decode_eval(
        "rsvqa", common.tfds("rsvqa_hr/nonum", split, a), pp, a, log_percent=freq,
        to_lower=True)
  c.evals["rsvqa_hr/minival/pplx"] = common.pplx_eval(
      common.tfds("rsvqa_hr/nonum", "val", a), c.input.pp, log_percent=0.1)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
