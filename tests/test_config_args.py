"""Tests for config_args.parse_arg."""
import pytest

from big_vision_lite.config_args import parse_arg


def test_types_follow_defaults():
  c = parse_arg("res=448,batch_size=8,lr=3e-5,variant=So400m/14,freeze_vit",
                res=224, batch_size=32, lr=1e-5, variant="tiny", freeze_vit=False)
  assert (c.res, c.batch_size, c.lr, c.variant, c.freeze_vit) == (
      448, 8, 3e-5, "So400m/14", True)
  assert isinstance(c.res, int) and isinstance(c.lr, float)


def test_defaults_when_empty():
  for arg in (None, "", " , "):
    c = parse_arg(arg, res=224, mode="full")
    assert c.res == 224 and c.mode == "full"


@pytest.mark.parametrize("text,value", [("true", True), ("No", False), ("1", True),
                                        ("off", False)])
def test_strict_booleans(text, value):
  assert parse_arg(f"flag={text}", flag=not value).flag is value


def test_bad_boolean():
  with pytest.raises(ValueError, match=r"flag='maybe' is not a boolean"):
    parse_arg("flag=maybe", flag=False)


def test_unknown_key_lists_valid_keys_and_close_match():
  with pytest.raises(ValueError, match=r"Unknown config arg 'batchsize'.*"
                     r"Did you mean 'batch_size'.*Valid: \['batch_size', 'res'\]"):
    parse_arg("batchsize=8", res=224, batch_size=32)


def test_bad_value_type():
  with pytest.raises(ValueError, match=r"res='big' is not a valid int"):
    parse_arg("res=big", res=224)


def test_bare_flag_only_for_booleans():
  with pytest.raises(ValueError, match=r"'res' needs a value"):
    parse_arg("res", res=224)


def test_none_default_takes_string_and_lazy_keeps_unknown():
  c = parse_arg("ckpt=/a/b.npz,extra=3", lazy=True, ckpt=None)
  assert c.ckpt == "/a/b.npz" and c.extra == "3"
  assert parse_arg("ckpt=none", ckpt=None).ckpt is None
