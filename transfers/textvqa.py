r"""PaliGemma transfer to TextVQA (published recipe).

  python -m big_vision_lite.train --config transfers/textvqa.py:res=448,data_dir=/tfds \
      --workdir /tmp/textvqa

Data: TFDS `textvqa` (keys image, question, answers [10], question_id). Prompt
"answer en {question}". Evaluator: VQAv2-style accuracy (answer_type "other").
"""
import ml_collections

from transfers import common

# res -> (lr, wd, epochs) of the published sweep.
BEST = {224: (3e-6, 0.0, 5), 448: (3e-6, 3e-7, 10), 896: (3e-6, 0.0, 10)}


def get_config(arg=None):
  """Best published hyper-parameters per resolution (BEST), batch 256."""
  a = common.parse(arg, res=224, text_len=32, batch_size=256, final_split=False)
  c = ml_collections.ConfigDict()
  lr, wd, epochs = BEST.get(a.res, BEST[224])
  prompt = 'strfmt("answer en {question}", outkey="prefix")'

  # Input.
  split = "train+val" if a.final_split else "train"
  c.input = dict(data=common.tfds("textvqa", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'choice(inkey="answers", outkey="suffix")',
                                    antialias=True))
  c.total_epochs = epochs

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
  pp = common.eval_pp(a, prompt, 'const("other", key="answer_type")',
                      keep=("answers", "answer_type", "question_id"), antialias=True)
  c.evals = {}
  for name, split in [("minitrain", "train[:5120]"), ("eval", "val")]:
    # big_vision's VQAv2 normalisation: the reference's logged val numbers (README).
    c.evals[f"textvqa/{name}"] = common.decode_eval(
        "vqav2", common.tfds("textvqa", split, a), pp, a, log_percent=0.125,
        normalize="big_vision")
  c.evals["textvqa/eval/pplx"] = common.pplx_eval(
      common.tfds("textvqa", "val", a), c.input.pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
