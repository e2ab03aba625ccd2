"""Tests for the Registry and the named-call parser."""
import pytest

from big_vision_lite.registry import Registry, parse_call


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
