r"""PaliGemma transfer to DocVQA (published recipe).

  python -m big_vision_lite.train --config transfers/docvqa.py:res=896,data_dir=/tfds \
      --workdir /tmp/docvqa

Data: TFDS `docvqa` (keys image, question, answers, question_id). The prompt is the bare
question. Evaluator: ANLS (lower-cased, whitespace collapsed).
"""
import ml_collections

from transfers import common


def get_config(arg=None):
  """Best published hyper-parameters: 10 epochs, lr 1e-5, wd 1e-6, batch 256."""
  a = common.parse(arg, res=896, text_len=32, batch_size=256, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = 'copy(inkey="question", outkey="prefix")'

  # Input.
  split = "train+val" if a.final_split else "train[:-5%]"
  c.input = dict(data=common.tfds("docvqa", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'choice(inkey="answers", outkey="suffix")',
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
  pp = common.eval_pp(a, prompt, keep=("answers", "question_id"), antialias=True)
  c.evals = {}
  for name, split in [("minival", "train[-5%:]"), ("eval", "val")]:
    c.evals[f"docvqa/{name}"] = common.decode_eval(
        "vqa", common.tfds("docvqa", split, a), pp, a, log_percent=0.125,
        to_lower=True, strip=True)
  c.evals["docvqa/eval/pplx"] = common.pplx_eval(
      common.tfds("docvqa", "val", a), c.input.pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
