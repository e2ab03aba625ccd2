"""Transfer and pre-training configs on the bundled shapes data, for the tests.

`mock_config(name, mock_dir)` builds any config of transfers/ or configs/pt_stage*.py
and maps it onto the `shapes` data: a tiny random model (ViT "mu" with 2 layers +
"gemma_tiny") with the tokenizer trained on the shapes corpus, every training source
replaced by the shapes task standing in for the config's data (with pp ops that turn a
shapes row into the config's feature format, run before the config's own pp, which is
thus tested unchanged), 1 step, and the config's first task evaluator (not perplexity)
on the shapes validation split. All mock configs share one shape (res, text_len, batch
size, model) so that XLA compilations are reused. The configs themselves carry none of
this: a copied config holds only its real recipe.
"""
import importlib
import os

import jax
from jax.experimental.compilation_cache import compilation_cache
import ml_collections
import numpy as np
import pytest

from big_vision_lite import train
from big_vision_lite.models import vqvae

# One shared shape for every mock config (passed as config args), and the shapes data.
MOCK_ARGS = dict(res=28, text_len=32, batch_size=8)
SHAPES = dict(num_train=16, num_val=8, res=32, seed=0)
TINY_BASE_VOCAB = 300  # The shapes tokenizer's base vocab; 1024 <loc> + 128 <seg> follow.
NUM_LOC_SEG = 1024 + 128
# Transfer config -> (shapes task whose rows stand in for its data, pp ops turning a
# shapes row into the config's feature format).
ADAPTERS = {
    "ai2d": ("vqa", 'const(["yes", "no", "red", "three"], key="possible_answers")'
                    '|copy(inkey="suffix", outkey="answer")|const(0, key="id")'),
    "aokvqa_da": ("vqa", 'copy(inkey="answers", outkey="direct_answers")'
                         '|const(0, key="question_id")'),
    "aokvqa_mc": ("vqa", 'const(["yes", "no", "red", "three"], '
                         'key="multiple_choice_possible_answers")'
                         '|const(0, key="multiple_choice_correct_idx")'
                         '|const(0, key="question_id")'),
    "chartqa": ("vqa", 'copy(inkey="suffix", outkey="answer")|const(0, key="question_id")'),
    "coco35l": ("caption", 'const(0, key="image/id")'),
    "cococap": ("caption", 'copy(inkey="captions", outkey="captions/text")'
                           '|const(0, key="image/id")'),
    "detection": ("detect", 'choice(inkey="objects/label", outkey="classes")'
                            '|const(0, key="image/id")'),
    "docvqa": ("vqa", 'const(0, key="question_id")'),
    "forkme": ("caption", ""),
    "gqa": ("vqa", 'copy(inkey="suffix", outkey="answer")|const(0, key="example_id")'),
    "infovqa": ("vqa", 'const(0, key="question_id")'),
    "nlvr2": ("vqa", 'copy(inkey="image", outkey="image_left")'
                     '|copy(inkey="image", outkey="image_right")'
                     '|copy(inkey="question", outkey="sentence")'
                     '|copy(inkey="suffix", outkey="label")|const(0, key="example_id")'),
    "ocrvqa": ("vqa", 'copy(inkey="suffix", outkey="answer")|const(0, key="int_id")'),
    "okvqa": ("vqa", 'const(0, key="question_id")'),
    "pope": ("vqa", 'copy(inkey="suffix", outkey="answer")|const(0, key="question_id")'),
    "refcoco_seg": ("segment", 'copy(inkey="objects/label", outkey="objects/refs/sentence")'),
    "rsvqa_hr": ("vqa", 'const("presence", key="question_type")|const(0, key="question_id")'),
    "rsvqa_lr": ("vqa", 'const("presence", key="question_type")|const(0, key="question_id")'),
    "science_qa": ("vqa", 'const("", key="hint")|const("(A) yes, (B) no", key="indexed_choices")'
                          '|const("A", key="indexed_answer")|const(0, key="_id")'
                          '|const(["yes", "no"], key="choices")|const(0, key="answer")'),
    "screen2words": ("caption", 'copy(inkey="captions", outkey="summary")'
                                '|const(0, key="image/id")'),
    "stvqa": ("vqa", 'const(0, key="question_id")'),
    "tallyqa": ("vqa", 'copy(inkey="suffix", outkey="answer")|const(1, key="issimple")'),
    "textcaps": ("caption", 'copy(inkey="captions", outkey="texts")|const(0, key="image/id")'),
    "textvqa": ("vqa", 'const(0, key="question_id")'),
    "video_cap": ("video_caption", 'copy("image", "video")|copy("video_id", "id")'),
    "video_qa": ("video_qa", 'copy("image", "video")'),
    "vqav2": ("vqa", 'copy(inkey="question", outkey="question_text")'
                     '|const("other", key="answer_type")|const(0, key="question_id")'),
    "widgetcap": ("caption", 'copy(inkey="captions", outkey="texts")|const(0, key="image/id")'
                             '|const([0.1, 0.2, 0.7, 0.9], key="bbox")'),
}
# Pre-training mixture task (configs/pt_mixtures.py) -> (shapes task, adapter pp).
PT_ADAPTERS = {
    "caption": ("caption", 'const("en", key="lang")|copy(inkey="suffix", outkey="caption")'),
    "ocr": ("ocr", 'copy(inkey="suffix", outkey="text")'),
    "vqa": ("vqa", 'const("en", key="lang")|copy(inkey="suffix", outkey="answer")'),
    "qgen": ("vqa", 'const("en", key="lang")|copy(inkey="suffix", outkey="answer")'),
    "detect": ("detect", 'choice(inkey="objects/label", outkey="classes")'),
    "segment": ("segment", 'choice(inkey="objects/label", outkey="thing")'),
    "grounded": ("detect", 'choice(inkey=["objects/bbox", "objects/label"], '
                           'outkey=["box", "caption"])'),
}
PRETRAIN = ("pt_stage1", "pt_stage2")
# Extra args per config (vqvae: the random VQ-VAE written by the `mock_dir` fixture),
# and the mixture sources kept (coco35l: 2 of 35 languages).
EXTRA_ARGS = {"video_cap": "num_frames=4", "video_qa": "num_frames=4",
              "refcoco_seg": "vqvae", "pt_stage1": "vqvae", "pt_stage2": "vqvae"}
