r"""README's first command: a small PaliGemma trained from scratch on the `shapes` data.

  python -m big_vision_lite.train --config configs/demo.py --workdir workdirs/demo

At startup (not at import) the trainer generates the bundled `shapes` dataset into
`data_dir` if missing and trains its tokenizer on the generated text; then it trains a
small ViT + small Gemma on the caption / VQA / detection / OCR mixture and evaluates, on
the held-out split, VQA accuracy (per question type), caption CIDEr / BLEU-4, detection
mAP / AP50 and the per-task held-out loss over training, writing predictions, the loss
curves (`loss_curves.png`) and a grid of held-out predictions (`predictions.png`) into
the workdir. About 10 minutes on an idle 2-core CPU.

Args: data_dir, total_steps, batch_size, num_train, num_val, size_scale, max_objects,
font_scale (the data design: see big_vision_lite/datasets/shapes.py), img_lr (the ViT's
learning rate in the main phase), img_warmup (the share of the main phase over which the
ViT's learning rate warms up; the rest warm up over 5%), posemb (the ViT's position
embedding, "learn" or "sincos2d"), stage0_steps (0: no stage 0), stage0
(what the image tower learns first: "objects", a classifier of each scene's per-shape
counts and colour + shape pairs, a softmax per attribute; "objects_where", the same plus
how many of each shape lie in each quarter of the image; "objects_tokens", "objects" plus
which colour + shape covers each patch, per token; "objects_words", "objects_tokens" plus
which word is drawn, per image and per token; "scene", "objects_where" and
"objects_tokens"; "objects_patches", "objects" plus which shape covers each patch; "tags",
a sigmoid-xent classifier of the phrases found in its captions; or "siglip", a SigLIP
image tower), patch_weight (the weight of the per-token targets of "objects_tokens",
"objects_words" and "scene"), box_weight (> 0: the "objects*" and "scene" stage 0 also
regresses, per token, the distances to the edges of the box over it, with this weight).
"""
from big_vision_lite.config_args import parse_arg
from big_vision_lite.datasets import shapes
from configs import common
import ml_collections

TOKENIZER_BASE_VOCAB = 400
RES = 64          # Generated and trained image size.
PATCH = 8         # ViT patch size: 8 x 8 image tokens.
TEXT_LEN = 40
TASKS = ("vqa", "caption", "detect", "ocr")
STAGE0 = ("scene", "objects", "objects_where", "objects_tokens", "objects_words",
          "objects_patches", "tags", "siglip")
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")


def caption_tags():
  """Stage 0's classes: the phrases a caption can hold (colour, shape, colour + shape,
  size, number, drawn word)."""
  cols, kinds = list(shapes.COLORS), list(shapes.SHAPES)
  return (cols + kinds + [f"{c} {k}" for c in cols for k in kinds] + list(shapes.SIZES)
          + list(shapes.NUMBERS[1:4]) + list(shapes.WORDS))


def object_pairs():
  """Stage 0 "objects" classes besides the per-shape counts: each colour + shape pair."""
  return [f"{c} {k}" for c in shapes.COLORS for k in shapes.SHAPES]


def object_quadrants():
  """Stage 0 "objects_where" classes: each shape in each quarter of the image."""
  return [f"{k} {q}" for k in shapes.SHAPES for q in QUADRANTS]


