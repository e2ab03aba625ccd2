"""The files beside an exported config.json that transformers' processor and pipeline read.

`save_processor_files(dst_dir, tokenizer_path, ...)` writes, from a PaliGemma SentencePiece
model (loc/seg pieces appended first if it lacks them, as `tokenizer.Tokenizer` does):

- tokenizer.json / tokenizer_config.json: transformers' GemmaTokenizer converted from the
  SentencePiece model (same ids as `tokenizer.Tokenizer`), with `<image>` added after the
  last piece (so its id is the SentencePiece vocab size, the config's image_token_index);
- processor_config.json: PaliGemmaProcessor with a SiglipImageProcessor that resizes to
  the model's resolution and maps pixels to [-1, 1] (x / 127.5 - 1), image_seq_length =
  the number of patches;
- generation_config.json: bos 2, eos 1, pad 0 (Gemma's specials).

`AutoProcessor`, `AutoTokenizer` and `pipeline("image-text-to-text")` then load the folder.
The processor builds `<image> * P + [BOS] prompt "\\n"`, the row `combine_and_keep_eval`
builds. Its PIL resize is bilinear but antialiased when shrinking (the eval pp's TF resize
is not), so pixels agree exactly only for images already at the model's resolution.
"""
import os
import tempfile

import sentencepiece as spm
import transformers

from big_vision_lite import tokenizer as tokenizer_lib

BOS_ID, EOS_ID, PAD_ID = 2, 1, 0


def make_processor(tokenizer_path, image_size, num_image_tokens):
  """transformers.PaliGemmaProcessor for a SentencePiece model and an image size.

  Args:
    tokenizer_path: local SentencePiece `.model` (PaliGemma's, or Gemma's without loc/seg).
    image_size: model resolution in pixels (square).
    num_image_tokens: patches per image (image_seq_length).

  Returns:
    the processor; its `image_token_id` is the SentencePiece vocab size.
  """
  with open(tokenizer_path, "rb") as f:
    proto = tokenizer_lib.extend_proto_with_loc_seg(f.read())
  sp = spm.SentencePieceProcessor(model_proto=proto)
  specials = {"pad": PAD_ID, "eos": EOS_ID, "bos": BOS_ID}
  got = {name: sp.id_to_piece(i) for name, i in specials.items()}
  if got != {"pad": "<pad>", "eos": "<eos>", "bos": "<bos>"}:
    raise ValueError(f"{tokenizer_path} has specials {got} at ids 0/1/2; a Gemma "
                     "tokenizer has <pad> 0, <eos> 1, <bos> 2.")
  # No <mask> unless the model has one (Gemma's is piece 4): it would take a new id.
  mask = "<mask>" if sp.piece_to_id("<mask>") != sp.unk_id() else None
  with tempfile.TemporaryDirectory() as tmp:
    with open(os.path.join(tmp, "tokenizer.model"), "wb") as f:
      f.write(proto)
    tok = transformers.GemmaTokenizer.from_pretrained(tmp, mask_token=mask)
  if len(tok) != sp.get_piece_size():
    raise ValueError(f"transformers' GemmaTokenizer has {len(tok)} tokens for the "
                     f"{sp.get_piece_size()} pieces of {tokenizer_path}.")
  images = transformers.SiglipImageProcessor(
      do_resize=True, size={"height": image_size, "width": image_size}, resample=2,
      do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3,
      image_std=[0.5] * 3)
  images.image_seq_length = num_image_tokens
  return transformers.PaliGemmaProcessor(image_processor=images, tokenizer=tok)


def save_processor_files(dst_dir, processor):
  """Writes the processor's files and generation_config.json into `dst_dir`."""
  processor.save_pretrained(dst_dir)
  transformers.GenerationConfig(bos_token_id=BOS_ID, eos_token_id=EOS_ID,
                                pad_token_id=PAD_ID).save_pretrained(dst_dir)
