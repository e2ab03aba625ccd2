r"""PaliGemma pre-training stage 1: 224 px multimodal mixture from unimodal checkpoints.

  python -m big_vision_lite.train --config configs/pt_stage1.py:caption=/data/cap.jsonl,ocr=tfds:my_ocr:train,data_dir=/data,ckpt_dir=/ckpts \
      --workdir /tmp/pt1

Stage 1 (PaliGemma paper, Sec. 3.2): the SigLIP So400m/14 image encoder and the Gemma
decoder, each from its own unimodal checkpoint, are trained jointly (nothing frozen;
the image encoder's learning rate warms up slowly) at 224 px on a broad mixture:
multilingual captioning, OCR, VQA and question generation, detection, instance
segmentation and grounded captioning, each with its task prefix (configs/pt_mixtures.py).
The paper trains on roughly 1B examples here; the weights below are this repo's
defaults (the paper lists the task families, not their weights). Stage 2
(configs/pt_stage2.py) raises the resolution; stage 3 is the transfers (transfers/).
"""
import ml_collections

from configs import pt_mixtures
from transfers import common

# Mixture weights (this repo's choice; tasks set to 0 are skipped).
WEIGHTS = {"caption": 0.35, "ocr": 0.15, "vqa": 0.2, "qgen": 0.05, "detect": 0.1,
           "segment": 0.05, "grounded": 0.1}


def get_config(arg=None):
  """Args: one data SPEC per task (see pt_mixtures), `caption_val`, `vqvae`, the shared ones."""
  a = common.parse(arg, res=224, text_len=128, batch_size=1024,
                   total_examples=1_000_000_000, lr=1e-4, caption_val="", vqvae="",
                   img_init="", llm_init="", **pt_mixtures.task_args())
  c = ml_collections.ConfigDict()
  vqvae = a.vqvae or f"{a.ckpt_dir}/vae-oid.npz"

  # Input.
  c.input = pt_mixtures.mixture(a, WEIGHTS, vqvae=vqvae)
  c.total_examples = a.total_examples

  # Model: towers from unimodal checkpoints (SigLIP npz, Gemma npz) unless `ckpt` is set.
  c.model_name = "paligemma"
  c.model = common.model(a, transfer=False)  # Keeps Gemma 2's final soft-cap.
  c.tokenizer = a.tokenizer
  if a.ckpt:
    c.model_init = a.ckpt
  else:
    c.model_init = dict(img=a.img_init or f"{a.ckpt_dir}/siglip_so400m14_224.npz",
                        llm=a.llm_init or f"{a.ckpt_dir}/{c.model.llm.variant}.npz")
    c.model_load = dict(dont_load=("img/head/.*",))  # The projector starts from scratch.

  # Optimizer: everything trains; the image encoder's lr warms up slowly.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.999)
  c.lr = a.lr
  c.wd = a.lr * 0.1
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.0
  c.schedule = [("img/.*", dict(decay_type="rsqrt", warmup_percent=0.1)),
                (".*", dict(decay_type="rsqrt", warmup_percent=0.01))]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation: perplexity on held-out captions (transfers give the real scores).
  c.evals = {"caption/pplx": pt_mixtures.caption_pplx_eval(a, a.caption_val)}

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
