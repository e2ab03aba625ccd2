"""Tests for the Registry, the named-call parser and the one "unknown name" error."""
import os
import re

import pytest

from big_vision_lite import cli
from big_vision_lite.registry import Registry, UnknownNameError, parse_call, unknown_name


def test_parse_call_forms():
  assert parse_call("replicate") == ("replicate", (), {})
  assert parse_call("fsdp(axis='data', min_size=4)") == (
      "fsdp", (), {"axis": "data", "min_size": 4})
  assert parse_call(" resize((224, 224), method='bilinear') ") == (
      "resize", ((224, 224),), {"method": "bilinear"})


@pytest.mark.parametrize("spec", ["a.b(1)", "f(x)", "f(1) + 2", "f(__import__('os'))", "("])
def test_parse_call_rejects_non_literals(spec):
  with pytest.raises(ValueError, match="literal|Cannot parse"):
    parse_call(spec)


def test_registry_register_get_call():
  reg = Registry("test op")

  @reg.register("scale")
  def _scale(factor, offset=0.0):
    return lambda x: x * factor + offset

  assert reg.names() == ["scale"] and "scale" in reg
  assert reg.call("scale(2, offset=1.0)")(3) == 7.0
  with pytest.raises(KeyError, match=r"Unknown test op 'scal'. Did you mean 'scale'\?"):
    reg.get("scal")
  with pytest.raises(TypeError, match=r"Bad arguments for test op 'scale'.*"
                     r"Signature: scale\(factor, offset=0.0\)"):
    reg.call("scale(2, bogus=1)")
  with pytest.raises(KeyError, match="registered twice"):
    reg.register("scale")(lambda: None)


def test_unknown_name_message_and_types():
  e = unknown_name("pp op", "resiz", ["value_range", "resize", "decode"])
  assert str(e) == ("Unknown pp op 'resiz'. Did you mean 'resize'? "
                    "Valid: ['decode', 'resize', 'value_range'].")
  assert isinstance(e, UnknownNameError) and isinstance(e, KeyError)
  assert isinstance(e, ValueError)
  assert (e.kind, e.name, e.suggestion) == ("pp op", "resiz", "resize")
  assert e.known == ["decode", "resize", "value_range"]
  assert cli.one_line(e) == str(e)  # No KeyError quotes, no type name.
  far = unknown_name("dtype", 3, {"float32": 1}, context="(in x.json)")
  assert str(far) == "Unknown dtype 3. Valid: ['float32']. (in x.json)"
  assert far.suggestion is None


def _lookups():
  """(call, bad name, expected suggestion) for lookups across the package and tools."""
  # pylint: disable=g-import-not-at-top
  from big_vision_lite import config_args, models, optim, sharding
  from big_vision_lite.evaluators import caption_metrics, vqav2
  from big_vision_lite.models import gemma, vit  # pylint: disable=g-import-not-at-top
  from big_vision_lite.pp import builder  # pylint: disable=g-import-not-at-top
  from tools import predict  # pylint: disable=g-import-not-at-top
  return [
      (lambda: sharding.SHARDING_TACTICS.get("fsdpp"), "fsdpp", "fsdp"),
      (lambda: builder.PP_OPS.get("resiz"), "resiz", "resize"),
      (lambda: builder.get_preprocess_fn("resize(4, method='bilinaer')"), "bilinaer",
       "bilinear"),
      (lambda: models.get_module("paligema"), "paligema", "paligemma"),
      (lambda: models.model_kwargs("paligemma", {}, "bfloat61"), "bfloat61", "bfloat16"),
      (lambda: models.get_module("vitt", "img_model"), "vitt", "vit"),
      (lambda: gemma.get_config("gemma_tiy"), "gemma_tiy", "gemma_tiny"),
      (lambda: vit.decode_variant("So400n/14"), "So400n/14", None),
      (lambda: config_args.parse_arg("rez=3", res=1), "rez", "res"),
      (lambda: optim.make_schedule(dict(decay_type="cosin"), 10), "cosin", "cosine"),
      (lambda: optim.make_schedule(dict(warmup_stepz=1), 10), "warmup_stepz",
       "warmup_steps"),
      (lambda: caption_metrics.compute({}, {}, metrics=("cidr",)), "cidr", "cider"),
      (lambda: vqav2.normalize_pair("a", ["a"], mode="oficial"), "oficial", "official"),
      (lambda: predict.model_config_for({}, variant="paligemma_3b_224x"),
       "paligemma_3b_224x", None),
  ]


def test_every_lookup_raises_unknown_name():
  for call, name, suggestion in _lookups():
    with pytest.raises(UnknownNameError) as info:
      call()
    assert info.value.name == name, str(info.value)
    assert str(info.value).startswith("Unknown ") and " Valid: [" in str(info.value)
    if suggestion is not None:
      assert info.value.suggestion == suggestion, str(info.value)
    assert "\n" not in str(info.value)


def test_no_hand_written_unknown_name_messages():
  """The did-you-mean search and 'unknown ... valid' messages live in registry.py only."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  hand_written = re.compile(r"get_close_matches|import difflib|Unknown [^\"']*['\"]?[;.] "
                            r"(Valid|valid|Known|known)|is unknown; |is not valid; use one of")
  offenders = []
  for folder in ("big_vision_lite", "tools"):
    for dirpath, _, files in os.walk(os.path.join(root, folder)):
      for f in files:
        path = os.path.join(dirpath, f)
        if f.endswith(".py") and not path.endswith(os.path.join("big_vision_lite",
                                                                 "registry.py")):
          with open(path, encoding="utf-8") as fh:
            offenders += [f"{path}:{i + 1}" for i, line in enumerate(fh)
                          if hand_written.search(line)]
  assert not offenders, offenders
