"""What the transfer configs share: arguments, model sizes, pp strings, evaluators, mock mode.

Every transfer config starts with `a = common.parse(arg, **task_defaults)`, which adds the
shared arguments:

  mode       "real" (published recipe on local data) or "mock" (tiny model, the bundled
             shapes data mapped into the task's feature format, 1 step: for tests).
  size       "3b" (PaliGemma 1: So400m/14 + Gemma 2B), "2b" | "9b" | "27b" (PaliGemma 2:
             So400m/14 + Gemma 2 2B/9B/27B; final logits soft-cap off, as big_vision's
             transfers), "tiny" (ViT "mu" with 2 layers + "gemma_tiny", random init).
  ckpt_dir   folder with the released checkpoints and `paligemma_tokenizer.model`.
  ckpt       explicit checkpoint path (default: the released file name in ckpt_dir).
  tokenizer  explicit tokenizer path (default: ckpt_dir/paligemma_tokenizer.model).
  data_dir   the TFDS data folder holding the prepared datasets (nothing is downloaded).
  mock_dir   where mode=mock generates its data, tokenizer and VQ-VAE.

Nothing here does I/O: files are read when training starts.
"""
import ml_collections

from big_vision_lite.config_args import parse_arg

PALIGEMMA_VOCAB = 256_000 + 1024 + 128
TINY_BASE_VOCAB = 300  # The mock tokenizer's base vocab; loc/seg pieces follow it.
NUM_LOC_SEG = 1024 + 128
# size -> (ViT variant, Gemma variant, released checkpoint file name pattern).
SIZES = {
    "3b": ("So400m/14", "gemma_2b", "paligemma-3b-pt-{res}.npz"),
    "2b": ("So400m/14", "gemma2_2b", "paligemma2-3b-pt-{res}.b16.npz"),
    "9b": ("So400m/14", "gemma2_9b", "paligemma2-10b-pt-{res}.b16.npz"),
    "27b": ("So400m/14", "gemma2_27b", "paligemma2-28b-pt-{res}.b16.npz"),
    "tiny": ("mu", "gemma_tiny", None),
}
MODES = ("real", "mock")
# mode=mock: one shared shape for every config so that XLA compilations are reused.
MOCK = dict(res=28, text_len=32, batch_size=8, shapes=dict(num_train=16, num_val=8, res=32,
                                                          seed=0))


def parse(arg, **defaults):
  """`parse_arg` with the shared arguments (see the module docstring) added.

  In mode=mock, `res`, `text_len` and `batch_size` (when the task has them) are replaced
  by the shared mock values, `size` by "tiny" and `tokenizer` by the mock tokenizer.
  """
  shared = dict(mode="real", size="3b", ckpt_dir="ckpts", ckpt="", tokenizer="",
                data_dir="", mock_dir="data/mock_shapes")
  a = parse_arg(arg, **shared, **defaults)
  if a.mode not in MODES:
    raise ValueError(f"mode={a.mode!r} is unknown; use one of {MODES}.")
  if a.size not in SIZES:
    raise ValueError(f"size={a.size!r} is unknown; use one of {sorted(SIZES)}.")
  if a.mode == "mock":
    a.size = "tiny"
    a.tokenizer = mock_tokenizer(a)
    for k in ("res", "text_len", "batch_size"):
      if k in a:
        a[k] = MOCK[k]
  elif not a.tokenizer:
    a.tokenizer = (mock_tokenizer(a) if a.size == "tiny"
                   else f"{a.ckpt_dir}/paligemma_tokenizer.model")
  return a


def mock_tokenizer(a):
  """The small tokenizer trained at startup on the shapes corpus (size=tiny, mode=mock)."""
  return f"{a.mock_dir}/tokenizer.model"


def tfds(name, split, a):
  """A TFDS source of the prepared dataset `name` in `a.data_dir` (None: TFDS default)."""
  return dict(name=name, split=split, data_dir=a.data_dir or None)


# Preprocessing strings.
def image_pp(res, key="image", antialias=False):
  """Decode (exact JPEG), bilinear resize, map to [-1, 1].

  `antialias` follows each reference recipe: big_vision's `resize` antialiases only when
  asked, and most PaliGemma transfers (captioning, RefCOCO, GQA, POPE, ...) do not ask.
  """
  aa = ", antialias=True" if antialias else ""
  return (f"decode(key={key!r})|resize({res}{aa}, key={key!r})"
          f"|value_range(-1, 1, key={key!r})")


def train_pp(a, *ops, antialias=False):
  """Training pp: image, the task's `ops` (which set prefix/suffix), the token row.

  The row has `text_len + 1` tokens, as big_vision's: the trainer feeds text[:-1] and
  predicts text[1:], so the model sees `text_len` tokens.
  """
  return "|".join([image_pp(a.res, antialias=antialias), *ops,
                   f"combine_and_keep_train({a.text_len + 1}, model={a.tokenizer!r})"])


def eval_pp(a, *ops, keep=(), antialias=False):
  """Eval pp: image, the task's `ops` (which set prefix), the prompt row + `keep` keys.

  The prompt never continues from a `suffix` key of the data (suffix=None): that key
  holds the ground truth in these datasets.
  """
  return "|".join([image_pp(a.res, antialias=antialias), *ops,
                   f"combine_and_keep_eval({a.text_len}, keep={tuple(keep)!r}, "
                   f"suffix=None, model={a.tokenizer!r})"])


