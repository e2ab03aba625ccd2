r"""PaliGemma transfer to COCO-35L (COCO captions in 35 languages; published recipe).

  python -m big_vision_lite.train --config transfers/coco35l.py:res=224,data_dir=/tfds \
      --workdir /tmp/coco35l

Data: TFDS `coco35l` (splits train_{lang} / dev_{lang}; keys image, image/id, captions).
One source per language, equally weighted; prompt "caption {lang}". Evaluator: CIDEr per
language (a representative subset often, all languages at the end).
"""
import ml_collections

from transfers import common

LANGUAGES = ("ar", "bn", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fil", "fr", "he",
             "hi", "hr", "hu", "id", "it", "ja", "ko", "mi", "nl", "no", "pl", "pt", "ro",
             "ru", "sv", "sw", "te", "th", "tr", "uk", "vi", "zh")
SUBSET = ("ar", "bn", "en", "id", "sw", "tr", "zh")  # Evaluated often.
COCO_EXAMPLES = 566_435  # One language's train captions.


def get_config(arg=None):
  """Best published hyper-parameters: 5 x 566k examples, lr 1e-5, wd 1e-6, batch 256."""
  a = common.parse(arg, res=224, text_len=32, batch_size=256)
  c = ml_collections.ConfigDict()

  # Input.
  choose = 'choice(inkey="captions", outkey="suffix")'
  c.input = dict(data={lang: 1.0 for lang in LANGUAGES}, batch_size=a.batch_size,
                 shuffle_buffer_size=10_000)
  for lang in LANGUAGES:
    prompt = f'strfmt("caption {lang}", outkey="prefix")'
    c.input[lang] = dict(data=common.tfds("coco35l", f"train_{lang}", a),
                         pp=common.train_pp(a, choose, prompt))
  c.total_examples = 5 * COCO_EXAMPLES

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
  c.evals = {}
  for lang in LANGUAGES:
    pp = common.eval_pp(a, f'strfmt("caption {lang}", outkey="prefix")',
                        keep=("image/id", "captions"))
    c.evals[f"coco35l/{lang}"] = common.decode_eval(
        "coco_caption", common.tfds("coco35l", f"dev_{lang}", a), pp, a,
        log_percent=0.25 if lang in SUBSET else 1.0)
  c.evals["coco35l/en/pplx"] = common.pplx_eval(
      common.tfds("coco35l", "dev_en", a), c.input.en.pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
