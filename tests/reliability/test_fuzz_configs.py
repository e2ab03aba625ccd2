"""Fuzz: bad config values and config-arg strings give one-line errors before any work.

Families: `config` (values of every checked key, drawn by hypothesis, through
`config_check.check`), `config_args` (the `path.py:key=value` strings of `parse_arg`).
"""
import math

import hypothesis
from hypothesis import strategies as st
import pytest

from big_vision_lite import config_args
from big_vision_lite import config_check
from big_vision_lite import sharding
from big_vision_lite import tokenizer
from tests.reliability.fuzz_common import COUNTS, FUZZ, check_error, tiny_config

_MESH = None


def _mesh():
  global _MESH  # pylint: disable=global-statement  (one mesh for the module)
  if _MESH is None:
    _MESH = sharding.make_mesh([("data", -1)])
  return _MESH


def _bad_int(lo):
  """Values that are not ints >= lo: smaller ints, non-integral or special floats,
  strings, booleans."""
  return st.one_of(st.integers(max_value=lo - 1, min_value=-10**12),
                   st.floats(allow_nan=True, allow_infinity=True).filter(
                       lambda f: not (f.is_integer() and f >= lo)),
                   st.text(max_size=4), st.booleans())


def _bad_number(lo, hi=None, lo_open=False, hi_open=False):
  def outside(f):
    if not math.isfinite(f):
      return True
    return f < lo or (lo_open and f == lo) or (hi is not None and (
        f > hi or (hi_open and f == hi)))
  return st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(outside),
                   st.integers(max_value=math.ceil(lo) - 1, min_value=-10**6),
                   st.text(max_size=4), st.booleans())


SCALARS = {  # key path -> strategy of bad values
    "total_steps": _bad_int(0), "total_examples": _bad_int(1),
    "total_epochs": _bad_number(0, lo_open=True),
    "log_training_steps": _bad_int(1), "ckpt_steps": _bad_int(1),
    "keep_ckpt_steps": _bad_int(1), "ckpt_examples": _bad_int(1),
    "log_training_percent": _bad_number(0, 1, lo_open=True),
    "ckpt_epochs": _bad_number(0, lo_open=True),
    "keep_ckpts": _bad_int(1), "grad_accum_steps": _bad_int(1),
    "seed": st.one_of(_bad_int(0), st.integers(min_value=2**32, max_value=2**70)),
    "lr": _bad_number(0), "wd": _bad_number(0), "grad_clip_norm": _bad_number(0),
    "label_smoothing": _bad_number(0, 1, hi_open=True),
    "schedule__warmup_steps": _bad_int(0),
    "schedule__min_lr": _bad_number(0, 1), "schedule__warmup_percent": _bad_number(0, 1),
    "model__llm__vocab_size": _bad_int(1), "model__llm__depth": _bad_int(1),
    "model__img__width": _bad_int(1), "model__img__dropout": _bad_number(0, 1, hi_open=True),
    "optax__b1": st.one_of(st.text(max_size=4), st.just(math.nan), st.just([0.9])),
}


@hypothesis.settings(max_examples=180, **FUZZ)
@hypothesis.given(st.sampled_from(sorted(SCALARS)).flatmap(
    lambda k: st.tuples(st.just(k), SCALARS[k])))
def test_fuzz_scalar_config_values(key_value):
  key, value = key_value
  if key.startswith(("schedule__", "optax__")):
    parent, leaf = key.split("__")
    c = tiny_config()
    with c.ignore_type():
      c[parent] = dict(**{leaf: value})
  else:
    c = tiny_config(**{key: value})
  leaf = key.split("__")[-1]
  node = c
  for part in key.split("__")[:-1]:
    node = node[part]
  # ConfigDict coerces some values into a typed field (bool -> float 0.0); those
  # never reach the check as given, so they are not bad inputs.
  hypothesis.assume(type(node.get(leaf)) is type(value))
  check_error("config", lambda: config_check.check(c, _mesh()), leaf, repr(value))


