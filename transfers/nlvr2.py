r"""PaliGemma transfer to NLVR2 (is the sentence true of the image pair?; published recipe).

  python -m big_vision_lite.train --config transfers/nlvr2.py:res=224,data_dir=/tfds \
      --workdir /tmp/nlvr2

Prompt "answer en {sentence}", target "True"/"False". Data: TFDS `nlvr2` (keys
image_left, image_right, sentence, label, example_id). As in the reference, each image is
resized to res x res and the pair is stacked as two frames: image float32[2, res, res, 3]
(2 * P image tokens). Evaluator: accuracy.
"""
import ml_collections

from transfers import common

# res -> (lr, wd, epochs) of the published sweep.
BEST = {224: (1e-5, 1e-6, 3), 448: (3e-6, 3e-7, 10)}


def pair_pp(a, *ops, train):
  """Both images resized and stacked as frames, the task's `ops`, the token row."""
  images = [common.image_pp(a.res, key=k) for k in ("image_left", "image_right")]
  images.append('stack_images(inkeys=["image_left", "image_right"], outkey="image")')
  if train:
    row = f"combine_and_keep_train({a.text_len + 1}, model={a.tokenizer!r})"
  else:
    row = (f"combine_and_keep_eval({a.text_len}, keep=('answer', 'question_id'), "
           f"suffix=None, model={a.tokenizer!r})")
  return "|".join([*images, *ops, row])


def get_config(arg=None):
  """Best published hyper-parameters per resolution (BEST), batch 256."""
  a = common.parse(arg, res=224, text_len=64, batch_size=256, final_split=False)
  c = ml_collections.ConfigDict()
  lr, wd, epochs = BEST.get(a.res, BEST[448])
  prompt = 'strfmt("answer en {sentence}", outkey="prefix")'

  # Input.
  split = "train+dev" if a.final_split else "train"
  c.input = dict(data=common.tfds("nlvr2", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=pair_pp(a, prompt, 'copy(inkey="label", outkey="suffix")', train=True))
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
  pp = pair_pp(a, prompt, 'copy(inkey="label", outkey="answer")',
               'copy(inkey="example_id", outkey="question_id")', train=False)
  c.evals = {}
  for name, split in [("dev", "dev"), ("test", "test")]:
    c.evals[f"nlvr2/{name}"] = common.decode_eval(
        "vqa", common.tfds("nlvr2", split, a), pp, a, log_percent=0.1)
  c.evals["nlvr2/dev/pplx"] = common.pplx_eval(
      common.tfds("nlvr2", "dev", a), c.input.pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
