"""What every transfer config shares: its arguments, the model sizes, pp strings, evaluators.

Every transfer config starts with `a = common.parse(arg, **task_defaults)`, which adds:

  size       "3b" (PaliGemma 1: So400m/14 + Gemma 2B), "2b" | "9b" | "27b" (PaliGemma 2:
             So400m/14 + Gemma 2 2B/9B/27B; final logits soft-cap off, as big_vision's
             transfers).
  ckpt_dir   folder with the released checkpoints and `paligemma_tokenizer.model`.
  ckpt       explicit checkpoint path (default: the released file name in ckpt_dir).
  tokenizer  explicit tokenizer path (default: ckpt_dir/paligemma_tokenizer.model).
  data_dir   the TFDS data folder holding the prepared datasets (nothing is downloaded).

Helpers return values (none changes a config); each config writes its sections as
literal `c.x = ...` lines. Nothing here does I/O: files are read when training starts.
(The tests run every config on the shapes data: tests/transfer_fixtures.py `mock_config`.)
"""
from big_vision_lite.config_args import parse_arg

PALIGEMMA_VOCAB = 256_000 + 1024 + 128  # Text pieces + 1024 <loc> + 128 <seg>.
# size -> (Gemma variant, released checkpoint file name pattern); the ViT is So400m/14.
SIZES = {
    "3b": ("gemma_2b", "paligemma-3b-pt-{res}.npz"),
    "2b": ("gemma2_2b", "paligemma2-3b-pt-{res}.b16.npz"),
    "9b": ("gemma2_9b", "paligemma2-10b-pt-{res}.b16.npz"),
    "27b": ("gemma2_27b", "paligemma2-28b-pt-{res}.b16.npz"),
}


def parse(arg, **defaults):
  """`parse_arg` with the shared arguments (see the module docstring) added."""
  a = parse_arg(arg, size="3b", ckpt_dir="ckpts", ckpt="", tokenizer="", data_dir="",
                **defaults)
  if a.size not in SIZES:
    raise ValueError(f"size={a.size!r} is unknown; use one of {sorted(SIZES)}.")
  a.tokenizer = a.tokenizer or f"{a.ckpt_dir}/paligemma_tokenizer.model"
  return a


def tfds(name, split, a):
  """A TFDS source of the prepared dataset `name` in `a.data_dir` (None: TFDS default)."""
  return dict(name=name, split=split, data_dir=a.data_dir or None)


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


def model(a, *, llm_dropout=0.0, transfer=True):
  """`config.model`: SigLIP So400m/14 + the Gemma of `a.size`.

  `transfer`: PaliGemma 2 sizes turn the final-logits soft-cap off, as big_vision's
  transfers do ("better for transfer"); pre-training configs pass False.
  """
  llm = dict(variant=SIZES[a.size][0], scan=True, dropout=llm_dropout,
             vocab_size=PALIGEMMA_VOCAB)
  if transfer and llm["variant"].startswith("gemma2"):
    llm["final_logits_softcap"] = 0.0
  return dict(img=dict(variant="So400m/14", pool_type="none", scan=True), llm=llm)


def checkpoint(a):
  """`config.model_init`: `a.ckpt`, else the released file of `a.size` at `a.res` in
  `a.ckpt_dir` (see README "Transfer configs" for where to download and convert it)."""
  return a.ckpt or f"{a.ckpt_dir}/{SIZES[a.size][1].format(res=a.res)}"


def decode_eval(kind, data, pp, a, *, log_percent, batch_size=None, sampler=None, **kw):
  """An evaluator of type `kind` on the decoded answers (max `a.text_len` tokens).

  `batch_size=None`: the training batch size.
  """
  pred_kw = dict(max_decode_len=a.text_len)
  if sampler:
    pred_kw["sampler"] = sampler
  return dict(type=kind, pred="decode", pred_kw=pred_kw, data=data, pp_fn=pp,
              log_percent=log_percent, batch_size=batch_size, **kw)


def pplx_eval(data, pp, *, log_percent, batch_size=None):
  """Perplexity of the suffix (cheap; checks a run before the real metric)."""
  return dict(type="perplexity", pred="logits", data=data, pp_fn=pp,
              log_percent=log_percent, batch_size=batch_size)
