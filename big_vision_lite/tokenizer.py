"""Gemma SentencePiece tokenizer plus the PaliGemma `<locNNNN>` / `<segNNN>` token sets.

PaliGemma's vocabulary is the Gemma vocabulary (256000 pieces) followed by 1024 location
tokens `<loc0000>`..`<loc1023>` and 128 segmentation tokens `<seg000>`..`<seg127>`:
`<locK>` = base + K, `<segK>` = base + 1024 + K (257152 pieces for Gemma). A model file that
lacks these pieces (the plain Gemma `tokenizer.model`) is extended in memory when loaded.

Also here: `train_tokenizer` / `extend_with_loc_seg` (used by `tools/make_tokenizer.py` and
tests), and the codecs between boxes / masks and loc/seg strings (see `codecs` section).
"""
import dataclasses
import re

import numpy as np
from google.protobuf.message import DecodeError
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

NUM_LOC = 1024
NUM_SEG = 128
NUM_SEG_CODES = 16
LOC_PIECES = tuple(f"<loc{k:04d}>" for k in range(NUM_LOC))
SEG_PIECES = tuple(f"<seg{k:03d}>" for k in range(NUM_SEG))


def extend_proto_with_loc_seg(proto_bytes):
  """Returns a serialized ModelProto with the loc and seg pieces appended (bytes -> bytes).

  Pieces already present are left where they are; the rest are appended in order as
  USER_DEFINED pieces (always encoded as one token).
  """
  proto = sentencepiece_model_pb2.ModelProto()
  try:
    proto.ParseFromString(proto_bytes)
  except DecodeError as e:
    raise ValueError(f"{len(proto_bytes)} bytes are not a SentencePiece model ({e}); "
                     "pass a SentencePiece .model file.") from None
  present = {p.piece for p in proto.pieces}
  missing = [p for p in LOC_PIECES + SEG_PIECES if p not in present]
  if len(missing) not in (0, NUM_LOC + NUM_SEG):
    raise ValueError(f"The model has {NUM_LOC + NUM_SEG - len(missing)} of the "
                     f"{NUM_LOC + NUM_SEG} loc/seg pieces; expected all or none. "
                     "Start again from the base model without loc/seg pieces.")
  for piece in missing:
    new = proto.pieces.add()
    new.piece = piece
    new.score = 0.0
    new.type = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
  return proto.SerializeToString()


def extend_with_loc_seg(in_path, out_path):
  """Writes `in_path`'s SentencePiece model with loc/seg pieces appended to `out_path`."""
  with open(in_path, "rb") as f:
    raw = f.read()
  try:
    data = extend_proto_with_loc_seg(raw)
  except ValueError as e:
    raise ValueError(f"Tokenizer model {in_path!r}: {e}") from None
  with open(out_path, "wb") as f:
    f.write(data)
  return out_path


def train_tokenizer(corpus_lines, out_path, vocab_size, *, model_type="bpe"):
  """Trains a small Gemma-like SentencePiece model and appends the loc/seg pieces.

  Specials like Gemma: pad 0, eos 1, bos 2, unk 3; identity normalization, no dummy
  prefix, byte fallback (any text round-trips), "\\n" is its own piece.

  Args:
    corpus_lines: iterable of str, the training text.
    out_path: where the `.model` file is written.
    vocab_size: base vocabulary size (a soft limit: tiny corpora may give fewer pieces).
    model_type: "bpe" or "unigram".

  Returns:
    out_path. The base vocabulary ends at `<loc0000>`'s id.
  """
  lines = [line for line in corpus_lines if line]
  if not lines:
    raise ValueError("train_tokenizer got an empty corpus; pass some lines of text.")
  model = _train_proto(lines, vocab_size, model_type)
  with open(out_path, "wb") as f:
    f.write(extend_proto_with_loc_seg(model))
  return out_path


def _train_proto(lines, vocab_size, model_type):
  import io  # pylint: disable=import-outside-toplevel
  buf = io.BytesIO()
  try:
    _train(lines, vocab_size, model_type, buf)
  except RuntimeError as e:
    raise ValueError(f"SentencePiece training failed for vocab_size={vocab_size}: {e}. "
                     "The vocabulary needs 4 specials + 256 byte pieces + every distinct "
                     "character of the corpus; raise vocab_size.") from e
  return buf.getvalue()


def _train(lines, vocab_size, model_type, buf):
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab_size,
      model_type=model_type, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
      pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
      normalization_rule_name="identity", add_dummy_prefix=False,
      remove_extra_whitespaces=False, split_digits=True, byte_fallback=True,
      allow_whitespace_only_pieces=True, user_defined_symbols=["\n"],
      character_coverage=1.0, hard_vocab_limit=False, minloglevel=2,
      num_threads=1)


