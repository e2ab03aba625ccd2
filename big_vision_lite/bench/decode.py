"""Decode benchmark: ours (`decode.decode`) vs Hugging Face `generate` on the same weights.

Our random-init params are saved as a big_vision npz, converted with `hf_convert.bv_to_hf`
and loaded by `transformers.PaliGemmaForConditionalGeneration`, so both sides run the
same weights. Each side generates greedily with EOS disabled, once with 1 new token
(prefill) and once with N (prefill + N - 1 decode steps):

  prefill tokens/s = B * (P + prompt) / t(1);  decode tokens/s = B * (N - 1) / (t(N) - t(1))

The two sides alternate within each repetition and the ratio is taken per pair of runs,
so slow drifts of a shared machine affect both sides alike. Batch-1 decoding reads every
decoder weight once per token: its latency is compared with the weight-streaming bound
(decoder weight + KV cache bytes) / (read bandwidth measured in this process).

Weight formats (`--weights float32,bfloat16,int8`, `quantize.quantize_params` of the same
params) alternate with the f32 model and HF; each row reports its rates relative to the
f32 model, the fraction of greedy tokens equal to the f32 model's, and `drift` the
prefill-logit differences against f32.
"""
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from big_vision_lite.bench import timing
from big_vision_lite import checkpoint
from big_vision_lite import decode
from big_vision_lite.bench import flops
from big_vision_lite.hf import convert as hf_convert
from big_vision_lite import quantize
from big_vision_lite.models import paligemma


def make_model(model_cfg, *, res, prompt_len, weight_dtype="float32", seed=0):
  """(model, params) of a random-init PaliGemma; weights cast to `weight_dtype`."""
  model = paligemma.Model(**model_cfg)
  params = jax.jit(lambda r: model.init(
      r, jnp.zeros((1, res, res, 3)), jnp.zeros((1, prompt_len), jnp.int32),
      jnp.zeros((1, prompt_len), jnp.int32))["params"])(jax.random.key(seed))
  return model, jax.tree.map(lambda x: x.astype(weight_dtype), params)


