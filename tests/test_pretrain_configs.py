"""Pre-training configs (stage 1 and 2): they build, and run 1 step + eval on the shapes
data (`mock_config`, tests/transfer_fixtures.py)."""
import numpy as np
import pytest

from big_vision_lite import train
from big_vision_lite.pp import builder
from configs import pt_mixtures
from tests.transfer_fixtures import get_config
from tests.transfer_fixtures import mock_config
from tests.transfer_fixtures import mock_dir, xla_cache  # noqa: F401 pylint: disable=unused-import

STAGES = ("pt_stage1", "pt_stage2")


@pytest.mark.parametrize("name", STAGES)
def test_real_config_builds(name):
  c = get_config(name, "caption=/d/cap.jsonl,ocr=tfds:my_ocr:train,data_dir=/tfds")
  assert c.input.caption.data.to_dict() == dict(name="jsonl", fname="/d/cap.jsonl",
                                      fopen_keys=("image",))
  assert c.input.ocr.data.to_dict() == dict(name="my_ocr", split="train", data_dir="/tfds")
  assert c.input.vqa.data.fname == "/tfds/vqa.jsonl"
  assert abs(sum(c.input.data.values()) - 1.0) < 1e-6
  assert "caption {lang}" in c.input.caption.pp and "detect {classes}" in c.input.detect.pp
  assert c.total_examples > 0 and c.evals


def test_stage_specifics():
  s1 = get_config("pt_stage1", "")
  assert s1.model_init.img.endswith(".npz") and s1.model_init.llm.endswith("gemma_2b.npz")
  # text_len + 1 tokens per row, as big_vision's (the trainer feeds text[:-1]).
  assert "combine_and_keep_train(129" in s1.input.caption.pp
  s2 = get_config("pt_stage2", "res=896,size=2b")
  assert s2.total_examples == 10_000_000 and s2.model_init.endswith("pt-896.b16.npz")
  assert "combine_and_keep_train(513" in s2.input.ocr.pp
  assert "final_logits_softcap" not in s2.model.llm  # Only transfers turn it off.
  with pytest.raises(ValueError, match="neither a .jsonl file"):
    get_config("pt_stage1", "ocr=/data/ocr.csv")


@pytest.mark.parametrize("name", STAGES)
def test_mock_pp_strings_resolve(name, mock_dir):
  c = mock_config(name, mock_dir)
  for task in c.input.data:
    assert c.input[task].data.name == "shapes"
    builder.get_preprocess_fn(c.input[task].pp)
  assert set(c.input.data) <= set(pt_mixtures.TASKS)


@pytest.mark.slow
@pytest.mark.parametrize("name", STAGES)
@pytest.mark.usefixtures("xla_cache")
def test_mock_one_step_and_eval(name, mock_dir, tmp_path):
  c = mock_config(name, mock_dir)
  c.update(lr=1e-3, wd=0.0)  # As tests/test_transfers.py: shared compilations.
  out = train.train(c, str(tmp_path))
  assert out["step"] == 1 and np.isfinite(out["losses"][1])
  assert np.isfinite(out["evals"]["caption/pplx/nll"])
