r"""PaliGemma transfer to WidgetCaption (UI widget captions) (published recipe).

  python -m big_vision_lite.train --config transfers/widgetcap.py:res=224,data_dir=/tfds \
      --workdir /tmp/widgetcap

Data: TFDS `widgetcap` (keys image, image/id, texts [n], bbox [4] = (ymin, xmin, ymax,
xmax) in [0, 1]). As in the reference, the widget's box is drawn in red into the resized
image. Prompt "caption en"; the target is one of the references. Evaluator: CIDEr.
"""
import ml_collections

from transfers import common


def boxed_pp(a, *ops, keep=None):
  """Image with the widget's box drawn, the task's `ops`, the token row (train: keep=None)."""
  image = (f"decode|resize({a.res}, antialias=True)|draw_bbox(bbox_key='bbox')"
           "|value_range(-1, 1)")
  if keep is None:
    row = f"combine_and_keep_train({a.text_len + 1}, model={a.tokenizer!r})"
  else:
    row = (f"combine_and_keep_eval({a.text_len}, keep={keep!r}, suffix=None, "
           f"model={a.tokenizer!r})")
  return "|".join([image, *ops, row])


def get_config(arg=None):
  """Best published hyper-parameters: 4 epochs, lr 3e-6, wd 3e-7, batch 64."""
  a = common.parse(arg, res=224, text_len=32, batch_size=64, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("caption en", outkey="prefix")'

  # Input.
  c.input = dict(data=common.tfds("widgetcap", "train+dev" if a.final_split else "train", a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=boxed_pp(a, prompt, 'choice(inkey="texts", outkey="suffix")'))
  c.total_epochs = 4

  # Model.
  c.model_name = "paligemma"
  c.model = common.model(a, llm_dropout=0.1)
  c.model_init = common.checkpoint(a)  # Read at startup; README: where to get it.
  c.tokenizer = a.tokenizer

  # Optimizer: Adam, cosine schedule with 5% warmup, gradient norm clipped at 1.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.999)
  c.lr = 3e-6
  c.wd = 3e-7
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.1
  cosine = dict(decay_type="cosine", warmup_percent=0.05)
  c.schedule = [("img/.*", cosine), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  pp = boxed_pp(a, 'copy(inkey="texts", outkey="captions")', prompt,
                keep=("image/id", "captions"))
  c.evals = {}
  for name, split in [("dev", "dev"), ("test", "test")]:
    c.evals[f"widgetcap/{name}"] = common.decode_eval(
        "coco_caption", common.tfds("widgetcap", split, a), pp, a, log_percent=0.1)
  c.evals["widgetcap/dev/pplx"] = common.pplx_eval(
      common.tfds("widgetcap", "dev", a), c.input.pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
