r"""Runs a PaliGemma checkpoint on images and prompts and prints the answers.

  python -m tools.predict --ckpt /ckpts/pt_224.npz --tokenizer /ckpts/pg_tokenizer.model \
      --image cat.jpg --prompt "caption en"
  python -m tools.predict ... --prompt "detect cat" --json            # boxes in pixels
  python -m tools.predict ... --prompt "segment cat" --json --vqvae vae-oid.npz
  python -m tools.predict ... --jsonl items.jsonl    # lines {"image": path, "prompt": str}

The model architecture (and `--res`) is inferred from the checkpoint's shapes unless
`--model_cfg` (JSON of `paligemma.Model` kwargs) or `--variant` is given. Images go through the same pp
ops as evaluation: `decode|resize(res)|value_range(-1, 1)` (bilinear, not antialiased) and the
prompt through `combine_and_keep_eval` ([BOS] prompt "\n").
"""
import argparse
import io
import json
import math
import os
import sys

import jax
import numpy as np
from PIL import Image
import tensorflow as tf

from big_vision_lite import checkpoint
from big_vision_lite import cli
from big_vision_lite import decode
from big_vision_lite.hf import config as hf_config
from big_vision_lite import postprocess
from big_vision_lite import registry
from big_vision_lite import tokenizer as tokenizer_lib
from big_vision_lite.models import paligemma
from big_vision_lite.models import vqvae
from big_vision_lite.pp import builder
from big_vision_lite.pp import ops_image

_PG = dict(img_model="vit", llm_model="gemma")
VARIANTS = {
    "paligemma_3b": dict(_PG, img=dict(variant="So400m/14"),
                         llm=dict(variant="gemma_2b", vocab_size=257_152)),
    "paligemma2_3b": dict(_PG, img=dict(variant="So400m/14"),
                          llm=dict(variant="gemma2_2b", vocab_size=257_152)),
    "paligemma2_10b": dict(_PG, img=dict(variant="So400m/14"),
                           llm=dict(variant="gemma2_9b", vocab_size=257_152)),
    "paligemma2_28b": dict(_PG, img=dict(variant="So400m/14"),
                           llm=dict(variant="gemma2_27b", vocab_size=257_152)),
}


def model_config_for(flat_shapes, model_cfg=None, variant=None):
  """paligemma.Model kwargs: explicit `model_cfg`, a `VARIANTS` name, or from the shapes."""
  if model_cfg is not None and variant is not None:
    raise ValueError("Pass either --model_cfg or --variant, not both.")
  if variant is not None:
    if variant not in VARIANTS:
      raise registry.unknown_name("--variant", variant, VARIANTS, context="Or pass "
                                  "--model_cfg with the paligemma.Model kwargs as JSON.")
    return VARIANTS[variant]
  if model_cfg is not None:
    return dict(_PG, **model_cfg)
  return dict(_PG, **hf_config.model_config(hf_config.hf_config(flat_shapes)))


def checkpoint_res(flat_shapes):
  """Image side the checkpoint was trained at: sqrt(#patches) * patch size (or None)."""
  pos, emb = flat_shapes.get("img/pos_embedding"), flat_shapes.get("img/embedding/kernel")
  if pos is None or emb is None:
    return None
  return math.isqrt(pos[-2]) * emb[0]


def load_model(ckpt, model_cfg=None, variant=None, res=None):
  """Loads a big_vision-format npz (`path.npz` or `path.npz:subtree`).

  Args:
    ckpt: local path.
    model_cfg: paligemma.Model kwargs, or None (see `model_config_for`).
    variant: a `VARIANTS` name, or None.
    res: image resolution (default: the checkpoint's, from its position embedding).

  Returns:
    (model, params, model_cfg, res).
  """
  loaded = checkpoint.load_params(ckpt)
  shapes = {k: tuple(np.shape(v)) for k, v in checkpoint.flatten(loaded).items()}
  res = res or checkpoint_res(shapes) or 224
  cfg = model_config_for(shapes, model_cfg, variant)
  model = paligemma.Model(**cfg)
  image = jax.ShapeDtypeStruct((1, res, res, 3), np.float32)
  tokens = jax.ShapeDtypeStruct((1, 2), np.int32)
  init = jax.eval_shape(model.init, jax.random.key(0), image, tokens, tokens)["params"]
  params = paligemma.load(init, {k: loaded[k] for k in loaded if k in ("img", "llm")}, cfg)
  return model, jax.device_put(params), cfg, res


