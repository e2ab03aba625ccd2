"""Text pp ops: the `tok` tokenizer op and the PaliGemma train / eval row builders.

`tok` runs SentencePiece in `tf.numpy_function`; the row builders are
`combine_and_keep_train` / `combine_and_keep_eval`.

Row layout (DESIGN.md), L = text_len:
  train: text      = [BOS] prefix "\\n" suffix [EOS] [PAD...]   int32[L]
         mask_ar   = 0 on BOS/prefix/sep, 1 on suffix/EOS/pads  int32[L]
         mask_loss = 1 on suffix+EOS only                        int32[L]
         mask_input= 1 on real tokens, 0 on pads                 int32[L]
  eval:  text = [BOS] prefix "\\n" [suffix] [PAD...], mask_ar 0 on BOS/prefix/sep and 1 on
         the optional suffix (no EOS: decoding continues from it) and pads, mask_input.
Too-long rows are truncated deterministically and flagged with `_truncated` int32 (0/1):
the prefix keeps at most max(L - sep - suffix, (L - sep) // 2) tokens (BOS first), the sep is
always kept, and the suffix is cut keeping its last token (the EOS), so supervision is never
dropped silently.
"""
import re

import numpy as np
import tensorflow as tf

from big_vision_lite import tokenizer as tokenizer_lib
from big_vision_lite.pp import builder
from big_vision_lite.pp.builder import PP_OPS

TRUNCATED_KEY = "_truncated"
_BOS_EOS = ("no", "yes", "sticky")


def _load_tokenizer(op, model):
  if not isinstance(model, str) or not model:
    raise ValueError(f"pp op '{op}': model={model!r} must be the path of a SentencePiece "
                     ".model file, e.g. model='/ckpts/paligemma_tokenizer.model'.")
  return tokenizer_lib.Tokenizer(model)


def tokenize_tf(tok, text, bos=False, eos=False):
  """tf.string scalar -> int32[n] token ids, via the Python tokenizer `tok`."""
  def _encode(s):
    s = np.asarray(s).item()
    s = s.decode("utf-8") if isinstance(s, bytes) else str(s)
    return np.asarray(tok.encode(s, bos=bos, eos=eos), np.int32)

  ids = tf.numpy_function(_encode, [text], tf.int32, stateful=False)
  ids.set_shape([None])
  return ids


def _flag_truncated(data, flag):
  flag = tf.cast(flag, tf.int32)
  if TRUNCATED_KEY in data:
    flag = tf.maximum(tf.cast(data[TRUNCATED_KEY], tf.int32), flag)
  data[TRUNCATED_KEY] = flag


@PP_OPS.register("tok")
def get_tok(key="text", *, model, bos="no", eos="no", length=None, inkey=None,
            outkey=None, text=None, pad_value=0):
  """Tokenizes the string `data[inkey or key]` (or the constant `text`) into int32 ids.

  Args:
    key: in/out key (overridden by inkey / outkey).
    model: path of the SentencePiece model (loaded when the pp string is built).
    bos, eos: "yes", "no" or "sticky" (kept even when `length` truncates).
    length: if set, the output is int32[length]: right-padded with `pad_value` or
      truncated (then `_truncated` is set to 1).
    text: constant text to tokenize instead of a key, e.g. `text="\\n"`.
  """
  builder.check_choice("tok", "bos", bos, _BOS_EOS)
  builder.check_choice("tok", "eos", eos, _BOS_EOS)
  if length is not None and (not isinstance(length, int) or length < 1):
    raise ValueError(f"pp op 'tok': length={length!r} must be a positive int or None.")
  tok = _load_tokenizer("tok", model)
  inkey, outkey = inkey or key, outkey or key

  def _tok(data):
    data = dict(data)
    if text is not None:
      s = tf.constant(text)
    elif inkey in data:
      s = data[inkey]
    else:
      raise KeyError(f"pp op 'tok' needs key {inkey!r}, the example has {sorted(data)}.")
    ids = tokenize_tf(tok, s, bos=bos != "no", eos=eos != "no")
    if length is not None:
      n = tf.shape(ids)[0]
      if eos == "sticky":
        cut = tf.cond(n > length, lambda: tf.concat([ids[:length - 1], ids[-1:]], 0),
                      lambda: ids)
      else:
        cut = ids[:length]
      ids = tf.pad(cut, [[0, length - tf.shape(cut)[0]]], constant_values=pad_value)
      ids = tf.ensure_shape(ids, [length])
      _flag_truncated(data, n > length)
    data[outkey] = ids
    return data
  return _tok


