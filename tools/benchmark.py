r"""Benchmarks: train step, decoding vs Hugging Face, input pipeline, sharding, memory fit.

Each sub-command prints a Markdown table and writes JSON (with the machine and date).

  python -m tools.benchmark train     # steps/s, examples/s, model FLOPs, MFU, remat on/off
  python -m tools.benchmark train --loop  # the train() loop's overhead over the bare step
  python -m tools.benchmark decode    # prefill/decode tokens/s vs HF generate, roofline
  python -m tools.benchmark input     # pipeline examples/s at 224/448 px vs the train step
  python -m tools.benchmark sharding  # per-device state bytes and step time: fsdp vs replicate
  python -m tools.benchmark memory    # PaliGemma-3B fits: FSDP 8 x 16 GB, attention-only SGD
  python -m tools.benchmark memory --scale  # PaliGemma 2 10B/28B on 16 and 64 devices
  python -m tools.benchmark compare --big_vision PATH  # ours vs big_vision vs HF, same weights
  python -m tools.benchmark serve     # HTTP server req/s, p50/p95 at 1/8/32 clients vs sequential

Defaults are the "bench-small" shape (ViT S/14 at 224 px + a 6-layer Gemma-1-style
decoder of width 512, batch 8, text 32, f32, Adam); `--model micro` is a smoke test.
"""
import argparse
import json
import os
import sys

import jax

from big_vision_lite import cli

SUBCOMMANDS = ("train", "decode", "input", "sharding", "memory", "compare", "serve")
EXAMPLES = (
    "python -m tools.benchmark train --model micro",
    "python -m tools.benchmark decode --json /tmp/decode.json",
    "python -m tools.benchmark memory --scale",
)


def parse_args(argv):
  p = cli.parser(__doc__, EXAMPLES, prog="python -m tools.benchmark")
  sub = p.add_subparsers(dest="cmd", required=True)
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument("--model", default="bench-small",
                      help="bench-small | micro | paligemma-3b")
  common.add_argument("--batch", type=int, default=8)
  common.add_argument("--res", type=int, default=224)
  common.add_argument("--text_len", type=int, default=32)
  common.add_argument("--iters", type=int, default=3, help="timed steps / repetitions")
  common.add_argument("--jit_check", action=argparse.BooleanOptionalAction, default=True,
                      help="train/sharding: count jit compiles over 2 extra steps")
  common.add_argument("--json", default=None,
                      help="output JSON (default workdirs/benchmark/<cmd>.json)")
  t = sub.add_parser("train", parents=[common], help="train step speed and MFU")
  t.add_argument("--remat", default="nothing_saveable,none",
                 help="comma-separated remat policies (jax.checkpoint_policies names, none)")
  t.add_argument("--scan", action=argparse.BooleanOptionalAction, default=None,
                 help="scanned layer loop (default: bench.train.DEFAULT_LAYOUT's, scanned)")
  t.add_argument("--dtype", default="float32", help="compute dtype (bfloat16: f32 master)")
  t.add_argument("--xla_check", action=argparse.BooleanOptionalAction, default=True,
                 help="compare analytic FLOPs with XLA cost_analysis (unrolled and scanned)")
  t.add_argument("--peak_n", type=int, default=2048, help="matmul size of the peak")
  t.add_argument("--loop", action="store_true",
                 help="instead: train() loop step time vs the bare step, LoRA and not "
                      "(scan on, first --remat policy; --iters repetitions)")
  t.add_argument("--loop_log_every", type=int, default=10, help="steps per timed interval")
  t.add_argument("--loop_logs", type=int, default=3, help="timed intervals per run")
  t.add_argument("--data_dir", default="workdirs/benchmark/shapes",
                 help="--loop: shapes data and tokenizer (made on first use)")
  d = sub.add_parser("decode", parents=[common], help="ours vs HF generate")
  d.add_argument("--prompt_len", type=int, default=16)
  d.add_argument("--new_tokens", type=int, default=16)
  d.add_argument("--batches", default="1,8")
  d.add_argument("--hf", action=argparse.BooleanOptionalAction, default=True)
  d.add_argument("--inner", type=int, default=1, help="calls per timing (best of)")
  d.add_argument("--weights", default="float32,bfloat16,int8",
                 help="decoder weight formats (quantize.FORMATS), timed alternately")
  i = sub.add_parser("input", parents=[common], help="tf.data pipeline examples/s")
  i.add_argument("--resolutions", default="224,448")
  i.add_argument("--data_dir", default="workdirs/benchmark/data")
  i.add_argument("--train_json", default=None,
                 help="a `train` JSON (or res=path,...) to compare the step's consumption")
  s = sub.add_parser("sharding", parents=[common], help="fsdp vs replicate")
  s.add_argument("--devices", type=int, default=8, help="simulated CPU devices")
  m = sub.add_parser("memory", parents=[common], help="PaliGemma-3B memory fit")
  m.add_argument("--devices", type=int, default=None,
                 help="simulated CPU devices (default 8; --scale: max of --scale_devices)")
  m.add_argument("--device_gb", type=float, default=16.0)
  m.add_argument("--fsdp_batch", type=int, default=32, help="global batch of the FSDP fit")
  m.add_argument("--remat", default="nothing_saveable,dots_with_no_batch_dims_saveable",
                 help="remat policies of the FSDP fit (empty: skip it)")
  m.add_argument("--finetune_compute", default="float32,bfloat16")
  m.add_argument("--finetune_text_len", type=int, default=128)
  m.add_argument("--scale", default="",
                 help="instead: comma-separated models (e.g. paligemma2-10b,paligemma2-28b) "
                      "compiled for --scale_devices (init + FSDP step, bf16 compute)")
  m.add_argument("--scale_devices", default="16,64",
                 help="mesh sizes of --scale (--devices defaults to their maximum)")
  m.add_argument("--scale_batch", type=int, default=1, help="examples per device")
  m.add_argument("--scale_text_len", type=int, default=128)
  c = sub.add_parser("compare", parents=[common], help="ours vs big_vision vs HF")
  c.add_argument("--big_vision", required=True,
                 help="path of a google-research/big_vision checkout (holds big_vision/)")
  c.add_argument("--parts", default="decode,train")
  c.add_argument("--prompt_len", type=int, default=16)
  c.add_argument("--new_tokens", type=int, default=16)
  c.add_argument("--batches", default="1,8")
  c.add_argument("--hf", action=argparse.BooleanOptionalAction, default=True)
  c.add_argument("--layouts", default=None,
                 help="train: our layer loops timed, LOOP/REMAT (scan|unrolled / none|a "
                      "jax.checkpoint_policies name); ratios are over the first (default: "
                      "scan/nothing_saveable, the default layout, then unrolled/none)")
  v = sub.add_parser("serve", parents=[common], help="server req/s and latency")
  v.add_argument("--clients", default="1,8,32", help="concurrent clients per run")
  v.add_argument("--requests", type=int, default=64, help="requests per run")
  v.add_argument("--new_tokens", type=int, default=16)
  v.add_argument("--max_wait_ms", type=float, default=5.0, help="batcher wait")
  return p.parse_args(argv)