class Tokenizer:
  """SentencePiece tokenizer with PaliGemma's loc/seg pieces.

  Attributes:
    pad_id, bos_id, eos_id, unk_id: int special ids.
    vocab_size: int, including the loc/seg pieces.
    loc_base, seg_base: ids of `<loc0000>` and `<seg000>`.
  """

  def __init__(self, model_path):
    try:
      with open(model_path, "rb") as f:
        data = f.read()
    except OSError as e:
      raise FileNotFoundError(f"Cannot read tokenizer model {model_path!r}: {e}. Pass the "
                              "path of a SentencePiece .model file (e.g. "
                              "paligemma_tokenizer.model, shipped with the released checkpoints on Kaggle "
                              "google/paligemma, or `python -m tools.make_tokenizer` for "
                              "your own).") from e
    self.model_path = model_path
    self.sp = spm.SentencePieceProcessor()
    try:
      self.sp.LoadFromSerializedProto(extend_proto_with_loc_seg(data))
    except (RuntimeError, OSError, DecodeError, ValueError) as e:
      raise ValueError(f"Tokenizer model {model_path!r} ({len(data)} bytes) is not a "
                       f"SentencePiece model: {' '.join(str(e).split())[:200]}. Pass a "
                       "SentencePiece .model file (e.g. paligemma_tokenizer.model).") from None
    if self.sp.get_piece_size() == 0 or self.sp.eos_id() < 0:
      raise ValueError(f"Tokenizer model {model_path!r} has no pieces or no EOS piece; "
                       "it is not a usable SentencePiece model (valid: a Gemma-style "
                       ".model with pad/eos/bos/unk).")
    self.pad_id = self.sp.pad_id()
    self.bos_id = self.sp.bos_id()
    self.eos_id = self.sp.eos_id()
    self.unk_id = self.sp.unk_id()
    self.vocab_size = self.sp.get_piece_size()
    self.loc_base = self.sp.piece_to_id(LOC_PIECES[0])
    self.seg_base = self.sp.piece_to_id(SEG_PIECES[0])
    assert self.sp.piece_to_id(LOC_PIECES[-1]) == self.loc_base + NUM_LOC - 1
    assert self.sp.piece_to_id(SEG_PIECES[-1]) == self.seg_base + NUM_SEG - 1

  def encode(self, text, bos=False, eos=False):
    """Returns list[int] token ids of `text` (str), optionally with BOS first / EOS last."""
    ids = self.sp.encode(text)
    return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

  def to_str(self, ids, stop_at_eos=True):
    """Decodes int ids (list or int[T]) to str; stops at the first EOS if `stop_at_eos`.

    Padding and BOS are dropped; loc/seg pieces are kept as text (`<loc0123>`).
    """
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    if stop_at_eos and self.eos_id in ids:
      ids = ids[:ids.index(self.eos_id)]
    ids = [i for i in ids if i not in (self.pad_id, self.bos_id, self.eos_id)]
    bad = [i for i in ids if not 0 <= i < self.vocab_size]
    if bad:
      raise ValueError(f"Token ids {bad[:5]} are outside the vocabulary [0, "
                       f"{self.vocab_size}); was the model trained with a larger vocab?")
    return self.sp.decode(ids)

  def loc_id(self, k):
    """Id of `<loc{k:04d}>`, k in [0, 1023]."""
    if not 0 <= k < NUM_LOC:
      raise ValueError(f"loc index {k} outside [0, {NUM_LOC - 1}].")
    return self.loc_base + k

  def seg_id(self, k):
    """Id of `<seg{k:03d}>`, k in [0, 127]."""
    if not 0 <= k < NUM_SEG:
      raise ValueError(f"seg index {k} outside [0, {NUM_SEG - 1}].")
    return self.seg_base + k


def get_tokenizer(path):
  """Returns a new `Tokenizer` for the model file at `path` (nothing is cached)."""
  return Tokenizer(path)


# ---------------------------------------------------------------------------- codecs

# ASCII digits only: `\d` would also take other scripts' digits ("<loc٠١٢٣>").
_LOC_RE = re.compile(r"<loc([0-9]{4})>")
_SEG_RE = re.compile(r"<seg([0-9]{3})>")
_OBJ_RE = re.compile(r"^((?:<loc[0-9]{4}>){4})((?:<seg[0-9]{3}>)*)\s*(.*)$", re.S)


def coords_to_bins(v):
  """Normalized coords (float, any shape) -> int32 loc bins, round-half-to-even(v * 1023).

  `np.round` rounds half to even (0.5 * 1023 = 511.5 -> 512), as the reference pipeline.
  NaN coordinates raise (they have no bin); +-inf clip to the edge bins like any value
  outside [0, 1].
  """
  v = np.asarray(v, np.float32)
  if np.isnan(v).any():
    raise ValueError(f"Coordinates {v.reshape(-1)[:8].tolist()} contain NaN; loc bins need "
                     "numbers (valid: normalized coordinates in [0, 1]).")
  k = np.round(v * np.float32(NUM_LOC - 1))
  return np.clip(k, 0, NUM_LOC - 1).astype(np.int32)


def bins_to_coords(k):
  """Loc bins (int, any shape) -> float32 normalized coords k / 1023."""
  return np.asarray(k, np.float32) / np.float32(NUM_LOC - 1)


