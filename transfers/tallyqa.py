r"""PaliGemma transfer to TallyQA (counting; published recipe).

  python -m big_vision_lite.train --config transfers/tallyqa.py:res=224,data_dir=/tfds \
      --workdir /tmp/tallyqa

Data: TFDS `tallyqa` (keys image, question, answer (int), issimple). Prompt
"answer en {question}", target the count in digits. Evaluator: accuracy, simple and
complex splits.
"""
import ml_collections

from transfers import common

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
  c.model_name = "paligemma"
  c.model = common.model(a)
  c.model_init = common.checkpoint(a)  # Read at startup; README: where to get it.
  c.tokenizer = a.tokenizer

  # Optimizer: Adam, cosine schedule with 5% warmup, gradient norm clipped at 1.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.999)
  c.lr = lr
  c.wd = wd
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.0
  cosine = dict(decay_type="cosine", warmup_percent=0.05)
  c.schedule = [("img/.*", cosine), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  pp = common.eval_pp(a, prompt, 'strfmt("{answer}", outkey="answer")',
                      keep=("answer", "issimple"), antialias=True)
  c.evals = {}
  for name, split, freq in [("minitrain", "train[:5%]", 0.1), ("eval", "test", 0.25)]:
    c.evals[f"tallyqa/{name}"] = common.decode_eval(
        "tallyqa", common.tfds("tallyqa", split, a), pp, a, log_percent=freq)
  c.evals["tallyqa/eval/pplx"] = common.pplx_eval(
      common.tfds("tallyqa", "test", a), c.input.pp, log_percent=0.1)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