# Sections of the config.
def model(c, a, *, llm_dropout=0.0, transfer=True):
  """Sets `model_name`, `model` and `model_init` for `a.size` and `a.res`.

  `transfer`: PaliGemma 2 sizes turn the final-logits soft-cap off, as big_vision's
  transfers do ("better for transfer"); pre-training configs pass False.
  """
  img, llm, fname = SIZES[a.size]
  c.model_name = "paligemma"
  if a.size == "tiny":
    c.model = dict(img=dict(variant=img, depth=2, mlp_dim=64, patch_size=(14, 14), scan=True,
                            remat_policy="none"),
                   llm=dict(variant=llm, scan=True, remat_policy="none", dropout=llm_dropout,
                            vocab_size=TINY_BASE_VOCAB + NUM_LOC_SEG))
    c.model_init = a.ckpt or None  # A tiny model trains from scratch unless given one.
    if a.tokenizer == mock_tokenizer(a):
      mock_prepare(c, a)  # Its tokenizer is trained on the shapes corpus at startup.
  else:
    c.model = dict(img=dict(variant=img, pool_type="none", scan=True),
                   llm=dict(variant=llm, scan=True, dropout=llm_dropout,
                            vocab_size=PALIGEMMA_VOCAB))
    if transfer and llm.startswith("gemma2"):
      c.model.llm.final_logits_softcap = 0.0
    # The released file is read at train startup; see README "Transfer configs" for
    # where to download it (Kaggle / Hugging Face) and convert it.
    c.model_init = a.ckpt or f"{a.ckpt_dir}/{fname.format(res=a.res)}"
  c.tokenizer = a.tokenizer


def optimizer(c, *, lr, wd, label_smoothing=0.0, freeze_vit=False, freeze_llm=False,
              b2=0.999):
  """Adam, cosine schedule with 5% warmup, clip 1.0; `None` schedules freeze a tower."""
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=b2)
  c.lr = lr
  c.wd = wd
  c.grad_clip_norm = 1.0
  c.label_smoothing = label_smoothing
  sched = dict(decay_type="cosine", warmup_percent=0.05)
  c.schedule = [("img/.*", None if freeze_vit else sched),
                ("llm/.*", None if freeze_llm else sched)]


def fsdp(c):
  """Fully sharded data parallel over all devices."""
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]


def decode_eval(kind, data, pp, a, *, log_percent, batch_size=None, sampler=None, **kw):
  """An evaluator of type `kind` on the decoded answers (max `a.text_len` tokens)."""
  pred_kw = dict(max_decode_len=a.text_len)
  if sampler:
    pred_kw["sampler"] = sampler
  return dict(type=kind, pred="decode", pred_kw=pred_kw, data=data, pp_fn=pp,
              log_percent=log_percent, batch_size=batch_size, **kw)


def pplx_eval(data, pp, *, log_percent, batch_size=None):
  """Perplexity of the suffix (cheap; checks a run before the real metric)."""
  return dict(type="perplexity", pred="logits", data=data, pp_fn=pp,
              log_percent=log_percent, batch_size=batch_size)


def finish(c, a, *, mock_task, mock_pp):
  """Shared tail of every config: logging, checkpoints, seed, and mode=mock.

  Args:
    c: the config built for `a.mode == "real"`.
    a: the parsed arguments.
    mock_task: the shapes task ("caption", "vqa", "ocr", "detect", "segment") whose rows
      stand in for the task's data in mode=mock.
    mock_pp: pp ops turning a shapes row into the task's feature format (they run
      before the task's own pp, which is thus tested unchanged).
  Returns:
    `c` (in mode=mock: tiny data, 1 step, the first evaluator only).
  """
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  if a.mode == "mock":
    _to_mock(c, a, mock_task, mock_pp)
  return c


def mock_source(task, split, a):
  """The shapes source (generated at startup in `a.mock_dir`) of one task and split."""
  name = "shapes_video" if task.startswith("video_") else "shapes"
  return dict(name=name, task=task, split=split, data_dir=a.mock_dir, **MOCK["shapes"])


def mock_prepare(c, a):
  """Startup generation of the shapes data (and of the tiny tokenizer, when used)."""
  c.ensure_shapes = dict(out_dir=a.mock_dir, **MOCK["shapes"])
  if a.tokenizer == mock_tokenizer(a):
    c.train_tokenizer = dict(corpus_files=[f"{a.mock_dir}/corpus.txt"],
                             out_path=a.tokenizer, vocab_size=TINY_BASE_VOCAB)


def _to_mock(c, a, task, adapter):
  mock_prepare(c, a)
  join = lambda pp: "|".join(filter(None, [adapter, pp]))
  if "name" in c.input.data:  # One source.
    c.input.data = mock_source(task, "train", a)
    c.input.pp = join(c.input.pp)
  else:  # A mixture: {source name: weight} and one sub-config per source.
    for k in c.input.data:
      c.input[k].data = mock_source(task, "train", a)
      if "pp" in c.input[k]:
        c.input[k].pp = join(c.input[k].pp)
    if "pp" in c.input:
      c.input.pp = join(c.input.pp)
  c.input.batch_size = MOCK["batch_size"]
  c.input.shuffle_buffer_size = 16
  for k in ("total_epochs", "total_examples"):
    if k in c:
      del c[k]
  c.total_steps = 0 if c.get("total_steps") == 0 else 1  # Eval-only configs stay so.
  c.log_training_steps = 1
  c.ckpt_steps = 1
  # One evaluation: the task's metric (not perplexity); the others differ in split.
  name = min(c.evals, key=lambda k: (c.evals[k].type == "perplexity", k))
  ev = c.evals[name]
  ev.data = mock_source(task, "validation", a)
  ev.pp_fn = join(ev.pp_fn)
  ev.batch_size = MOCK["batch_size"]
  if "pred_kw" in ev:
    ev.pred_kw = dict(max_decode_len=a.text_len)  # Greedy: one shared compilation.
  evals = ml_collections.ConfigDict({name: ev})
  c.evals = evals
