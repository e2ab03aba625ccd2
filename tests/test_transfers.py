"""Transfer configs: each builds, and runs 1 step + its evals on the shapes data.

`mock_config` (tests/transfer_fixtures.py) maps a config onto the shapes data. The mock
runs share one tiny model shape, res and text_len; the optimizer numbers
(compile-time constants of the update step) are set to shared values here so that XLA
compilations are reused through a persistent compilation cache enabled for this module
only. The configs' own numbers are checked by the build tests.
"""
import ast
import importlib.util
import os
import re
import shutil

import jax
import numpy as np
import pytest

from big_vision_lite import train
from big_vision_lite.evaluators import common as eval_common
from big_vision_lite.pp import builder
from tests.transfer_fixtures import get_config
from tests.transfer_fixtures import mock_config
from tests.transfer_fixtures import mock_dir, xla_cache  # noqa: F401 pylint: disable=unused-import
from transfers import common

TASKS = ("ai2d", "aokvqa_da", "aokvqa_mc", "chartqa", "coco35l", "cococap", "detection",
         "docvqa", "gqa", "infovqa", "nlvr2", "ocrvqa", "okvqa", "pope", "refcoco_seg",
         "rsvqa_hr", "rsvqa_lr", "science_qa", "screen2words", "stvqa", "tallyqa",
         "textcaps", "textvqa", "vqav2", "widgetcap")
