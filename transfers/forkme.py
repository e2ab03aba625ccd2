r"""Fine-tune PaliGemma on your own data: copy this file and edit it.

Runs out of the box on the bundled `shapes` captions (generated at startup), e.g. a
smoke run with a tiny random model on a CPU:

  python -m big_vision_lite.train --config transfers/forkme.py:size=tiny,res=28,batch_size=8,total_epochs=1 \
      --workdir /tmp/forkme

Your data, PaliGemma 2 3B at 448 px with LoRA on the language model:

  python -m big_vision_lite.train --config transfers/forkme.py:size=2b,res=448,lora=16,train=/data/train.jsonl,val=/data/val.jsonl,ckpt_dir=/ckpts \
      --workdir /tmp/mytask

Data: JSONL, one object per line: {"image": "images/0001.jpg", "prefix": "caption en",
"suffix": "A red circle."}; image paths are relative to the JSONL file's folder. Extra
keys are fine. With `prompt=...` the prefix is built from a template instead, e.g.
`prompt=answer en {question}` uses the row's `question`.
Checkpoints: `ckpt_dir` must hold the released npz (e.g. paligemma2-3b-pt-448.b16.npz)
and paligemma_tokenizer.model; see README "Transfer configs" for where to get them.
"""
import ml_collections

from transfers import common


def get_config(arg=None):
  """Arguments you are likely to change are listed here; see also transfers/common.py."""
  a = common.parse(
      arg, res=224, text_len=64, batch_size=32, total_epochs=15, lr=1e-5,
      freeze_vit=False, freeze_llm=False, lora=0,  # lora: rank of LLM adapters; 0 = off.
      train="", val="", prompt="")
  c = ml_collections.ConfigDict()

  # Input: your JSONL files (default: the bundled shapes captions, generated at startup).
  shapes = not a.train
  train = a.train or f"{a.mock_dir}/train/caption.jsonl"
  val = a.val or (f"{a.mock_dir}/validation/caption.jsonl" if shapes else "")
  jsonl = lambda fname: dict(name="jsonl", fname=fname, fopen_keys=("image",))
  # The prefix comes from the row, or from a template filled with the row's keys.
  ops = [f"strfmt({a.prompt!r}, outkey='prefix')"] if a.prompt else []
  c.input = dict(data=jsonl(train), batch_size=a.batch_size, shuffle_buffer_size=1000,
                 pp=common.train_pp(a, *ops, antialias=True))
  c.total_epochs = a.total_epochs  # Or total_steps / total_examples.

  # Model: `size` picks the towers and the checkpoint (see common.SIZES).
  common.model(c, a)
  if shapes:
    common.mock_prepare(c, a)  # Generates the shapes data (and tiny tokenizer) once.

  # Optimizer: freeze a tower with freeze_vit / freeze_llm, or train LoRA adapters only.
  common.optimizer(c, lr=a.lr, wd=3e-7, freeze_vit=a.freeze_vit,
                   freeze_llm=a.freeze_llm)
  if a.lora:  # Then only the adapters train (their paths are llm/...); base is frozen.
    c.lora = dict(rank=a.lora, alpha=float(a.lora), targets="llm/layers/(attn|mlp)/.*")

  # Sharding: FSDP over all devices (params and optimizer state split over "data").
  common.fsdp(c)

  # Evaluation on the validation file: perplexity, and the predictions written to
  # {workdir}/val/store_predictions.json (replace "storepreds" by your task's metric,
  # e.g. "vqa" or "coco_caption", once the data has its ground-truth keys).
  c.evals = {}
  if val:
    c.evals["val/pplx"] = common.pplx_eval(jsonl(val), c.input.pp, log_percent=0.1)
    c.evals["val/store"] = common.decode_eval(
        "storepreds", jsonl(val), common.eval_pp(a, *ops, keep=("prefix",), antialias=True), a,
        log_percent=0.5)
  return common.finish(c, a, mock_task="caption", mock_pp="")
