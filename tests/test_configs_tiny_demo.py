"""configs/tiny.py and configs/demo.py build, do no I/O, and their strings resolve."""
import inspect
import os

import numpy as np
import pytest

from big_vision_lite import config_args
from big_vision_lite import models
from big_vision_lite import optim
from big_vision_lite import registry
from big_vision_lite import sharding
from big_vision_lite.pp import builder
from configs import demo
from configs import tiny


def _check_pp(pp):
  import big_vision_lite.pp  # pylint: disable=import-outside-toplevel,unused-import
  for spec in builder.split_pp(pp):
    name, args, kwargs = registry.parse_call(spec)
    inspect.signature(builder.PP_OPS.get(name)).bind(*args, **kwargs)


@pytest.mark.parametrize("module,arg", [(tiny, "total_steps=3,batch_size=16"),
                                        (demo, "total_steps=5,batch_size=8")])
def test_config_builds_without_io(module, arg, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  c = module.get_config(arg)
  assert os.listdir(tmp_path) == []  # No I/O at config time.
  assert c.total_steps in (3, 5)
  for name in c.input.data:
    _check_pp(c.input[name].pp)
  for ev in c.get("evals", {}).values():
    _check_pp(ev.pp_fn)
  models.get_module(c.model_name)
  for _, tactic in c.sharding_strategy:
    sharding.SHARDING_TACTICS.call(tactic)
  optim.make_schedule(c.schedule, c.total_steps)
  assert c.model.llm.vocab_size == module.TOKENIZER_BASE_VOCAB + 1152


def test_unknown_arg_raises():
  with pytest.raises(ValueError, match="Unknown config arg"):
    demo.get_config("total_step=3")
  assert config_args.parse_arg("") is not None


@pytest.mark.slow  # Data + tokenizer generation, two train steps and four evaluators.
def test_demo_runs_end_to_end_and_reports_every_metric(tmp_path):
  from big_vision_lite import train  # pylint: disable=import-outside-toplevel
  data_dir = str(tmp_path / "shapes")
  c = demo.get_config(f"data_dir={data_dir},num_train=300,num_val=8,total_steps=2,"
                      "batch_size=8")
  for ev in c.evals.values():
    ev.batch_size = 8
  workdir = str(tmp_path / "work")
  out = train.train(c, workdir)
  assert out["step"] == 2
  ev = out["evals"]
  for key in ("vqa/acc", "caption/cider", "caption/bleu4", "detect/map", "detect/ap50",
              "caption_pplx/perplexity"):
    assert key in ev and np.isfinite(ev[key]), key
  assert ev["caption/num"] == ev["detect/num"] == 8 and ev["vqa/num"] == 16  # 2 per image.
  for name in ("vqa", "caption", "detect"):
    assert os.path.exists(os.path.join(workdir, f"{name}_predictions.json")), name