CONFIGS = ("forkme",) + TASKS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Shared optimizer numbers for the mock runs (one compilation of the update step; LLM
# dropout is set to 0 for the same reason).
SHARED = dict(lr=1e-3, wd=0.0, label_smoothing=0.0, optax=dict(b2=0.999))


def _evals(c):
  return {name: dict(ev) for name, ev in c.evals.items()}


@pytest.mark.parametrize("name", CONFIGS)
def test_real_config_builds(name):
  c = get_config(name, "")
  assert c.input.batch_size > 0
  assert sum(k in c for k in ("total_steps", "total_epochs", "total_examples")) == 1
  assert c.model_name == "paligemma" and c.model.llm.vocab_size == common.PALIGEMMA_VOCAB
  assert str(c.model_init).endswith(".npz") and c.tokenizer.endswith(".model")
  assert c.sharding_strategy == [(".*", "fsdp(axis='data')")]
  assert c.evals
  for ev in _evals(c).values():
    eval_common._evaluator_module(ev["type"])  # pylint: disable=protected-access
    assert "combine_and_keep" in ev["pp_fn"]
  big = get_config(name, "size=9b,res=448,ckpt_dir=/ckpts")
  assert big.model.llm.variant == "gemma2_9b" and big.model.img.variant == "So400m/14"
  assert big.model_init.startswith("/ckpts/paligemma2-10b-pt-448")


@pytest.mark.parametrize("name", CONFIGS)
def test_mock_config_pp_strings_resolve(name, mock_dir):
  c = mock_config(name, mock_dir)
  assert c.total_steps == (0 if name == "pope" else 1)
  assert c.model.llm.variant == "gemma_tiny" and len(c.evals) == 1
  sources = [c.input] if "name" in c.input.data else [c.input[k] for k in c.input.data]
  for s in sources:
    assert s.data.name == "shapes"
    builder.get_preprocess_fn(s.get("pp", c.input.get("pp")))
  for ev in _evals(c).values():
    builder.get_preprocess_fn(ev["pp_fn"])


# (train, eval) `resize(..., antialias=True)` in big_vision's PaliGemma transfer recipes
# (big_vision/configs/proj/paligemma/transfers/*.py); its resize does not antialias
# unless asked. Detection has no reference recipe and follows the RefCOCO one.
REFERENCE_ANTIALIAS = {
    "ai2d": (True, False), "aokvqa_da": (True, True), "aokvqa_mc": (True, True),
    "chartqa": (True, True), "coco35l": (False, False), "cococap": (False, False),
    "detection": (False, False), "docvqa": (True, True), "forkme": (True, True),
    "gqa": (False, False), "infovqa": (True, True), "nlvr2": (False, False),
    "ocrvqa": (True, True), "okvqa": (True, True), "pope": (False, False),
    "refcoco_seg": (False, False), "rsvqa_hr": (True, False), "rsvqa_lr": (True, False),
    "science_qa": (False, False), "screen2words": (False, False), "stvqa": (True, True),
    "tallyqa": (True, True), "textcaps": (False, False), "textvqa": (True, True),
    "vqav2": (True, True), "widgetcap": (True, True),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_pp_follows_reference_recipe(name):
  """Resize antialiasing per task as big_vision's recipe; train rows of text_len + 1
  tokens (the trainer drops one), eval rows of text_len; eval never prompts with the
  data's suffix."""
  c = get_config(name, "")
  train_aa, eval_aa = REFERENCE_ANTIALIAS[name]
  sources = [c.input] if "name" in c.input.data else [c.input[k] for k in c.input.data]
  pps = [s.get("pp", c.input.get("pp")) for s in sources]
  for ev in _evals(c).values():
    pps.append(ev["pp_fn"])
    if ev["type"] != "perplexity":
      assert ("antialias=True" in ev["pp_fn"]) == eval_aa, ev["pp_fn"]
      assert "suffix=None" in ev["pp_fn"]
      text_len = int(re.search(r"combine_and_keep_eval\((\d+)", ev["pp_fn"])[1])
      assert ev["pred_kw"]["max_decode_len"] == text_len
  for pp in pps[:len(sources)]:
    assert ("antialias=True" in pp) == train_aa, pp
    assert int(re.search(r"combine_and_keep_train\((\d+)", pp)[1]) == text_len + 1
  assert "resize(" in pps[0]


@pytest.mark.parametrize("name", ["vqav2", "textvqa"])
def test_vqav2_style_evals_normalise_like_big_vision(name):
  """In-training splits are scored as big_vision logs them (README: VQAv2 normalisation)."""
  evals = [ev for ev in _evals(get_config(name, "")).values() if ev["type"] == "vqav2"]
  assert evals and all(ev["normalize"] == "big_vision" for ev in evals)


@pytest.mark.parametrize("size,softcap", [("3b", None), ("2b", 0.0), ("27b", 0.0)])
def test_paligemma2_transfers_turn_final_softcap_off(size, softcap):
  """big_vision's transfers set final_logits_softcap=0.0 for PaliGemma 2."""
  c = get_config("vqav2", f"size={size}")
  assert c.model.llm.get("final_logits_softcap") == softcap


def test_bad_args_are_rejected():
  with pytest.raises(ValueError, match="size='4b' is unknown"):
    get_config("vqav2", "size=4b")
  with pytest.raises(ValueError, match="Unknown config arg 'mode'"):
    get_config("vqav2", "mode=mock")  # The shapes mapping lives in the tests only.
  with pytest.raises(ValueError, match="Unknown config arg 'rez'"):
    get_config("vqav2", "rez=448")


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.usefixtures("xla_cache")
def test_mock_one_step_and_evals(name, mock_dir, tmp_path):
  c = mock_config(name, mock_dir)
  if c.optax_name != "identity":
    c.update(SHARED)
  c.model.llm.dropout = 0.0  # A compile-time constant of the update step too.
  out = train.train(c, str(tmp_path))
  assert out["step"] == c.total_steps
  assert all(np.isfinite(v) for v in out["losses"].values())
  for ev in c.evals:
    assert any(k.startswith(f"{ev}/") for k in out["evals"]), (ev, sorted(out["evals"]))


def test_forkme_defaults_and_options():
  c = get_config("forkme", "")
  assert c.input.data.fname == "data/train.jsonl" and "ensure_shapes" not in c
  assert c.model_init == "ckpts/paligemma-3b-pt-224.npz"
  assert c.tokenizer == "ckpts/paligemma_tokenizer.model"
  assert {ev.data.fname for ev in c.evals.values()} == {"data/val.jsonl"}
  assert set(c.evals) == {"val/pplx", "val/store"}
  own = get_config("forkme", "train=/d/t.jsonl,val=none,prompt=answer en {question},lora=8")
  assert own.input.data.fname == "/d/t.jsonl" and not own.evals
  assert "strfmt('answer en {question}', outkey='prefix')" in own.input.pp
  assert own.lora.rank == 8 and own.schedule[1][0] == "llm/.*" and own.schedule[1][1]
  frozen = get_config("forkme", "freeze_vit")
  assert frozen.schedule[0] == ("img/.*", None)


def test_forkme_is_self_contained(tmp_path):
  """A copy of forkme.py imports only ml_collections and big_vision_lite, works from any
  folder, and its size table agrees with the other transfers'."""
  src = os.path.join(REPO, "transfers", "forkme.py")
  tops = set()
  for node in ast.walk(ast.parse(open(src).read())):
    if isinstance(node, ast.Import):
      tops |= {n.name.split(".")[0] for n in node.names}
    elif isinstance(node, ast.ImportFrom):
      tops.add(node.module.split(".")[0])
  assert tops == {"ml_collections", "big_vision_lite"}
  copy = tmp_path / "my_task.py"
  shutil.copy(src, copy)
  spec = importlib.util.spec_from_file_location("my_task", copy)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  arg = "size=9b,res=448,train=/d/t.jsonl"
  assert module.get_config(arg).to_dict() == get_config("forkme", arg).to_dict()
  assert module.SIZES == common.SIZES
  for size in module.SIZES:
    mine, shared = get_config("forkme", f"size={size}"), get_config("vqav2", f"size={size}")
    assert mine.model.to_dict() == shared.model.to_dict()
    assert mine.model_init == shared.model_init