def make_examples(items, tokenizer_path, res, text_len):
  """Preprocesses [{"image": path, "prompt": str}] with the eval pp ops.

  Returns:
    list of dicts with image float32[res, res, 3], text/mask_ar/mask_input int32[text_len]
    and `size` (height, width) of the original image.
  """
  pp = builder.get_preprocess_fn(
      f"decode|resize({res})|value_range(-1, 1)|"
      f"combine_and_keep_eval({text_len}, model={tokenizer_path!r})")
  out = []
  for item in items:
    raw, size = read_image(item["image"])
    try:
      ex = pp({"image": tf.constant(raw), "prefix": tf.constant(item["prompt"])})
    except tf.errors.OpError as e:
      first = " ".join(e.message.split("Condition")[0].split())[:300]
      raise ValueError(f"Image {item['image']!r} could not be decoded (corrupt or "
                       f"truncated?): {first}") from None
    ex = {k: ex[k].numpy() for k in ("image", "text", "mask_ar", "mask_input")}
    out.append(dict(ex, size=size))
  return out


def read_image(path):
  """Returns (bytes, (height, width)) of an image file, its size read from the header.

  Files that are empty, not images, or larger than `ops_image.MAX_PIXELS` pixels fail
  here with the path, before anything is decoded.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Image {path!r} does not exist or is not a file; pass the path "
                            "of a JPEG, PNG, GIF, BMP or WebP file.")
  with open(path, "rb") as f:
    raw = f.read()
  try:
    with Image.open(io.BytesIO(raw)) as img:  # Reads the header only.
      width, height = img.size
      fmt = img.format
  except Image.DecompressionBombError as e:
    raise ValueError(f"Image {path!r}: {e}; valid: at most {ops_image.MAX_PIXELS} pixels, "
                     "resize it.") from None
  except (Image.UnidentifiedImageError, OSError, ValueError) as e:
    raise ValueError(f"Image {path!r} ({len(raw)} bytes) is not a readable image "
                     f"({' '.join(str(e).split())[:120]}); valid: JPEG, PNG, GIF, BMP or "
                     "WebP files.") from None
  if width * height > ops_image.MAX_PIXELS:
    raise ValueError(f"Image {path!r} is {width}x{height} = {width * height} pixels, more "
                     f"than the {ops_image.MAX_PIXELS} that decode allows; resize it.")
  if fmt not in ("JPEG", "PNG", "GIF", "BMP", "WEBP"):
    raise ValueError(f"Image {path!r} is {fmt}; valid: JPEG, PNG, GIF, BMP or WebP.")
  try:  # The decoder the pp ops use: a truncated or corrupt file fails here, early.
    ops_image.decode_image(tf.constant(raw))
  except tf.errors.OpError as e:
    first = " ".join(e.message.split("Condition")[0].split())[:200]
    raise ValueError(f"Image {path!r} could not be decoded (corrupt or truncated?): "
                     f"{first}; valid: a complete JPEG, PNG, GIF, BMP or WebP file.") from None
  return raw, (height, width)


def read_items(path):
  """[{"image": str, "prompt": str}] from a JSONL file; a bad line fails naming it."""
  items = []
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--jsonl {path!r} does not exist; pass a file of "
                            '{"image": path, "prompt": str} lines.')
  with open(path, "rb") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      where = f"{path} line {lineno}"
      try:
        item = json.loads(line.decode("utf-8"))
      except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{where}: not a UTF-8 JSON object ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:100]}); valid: "
                         '{"image": path, "prompt": str} per line.') from None
      if (not isinstance(item, dict) or not isinstance(item.get("image"), str)
          or not isinstance(item.get("prompt"), str)):
        raise ValueError(f"{where}: {line.decode('utf-8', 'replace').strip()[:100]!r} must "
                         'be {"image": path, "prompt": str}.')
      items.append(item)
  if not items:
    raise ValueError(f"{path}: no items; valid: one {{\"image\": path, \"prompt\": str}} "
                     "per line.")
  return items


def check_vocab(params, tok):
  """The model's embedding rows must cover the tokenizer's ids (and should equal them)."""
  rows = int(np.shape(params["llm"]["embedder"]["input_embedding"])[0])
  if rows < tok.vocab_size:
    raise ValueError(f"The checkpoint's vocabulary has {rows} rows but the tokenizer "
                     f"{tok.model_path!r} has {tok.vocab_size} pieces: they do not belong "
                     "together; pass the tokenizer the checkpoint was trained with.")
  if rows != tok.vocab_size:
    print(f"warning: the checkpoint has {rows} vocabulary rows, the tokenizer "
          f"{tok.model_path!r} {tok.vocab_size} pieces; answers with ids >= "
          f"{tok.vocab_size} cannot be decoded.", file=sys.stderr)


def predict(model, params, tok, examples, *, sampler="greedy", max_decode_len=64,
            batch_size=8, rng=None, cache_dtype=None):
  """Decodes examples from `make_examples` in padded batches; returns the answer strings."""
  answers = []
  for start in range(0, len(examples), batch_size):
    chunk = examples[start:start + batch_size]
    n = len(chunk)
    batch = {k: np.stack([e[k] for e in chunk] + [chunk[0][k]] * (batch_size - n))
             for k in ("image", "text", "mask_ar", "mask_input")}
    batch["_mask"] = np.arange(batch_size) < n
    out = decode.decode(model, params, batch, max_decode_len=max_decode_len,
                        sampler=sampler, eos_id=tok.eos_id, pad_id=tok.pad_id,
                        rng=rng if rng is not None else jax.random.key(start),
                        cache_dtype=cache_dtype)
    tokens, lengths = np.asarray(out["tokens"]), np.asarray(out["lengths"])
    answers += [tok.to_str(tokens[i, :lengths[i]]) for i in range(n)]
  return answers


def positive_int(text):
  """argparse type: an int >= 1 (argparse reports the flag, the value and this text)."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not an int; valid: an int >= 1") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"{value} < 1; valid: an int >= 1")
  return value