def _row_parts(data, op, tok, prefix, suffix, sep, suffix_eos=True):
  """Returns int32 token tensors (prefix with BOS, sep, suffix (EOS if suffix_eos) or None).

  String texts are tokenized with `tok`; token-id inputs are used as they are."""
  def get(key, bos=False, eos=False):
    if key not in data:
      raise KeyError(f"pp op '{op}' needs key {key!r}, the example has {sorted(data)}.")
    v = data[key]
    if v.dtype == tf.string:
      if tok is None:
        raise ValueError(f"pp op '{op}': {key!r} is a string; tokenize it first with "
                         f"tok(key={key!r}, model=...) or pass model= to '{op}'.")
      if v.shape.rank != 0:
        raise ValueError(f"pp op '{op}': {key!r} must be one string, got shape "
                         f"{v.shape}; pick one with choice(inkey={key!r}) first.")
      return tokenize_tf(tok, v, bos=bos, eos=eos)
    if not v.dtype.is_integer or v.dtype == tf.bool or v.shape.rank != 1:
      raise TypeError(f"pp op '{op}': {key!r} must be a string or a list of token ids "
                      f"(int[n]), got {v.dtype.name}{v.shape}. Fix the data's {key!r}.")
    ids = tf.cast(v, tf.int32)
    if tok is not None:
      check = tf.debugging.assert_less(
          tf.reduce_max(tf.concat([ids, [0]], 0)), tok.vocab_size,
          message=f"pp op '{op}': token ids of {key!r} exceed the vocab")
      with tf.control_dependencies([check, tf.debugging.assert_non_negative(
          ids, message=f"pp op '{op}': negative token ids in {key!r}")]):
        ids = tf.identity(ids)
    return ids

  p = get(prefix, bos=True)
  if tok is not None:
    s = tf.constant(tok.encode(sep), tf.int32)
  else:
    s = get("septok")
  x = get(suffix, eos=suffix_eos) if suffix is not None else None
  return p, s, x


def _pad(x, length, value):
  return tf.ensure_shape(
      tf.pad(x, [[0, length - tf.shape(x)[0]]], constant_values=value), [length])


def _check_keys(op, text_len, keep):
  if not isinstance(text_len, int) or text_len < 2:
    raise ValueError(f"pp op '{op}': text_len={text_len!r} must be an int >= 2.")
  if not isinstance(keep, (tuple, list)) or not all(isinstance(k, str) for k in keep):
    raise ValueError(f"pp op '{op}': keep={keep!r} must be a list of keys.")


def _kept(data, op, out, keep):
  if "image" in data:
    out["image"] = data["image"]
  for k in keep:
    if k not in data:
      raise KeyError(f"pp op '{op}': keep key {k!r} not in the example {sorted(data)}.")
    out[k] = data[k]
  return out


@PP_OPS.register("num_texts")
def get_num_texts(key, outkey=None, missing_ok=False):
  """Writes int32 len(data[key]) (1 for a single string) to data[outkey or key + "/num"].

  Batching pads lists of strings with "", so a real "" answer cannot be told from the
  padding afterwards; the count can. With `missing_ok`, an absent key writes nothing.
  """
  out = outkey or f"{key}/num"

  def _num_texts(data):
    if key not in data:
      if missing_ok:
        return data
      raise KeyError(f"pp op 'num_texts' needs key {key!r}, the example has {sorted(data)}.")
    data = dict(data)
    v = data[key]
    data[out] = tf.constant(1, tf.int32) if v.shape.rank == 0 else tf.shape(v)[0]
    return data
  return _num_texts


@PP_OPS.register("text_tags")
def get_text_tags(inkey, tags, outkey="labels"):
  """Multi-hot float32[len(tags)] of the `tags` phrases found in the text(s) `data[inkey]`.

  A tag counts when it occurs as whole words (case-insensitive) in the string, or in any
  string of a list (e.g. all reference captions): "red circle" is found in "a small red
  circle" but not in "a red circles". The labels of a multi-label (sigmoid
  cross-entropy) image classifier trained on image-text data, as in stage 0.

  Args:
    inkey: key of a tf.string scalar or [n] list of strings.
    tags: non-empty list of distinct non-empty phrases (words separated by spaces).
    outkey: key of the float32[len(tags)] labels.
  """
  if (not isinstance(tags, (list, tuple)) or not tags
      or not all(isinstance(t, str) and t.strip() for t in tags)):
    raise ValueError(f"pp op 'text_tags': tags={tags!r} must be a non-empty list of "
                     "non-empty strings.")
  if len(set(tags)) != len(tags):
    dup = sorted({t for t in tags if tags.count(t) > 1})
    raise ValueError(f"pp op 'text_tags': tags {dup} appear more than once.")
  patterns = [r"(?i)(.*\W)?" + r"\s+".join(re.escape(w) for w in t.split()) + r"(\W.*)?"
              for t in tags]

  def _text_tags(data):
    if inkey not in data:
      raise KeyError(f"pp op 'text_tags' needs key {inkey!r}, the example has "
                     f"{sorted(data)}.")
    data = dict(data)
    texts = tf.reshape(data[inkey], [-1])
    if texts.dtype != tf.string:
      raise ValueError(f"pp op 'text_tags': {inkey!r} is {texts.dtype.name}; it must be "
                       "a string or a list of strings.")
    found = [tf.reduce_any(tf.strings.regex_full_match(texts, p)) for p in patterns]
    data[outkey] = tf.cast(tf.stack(found), tf.float32)
    return data
  return _text_tags


