r"""PaliGemma transfer to ChartQA, human + augmented mixture (published recipe).

  python -m big_vision_lite.train --config transfers/chartqa.py:res=448,data_dir=/tfds \
      --workdir /tmp/chartqa

Data: TFDS `chartqa/human` and `chartqa/augmented` (keys image, question, answer,
question_id), mixed by their sizes. The prompt is the bare question. Evaluator: relaxed
accuracy (5% tolerance on numbers), reported per subset.
"""
import ml_collections

from transfers import common

# The true dataset sizes (ChartQA paper) are the mixture weights.
DATASETS = {"chartqa/human": 7_398, "chartqa/augmented": 20_901}


def get_config(arg=None):
  """Best published hyper-parameters: 30 epochs, lr 1e-5, wd 1e-6, batch 256."""
  a = common.parse(arg, res=224, text_len=48, batch_size=256, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = 'copy(inkey="question", outkey="prefix")'
  split = "train+val" if a.final_split else "train"

  # Input.
  pp = common.train_pp(a, prompt, 'copy(inkey="answer", outkey="suffix")', antialias=True)
  c.input = dict(data=dict(DATASETS), batch_size=a.batch_size, shuffle_buffer_size=50_000)
  for ds in DATASETS:
    c.input[ds] = dict(data=common.tfds(ds, split, a), pp=pp)
  c.total_epochs = 30

  # Model.
  c.model_name = "paligemma"
  c.model = common.model(a, llm_dropout=0.1)
  c.model_init = common.checkpoint(a)  # Read at startup; README: where to get it.
  c.tokenizer = a.tokenizer

  # Optimizer: Adam, cosine schedule with 5% warmup, gradient norm clipped at 1.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.999)
  c.lr = 1e-5
  c.wd = 1e-6
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.2
  cosine = dict(decay_type="cosine", warmup_percent=0.05)
  c.schedule = [("img/.*", cosine), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  eval_pp = common.eval_pp(a, prompt, keep=("answer", "question_id"), antialias=True)
  c.evals = {}
  for ds in DATASETS:
    for name, split in [("minival", "val"), ("eval", "test")]:
      c.evals[f"{ds}/{name}"] = common.decode_eval(
          "chartqa", common.tfds(ds, split, a), eval_pp, a, log_percent=0.1,
          to_lower=True)
    c.evals[f"{ds}/minival/pplx"] = common.pplx_eval(
        common.tfds(ds, "val", a), pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
