"""End to end on the tiny config: train 1 step with evaluators, then `tools/eval.py`."""
import json
import os

import numpy as np
import pytest

from big_vision_lite import train
from configs import common as cfg_common
from configs import tiny
from tools import eval as eval_tool


def _config(data_dir):
  c = tiny.get_config(f"data_dir={data_dir},total_steps=1")
  data, tok = dict(c.ensure_shapes), c.tokenizer
  img = "decode|resize(28)|value_range(-1, 1)"
  ev = lambda keep: img + f"|combine_and_keep_eval(24, keep={keep!r}, suffix=None, model={tok!r})"
  c.evals = {
      "vqa": dict(type="vqav2", pred="decode", pred_kw=dict(max_decode_len=3),
                  data=cfg_common.shapes_source("vqa", "validation", data),
                  pp_fn=ev(("answers", "question_type")), log_percent=1.0, batch_size=8),
      "ppl": dict(type="perplexity", pred="logits",
                  data=cfg_common.shapes_source("caption", "validation", data),
                  pp_fn=cfg_common.shapes_pp(28, 24, tok), log_percent=1.0, batch_size=8),
  }
  return c


@pytest.mark.slow
def test_train_evals_and_eval_tool_agree(tmp_path, monkeypatch):
  c = _config(str(tmp_path / "shapes"))
  workdir = str(tmp_path / "run")
  result = train.train(c, workdir)
  evals = result["evals"]
  for key in ("vqa/acc", "vqa/num", "vqa/acc_qtype/count", "ppl/nll", "ppl/perplexity"):
    assert key in evals, sorted(evals)
  assert evals["vqa/num"] == 16 and np.isfinite(evals["ppl/nll"])
  vocab = c.model.llm.vocab_size
  assert 0 < evals["ppl/perplexity"] < 10 * vocab  # An untrained model: about uniform.
  preds = json.loads(open(os.path.join(workdir, "vqa_predictions.json")).read())
  assert len(preds) == 16 and all("answer" in p for p in preds)

  # The checkpoint restore itself is the trainer's (tested there); reuse its params.
  monkeypatch.setattr(eval_tool, "load_eval_params",
                      lambda config, wd, params_file=None: (result["params"], 1))
  out = eval_tool.evaluate(c, workdir, only=["ppl"], write_note=lambda s: None)
  assert out["step"] == 1 and "vqa/acc" not in out
  for key in ("ppl/nll", "ppl/perplexity"):
    assert out[key] == pytest.approx(evals[key], rel=1e-5), key
  assert json.loads(open(os.path.join(workdir, "eval_metrics.json")).read()) == out
  with pytest.raises(ValueError, match=r"Unknown --only name 'nope'\. Valid: \['ppl', 'vqa'\]\. "
                     r"\(the names of config.evals"):
    eval_tool.evaluate(c, workdir, only=["nope"])
