"""Executes notebooks/finetune_paligemma.ipynb top to bottom with the tiny model.

Parameters are injected papermill-style: a cell placed right after the cell tagged
`parameters` overrides them (no checkpoint -> the notebook's tiny random model).
"""
import os

import jax
import nbclient
import nbformat
import numpy as np
import pytest

from big_vision_lite import checkpoint
from big_vision_lite.models import paligemma

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "finetune_paligemma.ipynb")


def with_parameters(nb, **params):
  """Returns `nb` with a cell assigning `params` inserted after its parameters cell."""
  idx = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
  assert len(idx) == 1, "the notebook needs exactly one cell tagged 'parameters'"
  for name in params:
    assert f"\n{name} = " in "\n" + nb.cells[idx[0]].source, f"unknown parameter {name}"
  source = "# Injected parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in params.items())
  cell = nbformat.v4.new_code_cell(source)
  cell.metadata["tags"] = ["injected-parameters"]
  nb.cells.insert(idx[0] + 1, cell)
  return nb


def _text(cell):
  return "".join(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", ""))
                 for o in cell.get("outputs", []))


@pytest.mark.slow
def test_notebook_runs_with_tiny_model(tmp_path):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
      "commit the notebook without outputs")
  out = str(tmp_path / "out")
  nb = with_parameters(
      nb, CKPT=str(tmp_path / "missing.npz"), DATA_DIR=str(tmp_path / "shapes"),
      SHAPES=dict(num_train=16, num_val=8, res=32), OUT_DIR=out, RES=28, SEQLEN=24,
      BATCH_SIZE=4, TRAIN_STEPS=3, NUM_SHOW=2, MAX_DECODE_LEN=4)
  client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                                   resources={"metadata": {"path": ROOT}})
  client.execute()
  text = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
  assert "not found: using a TINY RANDOM model" in text
  assert "trainable" in text and "Parameters:" in text
  # The 3B memory estimate of this recipe: ~170M trainable attention params.
  line = next(l for l in text.splitlines() if l.strip().startswith("params "))
  assert "M trainable f32" in line
  n_train = float(line.split("+ ")[1].split("M")[0])
  assert 160 <= n_train <= 180, line
  for part in ("gradients", "activations", "total"):
    assert any(l.strip().startswith(part) and "GB" in l for l in text.splitlines()), part
  # ... checked against the compiled 3B step (abstract inputs).
  bound = next(l for l in text.splitlines() if l.strip().startswith("bound "))
  assert "fits 16 GB: True" in bound and "recipe arguments + f32 temp" in bound
  assert "f32 weights  temp" in text
  assert text.count("step ") >= 2 and "loss" in text
  pngs = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
  assert pngs == 5  # 2 before, loss curve, 2 after.
  for name in ("loss", "before_caption", "after_caption", "before_detect", "after_detect"):
    assert os.path.getsize(os.path.join(out, f"{name}.png")) > 1000
  # The saved params load back into the tiny model: trained attention in f32.
  saved = checkpoint.flatten(checkpoint.load_params(os.path.join(out, "finetuned.npz")))
  assert saved["llm/layers/attn/q_einsum/w"].dtype == np.float32
  assert saved["llm/layers/mlp/linear"].dtype.itemsize == 2
  cfg = dict(img=dict(variant="mu", patch_size=(14, 14), scan=True),
             llm=dict(variant="gemma_tiny", vocab_size=300 + 1152, scan=True))
  model = paligemma.Model(**cfg)
  shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 28, 28, 3)),
                          np.zeros((1, 4), np.int32), np.zeros((1, 4), np.int32))["params"]
  paligemma.load(shapes, os.path.join(out, "finetuned.npz"), cfg)


def test_parameter_injection_rejects_unknown_names():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  with pytest.raises(AssertionError, match="unknown parameter CKPTS"):
    with_parameters(nb, CKPTS="x")
