"""configs/tiny.py and configs/demo.py build, do no I/O, and their strings resolve."""
import inspect
import os

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
                                        (demo, "total_steps=5,batch_size=8"),
                                        (demo, "total_steps=5,stage0_steps=4")])
def test_config_builds_without_io(module, arg, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  c = module.get_config(arg)
  assert os.listdir(tmp_path) == []  # No I/O at config time.
  assert c.total_steps in (3, 5)
  for name in c.input.data:
    _check_pp(c.input[name].pp)
  for ev in c.get("evals", {}).values():
    _check_pp(ev.pp_fn)
  if c.get("stage0"):
    _check_pp(c.stage0.input.pp)
  models.get_module(c.model_name)
  for _, tactic in c.sharding_strategy:
    sharding.SHARDING_TACTICS.call(tactic)
  for _, sched in optim.schedule_rules(c):
    optim.make_schedule(sched, c.total_steps)
  assert c.model.llm.vocab_size == module.TOKENIZER_BASE_VOCAB + 1152


def test_unknown_arg_raises():
  with pytest.raises(ValueError, match="Unknown config arg"):
    demo.get_config("total_step=3")
  assert config_args.parse_arg("") is not None
