r"""README's first command: a small PaliGemma trained from scratch on the `shapes` data.

  python -m big_vision_lite.train --config configs/demo.py --workdir workdirs/demo

At startup (not at import) the trainer generates the bundled `shapes` dataset into
`data_dir` if missing and trains its tokenizer on the generated text; then it trains a
small ViT + small Gemma on the caption / VQA / detection / OCR mixture and evaluates, on
the held-out split, VQA accuracy, caption CIDEr / BLEU-4 / perplexity and detection mAP,
writing predictions into the workdir.
About 10 minutes on a 2-core CPU. Args: data_dir, total_steps, batch_size, num_train,
num_val.
"""
from big_vision_lite.config_args import parse_arg
from configs import common
import ml_collections

TOKENIZER_BASE_VOCAB = 400
RES = 64          # Generated and trained image size.
TEXT_LEN = 40


def get_config(arg=None):
  """Returns the demo config."""
  a = parse_arg(arg, data_dir="data/shapes", total_steps=1000, batch_size=64, num_val=200,
                num_train=6000)
  c = ml_collections.ConfigDict()
  data = dict(out_dir=a.data_dir, num_train=a.num_train, num_val=a.num_val, res=RES, seed=0)
  tok = a.data_dir + "/tokenizer.model"
  c.ensure_shapes = data
  c.train_tokenizer = common.shapes_tokenizer(data, tok, TOKENIZER_BASE_VOCAB)
  c.tokenizer = tok

  # Input: the multi-task mixture.
  c.input = common.shapes_mixture(
      {"vqa": 0.7, "caption": 0.1, "detect": 0.1, "ocr": 0.1}, data=data, res=RES,
      text_len=TEXT_LEN, tokenizer=tok, batch_size=a.batch_size)
  c.total_steps = a.total_steps
  c.log_training_steps = 20

  # Model: small ViT (8x8 patches -> 64 image tokens) + small Gemma, from scratch. The
  # decoder is kept lean (its tokens dominate the step's cost) so that ~1000 steps fit
  # 10 minutes: learning to see shapes from scratch is what takes the steps. Unrolled
  # layers (scan=False) run ~1.4x faster than scanned ones on this CPU.
  c.model_name = "paligemma"
  c.model = common.paligemma_model(
      img=dict(variant="mu", width=128, depth=3, mlp_dim=256, num_heads=4,
               patch_size=(8, 8), scan=False, remat_policy="none",
               # Non-zero projector init: zero image tokens would enter the decoder's
               # RMSNorm at 0, where its gradient explodes (grad norm ~7e4 at step 0).
               head_zeroinit=False),
      llm=dict(variant="gemma_tiny", width=128, depth=2, mlp_dim=256, num_heads=4,
               num_kv_heads=1, head_dim=32, scan=False, remat_policy="none"),
      vocab_size=TOKENIZER_BASE_VOCAB + common.NUM_LOC_SEG)
  c.model_init = None
  c.seed = 0

  # Optimizer.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.98)
  c.lr = 3e-3
  c.lr_mults = [("img/.*", 1 / 3)]  # The ViT learns faster at 1e-3 (measured).
  c.wd = 1e-4
  c.grad_clip_norm = 1.0
  c.schedule = dict(decay_type="cosine", warmup_percent=0.05)
  c.label_smoothing = 0.0

  # Sharding (one CPU device here; the same config shards over any mesh).
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "replicate")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation on the held-out split, at the end.
  val = lambda task: common.shapes_source(task, "validation", data)
  c.evals = {}
  c.evals.vqa = dict(
      type="vqa", pred="decode", pred_kw=dict(max_decode_len=6), log_percent=1.0,
      data=val("vqa"), batch_size=100,
      type_key="question_type",
      pp_fn=common.shapes_pp(RES, TEXT_LEN, tok, train=False,
                             keep=("answers", "question_type")))
  c.evals.caption = dict(
      type="coco_caption", pred="decode", pred_kw=dict(max_decode_len=TEXT_LEN),
      log_percent=1.0, data=val("caption"), batch_size=100, id_key=None,
      metrics=("cider", "bleu4"),
      pp_fn=common.shapes_pp(RES, TEXT_LEN, tok, train=False, keep=("captions",)))
  c.evals.detect = dict(
      type="detection", pred="decode", pred_kw=dict(max_decode_len=TEXT_LEN),
      log_percent=1.0, data=val("detect"), batch_size=100,
      pp_fn=common.shapes_pp(RES, TEXT_LEN, tok, train=False,
                             keep=("objects/bbox", "objects/label")))
  c.evals.caption_pplx = dict(
      type="perplexity", pred="logits", log_percent=1.0, data=val("caption"),
      batch_size=100, pp_fn=common.shapes_pp(RES, TEXT_LEN, tok))

  # Checkpointing.
  c.ckpt_steps = 200
  return c
