r"""PaliGemma transfer to COCO captions (Karpathy split; published recipe).

  python -m big_vision_lite.train --config transfers/cococap.py:res=224,data_dir=/tfds \
      --workdir /tmp/cococap

Data: TFDS `coco_captions` (keys image, image/id, captions/text [5]). Prompt
"caption en"; the target is one of the captions. Evaluator: CIDEr (coco_caption), beam 2.
"""
import ml_collections

from transfers import common


def get_config(arg=None):
  """Best published hyper-parameters: 5 epochs, lr 1e-5, wd 1e-6, batch 256."""
  a = common.parse(arg, res=224, text_len=32, batch_size=256, beam_size=2,
                   final_split=False)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("caption en", outkey="prefix")'

  # Input.
  split = "train+restval" if a.final_split else "train[:98%]+restval"
  c.input = dict(data=common.tfds("coco_captions", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, 'choice(inkey="captions/text", outkey="suffix")',
                                    prompt))
  c.total_epochs = 5  # Each image has 5 captions: about one pass over the captions.

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
  pp = common.eval_pp(a, 'copy(inkey="captions/text", outkey="captions")', prompt,
                      keep=("image/id", "captions"))
  sampler = f"beam({a.beam_size})" if a.beam_size > 1 else None
  c.evals = {}
  for name, split in [("minival", "train[-2%:]"), ("eval", "val")]:
    c.evals[f"cococap/{name}"] = common.decode_eval(
        "coco_caption", common.tfds("coco_captions", split, a), pp, a, log_percent=0.1,
        sampler=sampler)
  c.evals["cococap/minival/pplx"] = common.pplx_eval(
      common.tfds("coco_captions", "train[-2%:]", a), c.input.pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
