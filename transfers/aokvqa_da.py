r"""PaliGemma transfer to A-OKVQA, direct-answer mode (published recipe).

  python -m big_vision_lite.train --config transfers/aokvqa_da.py:res=224,data_dir=/tfds \
      --workdir /tmp/aokvqa_da

Data: TFDS `aokvqa` (keys image, question, direct_answers [10], question_id). Prompt
"answer en {question}"; the target is one of the direct answers. Evaluator: VQA accuracy
(min(1, #matches / 3)).
"""
import ml_collections

from transfers import common


def get_config(arg=None):
  """Best published hyper-parameters: 10 epochs, lr 5e-6, wd 0, batch 128."""
  a = common.parse(arg, res=224, text_len=32, batch_size=128, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("answer en {question}", outkey="prefix")'

  # Input.
  split = "train+val" if a.final_split else "train"
  c.input = dict(data=common.tfds("aokvqa", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt,
                                    'choice(inkey="direct_answers", outkey="suffix")',
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
  pp = common.eval_pp(a, prompt, 'copy(inkey="direct_answers", outkey="answers")',
                      keep=("answers", "question_id"), antialias=True)
  c.evals = {}
  for name, split in [("minitrain", "train[:5%]"), ("eval", "val")]:
    c.evals[f"aokvqa_da/{name}"] = common.decode_eval(
        "vqa", common.tfds("aokvqa", split, a), pp, a, log_percent=0.25)
  c.evals["aokvqa_da/eval/pplx"] = common.pplx_eval(
      common.tfds("aokvqa", "val", a), c.input.pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
