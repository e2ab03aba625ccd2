r"""PaliGemma pre-training stage 2: resolution increase to 448 px, then 896 px.

  python -m big_vision_lite.train --config configs/pt_stage2.py:res=448,ckpt=/ckpts/pt1.npz,ocr=/data/ocr.jsonl,data_dir=/data \
      --workdir /tmp/pt2_448
  python -m big_vision_lite.train --config configs/pt_stage2.py:res=896,ckpt=/tmp/pt2_448/params.npz,data_dir=/data \
      --workdir /tmp/pt2_896

Stage 2 (PaliGemma paper, Sec. 3.2): starting from the stage-1 checkpoint, short
continued pre-training at 448 px (about 50M examples) and then at 896 px (about 10M
examples), with longer texts (512 tokens) and a mixture up-weighting the tasks that
profit from resolution: OCR, detection and segmentation. The weights are this repo's
defaults (the paper gives no exact values).
"""
import ml_collections

from configs import pt_mixtures
from transfers import common

WEIGHTS = {"caption": 0.2, "ocr": 0.3, "vqa": 0.15, "qgen": 0.0, "detect": 0.15,
           "segment": 0.1, "grounded": 0.1}
EXAMPLES = {448: 50_000_000, 896: 10_000_000}  # Per the paper.


def get_config(arg=None):
  """Args: `res` (448 or 896), `ckpt` (the previous stage), task SPECs, shared ones."""
  a = common.parse(arg, res=448, text_len=512, batch_size=512, total_examples=-1,
                   lr=1e-5, caption_val="", vqvae="", **pt_mixtures.task_args())
  c = ml_collections.ConfigDict()
  vqvae = a.vqvae or f"{a.ckpt_dir}/vae-oid.npz"

  # Input.
  c.input = pt_mixtures.mixture(a, WEIGHTS, vqvae=vqvae)
  c.total_examples = (EXAMPLES.get(a.res, EXAMPLES[448]) if a.total_examples == -1
                      else a.total_examples)

  # Model: the previous stage's checkpoint (default: the released pt checkpoint).
  c.model_name = "paligemma"
  c.model = common.model(a, transfer=False)  # Keeps Gemma 2's final soft-cap.
  c.model_init = common.checkpoint(a)  # Read at startup; README: where to get it.
  c.tokenizer = a.tokenizer

  # Optimizer: Adam, cosine schedule with 5% warmup, gradient norm clipped at 1.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.999)
  c.lr = a.lr
  c.wd = a.lr * 0.1
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.0
  cosine = dict(decay_type="cosine", warmup_percent=0.05)
  c.schedule = [("img/.*", cosine), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  c.evals = {"caption/pplx": pt_mixtures.caption_pplx_eval(a, a.caption_val)}

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
