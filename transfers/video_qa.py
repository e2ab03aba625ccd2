r"""PaliGemma transfer to video question answering (MSR-VTT-QA / MSVD-QA / ActivityNet-QA).

  python -m big_vision_lite.train --config \
      transfers/video_qa.py:dataset=msrvtt_qa,data_dir=/tfds --workdir /tmp/msrvtt_qa

Data: a prepared TFDS dataset `dataset` in `data_dir` with splits train / validation /
test and features `video` (uint8[F, H, W, 3] frames, or string[F] encoded frames),
`question`, `answer` and `question_id` (strings). `num_frames` frames are sampled
uniformly over the clip (`video_sample`) and folded into the image tower. Prompt
"answer en {question}", target the answer. Evaluator: exact-match accuracy.
Recipe as the PaliGemma paper's MSR-VTT-QA transfer: 16 frames, frozen ViT, 1 epoch,
lr 1e-5, no weight decay.
"""
import ml_collections

from transfers import common
from transfers import video_cap


def get_config(arg=None):
  """Published recipe: 16 frames at 224, frozen ViT, 1 epoch, lr 1e-5, wd 0."""
  a = common.parse(arg, res=224, text_len=64, batch_size=128, num_frames=16,
                   dataset="msrvtt_qa", final_split=False, freeze_vit=True)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("answer en {question}", outkey="prefix")'

  # Input.
  split = "train+validation" if a.final_split else "train"
  c.input = dict(
      data=common.tfds(a.dataset, split, a), batch_size=a.batch_size,
      shuffle_buffer_size=10_000,
      pp="|".join([video_cap.video_pp(a, train=True), prompt,
                   'copy("answer", "suffix")',
                   f"combine_and_keep_train({a.text_len + 1}, model={a.tokenizer!r})"]))
  c.total_epochs = 1

  # Model.
  c.model_name = "paligemma"
  c.model = common.model(a)
  c.model_init = common.checkpoint(a)  # Read at startup; README: where to get it.
  c.tokenizer = a.tokenizer

  # Optimizer: Adam, cosine schedule with 5% warmup, gradient norm clipped at 1.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.999)
  c.lr = 1e-5
  c.wd = 0.0
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.0
  cosine = dict(decay_type="cosine", warmup_percent=0.05)
  c.schedule = [("img/.*", None if a.freeze_vit else cosine), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  pp = "|".join([video_cap.video_pp(a, train=False), prompt,
                 f"combine_and_keep_eval({a.text_len}, keep=('question_id', 'answer'), "
                 f"suffix=None, model={a.tokenizer!r})"])
  c.evals = {}
  for name, split, freq in [("minitrain", "train[:1024]", 0.125),
                            ("val", "validation", 0.25), ("test", "test", 1.0)]:
    c.evals[f"{a.dataset}/{name}"] = common.decode_eval(
        "vqa", common.tfds(a.dataset, split, a), pp, a, log_percent=freq)
  pplx_pp = c.input.pp.replace("random=True", "random=False")  # Deterministic frames.
  c.evals[f"{a.dataset}/val/pplx"] = common.pplx_eval(
      common.tfds(a.dataset, "validation", a), pplx_pp, log_percent=0.125)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