def make_hf(params, workdir):
  """The HF model holding `params` (f32), via npz -> `hf_convert.bv_to_hf`."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  npz, hf_dir = os.path.join(workdir, "params.npz"), os.path.join(workdir, "hf")
  checkpoint.save_params(jax.device_get(params), npz)
  hf_convert.bv_to_hf(npz, hf_dir, dtype="float32")
  return transformers.PaliGemmaForConditionalGeneration.from_pretrained(
      hf_dir, dtype=torch.float32).eval()


def prompts(batch, res, prompt_len, seed=0):
  """Decode inputs: image f32[B, res, res, 3], text/mask_ar/mask_input int32[B, T]."""
  rng = np.random.RandomState(seed)
  return dict(image=rng.uniform(-1, 1, (batch, res, res, 3)).astype(np.float32),
              text=rng.randint(3, 250, (batch, prompt_len)).astype(np.int32),
              mask_ar=np.zeros((batch, prompt_len), np.int32),
              mask_input=np.ones((batch, prompt_len), np.int32))


def ours_fn(model, params, inputs, new_tokens):
  """() -> tokens int32[B, N]: greedy decode with EOS disabled (eos_id -1)."""
  batch = jax.device_put(inputs)
  def run():
    out = decode.decode(model, params, batch, max_decode_len=new_tokens, eos_id=-1)
    return np.asarray(out["tokens"])
  return run


def hf_fn(hf_model, inputs, num_image_tokens, new_tokens):
  """() -> tokens int[B, N] from `hf_model.generate` on the same inputs (greedy)."""
  import torch  # pylint: disable=import-outside-toplevel
  b = inputs["text"].shape[0]
  image_id = hf_model.config.image_token_index
  ids = np.concatenate([np.full((b, num_image_tokens), image_id), inputs["text"]], 1)
  kw = dict(input_ids=torch.as_tensor(ids, dtype=torch.long),
            attention_mask=torch.ones(ids.shape, dtype=torch.long),
            token_type_ids=torch.zeros(ids.shape, dtype=torch.long),
            pixel_values=torch.as_tensor(inputs["image"].transpose(0, 3, 1, 2).copy()))
  def run():
    with torch.inference_mode():
      out = hf_model.generate(**kw, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                              do_sample=False, pad_token_id=0)
    return out[:, ids.shape[1]:].numpy()
  return run


def _rates(t1, tn, batch, prompt_tokens, new_tokens):
  per_token = max(tn - t1, 1e-9) / (new_tokens - 1)
  return dict(prefill_s=t1, prefill_tok_s=batch * prompt_tokens / t1,
              decode_token_s=per_token, decode_tok_s=batch / per_token)


def bench_pair(fns, *, batch, prompt_tokens, new_tokens, reps, inner=1):
  """Alternates the sides of `fns` ({name: (fn_1, fn_n)}, "ours" first) `reps` times.

  Each time is the best of `inner` calls.

  Returns:
    {name: rates (medians)} and "relative": {name: rates of name / rates of "ours"
    (medians of per-repetition ratios)} when "ours" is a side.
  """
  for f1, fn in fns.values():  # Compile / warm up.
    f1()
    fn()
  samples = {name: [] for name in fns}
  for _ in range(reps):
    for name, (f1, fn) in fns.items():
      t1 = timing.time_calls(f1, iters=inner, warmup=0)["min"]
      tn = timing.time_calls(fn, iters=inner, warmup=0)["min"]
      samples[name].append(_rates(t1, tn, batch, prompt_tokens, new_tokens))
  out = {name: {k: float(np.median([s[k] for s in ss])) for k in ss[0]}
         for name, ss in samples.items()}
  if "ours" in samples:
    out["relative"] = {
        name: {k: float(np.median([x[k] / o[k] for x, o in zip(ss, samples["ours"])]))
               for k in ("prefill_tok_s", "decode_tok_s")}
        for name, ss in samples.items() if name != "ours"}
  return out


def logit_drift(model, params, qparams, inputs):
  """Prefill logits of `qparams` vs `params`: relative RMS and max-abs differences."""
  def logits(p):
    batch = dict(inputs, _mask=np.ones((inputs["text"].shape[0],), bool))
    return np.asarray(jax.jit(lambda p, b: decode.prefill(model, p, b, 1)[0])(p, batch))
  ref, got = logits(params), logits(qparams)
  rms = lambda x: float(np.sqrt(np.mean(np.square(x))))
  return dict(rel_rms=rms(got - ref) / rms(ref),
              rel_max=float(np.abs(got - ref).max() / np.abs(ref).max()),
              same_argmax=float(np.mean(got.argmax(-1) == ref.argmax(-1))))


def bench_decode(model_cfg, *, res, prompt_len, new_tokens, batches=(1, 8), reps=3,
                 inner=1, with_hf=True, weight_dtypes=("float32", "bfloat16", "int8"),
                 bandwidth_bytes=256 << 20):
  """The `decode` sub-command: rows per (batch, side, weights) + roofline + drift.

  Weight formats other than float32 are `quantize.quantize_params` of the same params,
  timed in the same alternation as the f32 model and HF.

  Returns:
    dict(rows, ratios {batch: ours/hf}, roofline (batch 1, per weights), drift (per
    weights, vs f32), bandwidth).
  """
  bw = timing.memory_bandwidth(bandwidth_bytes)
  model, params = make_model(model_cfg, res=res, prompt_len=prompt_len)
  n_img = decode.num_image_tokens(model, params, jnp.zeros((1, res, res, 3)))
  prompt_tokens = n_img + prompt_len
  hf_model = None
  if with_hf:
    with tempfile.TemporaryDirectory() as tmp:
      hf_model = make_hf(params, tmp)
  stored = {w: quantize.quantize_params(params, w) for w in weight_dtypes}
  rows, ratios, lat, drift = [], {}, {}, {}
  for b in batches:
    inputs = prompts(b, res, prompt_len)
    fns = {"ours": (ours_fn(model, params, inputs, 1),
                    ours_fn(model, params, inputs, new_tokens))}
    fns.update({f"ours_{w}": (ours_fn(model, p, inputs, 1),
                              ours_fn(model, p, inputs, new_tokens))
                for w, p in stored.items() if w != "float32"})
    if hf_model is not None:
      fns["hf"] = (hf_fn(hf_model, inputs, n_img, 1), hf_fn(hf_model, inputs, n_img,
                                                             new_tokens))
    ref = fns["ours"][1]()
    same = {name: float(np.mean(fn() == ref)) for name, (_, fn) in fns.items()}
    r = bench_pair(fns, batch=b, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                   reps=reps, inner=inner)
    rel = r.pop("relative")
    if "hf" in rel:
      ratios[b] = dict({k: 1 / v for k, v in rel["hf"].items()},
                       same_tokens=same["hf"] == 1.0)
    for name, rates in r.items():
      impl, _, weights = name.partition("_")
      vs = rel.get(name, {"prefill_tok_s": 1.0, "decode_tok_s": 1.0})
      rows.append(dict(batch=b, impl=impl, weights=weights or "float32", **rates,
                       prefill_vs_ours=vs["prefill_tok_s"], decode_vs_ours=vs["decode_tok_s"],
                       same_tokens=same[name]))
      if impl == "ours":
        lat[(weights or "float32", b)] = rates["decode_token_s"]
    if b == batches[0]:
      drift = {w: logit_drift(model, params, p, inputs)
               for w, p in stored.items() if w != "float32"}
  roof = {}
  for (dtype, b), seconds in lat.items():
    if b != 1:
      continue
    nbytes = flops.decode_bytes(model_cfg, res=res, prompt_len=prompt_len,
                                step=new_tokens // 2, batch=1,
                                weight_bytes=jnp.dtype(dtype).itemsize,
                                cache_bytes=jnp.dtype(decode.default_cache_dtype()).itemsize)
    bound = nbytes["total"] / bw["bytes_per_s"]
    roof[dtype] = dict(latency_ms=seconds * 1e3, bound_ms=bound * 1e3,
                       latency_over_bound=seconds / bound, bytes_mb=nbytes["total"] / 2**20)
  if "float32" in roof:  # A format streaming fewer bytes can beat the f32 bound.
    for r in roof.values():
      r["latency_over_f32_bound"] = r["latency_ms"] / roof["float32"]["bound_ms"]
  return dict(rows=rows, ratios={str(k): v for k, v in ratios.items()}, roofline=roof,
              drift=drift, bandwidth=bw,
              config=dict(res=res, prompt_len=prompt_len, new_tokens=new_tokens,
                          image_tokens=n_img))
