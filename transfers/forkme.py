r"""Fine-tune PaliGemma on your own data: copy this file anywhere and edit it.

  python -m big_vision_lite.train --config transfers/forkme.py --workdir /tmp/mytask
  python -m big_vision_lite.train --config transfers/forkme.py:size=2b,res=448,lora=16,train=/data/train.jsonl,val=/data/val.jsonl,ckpt_dir=/ckpts \
      --workdir /tmp/mytask

Data: JSONL, one object per line: {"image": "images/0001.jpg", "prefix": "caption en",
"suffix": "A red circle."}; image paths are relative to the JSONL file's folder. Extra
keys are fine. With `prompt=...` the prefix is built from a template instead, e.g.
`prompt=answer en {question}` uses the row's `question`. `val=none`: no evaluation.
Checkpoints: `ckpt_dir` holds the released npz (e.g. paligemma2-3b-pt-448.b16.npz) and
paligemma_tokenizer.model; see README "Transfer configs" for where to get them.
Every setting is a `c.x = ...` line below; `--config.x=...` overrides one for a run.
This file imports nothing but ml_collections and big_vision_lite.
"""
import ml_collections

from big_vision_lite.config_args import parse_arg

# size -> (Gemma variant, released checkpoint); the image encoder is SigLIP So400m/14.
SIZES = {
    "3b": ("gemma_2b", "paligemma-3b-pt-{res}.npz"),  # PaliGemma 1.
    "2b": ("gemma2_2b", "paligemma2-3b-pt-{res}.b16.npz"),  # PaliGemma 2 ...
    "9b": ("gemma2_9b", "paligemma2-10b-pt-{res}.b16.npz"),
    "27b": ("gemma2_27b", "paligemma2-28b-pt-{res}.b16.npz"),
}


def get_config(arg=None):
  """The arguments you are likely to change; everything else is written out below."""
  a = parse_arg(arg, train="data/train.jsonl", val="data/val.jsonl", prompt="",
                size="3b", res=224, text_len=64, batch_size=32, total_epochs=15, lr=1e-5,
                freeze_vit=False, freeze_llm=False,
                lora=0,  # Rank of LoRA adapters on the LLM; 0 = full fine-tuning.
                ckpt_dir="ckpts", ckpt="", tokenizer="")
  if a.size not in SIZES:
    raise ValueError(f"size={a.size!r} is unknown; use one of {sorted(SIZES)}.")
  tokenizer = a.tokenizer or f"{a.ckpt_dir}/paligemma_tokenizer.model"
  c = ml_collections.ConfigDict()

  # Input: image to [-1, 1]; prefix + suffix to one token row (the model predicts the
  # suffix). The row has text_len + 1 tokens: the trainer feeds row[:-1], predicts row[1:].
  image = (f"decode(key='image')|resize({a.res}, antialias=True, key='image')"
           "|value_range(-1, 1, key='image')")
  prompt = [f"strfmt({a.prompt!r}, outkey='prefix')"] if a.prompt else []
  c.input = dict(
      data=dict(name="jsonl", fname=a.train, fopen_keys=("image",)),
      batch_size=a.batch_size, shuffle_buffer_size=1000,
      pp="|".join([image, *prompt,
                   f"combine_and_keep_train({a.text_len + 1}, model={tokenizer!r})"]))
  c.total_epochs = a.total_epochs  # Or c.total_steps / c.total_examples.

  # Model: PaliGemma from the released checkpoint.
  gemma, ckpt = SIZES[a.size]
  c.model_name = "paligemma"
  c.model = dict(img=dict(variant="So400m/14", pool_type="none", scan=True),
                 llm=dict(variant=gemma, scan=True, dropout=0.0, vocab_size=257_152))
  if a.size != "3b":  # PaliGemma 2: final-logits soft-cap off, as big_vision's transfers.
    c.model.llm.final_logits_softcap = 0.0
  c.model_init = a.ckpt or f"{a.ckpt_dir}/{ckpt.format(res=a.res)}"
  c.tokenizer = tokenizer

  # Optimizer: Adam, cosine schedule with 5% warmup, gradient norm clipped at 1. A
  # schedule of None freezes that tower (freeze_vit / freeze_llm).
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.999)
  c.lr = a.lr
  c.wd = 3e-7
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.0
  cosine = dict(decay_type="cosine", warmup_percent=0.05)
  c.schedule = [("img/.*", None if a.freeze_vit else cosine),
                ("llm/.*", None if a.freeze_llm else cosine)]
  if a.lora:  # Then only the adapters train (their paths are llm/...); the base is frozen.
    c.lora = dict(rank=a.lora, alpha=float(a.lora), targets="llm/layers/(attn|mlp)/.*")

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation on the validation file: perplexity of the suffix, and the greedy answers
  # written to {workdir}/val/store_predictions.json. Replace "storepreds" by your task's
  # metric (e.g. "vqa", "coco_caption") once the rows hold its ground-truth keys.
  # log_percent: how often, as a fraction of training; batch_size None: the input's.
  c.evals = {}
  if a.val != "none":
    val = dict(name="jsonl", fname=a.val, fopen_keys=("image",))
    c.evals["val/pplx"] = dict(type="perplexity", pred="logits", data=val,
                               pp_fn=c.input.pp, log_percent=0.1, batch_size=None)
    c.evals["val/store"] = dict(
        type="storepreds", pred="decode", pred_kw=dict(max_decode_len=a.text_len),
        data=val, log_percent=0.5, batch_size=None,
        pp_fn="|".join([image, *prompt,
                        f"combine_and_keep_eval({a.text_len}, keep=('prefix',), "
                        f"suffix=None, model={tokenizer!r})"]))

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
