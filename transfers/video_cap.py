r"""PaliGemma transfer to video captioning (MSR-VTT / VATEX / ActivityNet captions).

  python -m big_vision_lite.train --config \
      transfers/video_cap.py:dataset=msrvtt_cap,data_dir=/tfds --workdir /tmp/msrvtt

Data: a prepared TFDS dataset `dataset` in `data_dir` with splits train / validation /
test and features `video` (uint8[F, H, W, 3] frames, or string[F] encoded frames),
`captions` (string[K] references) and `id` (string). `num_frames` frames are sampled
uniformly over the clip (`video_sample`: random within each segment when training, the
segment centres when evaluating), resized to `res` and folded into the image tower:
the model sees num_frames * (res / 14)^2 image tokens. Prompt "caption en"; the target
is one reference, drawn at random each time. Evaluator: CIDEr (COCO caption metrics).
Recipe as the PaliGemma paper's MSR-VTT transfer: 16 frames, 10 epochs, lr 1e-5.
"""
import ml_collections

from transfers import common


def video_pp(a, *, train):
  """Frames of `video` -> image float32[num_frames, res, res, 3] in [-1, 1]."""
  return (f'video_sample({a.num_frames}, key="video", random={train})'
          f'|resize({a.res}, key="video")|value_range(-1, 1, key="video")'
          '|copy("video", "image")')


def get_config(arg=None):
  """Published recipe: 16 frames at 224, 10 epochs, lr 1e-5, wd 1e-6."""
  a = common.parse(arg, res=224, text_len=32, batch_size=128, num_frames=16,
                   dataset="msrvtt_cap", final_split=False, freeze_vit=False)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("caption en", outkey="prefix")'

  # Input.
  split = "train+validation" if a.final_split else "train"
  c.input = dict(
      data=common.tfds(a.dataset, split, a), batch_size=a.batch_size,
      shuffle_buffer_size=10_000,
      pp="|".join([video_pp(a, train=True), prompt,
                   'choice(inkey="captions", outkey="suffix")',
                   f"combine_and_keep_train({a.text_len + 1}, model={a.tokenizer!r})"]))
  c.total_epochs = 10

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
  c.schedule = [("img/.*", None if a.freeze_vit else cosine), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  pp = "|".join([video_pp(a, train=False), prompt, 'copy("id", "image/id")',
                 f"combine_and_keep_eval({a.text_len}, keep=('image/id', 'captions'), "
                 f"suffix=None, model={a.tokenizer!r})"])
  c.evals = {}
  for name, split, freq in [("minitrain", "train[:1024]", 0.125),
                            ("val", "validation", 0.25), ("test", "test", 1.0)]:
    c.evals[f"{a.dataset}/{name}"] = common.decode_eval(
        "coco_caption", common.tfds(a.dataset, split, a), pp, a, log_percent=freq)
  pplx_pp = c.input.pp.replace("random=True", "random=False")  # Deterministic frames.
  c.evals[f"{a.dataset}/val/pplx"] = common.pplx_eval(
      common.tfds(a.dataset, "validation", a), pplx_pp, log_percent=0.125)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