STRUCTURED = [  # (overrides, needles): wrong types and names in structured keys.
    (dict(lr_mults={"img": 0.1}), ["lr_mults is a dict"]),
    (dict(lr_mults=[("img/.*", -1.0)]), ["lr_mults[0] mult", "-1.0"]),
    (dict(lr_mults=[("(", 1.0)]), ["lr_mults[0] regex", "'('"]),
    (dict(lr_mults="img"), ["lr_mults", "'img'"]),
    (dict(wd_mults=[("img/.*", "x")]), ["wd_mults[0] mult", "'x'"]),
    (dict(wd_mults=[(3, 1.0)]), ["wd_mults[0] regex", "3"]),
    (dict(schedule="cosine"), ["schedule", "'cosine'"]),
    (dict(schedule=[("(", None)]), ["schedule[0] regex", "'('"]),
    (dict(schedule=[(".*",)]), ["schedule", "pairs"]),
    (dict(schedule=[(".*", "cosine")]), ["schedule[0]", "'cosine'"]),
    (dict(schedule=5), ["schedule", "5"]),
    (dict(schedule=dict(warmup_steps=5)), ["warmup_steps=5", "total_steps=2"]),
    (dict(sharding_rules=[("act_batchh", "data")]), ["'act_batchh'", "act_batch"]),
    (dict(sharding_rules={"act_batch": "data"}), ["sharding_rules", "act_batch"]),
    (dict(sharding_rules=[("act_batch", 3)]), ["'act_batch'", "3"]),
    (dict(sharding_rules=[("act_batch",)]), ["sharding_rules", "pairs"]),
    (dict(sharding_strategy=[(".*", "fsdpp")]), ["sharding_strategy[0]", "'fsdpp'"]),
    (dict(sharding_strategy=[(".*", 3)]), ["sharding_strategy[0]", "3"]),
    (dict(sharding_strategy={"img": "replicate"}), ["sharding_strategy is a dict"]),
    (dict(sharding_strategy=[("(", "replicate")]), ["sharding_strategy[0] regex"]),
    (dict(sharding_strategy=[(".*", "fsdp(axs='data')")]), ["sharding_strategy[0]",
                                                            "axs"]),
    (dict(mesh=[("data", "x")]), ["config.mesh", "'x'"]),
    (dict(mesh=[("data", 0)]), ["config.mesh", "0"]),
    (dict(mesh=[(3, -1)]), ["config.mesh", "3"]),
    (dict(mesh="data"), ["config.mesh", "'data'"]),
    (dict(mesh=[]), ["config.mesh", "[]"]),
    (dict(mesh=[("data", 2.5)]), ["config.mesh", "2.5"]),
    (dict(optax="b1"), ["config.optax", "'b1'"]),
    (dict(optax={"bb1": 0.9}), ["config.optax", "bb1", "b1"]),
    (dict(optax={"b1": "high"}), ["optax.b1", "'high'"]),
    (dict(lora=dict(rank=4, alpha=8.0, targets="llm/.*", rnk=2)), ["'rnk'", "rank"]),
    (dict(lora=dict(rank=4, targets="llm/.*")), ["missing ['alpha']"]),
    (dict(lora=dict(rank=0, alpha=8.0, targets="llm/.*")), ["lora.rank", "0"]),
    (dict(lora=dict(rank=2.5, alpha=8.0, targets="llm/.*")), ["lora.rank", "2.5"]),
    (dict(lora=dict(rank=4, alpha=-1.0, targets="llm/.*")), ["lora.alpha", "-1.0"]),
    (dict(lora=dict(rank=4, alpha=8.0, targets="(")), ["lora.targets", "'('"]),
    (dict(lora=dict(rank=4, alpha=8.0, targets=3)), ["lora.targets", "3"]),
    (dict(lora=dict(rank=4, alpha=8.0, targets=".*", dropout=1.0)), ["lora.dropout"]),
    (dict(lora="yes"), ["config.lora", "'yes'"]),
    (dict(model__llm__vocab_size=0), ["vocab_size", "0"]),
    (dict(model__img__patch_size=(0, 0)), ["patch_size", "(0, 0)"]),
    (dict(model__img__patch_size=14), ["patch_size", "14"]),
    (dict(model__img__patch_size=(14, "a")), ["patch_size", "'a'"]),
    (dict(model__img__remat_policy="everything"), ["remat_policy", "'everything'",
                                                   "nothing_saveable"]),
    (dict(model__llm__remat_policy=None), []),  # None: the default; must pass.
    (dict(model__img__variant="XL/14"), ["config.model.img", "XL/14"]),
    (dict(model__llm__variant="gemma_3b"), ["config.model.llm", "gemma_3b", "gemma_2b"]),
    (dict(model__img=[1]), ["config.model.img", "[1]"]),
    (dict(model="vit"), ["config.model", "'vit'"]),
    (dict(model__img_model=3), ["img_model", "3"]),
    (dict(total_steps=2, total_epochs=None, log_training_steps=0), ["log_training_steps",
                                                                    "0"]),
]


