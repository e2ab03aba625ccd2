r"""PaliGemma transfer to RefCOCO/+/g referring segmentation (published recipe).

  python -m big_vision_lite.train --config transfers/refcoco_seg.py:res=448,data_dir=/tfds,vqvae=/ckpts/vae-oid.npz \
      --workdir /tmp/refcoco_seg

Data: TFDS `ref_coco` flat rows (one referred object per example: image,
`objects/mask` [1, H, W, 1], `objects/bbox` [1, 4], `objects/refs/sentence` [k]).
Prompt "segment {sentence}", target "<loc>x4<seg>x16" (the mask encoded by the VQ-VAE
`vae-oid.npz`, default `{ckpt_dir}/vae-oid.npz`, or `vqvae=...`). Evaluator: mIoU of the
decoded masks.
"""
import ml_collections

from transfers import common

# res -> (lr, llm dropout, batch size) of the published sweep; 100 epochs, smoothing 0.3.
BEST = {224: (3e-5, 0.1, 256), 448: (1e-5, 0.0, 256), 896: (1e-5, 0.0, 64)}
EVAL_SETS = [("refcoco/val", "ref_coco/refcoco_unc", "validation"),
             ("refcocop/val", "ref_coco/refcocoplus_unc", "validation"),
             ("refcocog/val", "ref_coco/refcocog_umd", "validation")]


def get_config(arg=None):
  """Best published hyper-parameters per resolution (BEST; batch_size=-1 takes BEST's)."""
  a = common.parse(arg, res=448, text_len=48, batch_size=-1, vqvae="")
  c = ml_collections.ConfigDict()
  lr, dropout, batch_size = BEST.get(a.res, BEST[448])
  vqvae = a.vqvae or f"{a.ckpt_dir}/vae-oid.npz"
  prompt = ('choice(inkey="objects/refs/sentence", outkey="sentence")'
            '|strfmt("segment {sentence}", outkey="prefix")')
  target = f"mask_to_seg({vqvae!r}, mask_key='objects/mask', box_key='objects/bbox')"

  # Input.
  c.input = dict(data=common.tfds("ref_coco/refcocox_combined", "train", a),
                 batch_size=batch_size if a.batch_size == -1 else a.batch_size,
                 shuffle_buffer_size=50_000, pp=common.train_pp(a, prompt, target))
  c.total_epochs = 100

  # Model.
  c.model_name = "paligemma"
  c.model = common.model(a, llm_dropout=dropout)
  c.model_init = common.checkpoint(a)  # Read at startup; README: where to get it.
  c.tokenizer = a.tokenizer

  # Optimizer: Adam, cosine schedule with 5% warmup, gradient norm clipped at 1.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.999)
  c.lr = lr
  c.wd = 0.0
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.3
  cosine = dict(decay_type="cosine", warmup_percent=0.05)
  c.schedule = [("img/.*", cosine), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  pp = common.eval_pp(a, prompt, keep=("objects/mask", "objects/bbox"))
  c.evals = {}
  for name, ds, split in EVAL_SETS:
    c.evals[f"seg/{name}"] = common.decode_eval(
        "segmentation", common.tfds(ds, split, a), pp, a, log_percent=0.2,
        vqvae_path=vqvae)
  c.evals["refcoco_seg/val/pplx"] = common.pplx_eval(
      common.tfds("ref_coco/refcocox_combined", "validation", a), c.input.pp,
      log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
