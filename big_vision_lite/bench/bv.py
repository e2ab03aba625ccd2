"""Side by side in one process: ours vs big_vision's PaliGemma vs HF, on the same weights.

big_vision is not a dependency: its source tree is given by path (a checkout of
google-research/big_vision) and imported from there at run time. Its PaliGemma imports
need absl-py, einops, scipy, orbax-checkpoint and tensorflow (for `tf.io.gfile`), all
already in requirements.txt (tensorflow is the heavy one, ~1 GB installed).

Same weights: our random-init params are written as a big_vision npz (the LLM layers
stacked, as big_vision's scanned Gemma keeps them) and read back by big_vision's own
`paligemma.load`; HF gets the same npz through `hf_convert.bv_to_hf`. The run checks
that the three compute the same logits and generate the same greedy tokens.

big_vision's Gemma is built from a variant name only; the bench shapes are not among
its variants, so while its models are traced `gemma.get_config` is patched to answer
one extra name ("bench") with our decoder sizes. Its decode loop is its own
`predict_fns` (prefill, then one jitted extend per token with a host-side EOS check);
its train step is its trainer's update (loss on the suffix with one-hot targets,
`jax.value_and_grad`, the optax update; state donated), with optax Adam at our lr.

Timing alternates the sides within each repetition; every ratio is the median of
per-repetition ratios (ours / other), so a shared machine's load drifts hit all alike.
"""
import contextlib
import importlib
import os
import sys
import tempfile
import time
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from big_vision_lite.bench import decode as bd
from big_vision_lite.bench import timing
from big_vision_lite.bench import train as bt
from big_vision_lite import checkpoint
from big_vision_lite import decode
from big_vision_lite.bench import flops
from big_vision_lite.models import gemma
from big_vision_lite.models import vit

_VARIANT = "bench"
_MODULES = dict(paligemma="big_vision.models.proj.paligemma.paligemma",
                gemma="big_vision.models.ppp.gemma",
                predict_fns="big_vision.trainers.proj.paligemma.predict_fns")


def import_big_vision(path):
  """Imports big_vision's PaliGemma modules from the source tree at `path`.

  Returns:
    dict(paligemma, gemma, predict_fns) of modules.
  """
  marker = os.path.join(path, "big_vision", "models", "proj", "paligemma", "paligemma.py")
  if not os.path.isfile(marker):
    raise FileNotFoundError(f"--big_vision {path!r} is not a big_vision checkout: "
                            f"{marker} is missing. Pass the folder that contains "
                            "big_vision/ (git clone google-research/big_vision).")
  if path not in sys.path:
    sys.path.insert(0, path)
  try:
    return {k: importlib.import_module(m) for k, m in _MODULES.items()}
  except ModuleNotFoundError as e:
    raise ModuleNotFoundError(f"big_vision's PaliGemma needs {e.name!r}, which is not "
                              f"installed; pip install it (it needs: absl-py, einops, "
                              "scipy, orbax-checkpoint, tensorflow).") from e


@contextlib.contextmanager
def bench_variant(bv, llm_cfg):
  """Makes big_vision's `gemma.get_config("bench")` return our decoder's sizes."""
  original = bv["gemma"].get_config
  sizes = {k: llm_cfg[k] for k in ("width", "depth", "mlp_dim", "num_heads",
                                   "num_kv_heads", "head_dim", "norm_eps", "vocab_size")}

  def get_config(variant):
    if variant != _VARIANT:
      return original(variant)
    return ml_collections.ConfigDict(dict(variant=variant, scan=True,
                                          remat_policy="nothing_saveable", **sizes))
  with mock.patch.object(bv["gemma"], "get_config", get_config):
    yield


