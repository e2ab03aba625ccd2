"""Smoke tests of every `tools/benchmark.py` sub-command on the micro model, and flops."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from big_vision_lite.bench import train as bt
from big_vision_lite.bench import flops
from tools import benchmark

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--model", "micro", "--batch", "8", "--res", "28", "--text_len", "8", "--iters", "1"]


def _run(tmp_path, cmd, *extra):
  path = str(tmp_path / f"{cmd}.json")
  result = benchmark.main([cmd, *SMALL, "--json", path, *extra])
  with open(path) as f:
    written = json.load(f)
  assert written["command"] == cmd and written["machine"]["cpus"] >= 1
  return result


def test_train_rates_mfu_and_flops_cross_check(tmp_path, capsys):
  r = _run(tmp_path, "train", "--remat", "none", "--peak_n", "256")
  (row,) = r["rows"]
  assert row["steps_per_s"] > 0 and 0 < row["mfu"] < 1.5
  assert row["compiles"] == 1 and row["donated"] and np.isfinite(row["loss"])
  check = r["xla_check"]
  # Unrolled XLA count ~ analytic (plus elementwise ops); the scanned one counts one layer.
  assert 0.95 < check["unrolled_over_analytic"] < 1.3
  assert check["scanned_over_analytic"] < check["unrolled_over_analytic"]
  assert "| remat |" in capsys.readouterr().out


def test_decode_matches_hf_and_reports_ratios(tmp_path):
  r = _run(tmp_path, "decode", "--prompt_len", "4", "--new_tokens", "3", "--batches", "1",
           "--weights", "float32")
  assert set(r["ratios"]) == {"1"}
  assert all(v["same_tokens"] and v["decode_tok_s"] > 0 for v in r["ratios"].values())
  assert r["roofline"]["float32"]["latency_over_bound"] > 0


def test_input_rates(tmp_path):
  train = tmp_path / "train.json"
  train.write_text(json.dumps({"config": {"res": 28}, "rows": [{"examples_per_s": 10.0}]}))
  r = _run(tmp_path, "input", "--resolutions", "28", "--data_dir", str(tmp_path / "d"),
           "--train_json", str(train))
  (row,) = r["rows"]
  assert row["examples_per_s"] > 0 and row["input_over_train"] == row["examples_per_s"] / 10


@pytest.mark.slow  # 8 simulated devices, two plans: ~25 s of CPU.
def test_sharding_fsdp_holds_an_eighth(tmp_path):
  r = _run(tmp_path, "sharding", "--no-jit_check")
  fsdp, repl = r["rows"]
  assert fsdp["plan"] == "fsdp" and fsdp["devices"] == 8
  assert fsdp["state_mb"] < repl["state_mb"] / 4 and fsdp["step_s"] > 0


@pytest.mark.slow  # Three compiles on 8 simulated devices.
def test_memory_fit_and_finetune_estimate(tmp_path):
  r = _run(tmp_path, "memory", "--fsdp_batch", "8", "--remat", "nothing_saveable",
           "--finetune_text_len", "8", "--finetune_compute", "bfloat16")
  assert all(row["fits"] for row in r["fsdp"]["rows"])
  ft = r["finetune"]
  assert ft["fits"] == {"bfloat16": True, "bound": True}
  # The bound: the recipe's compiled arguments (bf16 frozen) + an all-f32 compile's temp.
  recipe, ref = ft["compiled"]["bfloat16"], ft["compiled"]["f32_weights"]
  assert ref["argument"] > recipe["argument"]
  assert ft["bound"] == recipe["argument"] + recipe["output"] - recipe["alias"] + ref["temp"]
  est = r["finetune"]["estimate"]
  assert est["n_trainable"] > 0 and est["opt_state"] == 0
  assert est["grads"] == 4 * est["n_trainable"]


@pytest.mark.slow  # Two short train() runs and two bare steps, micro model (1.5-2.5 min loaded).
def test_train_loop_overhead_reports_both_variants(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)  # The runs' scratch workdirs go under ./workdirs.
  r = benchmark.main(["train", *SMALL[:-4], "--text_len", "24", "--iters", "1", "--loop",
                      "--loop_log_every", "2", "--loop_logs", "2", "--data_dir",
                      str(tmp_path / "data"), "--json", str(tmp_path / "loop.json")])
  assert [row["variant"] for row in r["rows"]] == ["full", "lora"]
  for row in r["rows"]:
    assert row["loop_step_s"] > 0 and row["bare_step_s"] > 0
    assert row["overhead"] == pytest.approx(row["loop_step_s"] / row["bare_step_s"] - 1)
    assert 0 < row["host_cpu_ms"] < 1e3 * row["loop_step_s"] * 10
    assert row["host_cpu_frac"] == pytest.approx(
        row["cpu_times"][0] / row["loop_times"][0])
  out = capsys.readouterr().out
  assert "| variant | loop_step_s | bare_step_s | overhead | host_cpu_ms | host_cpu_frac |" in out


@pytest.mark.slow  # Compiles PaliGemma 2 10B's init and FSDP step for 16 devices (~40 s).
def test_memory_scale_10b_fits_16_devices(tmp_path):
  path = tmp_path / "scale.json"
  subprocess.run([sys.executable, "-m", "tools.benchmark", "memory", "--scale",
                  "paligemma2-10b", "--scale_devices", "16", "--json", str(path)],
                 check=True, cwd=_ROOT, capture_output=True, timeout=600)
  (row,) = json.loads(path.read_text())["rows"]
  assert row["devices"] == 16 and 9.5 < row["params_b"] < 9.8
  # FSDP: each device holds 1/16 of the f32 params + Adam mu, nu (12 bytes per param),
  # up to 0.1% (small leaves that do not divide by 16 stay whole).
  assert row["state_gb"] == pytest.approx(12 * row["params_b"] / 16, rel=1e-3)
  assert row["params_gb"] == pytest.approx(4 * row["params_b"] / 16, rel=1e-3)
  # The compiled peaks and the f32-temp bound (see fit_scale) fit 16 GB.
  assert row["state_gb"] < row["bound_gb"] <= row["peak_gb"] < 16
  assert row["init_peak_gb"] <= row["peak_gb"] and row["step_peak_gb"] < 16
  assert row["fits_16gb"] and row["fits_32gb"]


def test_train_flops_match_parameter_count():
  """Matmul FLOPs per token of the decoder = 2 x its matmul params (eval_shape count)."""
  cfg = bt.model_config("bench-small")
  shapes = flops.param_shapes(cfg, res=224)
  n_layers = flops.count(shapes, lambda k: k.startswith("llm/layers/") and "norm" not in k)
  f = flops.train_flops(cfg, res=224, text_len=32, batch=1)
  assert f["llm_matmul"] == 2 * (256 + 31) * n_layers
  n_vit = flops.count(shapes, lambda k: "encoderblock" in k and k.endswith("kernel"))
  assert f["vit_matmul"] == 2 * 256 * n_vit
  assert jax.tree.leaves(shapes)[0].dtype == np.float32


def test_decode_bytes_halve_with_bf16_weights():
  cfg = bt.model_config("bench-small")
  kw = dict(res=224, prompt_len=16, step=0, batch=1, cache_bytes=4)
  f32 = flops.decode_bytes(cfg, weight_bytes=4, **kw)
  bf16 = flops.decode_bytes(cfg, weight_bytes=2, **kw)
  assert bf16["weights"] * 2 == f32["weights"] and bf16["kv_cache"] == f32["kv_cache"]
  # Decoder layers + the (tied) embedding: 6 * 3.74M + 32768 * 512 params.
  assert abs(f32["weights"] / 4 - (6 * 3_735_552 + 32768 * 512)) < 10_000


def test_model_config_default_layout():
  # Unset scan / remat take DEFAULT_LAYOUT (both towers); explicit values win.
  cfg = bt.model_config("micro")
  for tower in ("img", "llm"):
    assert (cfg[tower]["scan"], cfg[tower]["remat_policy"]) == (
        bt.DEFAULT_LAYOUT["scan"], bt.DEFAULT_LAYOUT["remat"])
  cfg = bt.model_config("micro", scan=False, remat="none")
  assert (cfg["img"]["scan"], cfg["llm"]["remat_policy"]) == (False, "none")


# A google-research/big_vision checkout (its root folder), when the runner has one.
_BIG_VISION = os.environ.get("BIG_VISION_SRC", "")


def test_compare_rejects_a_folder_without_big_vision(tmp_path):
  with pytest.raises(FileNotFoundError, match="is not a big_vision checkout"):
    benchmark.main(["compare", *SMALL, "--big_vision", str(tmp_path),
                    "--json", str(tmp_path / "c.json")])


@pytest.mark.parametrize("layouts, match", [
    ("scan", "is not LOOP/REMAT"), ("loop/none", "is not LOOP/REMAT"),
    ("scan/nothing_savable", "is not LOOP/REMAT"), ("scan/none,scan/none", "twice")])
def test_compare_rejects_bad_layouts(tmp_path, layouts, match):
  with pytest.raises(ValueError, match=match):
    benchmark.main(["compare", *SMALL, "--big_vision", str(tmp_path), "--layouts", layouts,
                    "--json", str(tmp_path / "c.json")])


@pytest.mark.slow  # Compiles ours, big_vision's and HF's micro models (~1 min).
@pytest.mark.skipif(not os.path.isdir(os.path.join(_BIG_VISION, "big_vision")),
                    reason="set BIG_VISION_SRC to a big_vision checkout to run big_vision beside ours")
def test_compare_same_weights_as_big_vision_and_hf(tmp_path):
  r = _run(tmp_path, "compare", "--big_vision", _BIG_VISION, "--prompt_len", "4",
           "--new_tokens", "3", "--batches", "1", "--layouts",
           "unrolled/nothing_saveable,scan/none")
  dec = r["decode"]
  assert dec["max_abs_logit_diff_vs_big_vision"] < 1e-5
  assert {row["impl"] for row in dec["rows"]} == {"ours", "big_vision", "hf"}
  assert all(row["same_tokens"] for row in dec["rows"])
  assert set(dec["ratios"]["1"]) == {"ours_over_big_vision", "ours_over_hf"}
  rows = {row["impl"]: row for row in r["train"]["rows"]}
  # Same init and batch: the first-step losses of ours (default layout), big_vision, HF.
  assert set(rows) == {"ours_unrolled/nothing_saveable", "ours_scan/none", "big_vision", "hf"}
  assert rows["ours_unrolled/nothing_saveable"]["over_first"] == 1.0
  ours = rows["ours_unrolled/nothing_saveable"]["loss_0"]
  assert np.isfinite(rows["ours_scan/none"]["loss_0"])  # Its own init (other layout).
  assert abs(rows["big_vision"]["loss_0"] - ours) < 1e-4
  assert abs(rows["hf"]["loss_0"] - ours) < 1e-4
  assert all(row["step_s"] > 0 for row in rows.values())
