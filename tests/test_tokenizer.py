"""Tests of the tokenizer (trained tiny model + appended loc/seg pieces) and the codecs."""
import numpy as np
import pytest
from sentencepiece import sentencepiece_model_pb2

from big_vision_lite import tokenizer as tl

CORPUS = ["caption en", "answer en what is the color of the dog?", "detect cat ; dog",
          "a brown dog\n", "the cat sits on the mat"] * 10
BASE = 320


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  return tl.train_tokenizer(CORPUS, str(tmp_path_factory.mktemp("t") / "t.model"), BASE)


@pytest.fixture(scope="module")
def tok(model):
  return tl.Tokenizer(model)


def test_specials_and_appended_pieces(tok):
  assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)
  assert tok.loc_base == BASE and tok.loc_id(0) == BASE and tok.loc_id(1023) == BASE + 1023
  assert tok.seg_base == BASE + 1024 and tok.seg_id(0) == BASE + 1024
  assert tok.vocab_size == BASE + 1024 + 128
  assert tok.sp.id_to_piece(tok.seg_id(127)) == "<seg127>"


def test_encode_decode_round_trip(tok):
  text = "detect cat\n<loc0005><loc1023><seg017> Zürich 42"
  ids = tok.encode(text, bos=True, eos=True)
  assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
  assert tok.loc_id(5) in ids and tok.loc_id(1023) in ids and tok.seg_id(17) in ids
  assert tok.to_str(ids) == text
  assert tok.to_str(ids[1:-1] + [tok.eos_id] + tok.encode("more")) == text
  assert tok.to_str(ids + tok.encode("x"), stop_at_eos=False) == text + "x"
  assert tok.encode("\n") == [tok.sp.piece_to_id("\n")]


def test_id_errors(tok):
  with pytest.raises(ValueError, match="loc index 1024 outside"):
    tok.loc_id(1024)
  with pytest.raises(ValueError, match="seg index -1 outside"):
    tok.seg_id(-1)
  with pytest.raises(ValueError, match="outside the vocabulary"):
    tok.to_str([5, 99999])
  with pytest.raises(FileNotFoundError, match="Cannot read tokenizer model"):
    tl.Tokenizer("/nonexistent.model")


def test_extend_model_without_pieces(tmp_path, model):
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(open(model, "rb").read())
  del proto.pieces[BASE:]
  base = tmp_path / "base.model"
  base.write_bytes(proto.SerializeToString())
  # Loading a model without the pieces extends it in memory, like Gemma's tokenizer.model.
  assert tl.Tokenizer(str(base)).loc_base == BASE
  out = tl.extend_with_loc_seg(str(base), str(tmp_path / "ext.model"))
  assert open(out, "rb").read() == open(model, "rb").read()
  # Extending a model that has the pieces changes nothing.
  again = tl.extend_with_loc_seg(out, str(tmp_path / "again.model"))
  assert open(again, "rb").read() == open(out, "rb").read()
  proto.ParseFromString(open(model, "rb").read())
  del proto.pieces[BASE + 10:]
  with pytest.raises(ValueError, match="has 10 of the 1152 loc/seg pieces"):
    tl.extend_proto_with_loc_seg(proto.SerializeToString())


def test_train_errors(tmp_path):
  with pytest.raises(ValueError, match="empty corpus"):
    tl.train_tokenizer([], str(tmp_path / "x.model"), 300)
  with pytest.raises(ValueError, match="raise vocab_size"):
    tl.train_tokenizer(CORPUS, str(tmp_path / "x.model"), 50)


def test_bins_round_half_to_even_and_clip():
  assert tl.coords_to_bins(0.5) == 512  # 511.5 -> 512 (even)
  np.testing.assert_array_equal(tl.coords_to_bins([-0.2, 0.0, 1.0, 1.7]), [0, 0, 1023, 1023])
  v = np.float32(np.arange(0, 1024) / 1023)
  np.testing.assert_array_equal(tl.coords_to_bins(v), np.arange(1024))
  np.testing.assert_allclose(tl.bins_to_coords(tl.coords_to_bins(v)), v, atol=1e-6)


