r"""PaliGemma transfer to Screen2Words (UI screen summaries) (published recipe).

  python -m big_vision_lite.train --config transfers/screen2words.py:res=224,data_dir=/tfds \
      --workdir /tmp/screen2words

Data: TFDS `screen2_words` (keys image, image/id, summary [n]). Prompt "caption en"; the target is
one of the references. Evaluator: CIDEr.
"""
import ml_collections

from transfers import common


def get_config(arg=None):
  """Best published hyper-parameters: 10 epochs, lr 1e-5, wd 0.0, batch 256."""
  a = common.parse(arg, res=224, text_len=24, batch_size=256, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("caption en", outkey="prefix")'

  # Input.
  c.input = dict(data=common.tfds("screen2_words", "train+dev" if a.final_split else "train", a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'choice(inkey="summary", outkey="suffix")'))
  c.total_epochs = 10

  # Model.
  c.model_name = "paligemma"
  c.model = common.model(a, llm_dropout=0.3)
  c.model_init = common.checkpoint(a)  # Read at startup; README: where to get it.
  c.tokenizer = a.tokenizer

  # Optimizer: Adam, cosine schedule with 5% warmup, gradient norm clipped at 1.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.999)
  c.lr = 1e-5
  c.wd = 0.0
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.2
  cosine = dict(decay_type="cosine", warmup_percent=0.05)
  c.schedule = [("img/.*", cosine), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  pp = common.eval_pp(a, 'copy(inkey="summary", outkey="captions")', prompt,
                      keep=("image/id", "captions"))
  c.evals = {}
  for name, split in [("dev", "dev"), ("test", "test")]:
    c.evals[f"screen2words/{name}"] = common.decode_eval(
        "coco_caption", common.tfds("screen2_words", split, a), pp, a, log_percent=0.1)
  c.evals["screen2words/dev/pplx"] = common.pplx_eval(
      common.tfds("screen2_words", "dev", a), c.input.pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