def box_to_loc_str(box):
  """One box float[4] (ymin, xmin, ymax, xmax in [0, 1]) -> "<loc..><loc..><loc..><loc..>"."""
  box = np.asarray(box, np.float32)
  if box.shape != (4,):
    raise ValueError(f"box shape {box.shape} != (4,) (ymin, xmin, ymax, xmax).")
  if np.isnan(box).any():
    raise ValueError(f"box {box.tolist()} contains NaN; valid: normalized coordinates in "
                     "[0, 1] (ymin, xmin, ymax, xmax).")
  if box[0] > box[2] or box[1] > box[3]:
    raise ValueError(f"box {box.tolist()} is reversed; valid: ymin <= ymax and xmin <= xmax "
                     "(order ymin, xmin, ymax, xmax).")
  return "".join(LOC_PIECES[k] for k in coords_to_bins(box))


def boxes_to_loc_str(boxes, labels=None, sep=" ; "):
  """Boxes float[n, 4] (+ optional n labels) -> detection string.

  Example: "<loc0010><loc0020><loc0500><loc0600> cat ; <loc..>x4 dog".
  """
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  if labels is not None and len(labels) != len(boxes):
    raise ValueError(f"{len(labels)} labels for {len(boxes)} boxes; pass one per box.")
  parts = []
  for i, box in enumerate(boxes):
    label = "" if labels is None else f" {labels[i]}"
    parts.append(box_to_loc_str(box) + label)
  return sep.join(parts)


def seg_to_str(box, codes):
  """A box float[4] and 16 VQ codes int[16] -> "<loc..>x4<seg..>x16"."""
  codes = np.asarray(codes).reshape(-1)
  integral = codes.dtype.kind in "iu" or (
      codes.dtype.kind == "f" and np.isfinite(codes).all() and (codes == np.round(codes)).all())
  if (codes.shape != (NUM_SEG_CODES,) or not integral or codes.min() < 0
      or codes.max() >= NUM_SEG):
    raise ValueError(f"codes {codes.tolist()[:NUM_SEG_CODES + 1]} must be {NUM_SEG_CODES} "
                     f"ints in [0, {NUM_SEG - 1}].")
  return box_to_loc_str(box) + "".join(SEG_PIECES[int(c)] for c in codes)


@dataclasses.dataclass
class ParsedObject:
  """One parsed object: box float32[4] (ymin, xmin, ymax, xmax in [0, 1]), label str,
  bins int32[4] (the loc indices) and codes int32[16] or None (segmentation only)."""
  box: np.ndarray
  bins: np.ndarray
  label: str
  codes: np.ndarray = None


def _parse_object(piece, want_seg):
  """Returns (ParsedObject, None) or (None, reason)."""
  m = _OBJ_RE.match(piece.strip())
  if not m:
    return None, "does not start with 4 <locNNNN> tokens"
  bins = np.array([int(k) for k in _LOC_RE.findall(m.group(1))], np.int32)
  if bins.max() >= NUM_LOC:
    return None, f"loc index {int(bins.max())} > {NUM_LOC - 1}"
  if bins[2] <= bins[0] or bins[3] <= bins[1]:
    return None, f"empty box (need ymax > ymin and xmax > xmin), bins {bins.tolist()}"
  codes = None
  seg = _SEG_RE.findall(m.group(2))
  if want_seg:
    codes = np.array([int(c) for c in seg], np.int32)
    if len(codes) != NUM_SEG_CODES:
      return None, f"{len(codes)} <segNNN> tokens, need {NUM_SEG_CODES}"
    if codes.max() >= NUM_SEG:
      return None, f"seg index {int(codes.max())} > {NUM_SEG - 1}"
  elif seg:
    return None, "unexpected <segNNN> tokens in a detection"
  label = m.group(3).strip()
  if "<loc" in label or "<seg" in label:
    return None, "loc/seg tokens inside the label (missing ';' separator?)"
  return ParsedObject(bins_to_coords(bins), bins, label, codes), None


def _parse(text, want_seg, sep):
  objects, invalid = [], []
  for piece in text.split(sep):
    if not piece.strip():
      continue
    obj, reason = _parse_object(piece, want_seg)
    if obj is None:
      invalid.append((piece.strip(), reason))
    else:
      objects.append(obj)
  return objects, invalid


def parse_detections(text, sep=";"):
  """Parses "<loc..>x4 label ; <loc..>x4 label" (model output) without raising.

  Returns:
    (objects, invalid): list of `ParsedObject` (codes None) and a list of
    (piece str, reason str) for every piece that is not a valid box.
  """
  return _parse(text, want_seg=False, sep=sep)


def parse_segmentations(text, sep=";"):
  """Parses "<loc..>x4<seg..>x16 label ; ..." without raising.

  Returns:
    (objects, invalid): list of `ParsedObject` with codes int32[16], and a list of
    (piece str, reason str) for the invalid pieces.
  """
  return _parse(text, want_seg=True, sep=sep)