def json_object(text):
  """argparse type: a JSON object (paligemma.Model kwargs)."""
  try:
    value = json.loads(text)
  except (json.JSONDecodeError, RecursionError) as e:
    raise argparse.ArgumentTypeError(f"not JSON ({e}); valid: a JSON object of "
                                     "paligemma.Model kwargs") from None
  if not isinstance(value, dict):
    raise argparse.ArgumentTypeError(f"{text[:50]!r} is a JSON {type(value).__name__}; "
                                     "valid: a JSON object of paligemma.Model kwargs")
  return value


EXAMPLES = (
    "python -m tools.predict --ckpt /ckpts/pt_224.npz --tokenizer /ckpts/pg_tokenizer.model \\\n"
    "      --image cat.jpg --prompt \"caption en\"",
    "python -m tools.predict --ckpt /ckpts/pt_224.npz --tokenizer /ckpts/pg_tokenizer.model \\\n"
    "      --image cat.jpg --prompt \"segment cat\" --json --vqvae vae-oid.npz",
    "python -m tools.predict --ckpt /ckpts/pt_224.npz --tokenizer /ckpts/pg_tokenizer.model \\\n"
    "      --jsonl items.jsonl --sampler \"nucleus(0.9)\" --batch_size 16",
)


def parse_args(argv):
  p = cli.parser(__doc__, EXAMPLES, prog="python -m tools.predict")
  p.add_argument("--ckpt", required=True, help="big_vision .npz (or path.npz:subtree)")
  p.add_argument("--tokenizer", required=True, help="SentencePiece .model")
  p.add_argument("--image", help="image file (with --prompt)")
  p.add_argument("--prompt", help="prompt, e.g. 'caption en', 'detect cat'")
  p.add_argument("--jsonl", help="file of {\"image\": path, \"prompt\": str} lines")
  p.add_argument("--res", type=positive_int, default=None,
                 help="image resolution (default: the checkpoint's, e.g. 224 or 448)")
  p.add_argument("--text_len", type=positive_int, default=64, help="max prompt tokens")
  p.add_argument("--sampler", default="greedy",
                 help="greedy | temperature(t=0.7) | topk(k=40) | nucleus(0.9) | beam(4) "
                      "| best_of_n(n=4, sampler='nucleus(p=0.9)')")
  p.add_argument("--max_decode_len", type=positive_int, default=64)
  p.add_argument("--batch_size", type=positive_int, default=8)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--cache_dtype", default=None, help="KV cache dtype (bf16 on accelerators)")
  p.add_argument("--model_cfg", type=json_object, default=None,
                 help="JSON of paligemma.Model kwargs (default: inferred from the ckpt)")
  p.add_argument("--variant", default=None, choices=sorted(VARIANTS))
  p.add_argument("--json", action="store_true",
                 help="print one JSON object per answer with boxes / masks in pixels")
  p.add_argument("--vqvae", default=None, help="vae-oid.npz, to decode <seg> masks")
  args = p.parse_args(argv)
  if (args.jsonl is None) == (args.image is None or args.prompt is None):
    p.error("pass either --image and --prompt, or --jsonl")
  return args


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.jsonl:
    items = read_items(args.jsonl)
  else:
    items = [{"image": args.image, "prompt": args.prompt}]
  for item in items:  # Every image is checked before the model is loaded.
    read_image(item["image"])
  tok = tokenizer_lib.Tokenizer(args.tokenizer)
  model, params, _, res = load_model(args.ckpt, args.model_cfg, args.variant, args.res)
  check_vocab(params, tok)
  examples = make_examples(items, args.tokenizer, res, args.text_len)
  answers = predict(model, params, tok, examples, sampler=args.sampler,
                    max_decode_len=args.max_decode_len, batch_size=args.batch_size,
                    rng=jax.random.key(args.seed), cache_dtype=args.cache_dtype)
  vq = vqvae.load_vqvae(args.vqvae) if args.vqvae else None
  for item, ex, answer in zip(items, examples, answers):
    if args.json:
      rec = postprocess.to_json(answer, *ex["size"], vq)
      print(json.dumps(dict(image=item["image"], prompt=item["prompt"], **rec)))
    else:
      print(answer)
  return answers


if __name__ == "__main__":
  cli.run(main)