def get_config(arg=None):
  """Returns the demo config."""
  a = parse_arg(arg, data_dir="data/shapes", total_steps=1000, batch_size=64, num_val=200,
                num_train=6000, size_scale=2.0, max_objects=3, stage0_steps=300,
                stage0="objects_tokens", img_lr=1e-3, patch_weight=0.25,
                posemb="learn", img_warmup=0.05, font_scale=1.0, box_weight=0.0)
  if a.stage0 not in STAGE0:
    raise ValueError(f"configs/demo.py: stage0={a.stage0!r} must be one of {STAGE0}.")
  c = ml_collections.ConfigDict()
  # Data design (measured, see README): shapes 2x the generator's default sizes and at
  # most 3 per image (1.5x: VQA 0.61, AP50 0.006; 2x: VQA 0.72, AP50 0.48 at 1000 steps).
  data = dict(out_dir=a.data_dir, num_train=a.num_train, num_val=a.num_val, res=RES, seed=0,
              size_scale=a.size_scale, max_objects=a.max_objects, font_scale=a.font_scale)
  tok = a.data_dir + "/tokenizer.model"
  c.ensure_shapes = data
  c.train_tokenizer = common.shapes_tokenizer(data, tok, TOKENIZER_BASE_VOCAB)
  c.tokenizer = tok

  # Input: the multi-task mixture.
  c.input = common.shapes_mixture(
      {"vqa": 0.6, "caption": 0.1, "detect": 0.2, "ocr": 0.1}, data=data, res=RES,
      text_len=TEXT_LEN, tokenizer=tok, batch_size=a.batch_size)
  c.total_steps = a.total_steps
  c.log_training_steps = 20

  # Model: small ViT (8x8 patches -> 64 image tokens) + small Gemma, from scratch. Every
  # size, scan and remat key is explicit (no variant), so the demo does not depend on
  # variant defaults. Unrolled layers (scan=False) run ~1.4x faster than scanned ones here.
  c.model_name = "paligemma"
  c.model = common.paligemma_model(
      img=dict(variant=None, width=128, depth=3, mlp_dim=256, num_heads=4,
               patch_size=(PATCH, PATCH), posemb=a.posemb, pool_type="none", scan=False,
               remat_policy="none", dropout=0.0,
               # Non-zero projector init: zero image tokens would enter the decoder's
               # RMSNorm at 0, where its gradient explodes (grad norm ~7e4 at step 0).
               head_zeroinit=False),
      llm=dict(variant=None, width=128, depth=2, mlp_dim=256, num_heads=4,
               num_kv_heads=1, head_dim=32, query_pre_attn_scalar=32, norm_eps=1e-6,
               post_norms=False, attn_logits_softcap=None, final_logits_softcap=None,
               sliding_window=None, dropout=0.0, scan=False, remat_policy="none"),
      vocab_size=TOKENIZER_BASE_VOCAB + common.NUM_LOC_SEG)
  c.model_init = None
  c.seed = 0

  # Stage 0 (big_vision_lite/stage0.py), when stage0_steps > 0: the same ViT is first
  # trained alone (a multi-label classifier, or SigLIP's image tower against a tiny text
  # tower) on the training images; PaliGemma then starts from that ViT.
  if a.stage0_steps and a.stage0 != "siglip":
    patch_weight = 1.0
    if a.stage0 == "scene" or a.stage0.startswith("objects"):
      # Per-shape counts and colour + shape pairs of each scene.
      objective, source, pool = "grouped_softmax", "scenes", "gap"
      groups = ((len(shapes.SHAPES), 4), (len(object_pairs()), 2))
      ops = [f"label_counts(inkey='objects/label', classes={list(shapes.SHAPES)!r}, "
             "max_count=3, outkey='counts')",
             "label_counts(inkey=('objects/color', 'objects/label'), "
             f"classes={object_pairs()!r}, max_count=1, outkey='pairs')"]
      keys = ("counts", "pairs")
      if a.stage0 == "objects_words":  # + which word is drawn (none: an image without).
        groups += ((len(shapes.WORDS), 2),)
        ops.append(f"label_counts(inkey='word', classes={list(shapes.WORDS)!r}, "
                   "max_count=1, skip=('',), outkey='words')")
        keys += ("words",)
      if a.stage0 in ("objects_where", "scene"):  # + how many of each shape in each quarter.
        groups += ((len(object_quadrants()), 3),)
        ops += ["box_bins(names=('left', 'right'), outkey='objects/x')",
                "box_bins(names=('top', 'bottom'), axis='y', outkey='objects/y')",
                "label_counts(inkey=('objects/label', 'objects/y', 'objects/x'), "
                f"classes={object_quadrants()!r}, max_count=2, outkey='where')"]
        keys += ("where",)
      ops.append(f"concat(inkeys={keys!r}, outkey='labels')")
      if a.stage0 == "objects_patches":  # + which shape covers each patch, per token.
        ops.append(f"patch_labels(grid={RES // PATCH}, classes={list(shapes.SHAPES)!r})")
      if a.stage0 in ("objects_tokens", "objects_words", "scene"):
        # + which colour + shape (objects_words: or which word) covers each patch.
        words = a.stage0 == "objects_words"
        ops.append(f"patch_labels(grid={RES // PATCH}, classes={object_pairs()!r}, "
                   "labels_key=('objects/color', 'objects/label'), "
                   f"outkey={'patch_objects' if words else 'patch_labels'!r})")
        if words:
          ops += [f"patch_labels(grid={RES // PATCH}, classes={list(shapes.WORDS)!r}, "
                  "boxes_key='word_box', labels_key='word', skip=('',), "
                  "outkey='patch_words')",
                  "patch_merge(inkeys=('patch_objects', 'patch_words'))"]
        patch_weight = a.patch_weight
      if a.box_weight:  # + where the box over each patch ends (distances to its edges).
        ops.append(f"patch_boxes(grid={RES // PATCH})")
      dense = tuple(k for k in ("patch_labels", "patch_boxes") if f"{k}(" in "|".join(ops))
      labels, keep = "|".join(ops), f"keep{('image', 'labels') + dense!r}"
      if dense:
        pool = "none"
    else:  # The phrases found in the image's captions.
      objective, groups = "sigmoid_xent", None
      source, labels = "caption", f"text_tags(inkey='captions', tags={caption_tags()!r})"
      keep, pool = "keep('image', 'labels')", "gap"
    # A random head init: from a zero head the ViT barely learns in 300 steps (measured).
    c.stage0 = dict(
        objective=objective, groups=groups, patch_weight=patch_weight,
        box_weight=float(a.box_weight),
        model=dict(image=dict(c.model.img, pool_type=pool, head_zeroinit=False)),
        input=dict(data=common.shapes_source(source, "train", data), batch_size=64,
                   shuffle_buffer_size=1000,
                   pp=f"decode|resize({RES})|value_range(-1, 1)|{labels}|{keep}"),
        total_steps=a.stage0_steps, optax_name="scale_by_adam", optax=dict(b2=0.98),
        lr=1e-3, wd=1e-4, grad_clip_norm=1.0,
        schedule=dict(decay_type="cosine", warmup_percent=0.05),
        img_dont_load=("head/.*",))
  elif a.stage0_steps:
    c.stage0 = dict(
        model=dict(image=dict(c.model.img, pool_type="gap"),
                   text=dict(vocab_size=c.model.llm.vocab_size, width=128, depth=1,
                             mlp_dim=256, num_heads=4, pool_type="last", scan=False,
                             remat_policy="none"),
                   out_dim=128, temperature_init=10.0, bias_init=-10.0),
        input=dict(data=common.shapes_source("caption", "train", data), batch_size=128,
                   shuffle_buffer_size=1000,
                   pp=(f"decode|resize({RES})|value_range(-1, 1)|"
                       "choice(inkey='captions', outkey='caption')|"
                       f"tok(key='caption', outkey='labels', eos='sticky', length=32, "
                       f"pad_value=1, model={tok!r})|keep('image', 'labels')")),
        total_steps=a.stage0_steps, optax_name="scale_by_adam", optax=dict(b2=0.98),
        lr=1e-3, wd=1e-4, grad_clip_norm=1.0,
        schedule=dict(decay_type="cosine", warmup_percent=0.1),
        positives="same_text", img_dont_load=("head/.*",))

  # Optimizer.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.98)
  c.lr = 3e-3
  c.lr_mults = [("img/.*", a.img_lr / c.lr)]  # The ViT learns faster at 1e-3 (measured).
  c.wd = 1e-4
  c.grad_clip_norm = 1.0
  c.schedule = dict(decay_type="cosine", warmup_percent=0.05)
  if a.img_warmup != 0.05:  # The ViT's own warm-up (PaliGemma warms its encoder up slowly).
    c.schedule = [("img/.*", dict(c.schedule, warmup_percent=a.img_warmup)),
                  (".*", c.schedule)]
  c.label_smoothing = 0.0

  # Sharding (one CPU device here; the same config shards over any mesh).
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "replicate")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation on the held-out split: the task metrics at the end, and each task's
  # held-out loss 10 times during training (the per-task loss curves).
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
  for task in TASKS:
    c.evals[f"loss_{task}"] = dict(
        type="perplexity", pred="logits", log_percent=0.1,
        data=dict(val(task), stop=64), batch_size=64,
        pp_fn=common.shapes_pp(RES, TEXT_LEN, tok))

  # Checkpointing: only at the end (and when the run is stopped, e.g. SIGTERM, so it
  # still resumes). A periodic save costs ~9 s here (measured), ~36 s over 1000 steps.
  c.ckpt_steps = None

  # Pictures written into the workdir at the end (big_vision_lite/report.py).
  c.report = dict(loss_curves="loss_curves.png",
                  shapes_grid=dict(out="predictions.png", data_dir=a.data_dir, num=12))
  return c