def bv_config(model_cfg, *, scan=True, remat="nothing_saveable"):
  """big_vision's paligemma.Model kwargs for our `model_cfg` (its transfer defaults).

  big_vision's PaliGemma transfers scan both towers with remat "nothing_saveable"; its
  Gemma decodes only when scanned, so the LLM is always scanned.
  """
  v = vit.Model(**{k: x for k, x in model_cfg["img"].items()
                   if k in ("variant", "width", "depth", "mlp_dim", "num_heads",
                            "patch_size")}).cfg
  arch = gemma.ARCH_KEYS
  l = gemma.Model(**{k: x for k, x in model_cfg["llm"].items()
                     if k in arch or k == "variant"}).cfg
  if l["post_norms"] or l["attn_logits_softcap"] or l["final_logits_softcap"]:
    raise ValueError("The side-by-side benchmark covers Gemma-1-style decoders only.")
  img = dict(width=v["width"], depth=v["depth"], mlp_dim=v["mlp_dim"],
             num_heads=v["num_heads"], patch_size=tuple(v["patch_size"]),
             pool_type="none", scan=scan, remat_policy=remat)
  llm = dict(variant=_VARIANT, vocab_size=l["vocab_size"], scan=True, remat_policy=remat,
             cache_dtype=decode.default_cache_dtype())
  # Frozen (hashable) configs: big_vision's predict_fns pass the model as a static arg.
  return dict(img_model="vit", img=ml_collections.FrozenConfigDict(img),
              llm_model="proj.paligemma.gemma_bv",
              llm=ml_collections.FrozenConfigDict(llm)), l


def load_bv(bv, bv_cfg, params, *, res, text_len, workdir):
  """(big_vision model, its params): our `params` through big_vision's own loader."""
  model = bv["paligemma"].Model(**bv_cfg)
  shapes = jax.eval_shape(lambda r: model.init(
      r, jnp.zeros((1, res, res, 3)), jnp.zeros((1, text_len), jnp.int32),
      jnp.zeros((1, text_len), jnp.int32))["params"], jax.random.key(0))
  init = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes["llm"])
  llm = gemma.load(init, jax.device_get(params["llm"]))
  npz = os.path.join(workdir, "bv_params.npz")
  checkpoint.save_params({"img": jax.device_get(params["img"]), "llm": llm}, npz)
  loaded = bv["paligemma"].load(shapes, npz, ml_collections.ConfigDict(bv_cfg))
  got, want = jax.tree.structure(loaded), jax.tree.structure(shapes)
  if got != want:
    raise ValueError(f"big_vision's loader returned a tree {got} unlike its model's {want}.")
  return model, jax.tree.map(jnp.asarray, loaded)


def same_logits(model, params, bv_model, bv_params, batch):
  """Max |ours - big_vision| of the training forward's text logits."""
  args = (batch["image"], batch["text"], batch["mask_ar"])
  ours = jax.jit(lambda p: model.apply({"params": p}, *args)[0])(params)
  theirs = jax.jit(lambda p: bv_model.apply({"params": p}, *args)[0])(bv_params)
  return float(jnp.max(jnp.abs(ours - theirs)))


def bv_decode_fn(bv, bv_model, bv_params, inputs, new_tokens):
  """() -> tokens int32[B, N] from big_vision's greedy `predict_fns` decode (no EOS)."""
  decode_fn = bv["predict_fns"].get_all(bv_model)["decode"]
  b = inputs["text"].shape[0]
  batch = jax.device_put(dict(inputs, _mask=np.ones((b,), bool)))
  state = {"params": bv_params}
  def run():
    return np.asarray(decode_fn(state, batch, devices=np.asarray(jax.devices()[:1]),
                                max_decode_len=new_tokens, eos_token=-1))
  return run


def bench_decode(bv, model_cfg, *, res, prompt_len, new_tokens, batches, reps, with_hf,
                 workdir):
  """Prefill / decode tokens/s of ours, big_vision and HF (`bench.decode` rates)."""
  bv_cfg, _ = bv_config(model_cfg)
  model, params = bd.make_model(model_cfg, res=res, prompt_len=prompt_len)
  bv_model, bv_params = load_bv(bv, bv_cfg, params, res=res, text_len=prompt_len,
                                workdir=workdir)
  n_img = decode.num_image_tokens(model, params, jnp.zeros((1, res, res, 3)))
  hf_model = bd.make_hf(params, workdir) if with_hf else None
  logit_diff = same_logits(model, params, bv_model, bv_params, bd.prompts(2, res, prompt_len))
  rows, ratios = [], {}
  for b in batches:
    inputs = bd.prompts(b, res, prompt_len)
    fns = {"ours": (bd.ours_fn(model, params, inputs, 1),
                    bd.ours_fn(model, params, inputs, new_tokens)),
           "big_vision": (bv_decode_fn(bv, bv_model, bv_params, inputs, 1),
                          bv_decode_fn(bv, bv_model, bv_params, inputs, new_tokens))}
    if hf_model is not None:
      fns["hf"] = (bd.hf_fn(hf_model, inputs, n_img, 1),
                   bd.hf_fn(hf_model, inputs, n_img, new_tokens))
    ref = fns["ours"][1]()
    same = {name: bool(np.array_equal(fn(), ref)) for name, (_, fn) in fns.items()}
    r = bd.bench_pair(fns, batch=b, prompt_tokens=n_img + prompt_len,
                      new_tokens=new_tokens, reps=reps)
    rel = r.pop("relative")
    for name, rates in r.items():
      rows.append(dict(batch=b, impl=name, **rates, same_tokens=same[name]))
    ratios[str(b)] = {f"ours_over_{name}": {k: 1 / v for k, v in rr.items()}
                      for name, rr in rel.items()}
  return dict(rows=rows, ratios=ratios, image_tokens=n_img,
              max_abs_logit_diff_vs_big_vision=logit_diff)


