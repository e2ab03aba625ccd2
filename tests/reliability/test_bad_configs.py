"""Bad configs fail before any data, model or compilation work, with a one-line error
naming the key, the value and the valid choices."""
import glob
import importlib.util
import os
import re

import jax
import pytest

from big_vision_lite import config_check
from big_vision_lite import sharding
from configs import tiny
from tests.reliability.fuzz_common import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _mesh(c):
  return sharding.make_mesh(c.get("mesh", [("data", -1)]))


CASES = [  # (overrides, regex of the error)
    (dict(total_stepz=3), r"Unknown config key 'total_stepz'\. Did you mean 'total_steps'\?"
     r" Valid: \[.*'total_steps'"),
    (dict(learning_rate=0.1), r"Unknown config key 'learning_rate'.* Valid: \[.*'lr'"),
    (dict(model_name="paligema"), r"Unknown config.model_name 'paligema'\. Did you mean "
     r"'paligemma'\? Valid: \[.*'vit'"),
    (dict(model__img_model="vitt"), r"config.model.img_model 'vitt'\. Did you mean 'vit'"),
    (dict(model__llm_model="gema"), r"config.model.llm_model 'gema'\. Did you mean 'gemma'"),
    (dict(model__img__widht=8), r"config.model.img key .*models/vit.py.* 'widht'\. Did you "
     r"mean 'width'\? Valid: \["),
    (dict(model__llm__num_kv_head=1), r"config.model.llm key .*'num_kv_head'\. Did you mean "
     r"'num_kv_heads'"),
    (dict(model__imgg={}), r"config.model key .*'imgg'\. Did you mean 'img'"),
    (dict(optax_name="scale_by_adamm"), r"config.optax_name 'scale_by_adamm'\. Did you mean "
     r"'scale_by_adam'\? Valid: \["),
    (dict(schedule=dict(decay_type="cosin")), r"decay_type 'cosin'\. Did you mean 'cosine'\?"),
    (dict(schedule=dict(warmup_stepz=2)), r"Unknown schedule key 'warmup_stepz'\. Did you "),
    (dict(evals={"ppl": dict(type="perplexityy")}), r"evaluator type of config.evals.ppl "
     r"'perplexityy'\. Did you mean 'perplexity'\? Valid: \["),
    (dict(input__batch_size=12), r"batch_size=12 is not divisible by 8 = 8 devices along "
     r"the batch axes \('data',\).* Valid: a multiple of 8"),
    (dict(input__batch_size=8, grad_accum_steps=2), r"not divisible by 16 .*"
     r"grad_accum_steps=2"),
    (dict(input__batch_size="8"), r"config.input.batch_size='8' must be a positive int"),
    (dict(sharding_rules=[("act_batch", "dta")]), r"sharding_rules maps 'act_batch' to mesh "
     r"axis 'dta'.* Valid: \['data'\]"),
    (dict(mesh=[("data", 2), ("model", 4)], sharding_rules=[("act_batch", "data")],
          input__batch_size=7), r"batch_size=7 is not divisible by 2 = 2 devices"),
]


@pytest.mark.parametrize("overrides,error", CASES, ids=[str(c[0]) for c in CASES])
def test_bad_config_one_line_error(overrides, error):
  c = tiny_config(**overrides)
  with pytest.raises((ValueError, KeyError)) as info:
    config_check.check(c, _mesh(c))
  msg = str(info.value.args[0])
  assert "\n" not in msg, msg
  assert re.search(error, msg), msg


@pytest.mark.parametrize("mesh,error", [
    ([("data", 3)], r"needs 3 devices but 8 are available"),
    ([("data", 4), ("model", 4)], r"needs 16 devices but 8"),
    ([("data", 3), ("model", -1)], r"8 devices are not divisible by the fixed axis sizes"),
    ([("data", -1), ("data", 1)], r"must name each axis once"),
])
def test_bad_mesh_one_line_error(mesh, error):
  with pytest.raises(ValueError, match=error) as info:
    sharding.make_mesh(mesh)
  assert "\n" not in str(info.value)


def test_bad_config_args_named():
  with pytest.raises(ValueError, match=r"Unknown config arg 'total_step'.*Did you mean "
                     r"'total_steps'\? Valid: \["):
    tiny.get_config("total_step=3")
  with pytest.raises(ValueError, match=r"total_steps='abc' is not a valid int"):
    tiny.get_config("total_steps=abc")


def test_every_shipped_config_passes_the_check():
  files = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")) +
                 glob.glob(os.path.join(REPO, "transfers", "*.py")))
  checked = 0
  for f in files:
    spec = importlib.util.spec_from_file_location(os.path.basename(f)[:-3], f)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if hasattr(module, "get_config"):
      c = module.get_config()
      config_check.check(c, _mesh(c))
      checked += 1
  assert checked >= 3
  assert jax.device_count() == 8


@pytest.mark.parametrize("overrides", [c[0] for c in CASES[:3]] + [
    dict(input__batch_size=12), dict(evals={"ppl": dict(type="perplexityy")})])
def test_train_rejects_bad_config_before_any_work(tmp_path, monkeypatch, overrides):
  from big_vision_lite import train  # pylint: disable=import-outside-toplevel

  def no_jit(*args, **kwargs):
    raise AssertionError(f"jax.jit called before the config was checked: {args} {kwargs}")
  monkeypatch.setattr(jax, "jit", no_jit)
  with pytest.raises((ValueError, KeyError)):
    train.train(tiny_config(**overrides), str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")  # Nothing written, no data generated.
