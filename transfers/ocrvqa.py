r"""PaliGemma transfer to OCR-VQA (book covers; published recipe).

  python -m big_vision_lite.train --config transfers/ocrvqa.py:res=448,data_dir=/tfds \
      --workdir /tmp/ocrvqa

Data: TFDS `ocrvqa_id` (one row per image-question pair; keys image, question, answer,
int_id). Prompt "answer en {question}". Evaluator: exact-match accuracy.
"""
import ml_collections

from transfers import common


def get_config(arg=None):
  """Best published hyper-parameters: 3 epochs, lr 3e-6 (1e-5 at 896), wd 0, batch 128."""
  a = common.parse(arg, res=224, text_len=32, batch_size=128, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("answer en {question}", outkey="prefix")'

  # Input.
  split = "train+val" if a.final_split else "train+val[20000:]"
  c.input = dict(data=common.tfds("ocrvqa_id", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'copy(inkey="answer", outkey="suffix")',
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
  c.lr = 1e-5 if a.res >= 896 else 3e-6
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
  pp = common.eval_pp(a, prompt, 'copy(inkey="int_id", outkey="question_id")',
                      keep=("answer", "question_id"), antialias=True)
  c.evals = {}
  for name, split, freq in [("minival", "val[:20000]", 0.25), ("eval", "test", 1.0)]:
    c.evals[f"ocrvqa/{name}"] = common.decode_eval(
        "vqa", common.tfds("ocrvqa_id", split, a), pp, a, log_percent=freq)
  c.evals["ocrvqa/minival/pplx"] = common.pplx_eval(
      common.tfds("ocrvqa_id", "val[:20000]", a), c.input.pp, log_percent=0.1)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
