r"""Converts PaliGemma checkpoints between Hugging Face safetensors and big_vision npz.

The direction follows the source: a directory (config.json + *.safetensors, sharded
or not) becomes an npz; an npz becomes a directory that
`transformers.PaliGemmaForConditionalGeneration.from_pretrained(dst)` loads.
Tensors are converted one at a time, so memory stays near one tensor's size.

  python -m tools.convert_checkpoint /ckpts/paligemma2-3b-pt-224 /ckpts/pg2_224.npz
  python -m tools.convert_checkpoint /ckpts/pg2_224.npz /ckpts/pg2_hf --dtype bfloat16 \
      --tokenizer /ckpts/paligemma_tokenizer.model
  python -m tools.convert_checkpoint /ckpts/pt_224.npz /ckpts/pt_224.b16.npz --dtype bfloat16

npz -> npz (dst ends in .npz) rewrites the params in another precision (float32,
bfloat16 as 2-byte void, float16), one layer at a time.

HF -> npz prints the `paligemma.Model` config (variants inferred from config.json).
npz -> HF infers config.json from the tensor shapes; `--hf_config` supplies the fields
that shapes do not fix (Gemma 2 soft-caps/window for non-released sizes, the image
token id, ...), and its shape fields must agree with the tensors. Gemma 2 is exported
with full attention (as big_vision trained PaliGemma 2) unless it sets a sliding_window;
a soft-cap of 0 or null is written as null (off). `--model_cfg` (the paligemma.Model
kwargs the npz was trained with) fills those Gemma 2 fields from the model config, e.g.
the final soft-cap that PaliGemma 2 transfers turn off. With `--tokenizer` (the SentencePiece
model) the folder also gets the tokenizer, processor_config.json and
generation_config.json, so AutoProcessor, AutoTokenizer and
pipeline("image-text-to-text") load it.
"""
import argparse
import json
import os
import sys

import numpy as np

from big_vision_lite import cli
from big_vision_lite.hf import config as hf_config
from big_vision_lite.hf import convert as hf_convert
from big_vision_lite.hf import io as hf_io


def _json_object(text):
  """argparse type of --model_cfg: a JSON object."""
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise argparse.ArgumentTypeError(f"not JSON ({e}): {text!r}") from None
  if not isinstance(value, dict):
    raise argparse.ArgumentTypeError(f"must be a JSON object like '{{\"llm\": {{...}}}}', "
                                     f"got {text!r}")
  return value


EXAMPLES = (
    "python -m tools.convert_checkpoint /ckpts/paligemma2-3b-pt-224 /ckpts/pg2_224.npz",
    "python -m tools.convert_checkpoint /ckpts/pg2_224.npz /ckpts/pg2_hf --dtype bfloat16 \\\n"
    "      --tokenizer /ckpts/paligemma_tokenizer.model",
    "python -m tools.convert_checkpoint /ckpts/pt_224.npz /ckpts/pt_224.b16.npz --dtype bfloat16",
)


def parse_args(argv):
  p = cli.parser(__doc__, EXAMPLES, prog="python -m tools.convert_checkpoint")
  p.add_argument("src", help="HF model directory or big_vision .npz")
  p.add_argument("dst", help=".npz path (from HF) or output directory (from npz)")
  p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                 help="dtype of the written tensors (default: keep the source's)")
  p.add_argument("--scan", action=argparse.BooleanOptionalAction, default=True,
                 help="HF -> npz: stack layers, layer axis first (as released checkpoints)")
  p.add_argument("--hf_config", default=None,
                 help="npz -> HF: a config.json whose fields complete/override the inferred one")
  p.add_argument("--model_cfg", type=_json_object, default=None,
                 help="npz -> HF: JSON of the paligemma.Model kwargs the npz was trained "
                      "with; its llm fixes the Gemma 2 soft-caps, window and query scale "
                      "(e.g. a PaliGemma 2 transfer's final_logits_softcap=0)")
  p.add_argument("--tokenizer", default=None,
                 help="npz -> HF: SentencePiece .model; also writes the tokenizer, processor "
                      "and generation config")
  p.add_argument("--max_shard_gb", type=float, default=5.0,
                 help="npz -> HF: maximum size of one safetensors shard")
  return p.parse_args(argv)


def cast_npz(src, dst, dtype):
  """Writes the params of npz `src` to npz `dst` with float leaves cast to `dtype`."""
  floats = {np.dtype(np.float64), *hf_io.DTYPES.values()}
  with hf_io.NpzReader(src) as reader, hf_io.NpzWriter(dst) as out:
    for key, shape in reader.shapes().items():
      if reader.dtype(key) not in floats:
        out.write(key, np.asarray(reader.array(key)))
      elif len(shape) >= 2:  # Stacked layers (or any matrix): one slice at a time.
        out.write_layers(key, shape[0], (hf_io.cast(np.asarray(x), dtype)
                                         for x in reader.iter_layers(key)))
      else:
        out.write(key, hf_io.cast(np.asarray(reader.array(key)), dtype))


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if os.path.isdir(args.src):
    if args.hf_config or args.tokenizer or args.model_cfg:
      raise ValueError("--hf_config, --model_cfg and --tokenizer are for npz -> HF; the HF "
                       "source has its own config.json and tokenizer files.")
    # Checked before converting: raises if paligemma.Model cannot run the model.
    model_cfg = hf_config.model_config(
        hf_io.read_json(os.path.join(args.src, "config.json")), scan=args.scan)
    hf_convert.hf_to_bv(args.src, args.dst, dtype=args.dtype, scan=args.scan)
    print(f"Wrote {args.dst}. paligemma.Model config:")
    print(json.dumps(model_cfg))
  elif args.src.endswith(".npz") and os.path.isfile(args.src) and args.dst.endswith(".npz"):
    if args.hf_config or args.tokenizer or args.model_cfg or not args.dtype:
      raise ValueError("npz -> npz rewrites the dtype: pass --dtype and no --hf_config / "
                       "--model_cfg / --tokenizer (they are for npz -> HF).")
    cast_npz(args.src, args.dst, args.dtype)
    print(f"Wrote {args.dst} ({args.dtype}).")
  elif args.src.endswith(".npz") and os.path.isfile(args.src):
    overrides = {}
    if args.model_cfg:
      overrides = hf_config.text_overrides(dict(args.model_cfg.get("llm") or {}))
    if args.hf_config:
      overrides = hf_config.merge(overrides, hf_io.read_json(args.hf_config, "--hf_config"))
    hf_convert.bv_to_hf(args.src, args.dst, dtype=args.dtype, config_overrides=overrides,
                        max_shard_bytes=int(args.max_shard_gb * 2**30),
                        tokenizer=args.tokenizer)
    extra = " + tokenizer, processor, generation config" if args.tokenizer else ""
    print(f"Wrote {args.dst} (config.json + safetensors{extra}).")
  else:
    raise ValueError(f"src={args.src!r} is neither an HF model directory nor an existing "
                     ".npz file; valid: a directory with config.json and *.safetensors, "
                     "or a big_vision .npz file.")


if __name__ == "__main__":
  cli.run(main)
