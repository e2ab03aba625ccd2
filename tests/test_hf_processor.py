"""HF export with --tokenizer: transformers' own processor, generate and pipeline give the
tokens tools.predict gives (offline, on a tiny converted model)."""
import json
import os

import jax
import numpy as np
from PIL import Image
import pytest
import torch
import transformers

from big_vision_lite import checkpoint
from big_vision_lite import decode
from big_vision_lite import tokenizer
from big_vision_lite.models import paligemma
from tools import convert_checkpoint
from tools import predict

RES, STEPS = 28, 6
PROMPTS = ("caption en", "detect cat ; dog")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  d = tmp_path_factory.mktemp("hf_processor")
  tok_path = tokenizer.train_tokenizer(
      ["a photo of a cat", "caption en", "detect cat ; dog", "a dog on a mat"] * 20,
      str(d / "tok.model"), vocab_size=300)
  vocab = tokenizer.Tokenizer(tok_path).vocab_size
  model = paligemma.Model(img=dict(variant="mu/14", depth=2, scan=True),
                          llm=dict(variant="gemma_tiny", vocab_size=vocab))
  shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, RES, RES, 3), np.float32),
                          np.zeros((1, 4), np.int32), np.zeros((1, 4), np.int32))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: (0.3 * rng.normal(size=s.shape)).astype(np.float32),
                        shapes["params"])
  ckpt = str(d / "tiny.npz")
  checkpoint.save_params(params, ckpt)
  images = []
  for i in range(2):  # At the model's resolution: both resizes are the identity.
    path = str(d / f"im{i}.png")
    Image.fromarray(rng.integers(0, 255, (RES, RES, 3)).astype(np.uint8)).save(path)
    images.append(path)
  out = str(d / "hf")
  convert_checkpoint.main([ckpt, out, "--tokenizer", tok_path])
  return dict(dir=out, ckpt=ckpt, tok=tok_path, images=images, vocab=vocab)


def _ours(files):
  """Greedy tokens of tools.predict's model, pp and decode (stopping at EOS)."""
  tok = tokenizer.Tokenizer(files["tok"])
  model, params, _, res = predict.load_model(files["ckpt"])
  items = [{"image": im, "prompt": p} for im, p in zip(files["images"], PROMPTS)]
  examples = predict.make_examples(items, files["tok"], res, text_len=16)
  batch = {k: np.stack([e[k] for e in examples]) for k in ("image", "text", "mask_ar",
                                                           "mask_input")}
  batch["_mask"] = np.ones(len(examples), bool)
  out = decode.decode(model, params, batch, max_decode_len=STEPS, eos_id=tok.eos_id,
                      pad_id=tok.pad_id)
  tokens, lengths = np.asarray(out["tokens"]), np.asarray(out["lengths"])
  answers = predict.predict(model, params, tok, examples, max_decode_len=STEPS)
  return examples, [tokens[i, :lengths[i]].tolist() for i in range(len(examples))], answers


def test_export_writes_processor_files(exported):
  files = set(os.listdir(exported["dir"]))
  assert {"config.json", "tokenizer.json", "tokenizer_config.json", "processor_config.json",
          "generation_config.json"} <= files
  with open(os.path.join(exported["dir"], "config.json")) as f:
    cfg = json.load(f)
  proc = transformers.AutoProcessor.from_pretrained(exported["dir"])
  assert isinstance(proc, transformers.PaliGemmaProcessor)
  assert cfg["image_token_index"] == proc.image_token_id == exported["vocab"]
  assert proc.image_seq_length == (RES // 14) ** 2
  tok = transformers.AutoTokenizer.from_pretrained(exported["dir"])
  ours = tokenizer.Tokenizer(exported["tok"])
  for text in ("a dog on a mat <loc0012><seg003>", "detect cat ; dog\n"):
    assert tok.encode(text, add_special_tokens=False) == ours.encode(text)
  gen = transformers.GenerationConfig.from_pretrained(exported["dir"])
  assert (gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (2, 1, 0)


def test_transformers_generate_equals_tools_predict(exported):
  examples, ours, answers = _ours(exported)
  proc = transformers.AutoProcessor.from_pretrained(exported["dir"])
  model = transformers.PaliGemmaForConditionalGeneration.from_pretrained(exported["dir"])
  num_patches = proc.image_seq_length
  for i, (image, prompt) in enumerate(zip(exported["images"], PROMPTS)):
    inputs = proc(text="<image>" + prompt, images=Image.open(image), return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    row = examples[i]["text"][examples[i]["mask_input"] > 0].tolist()
    assert ids[num_patches:] == row  # [BOS] prompt "\n", as combine_and_keep_eval.
    np.testing.assert_allclose(inputs["pixel_values"][0].permute(1, 2, 0).numpy(),
                               examples[i]["image"], atol=1e-6)
    with torch.no_grad():
      out = model.generate(**inputs, max_new_tokens=STEPS, do_sample=False)
    new = out[0, len(ids):].tolist()
    new = new[:new.index(1)] if 1 in new else new
    print(f"{prompt!r}: ours {ours[i]} transformers {new}")
    assert new == ours[i] and len(new) >= 2
    assert proc.decode(new, skip_special_tokens=True) == answers[i]
  pipe = transformers.pipeline("image-text-to-text", model=exported["dir"])
  got = pipe(images=Image.open(exported["images"][0]), text="<image>" + PROMPTS[0],
             generate_kwargs=dict(max_new_tokens=STEPS, do_sample=False),
             return_full_text=False)
  assert got[0]["generated_text"] == answers[0]
