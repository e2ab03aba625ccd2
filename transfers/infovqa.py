r"""PaliGemma transfer to InfoVQA (published recipe).

  python -m big_vision_lite.train --config transfers/infovqa.py:res=896,data_dir=/tfds \
      --workdir /tmp/infovqa

Data: TFDS `infovqa` (keys image, question, answers, question_id). Prompt
"answer en {question}". Evaluator: ANLS and accuracy, answers lower-cased as the
reference evaluation does (the reference also lower-cases the training targets).
"""
import ml_collections

from transfers import common

# res -> (lr, wd, batch size) of the published sweep; 3 epochs everywhere.
BEST = {224: (1e-5, 1e-6, 256), 448: (1e-5, 1e-6, 128), 896: (3e-6, 3e-7, 32)}


def get_config(arg=None):
  """Best published hyper-parameters per resolution (BEST; batch_size=-1 takes
  BEST's), label smoothing 0.4."""
  a = common.parse(arg, res=896, text_len=48, batch_size=-1, final_split=False)
  c = ml_collections.ConfigDict()
  lr, wd, batch_size = BEST.get(a.res, BEST[896])
  prompt = 'strfmt("answer en {question}", outkey="prefix")'

  # Input.
  split = "train+val" if a.final_split else "train"
  c.input = dict(data=common.tfds("infovqa", split, a),
                 batch_size=batch_size if a.batch_size == -1 else a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'choice(inkey="answers", outkey="suffix")',
                                    antialias=True))
  c.total_epochs = 3

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
  c.label_smoothing = 0.4
  cosine = dict(decay_type="cosine", warmup_percent=0.05)
  c.schedule = [("img/.*", cosine), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  pp = common.eval_pp(a, prompt, keep=("answers", "question_id"), antialias=True)
  c.evals = {}
  for name, split in [("minitrain", "train[:5%]"), ("minival", "val")]:
    c.evals[f"infovqa/{name}"] = common.decode_eval(
        "vqa", common.tfds("infovqa", split, a), pp, a, log_percent=0.1, to_lower=True)
  c.evals["infovqa/minival/pplx"] = common.pplx_eval(
      common.tfds("infovqa", "val", a), c.input.pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