@pytest.mark.parametrize("overrides,needles", STRUCTURED,
                         ids=[str(c[0])[:60] for c in STRUCTURED])
def test_structured_config_values(overrides, needles):
  c = tiny_config(**overrides)
  if not needles:
    config_check.check(c, _mesh())
    return
  check_error("config", lambda: config_check.check(c, _mesh()), *needles)


def test_model_vocab_smaller_than_tokenizer(tmp_path):
  tok = tokenizer.train_tokenizer(["a b c d e"] * 4, str(tmp_path / "t.model"), 300)
  n = tokenizer.Tokenizer(tok).vocab_size
  for vocab in (n - 1, n // 2, 1):
    c = tiny_config(tokenizer=tok, model__llm__vocab_size=vocab)
    check_error("config", lambda c=c: config_check.check(c, _mesh()),
                f"vocab_size={vocab}", str(n), tok)
  config_check.check(tiny_config(tokenizer=tok, model__llm__vocab_size=n), _mesh())


ARG_DEFAULTS = dict(data_dir="data/x", res=224, lr=1e-3, freeze_vit=False, name=None)
_KEY = st.sampled_from(sorted(ARG_DEFAULTS))


def _bad_arg(key, text):
  """True if `key=text` is invalid for ARG_DEFAULTS[key] (an independent oracle)."""
  default = ARG_DEFAULTS[key]
  v = text.strip()
  if default is None:
    return False
  if isinstance(default, bool):
    return v.lower() not in ("true", "yes", "1", "on", "false", "no", "0", "off")
  if isinstance(default, str):
    return not v
  try:
    x = type(default)(text)
  except ValueError:
    return True
  return isinstance(x, float) and not math.isfinite(x)


@hypothesis.settings(max_examples=80, **FUZZ)
@hypothesis.given(_KEY, st.text(alphabet=st.characters(blacklist_characters=","),
                                max_size=6))
def test_fuzz_config_arg_values(key, text):
  arg = f"{key}={text}"
  if not _bad_arg(key, text):
    hypothesis.assume(False)
  check_error("config_args", lambda: config_args.parse_arg(arg, **ARG_DEFAULTS),
              f"{key}=")


@hypothesis.settings(max_examples=30, **FUZZ)
@hypothesis.given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8))
def test_fuzz_config_arg_unknown_keys(key):
  hypothesis.assume(key not in ARG_DEFAULTS)
  check_error("config_args", lambda: config_args.parse_arg(f"{key}=1", **ARG_DEFAULTS),
              f"'{key}'", "Valid: [")


@pytest.mark.parametrize("arg,needles", [
    ("res=1,res=2", ["'res'", "twice"]), ("res", ["'res'", "needs a value"]),
    ("data_dir=", ["data_dir=''", "empty"]), ("lr=inf", ["lr='inf'", "finite"]),
    ("=3", ["''"]), ("freeze_vit=maybe", ["freeze_vit='maybe'"]),
])
def test_config_arg_strings(arg, needles):
  check_error("config_args", lambda: config_args.parse_arg(arg, **ARG_DEFAULTS), *needles)


def test_fuzz_config_counts():
  """Runs last in this file: the families above tried at least this many inputs."""
  assert COUNTS["config"] >= 180 + len(STRUCTURED) - 1 + 3, COUNTS
  assert COUNTS["config_args"] >= 40, COUNTS
