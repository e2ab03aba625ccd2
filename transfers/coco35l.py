r"""PaliGemma transfer to COCO-35L (COCO captions in 35 languages; published recipe).

  python -m big_vision_lite.train --config transfers/coco35l.py:res=224,data_dir=/tfds \
      --workdir /tmp/coco35l

Data: TFDS `coco35l` (splits train_{lang} / dev_{lang}; keys image, image/id, captions).
One source per language, equally weighted; prompt "caption {lang}". Evaluator: CIDEr per
language (a representative subset often, all languages at the end).
"""
import ml_collections

from transfers import common

MOCK_PP = 'const(0, key="image/id")'
LANGUAGES = ("ar", "bn", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fil", "fr", "he",
             "hi", "hr", "hu", "id", "it", "ja", "ko", "mi", "nl", "no", "pl", "pt", "ro",
             "ru", "sv", "sw", "te", "th", "tr", "uk", "vi", "zh")
SUBSET = ("ar", "bn", "en", "id", "sw", "tr", "zh")  # Evaluated often.
COCO_EXAMPLES = 566_435  # One language's train captions.


def get_config(arg=None):
  """Best published hyper-parameters: 5 x 566k examples, lr 1e-5, wd 1e-6, batch 256."""
  a = common.parse(arg, res=224, text_len=32, batch_size=256)
  c = ml_collections.ConfigDict()
  langs = ("en", "de") if a.mode == "mock" else LANGUAGES

  # Input.
  choose = 'choice(inkey="captions", outkey="suffix")'
  c.input = dict(data={lang: 1.0 for lang in langs}, batch_size=a.batch_size,
                 shuffle_buffer_size=10_000)
  for lang in langs:
    prompt = f'strfmt("caption {lang}", outkey="prefix")'
    c.input[lang] = dict(data=common.tfds("coco35l", f"train_{lang}", a),
                         pp=common.train_pp(a, choose, prompt))
  c.total_examples = 5 * COCO_EXAMPLES

  # Model.
  common.model(c, a)

  # Optimizer.
  common.optimizer(c, lr=1e-5, wd=1e-6)

  # Sharding.
  common.fsdp(c)

  # Evaluation.
  c.evals = {}
  for lang in langs:
    pp = common.eval_pp(a, f'strfmt("caption {lang}", outkey="prefix")',
                        keep=("image/id", "captions"))
    c.evals[f"coco35l/{lang}"] = common.decode_eval(
        "coco_caption", common.tfds("coco35l", f"dev_{lang}", a), pp, a,
        log_percent=0.25 if lang in SUBSET else 1.0)
  c.evals["coco35l/en/pplx"] = common.pplx_eval(
      common.tfds("coco35l", "dev_en", a), c.input.en.pp, log_percent=0.05)
  return common.finish(c, a, mock_task="caption", mock_pp=MOCK_PP)