@PP_OPS.register("combine_and_keep_train")
def get_combine_and_keep_train(text_len, keep=(), model=None, prefix="prefix",
                               suffix="suffix", sep="\n"):
  """Builds a training row of length `text_len` from prefix, sep and suffix tokens.

  Inputs: int `data[prefix]` (with BOS), `data["septok"]`, `data[suffix]` (with EOS), as
  made by `tok(key='prefix', bos='yes', ...)|tok(key='suffix', eos='yes', ...)|
  tok(key='septok', text='\\n', ...)`; or, with `model=`, string prefix/suffix that this op
  tokenizes itself (adding BOS, `sep` and EOS).

  Returns keys: image (if present), text, mask_ar, mask_loss, mask_input: int32[text_len],
  `_truncated` int32 (0/1), and the `keep` keys.
  """
  _check_keys("combine_and_keep_train", text_len, keep)
  tok = None if model is None else _load_tokenizer("combine_and_keep_train", model)
  L = text_len  # pylint: disable=invalid-name

  def _combine(data):
    p, s, x = _row_parts(data, "combine_and_keep_train", tok, prefix, suffix, sep)
    np_, ns, nx = tf.shape(p)[0], tf.shape(s)[0], tf.shape(x)[0]
    check = tf.debugging.assert_less(
        ns + 1, L, message=f"combine_and_keep_train: text_len={L} leaves no room next to "
        "the separator; raise text_len.")
    with tf.control_dependencies([check]):
      keep_p = tf.minimum(np_, tf.maximum(L - ns - nx, (L - ns) // 2))
    keep_x = tf.minimum(nx, L - keep_p - ns)
    x_cut = tf.cond(keep_x < nx,
                    lambda: tf.concat([x[:keep_x - 1], x[-1:]], 0), lambda: x)
    p_cut = p[:keep_p]
    text = tf.concat([p_cut, s, x_cut], 0)
    n = tf.shape(text)[0]
    n_in = keep_p + ns
    ar = tf.concat([tf.zeros([n_in], tf.int32), tf.ones([keep_x], tf.int32)], 0)
    out = {
        "text": _pad(text, L, 0),
        "mask_ar": _pad(ar, L, 1),
        "mask_loss": _pad(ar, L, 0),
        "mask_input": _pad(tf.ones([n], tf.int32), L, 0),
    }
    _flag_truncated(data, np_ + ns + nx > L)
    out[TRUNCATED_KEY] = data[TRUNCATED_KEY]
    return _kept(data, "combine_and_keep_train", out, keep)
  return _combine


@PP_OPS.register("combine_and_keep_eval")
def get_combine_and_keep_eval(text_len, keep=(), model=None, prefix="prefix", sep="\n",
                              suffix="suffix"):
  """Builds an eval prompt row: text = [BOS] prefix sep [suffix] [PAD...] of length L.

  Inputs as for `combine_and_keep_train`. As in big_vision, a `data[suffix]` present in
  the example is appended without EOS (mask_ar 1), so decoding continues from it; pass
  `suffix=None` when that key holds the ground truth. Too-long rows are cut (the suffix
  first, then the prompt before the separator, which is always kept) and flagged in
  `_truncated`.

  Returns keys: image (if present), text, mask_ar, mask_input: int32[text_len],
  `_truncated` int32 (0/1), and the `keep` keys (e.g. ground truth answers).
  """
  _check_keys("combine_and_keep_eval", text_len, keep)
  tok = None if model is None else _load_tokenizer("combine_and_keep_eval", model)
  L = text_len  # pylint: disable=invalid-name

  def _combine(data):
    use_suffix = suffix is not None and suffix in data
    p, s, x = _row_parts(data, "combine_and_keep_eval", tok, prefix,
                         suffix if use_suffix else None, sep, suffix_eos=False)
    if x is None:
      x = tf.zeros([0], tf.int32)
    np_, ns, nx = tf.shape(p)[0], tf.shape(s)[0], tf.shape(x)[0]
    check = tf.debugging.assert_less(
        ns, L, message=f"combine_and_keep_eval: text_len={L} leaves no room next to the "
        "separator; raise text_len.")
    with tf.control_dependencies([check]):
      keep_p = tf.minimum(np_, L - ns)
    keep_x = tf.minimum(nx, L - ns - keep_p)
    text = tf.concat([p[:keep_p], s, x[:keep_x]], 0)
    n_in = keep_p + ns
    ar = tf.concat([tf.zeros([n_in], tf.int32), tf.ones([keep_x], tf.int32)], 0)
    out = {
        "text": _pad(text, L, 0),
        "mask_ar": _pad(ar, L, 1),
        "mask_input": _pad(tf.ones([n_in + keep_x], tf.int32), L, 0),
    }
    _flag_truncated(data, np_ + ns + nx > L)
    out[TRUNCATED_KEY] = data[TRUNCATED_KEY]
    return _kept(data, "combine_and_keep_eval", out, keep)
  return _combine