def test_detection_round_trip():
  boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]], np.float32)
  s = tl.boxes_to_loc_str(boxes, ["cat", "big dog"])
  assert s == ("<loc0102><loc0205><loc0512><loc0614> cat ; "
               "<loc0000><loc0000><loc1023><loc1023> big dog")
  objs, invalid = tl.parse_detections(s)
  assert not invalid and [o.label for o in objs] == ["cat", "big dog"]
  np.testing.assert_allclose(np.stack([o.box for o in objs]), boxes, atol=0.5 / 1023)
  assert tl.boxes_to_loc_str(boxes[:1]) == "<loc0102><loc0205><loc0512><loc0614>"
  with pytest.raises(ValueError, match="2 labels for 1 boxes"):
    tl.boxes_to_loc_str(boxes[:1], ["a", "b"])


def test_parse_reports_invalid_pieces():
  text = ("<loc0010><loc0020><loc0005><loc0600> dog ; junk ; <loc0001><loc0002> x ; "
          "<loc0001><loc0002><loc0003><loc0004> ok ; <loc0001><loc0002><loc0003><loc0004>"
          "<seg001> cat ; <loc0001><loc0002><loc0003><loc0004> a <loc0001>")
  objs, invalid = tl.parse_detections(text)
  assert [o.label for o in objs] == ["ok"]
  reasons = [r for _, r in invalid]
  assert reasons[0].startswith("empty box") and "does not start" in reasons[1]
  assert "does not start" in reasons[2] and "unexpected <segNNN>" in reasons[3]
  assert "inside the label" in reasons[4]
  assert tl.parse_detections("") == ([], [])


def test_segmentation_round_trip_and_checks():
  codes = np.arange(16) * 8
  s = tl.seg_to_str([0.1, 0.2, 0.5, 0.6], codes) + " cat ; " + tl.seg_to_str(
      [0, 0, 1, 1], codes[::-1])
  objs, invalid = tl.parse_segmentations(s)
  assert not invalid and objs[0].label == "cat" and objs[1].label == ""
  np.testing.assert_array_equal(objs[0].codes, codes)
  np.testing.assert_array_equal(objs[1].bins, [0, 0, 1023, 1023])
  objs, invalid = tl.parse_segmentations(
      "<loc0001><loc0002><loc0003><loc0004><seg001> x ; "
      "<loc0001><loc0002><loc0003><loc0004>" + "<seg200>" * 16)
  assert not objs and "1 <segNNN> tokens, need 16" in invalid[0][1]
  assert "seg index 200 > 127" in invalid[1][1]
  with pytest.raises(ValueError, match="must be 16 ints in"):
    tl.seg_to_str([0, 0, 1, 1], [1, 2])


def test_loc_index_out_of_range_is_invalid():
  objs, invalid = tl.parse_detections("<loc0001><loc0002><loc1500><loc1600> x")
  assert not objs and "loc index 1600 > 1023" in invalid[0][1]


def test_make_tokenizer_cli(tmp_path, capsys):
  from tools import make_tokenizer  # pylint: disable=import-outside-toplevel
  corpus = tmp_path / "c.txt"
  corpus.write_text("\n".join(CORPUS))
  out = str(tmp_path / "m.model")
  make_tokenizer.main(["train", "--corpus", str(corpus), "--output", out,
                       "--vocab_size", "300"])
  assert "<loc0000>=300 <seg000>=1324" in capsys.readouterr().out
  make_tokenizer.main(["extend", "--input", out, "--output", str(tmp_path / "e.model")])
  assert tl.Tokenizer(str(tmp_path / "e.model")).vocab_size == 300 + 1152