def _bv_update(bv_model, tx):
  """big_vision's trainer update: suffix loss with one-hot targets, optax step, donated."""
  def loss_fn(params, batch):
    logits, _ = bv_model.apply({"params": params}, batch["image"], batch["text"][:, :-1],
                               batch["mask_ar"][:, :-1], train=True)
    targets = jax.nn.one_hot(batch["text"][:, 1:], logits.shape[-1])
    token_ll = jnp.sum(jax.nn.log_softmax(logits, -1) * targets, -1)
    w = batch["mask_loss"][:, 1:]
    per_ex = -jnp.sum(token_ll * w, -1) / jnp.clip(jnp.sum(w, -1), 1)
    return jnp.mean(per_ex)

  def update(state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch)
    updates, opt = tx.update(grads, state["opt"], state["params"])
    return {"params": optax.apply_updates(state["params"], updates), "opt": opt}, loss
  return jax.jit(update, donate_argnums=(0,))


def _hf_runner(hf_model, batch, n_img, lr):
  """HF train step: forward with logits_to_keep (suffix rows only), same loss, Adam."""
  import torch  # pylint: disable=import-outside-toplevel
  text, ar, w = (np.asarray(batch[k]) for k in ("text", "mask_ar", "mask_loss"))
  b, t = text.shape
  ids = np.concatenate([np.full((b, n_img), hf_model.config.image_token_index),
                        text[:, :-1]], 1)
  kw = dict(input_ids=torch.as_tensor(ids, dtype=torch.long),
            attention_mask=torch.ones(ids.shape, dtype=torch.long),
            token_type_ids=torch.as_tensor(np.concatenate(
                [np.zeros((b, n_img)), ar[:, :-1]], 1), dtype=torch.long),
            pixel_values=torch.as_tensor(np.asarray(batch["image"]).transpose(0, 3, 1, 2).copy()),
            logits_to_keep=t - 1)
  targets = torch.as_tensor(text[:, 1:], dtype=torch.long)
  weights = torch.as_tensor(w[:, 1:], dtype=torch.float32)
  hf_model.train()
  opt = torch.optim.Adam(hf_model.parameters(), lr=lr)
  box = {}

  def one():
    logits = hf_model(**kw).logits.float()
    ll = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    loss = (-(ll * weights).sum(-1) / weights.sum(-1).clamp(min=1)).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    box["loss"] = loss.item()
  return one, box


def parse_layouts(text):
  """"scan/nothing_saveable,unrolled/none" -> [(scan bool, remat policy str), ...]."""
  layouts = []
  for item in text.split(","):
    loop_name, _, remat = item.strip().partition("/")
    if loop_name not in ("scan", "unrolled") or not remat or (
        remat != "none" and not hasattr(jax.checkpoint_policies, remat)):
      raise ValueError(f"--layouts item {item!r} is not LOOP/REMAT: LOOP is scan or unrolled, "
                       "REMAT is none or a jax.checkpoint_policies name (e.g. "
                       "scan/nothing_saveable).")
    layouts.append((loop_name == "scan", remat))
  if len(set(layouts)) != len(layouts):
    raise ValueError(f"--layouts {text!r} names a layout twice.")
  return layouts


def layout_name(scan, remat):
  return f"ours_{'scan' if scan else 'unrolled'}/{remat}"