KEEP_SOURCES = {"coco35l": ("en", "de")}

_CACHE_KEYS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
               "jax_persistent_cache_min_entry_size_bytes")


def get_config(name, arg=""):
  """`get_config(arg)` of transfers/{name}.py (configs/{name}.py for pre-training)."""
  package = "configs" if name in PRETRAIN else "transfers"
  return importlib.import_module(f"{package}.{name}").get_config(arg)


def shapes_setup(mock_dir):
  """`ensure_shapes` and `train_tokenizer` entries: the trainer makes them at startup."""
  return dict(ensure_shapes=dict(out_dir=str(mock_dir), **SHAPES),
              train_tokenizer=dict(corpus_files=[f"{mock_dir}/corpus.txt"],
                                   out_path=f"{mock_dir}/tokenizer.model",
                                   vocab_size=TINY_BASE_VOCAB))


def _shapes_source(task, split, mock_dir):
  name = "shapes_video" if task.startswith("video_") else "shapes"
  return dict(name=name, task=task, split=split, data_dir=str(mock_dir), **SHAPES)


def _join(*pps):
  return "|".join(filter(None, pps))


def mock_config(name, mock_dir):
  """Config `name` on the shapes data in `mock_dir`: tiny model, 1 step, one evaluator."""
  if name not in ADAPTERS and name not in PRETRAIN:
    raise ValueError(f"No shapes mapping for config {name!r}; add it to ADAPTERS.")
  args = dict(MOCK_ARGS, tokenizer=f"{mock_dir}/tokenizer.model")
  extra = EXTRA_ARGS.get(name, "")
  if extra == "vqvae":
    args["vqvae"] = f"{mock_dir}/vqvae_mock.npz"
  elif extra:
    args.update([extra.split("=")])
  c = get_config(name, ",".join(f"{k}={v}" for k, v in args.items()))
  task, adapter = PT_ADAPTERS["caption"] if name in PRETRAIN else ADAPTERS[name]
  c.update(shapes_setup(mock_dir))

  # Model: tiny and random (the config's LLM dropout kept).
  dropout = c.model.llm.get("dropout", 0.0)
  for k in ("model", "model_init", "model_load"):
    if k in c:
      del c[k]
  c.model = dict(img=dict(variant="mu", depth=2, mlp_dim=64, patch_size=(14, 14), scan=True,
                          remat_policy="none"),
                 llm=dict(variant="gemma_tiny", scan=True, remat_policy="none",
                          dropout=dropout, vocab_size=TINY_BASE_VOCAB + NUM_LOC_SEG))
  c.model_init = None

  # Input: each source reads its shapes task, its pp after the adapter.
  if "name" in c.input.data:  # One source.
    c.input.data = _shapes_source(task, "train", mock_dir)
    c.input.pp = _join(adapter, c.input.pp)
  else:  # A mixture: {source: weight} and one sub-config per source.
    keep = KEEP_SOURCES.get(name, tuple(c.input.data))
    for k in list(c.input.data):
      if k not in keep:
        del c.input.data[k]
        del c.input[k]
        continue
      t, ad = PT_ADAPTERS[k] if name in PRETRAIN else (task, adapter)
      c.input[k].data = _shapes_source(t, "train", mock_dir)
      if "pp" in c.input[k]:
        c.input[k].pp = _join(ad, c.input[k].pp)
    if "pp" in c.input:
      c.input.pp = _join(adapter, c.input.pp)
  c.input.batch_size = MOCK_ARGS["batch_size"]
  c.input.shuffle_buffer_size = 16
  for k in ("total_epochs", "total_examples"):
    if k in c:
      del c[k]
  c.total_steps = 0 if c.get("total_steps") == 0 else 1  # Eval-only configs stay so.
  c.log_training_steps = 1
  c.ckpt_steps = 1

  # One evaluation: the task's metric (not perplexity); the others differ in split.
  ev_name = min(c.evals, key=lambda k: (c.evals[k].type == "perplexity", k))
  ev = c.evals[ev_name]
  ev.data = _shapes_source(task, "validation", mock_dir)
  ev.pp_fn = _join(adapter, ev.pp_fn)
  ev.batch_size = MOCK_ARGS["batch_size"]
  if "pred_kw" in ev:
    ev.pred_kw = dict(max_decode_len=MOCK_ARGS["text_len"])  # Greedy: one compilation.
  c.evals = ml_collections.ConfigDict({ev_name: ev})
  return c


@pytest.fixture(scope="session")
def mock_dir(tmp_path_factory):
  """Shapes data, tokenizer and a small random VQ-VAE, where `mock_config` expects them."""
  d = str(tmp_path_factory.mktemp("mock"))
  train.prepare(ml_collections.ConfigDict(shapes_setup(d)))
  state = vqvae.random_state_dict(enc_widths=(4, 4, 4, 4), embed_dim=8, dec_width=8,
                                  up_widths=(4, 4, 4, 4))
  np.savez(os.path.join(d, "vqvae_mock.npz"), **state)
  return d


@pytest.fixture
def xla_cache(tmp_path_factory):
  """A persistent XLA compilation cache (one folder per session) around one test."""
  old = {k: getattr(jax.config, k) for k in _CACHE_KEYS}
  jax.config.update(_CACHE_KEYS[0], str(tmp_path_factory.getbasetemp() / "xla_cache"))
  jax.config.update(_CACHE_KEYS[1], 0.0)
  jax.config.update(_CACHE_KEYS[2], 0)
  compilation_cache.reset_cache()
  yield
  for k, v in old.items():
    jax.config.update(k, v)
  compilation_cache.reset_cache()
