"""Fuzz: the box/mask codecs and RLE masks on bad values.

Families: `codecs` (encoding raises a one-line error for NaN, reversed boxes, bad seg
codes; parsing never raises and reports every malformed object in `invalid`, a counted
skip), `rle` (malformed RLE masks).
"""
import math

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest

from big_vision_lite import postprocess
from big_vision_lite import tokenizer
from tests.reliability.fuzz_common import COUNTS, FUZZ, check_error, check_skip

_COORD = st.floats(0.0, 1.0)
_NON_ASCII_DIGIT = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())


@hypothesis.settings(max_examples=25, **FUZZ)
@hypothesis.given(st.lists(_COORD, min_size=4, max_size=4), st.integers(0, 3))
def test_fuzz_nan_coordinates(box, i):
  box[i] = math.nan
  check_error("codecs", lambda: tokenizer.box_to_loc_str(box), "NaN", "[0, 1]")
  check_error("codecs", lambda: tokenizer.boxes_to_loc_str([box], ["x"]), "NaN")


@hypothesis.settings(max_examples=30, **FUZZ)
@hypothesis.given(_COORD, _COORD, _COORD, _COORD, st.booleans())
def test_fuzz_reversed_boxes(a, b, c, d, flip_y):
  f32 = np.float32
  hypothesis.assume((f32(a) != f32(b)) if flip_y else (f32(c) != f32(d)))
  ymin, ymax = (max(a, b), min(a, b)) if flip_y else (min(a, b), max(a, b))
  xmin, xmax = (min(c, d), max(c, d)) if flip_y else (max(c, d), min(c, d))
  check_error("codecs", lambda: tokenizer.box_to_loc_str([ymin, xmin, ymax, xmax]),
              "reversed", "ymin <= ymax")


@hypothesis.settings(max_examples=30, **FUZZ)
@hypothesis.given(st.lists(st.integers(0, 127), min_size=16, max_size=16),
                  st.integers(0, 15), st.one_of(
                      st.floats(-10, 200).filter(lambda f: not f.is_integer()),
                      st.integers(128, 10**6), st.integers(-10**6, -1),
                      st.just(math.nan), st.just(math.inf)))
def test_fuzz_bad_seg_codes(codes, i, bad):
  codes = [float(c) for c in codes] if isinstance(bad, float) else list(codes)
  codes[i] = bad
  check_error("codecs", lambda: tokenizer.seg_to_str([0.1, 0.1, 0.5, 0.5], codes),
              "must be 16 ints in [0, 127]")


@pytest.mark.parametrize("codes", [[1] * 15, [1] * 17, [], [True] * 16, ["a"] * 16])
def test_wrong_seg_code_counts_and_types(codes):
  check_error("codecs", lambda: tokenizer.seg_to_str([0.1, 0.1, 0.5, 0.5], codes),
              "must be 16 ints", errors=(ValueError, TypeError))


@hypothesis.settings(max_examples=30, **FUZZ)
@hypothesis.given(st.lists(_NON_ASCII_DIGIT, min_size=4, max_size=4), st.integers(0, 3),
                  st.booleans())
def test_fuzz_non_ascii_digits_are_invalid_objects(digits, which, seg):
  """Parsing never raises: an object with non-ASCII digits is counted as invalid."""
  locs = ["<loc0100>", "<loc0200>", "<loc0800>", "<loc0900>"]
  locs[which] = f"<loc{''.join(digits)}>"
  good = "<loc0001><loc0002><loc0500><loc0600>" + ("<seg001>" * 16 if seg else "") + " ok"
  bad = "".join(locs) + ("<seg001>" * 16 if seg else "") + " cat"
  parse = tokenizer.parse_segmentations if seg else tokenizer.parse_detections
  objects, invalid = parse(f"{good} ; {bad}")
  assert [o.label for o in objects] == ["ok"]
  check_skip("codecs", len(invalid), 1, 1)
  assert invalid[0][0] == bad and "<locNNNN>" in invalid[0][1]


@hypothesis.settings(max_examples=20, **FUZZ)
@hypothesis.given(st.lists(_NON_ASCII_DIGIT, min_size=3, max_size=3))
def test_fuzz_non_ascii_seg_digits(digits):
  text = ("<loc0001><loc0002><loc0500><loc0600>" + "<seg001>" * 15 +
          f"<seg{''.join(digits)}> cat")
  objects, invalid = tokenizer.parse_segmentations(text)
  assert not objects
  check_skip("codecs", len(invalid), 1, 1)


_RLE_FAULTS = {
    "negative": st.integers(-10**13, -1),
    "huge": st.integers(10**6, 10**13),
    "float": st.floats(0.5, 10.5).filter(lambda f: not f.is_integer()),
    "string": st.text(max_size=3),
    "bool": st.booleans(),
}


@hypothesis.settings(max_examples=40, **FUZZ)
@hypothesis.given(st.sampled_from(sorted(_RLE_FAULTS)).flatmap(
    lambda k: st.tuples(st.just(k), _RLE_FAULTS[k])), st.integers(0, 2))
def test_fuzz_bad_rle_counts(kind_value, i):
  _, value = kind_value
  counts = [4, 8, 8]
  counts[i] = value
  rle = {"size": [4, 5], "counts": counts}
  needle = "sum to" if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
      else "not a non-negative int"
  check_error("rle", lambda: postprocess.rle_to_mask(rle), needle, "valid:")


@pytest.mark.parametrize("rle,needle", [
    ({"size": [4, 5]}, "lacks size/counts"), ([1, 2], "lacks size/counts"),
    ({"size": [-4, 5], "counts": [20]}, "not two non-negative ints"),
    ({"size": [4], "counts": [4]}, "not two non-negative ints"),
    ({"size": "4x5", "counts": [20]}, "not two non-negative ints"),
    ({"size": [4.0, 5], "counts": [20]}, "not two non-negative ints"),
    ({"size": [10**7, 10**7], "counts": [10**14]}, "exceeds"),
    ({"size": [4, 5], "counts": "20"}, "not a non-negative int"),
    ({"size": [4, 5], "counts": [10**13, 20]}, "sum to"),
])
def test_bad_rle_structure(rle, needle):
  check_error("rle", lambda: postprocess.rle_to_mask(rle), needle)


@hypothesis.settings(max_examples=20, **FUZZ)
@hypothesis.given(st.integers(1, 9), st.integers(1, 9), st.data())
def test_fuzz_rle_round_trip_of_valid_masks(h, w, data):
  """The checks reject no valid mask: every mask round-trips."""
  mask = np.asarray(data.draw(st.lists(st.booleans(), min_size=h * w, max_size=h * w)),
                    bool).reshape(h, w)
  np.testing.assert_array_equal(postprocess.rle_to_mask(postprocess.mask_to_rle(mask)), mask)


def test_fuzz_codec_counts():
  assert COUNTS["codecs"] >= 25 * 2 + 30 + 30 + 5 + 30 + 20, COUNTS
  assert COUNTS["rle"] >= 40 + 9, COUNTS