def bench_train(bv, model_name, *, batch, res, text_len, reps, with_hf, workdir,
                layouts=((True, "nothing_saveable"), (False, "none"))):
  """Train-step seconds of ours (each (scan, remat policy) in `layouts`), big_vision, HF.

  The ViT applies its remat policy only when scanned (as big_vision's ViT); the Gemma
  decoder applies it either way.

  Returns:
    dict(rows (per side: step_s median, over_first: median per-repetition step-time
    ratio side / the first layout, first_step_s incl. compile, first-step loss),
    host_peak_rss_mb of the process).
  """
  runners, rows = {}, {}
  for scan, remat in layouts:
    name = layout_name(scan, remat)
    step = bt.make_train_step(bt.model_config(model_name, scan=scan, remat=remat),
                              batch=batch, res=res, text_len=text_len)
    one, finish = bt.make_runner(step, res=res, text_len=text_len)
    t0 = time.perf_counter()
    one()
    rows[name] = dict(first_step_s=time.perf_counter() - t0, loss_0=finish(False)["loss"])
    runners[name] = one
    if (scan, remat) == layouts[0]:  # Same init as the runner's, in the first layout.
      params = bt.init_state(step, res, text_len)["params"]
  model_cfg = bt.model_config(model_name, scan=layouts[0][0])
  bv_cfg, _ = bv_config(model_cfg)
  bv_model, bv_params = load_bv(bv, bv_cfg, params, res=res, text_len=text_len - 1,
                                workdir=workdir)
  data = bt.fake_batch(batch, res, text_len)
  tx = optax.adam(bt.ADAM["lr"])
  bv_state = {"params": bv_params, "opt": tx.init(bv_params)}
  bv_step = _bv_update(bv_model, tx)
  box = {"state": bv_state}

  def bv_one():
    box["state"], box["loss"] = bv_step(box["state"], data)
    jax.block_until_ready(box["loss"])
  t0 = time.perf_counter()
  bv_one()
  rows["big_vision"] = dict(first_step_s=time.perf_counter() - t0, loss_0=float(box["loss"]))
  runners["big_vision"] = bv_one
  if with_hf:
    hf_model = bd.make_hf(params, workdir)
    n_img = flops.dims(model_cfg, res)["patches"]
    hf_one, hf_box = _hf_runner(hf_model, data, n_img, bt.ADAM["lr"])
    t0 = time.perf_counter()
    hf_one()
    rows["hf"] = dict(first_step_s=time.perf_counter() - t0, loss_0=hf_box["loss"])
    runners["hf"] = hf_one
  times = {name: [] for name in runners}
  for _ in range(reps):
    for name, one in runners.items():
      times[name].append(timing.time_calls(one, iters=1, warmup=0)["min"])
  base = np.asarray(times[layout_name(*layouts[0])])
  out_rows = [dict(impl=name, step_s=float(np.median(ts)),
                   over_first=float(np.median(np.asarray(ts) / base)), **rows[name])
              for name, ts in times.items()]
  return dict(rows=out_rows, host_peak_rss_mb=timing.host_rss()["peak_rss_bytes"] / 2**20)


def bench_compare(big_vision_path, model_name, *, batch, res, text_len, prompt_len,
                  new_tokens, batches, reps, with_hf=True, parts=("decode", "train"),
                  layouts=None):
  """The `compare` sub-command: decode and train side by side (see module docstring).

  Our decode runs the default layout (`bench.train.DEFAULT_LAYOUT`, scanned); the train
  step runs each of `layouts` ("LOOP/REMAT,...", default: the default layout, then
  unrolled layers without remat).
  """
  layouts = parse_layouts(layouts or "scan/nothing_saveable,unrolled/none")
  bv = import_big_vision(big_vision_path)
  model_cfg = bt.model_config(model_name)
  _, llm_cfg = bv_config(model_cfg)
  out = {"load_avg_start": os.getloadavg()}
  with bench_variant(bv, llm_cfg), tempfile.TemporaryDirectory() as tmp:
    if "decode" in parts:
      out["decode"] = bench_decode(bv, model_cfg, res=res, prompt_len=prompt_len,
                                   new_tokens=new_tokens, batches=batches, reps=reps,
                                   with_hf=with_hf, workdir=tmp)
    if "train" in parts:
      out["train"] = bench_train(bv, model_name, batch=batch, res=res, text_len=text_len,
                                 reps=reps, with_hf=with_hf, workdir=tmp, layouts=layouts)
  out["load_avg_end"] = os.getloadavg()
  return out