def _train_rates(spec):
  """{res: examples/s} from a train JSON path, or from 'res=path,...'."""
  if not spec:
    return {}
  pairs = [x.split("=", 1) for x in spec.split(",")] if "=" in spec else [(None, spec)]
  out = {}
  for res, path in pairs:
    with open(path) as f:
      r = json.load(f)
    out[int(res or r["config"]["res"])] = max(row["examples_per_s"] for row in r["rows"])
  return out


def run(args):
  """Runs one sub-command; returns (result dict, printed text)."""
  # pylint: disable=import-outside-toplevel
  from big_vision_lite.bench import timing
  from big_vision_lite.bench import train as bt
  shape = dict(batch=args.batch, res=args.res, text_len=args.text_len)
  if args.cmd == "train" and args.loop:
    from big_vision_lite.bench import loop as bl
    remat = args.remat.split(",")[0]
    r = bl.bench_loop(args.model, reps=args.iters, log_every=args.loop_log_every,
                      logs=args.loop_logs, data_dir=args.data_dir,
                      workdir=os.path.join("workdirs", "benchmark", "loop"), remat=remat,
                      compute_dtype=args.dtype, **shape)
    text = [timing.table(f"train() loop vs bare step ({args.model}, overhead = loop / "
                         "bare - 1, median of interleaved runs)",
                         [{k: v for k, v in row.items() if not k.endswith("_times")}
                          for row in r["rows"]])]
  elif args.cmd == "train":
    r = bt.bench_train(args.model, iters=args.iters, remats=args.remat.split(","),
                       scan=args.scan, compute_dtype=args.dtype, xla_check=args.xla_check,
                       peak_n=args.peak_n, jit_check=args.jit_check, **shape)
    text = [timing.table(f"train ({args.model})", r["rows"])]
    if r["xla_check"]:
      text.append(timing.table("FLOPs per step: analytic vs XLA", [r["xla_check"]]))
  elif args.cmd == "decode":
    from big_vision_lite.bench import decode as bd
    r = bd.bench_decode(bt.model_config(args.model), res=args.res, prompt_len=args.prompt_len,
                        new_tokens=args.new_tokens, reps=args.iters, inner=args.inner,
                        batches=[int(b) for b in args.batches.split(",")], with_hf=args.hf,
                        weight_dtypes=args.weights.split(","))
    text = [timing.table(f"decode ({args.model})", r["rows"])]
    if r["ratios"]:
      text.append(timing.table("ours / HF (median of per-pair ratios)",
                               [dict(batch=b, **v) for b, v in r["ratios"].items()]))
    text.append(timing.table("batch-1 latency vs weight-streaming bound",
                             [dict(weights=k, **v) for k, v in r["roofline"].items()]))
    if r["drift"]:
      text.append(timing.table("prefill logits vs float32 weights",
                               [dict(weights=k, **v) for k, v in r["drift"].items()]))
  elif args.cmd == "input":
    from big_vision_lite.bench import input as bi
    r = bi.bench_input(args.data_dir, resolutions=[int(x) for x in args.resolutions.split(",")],
                       batch_size=args.batch, text_len=args.text_len, batches=args.iters,
                       train_examples_per_s=_train_rates(args.train_json))
    text = [timing.table("input pipeline", r["rows"])]
  elif args.cmd == "sharding":
    from big_vision_lite.bench import memory as bm
    r = bm.bench_sharding(args.model, iters=args.iters, jit_check=args.jit_check, **shape)
    text = [timing.table(f"sharding ({args.model}, {jax.device_count()} devices)", r["rows"])]
  elif args.cmd == "compare":
    from big_vision_lite.bench import bv
    r = bv.bench_compare(
        args.big_vision, args.model, batch=args.batch, res=args.res, text_len=args.text_len,
        prompt_len=args.prompt_len, new_tokens=args.new_tokens,
        batches=[int(b) for b in args.batches.split(",")], reps=args.iters, with_hf=args.hf,
        parts=args.parts.split(","), layouts=args.layouts)
    text = []
    if "decode" in r:
      text.append(timing.table(f"decode side by side ({args.model})", r["decode"]["rows"]))
      text.append(timing.table("ours / other (median of per-repetition ratios)", [
          dict(batch=b, other=k, **v) for b, d in r["decode"]["ratios"].items()
          for k, v in d.items()]))
    if "train" in r:
      text.append(timing.table(f"train step side by side ({args.model})", r["train"]["rows"]))
  elif args.cmd == "serve":
    from big_vision_lite.bench import serve as bs
    r = bs.bench_serve(bt.model_config(args.model, remat="none"), res=args.res,
                       clients=[int(c) for c in args.clients.split(",")],
                       requests=args.requests, new_tokens=args.new_tokens, rounds=args.iters,
                       max_wait_ms=args.max_wait_ms)
    text = [timing.table(f"serve ({args.model}, same tokens as sequential: "
                         f"{r['same_tokens']})", r["rows"])]
  elif args.scale:
    from big_vision_lite.bench import memory as bm
    rows = [bm.fit_scale(m, devices=int(d), batch_per_device=args.scale_batch, res=args.res,
                         text_len=args.scale_text_len)["row"]
            for m in args.scale.split(",") for d in args.scale_devices.split(",")]
    r = dict(rows=rows, config=dict(batch_per_device=args.scale_batch, res=args.res,
                                    text_len=args.scale_text_len, remat="nothing_saveable",
                                    compute_dtype="bfloat16", optimizer="adam"))
    text = [timing.table("FSDP per device (GB): f32 master params + Adam, bf16 compute, "
                         "scan + remat; bound = state + f32-compute temp", rows)]
  else:
    from big_vision_lite.bench import memory as bm
    model = "paligemma-3b" if args.model == "bench-small" else args.model
    r, text = {}, []
    if args.remat:
      r["fsdp"] = bm.fit_fsdp(model, batch=args.fsdp_batch, res=args.res,
                              text_len=args.text_len, device_gb=args.device_gb,
                              remats=args.remat.split(","))
      text.append(timing.table(f"{model} FSDP train step per device (Adam, f32 master)",
                               r["fsdp"]["rows"]))
    ft = r["finetune"] = bm.fit_finetune(
        model, batch=args.batch, res=args.res, text_len=args.finetune_text_len,
        device_gb=args.device_gb, compute_dtypes=args.finetune_compute.split(","))
    text.append(timing.table(f"{model} attention-only SGD, one device (fits "
                             f"{args.device_gb} GB: {ft['fits']})", ft["rows"]))
  return r, "\n\n".join(text)


def main(argv=None):
  """Parses the arguments, runs the sub-command, prints its tables, writes its JSON."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.cmd in ("sharding", "memory"):
    devices = args.devices or (max(int(d) for d in args.scale_devices.split(","))
                               if getattr(args, "scale", "") else 8)
    jax.config.update("jax_num_cpu_devices", devices)  # Before any device is used.
  from big_vision_lite.bench import timing  # pylint: disable=import-outside-toplevel
  result, text = run(args)
  path = args.json or os.path.join("workdirs", "benchmark", f"{args.cmd}.json")
  timing.write_json(path, {"command": args.cmd, "args": vars(args), **result})
  print(text)
  print(f"\nJSON: {path}")
  return result


if __name__ == "__main__":
  cli.run(main)
