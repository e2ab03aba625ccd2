"""Tests of box_to_loc, mask_to_seg, flip_lr, box_bins, label_counts, patch_labels,
patch_merge and patch_boxes."""
import numpy as np
import pytest
import tensorflow as tf

from big_vision_lite import tokenizer as tokenizer_lib
from big_vision_lite.pp import builder
from big_vision_lite.pp import ops_task


def run(pp, **ex):
  return builder.get_preprocess_fn(pp)({k: tf.constant(v) for k, v in ex.items()})


def test_box_to_loc_bins_match_reference_rounding():
  rng = np.random.default_rng(0)
  boxes = rng.uniform(-0.1, 1.1, (200, 4)).astype(np.float32)
  # The codec refuses reversed boxes: order each pair (ymin <= ymax, xmin <= xmax).
  boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]),
                          np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
  boxes[0] = [0.5, 0.0, 1.0, 0.25]
  per_box = ops_task.boxes_to_loc_tf(boxes).numpy()
  for box, s in zip(boxes, per_box):
    assert s.decode() == tokenizer_lib.box_to_loc_str(box)
  assert per_box[0].decode() == "<loc0512><loc0000><loc1023><loc0256>"  # 511.5 -> 512


def test_box_to_loc_detection_string():
  out = run("box_to_loc(labels_key='objects/label')",
            **{"objects/bbox": [[0.1, 0.2, 0.5, 0.6], [0, 0, 1, 1]],
               "objects/label": ["cat", "big dog"]})
  want = tokenizer_lib.boxes_to_loc_str([[0.1, 0.2, 0.5, 0.6], [0, 0, 1, 1]],
                                        ["cat", "big dog"])
  assert out["suffix"].numpy().decode() == want
  out = run("box_to_loc(inkey='box', outkey='s')", box=[0.1, 0.2, 0.5, 0.6])
  assert out["s"].numpy() == b"<loc0102><loc0205><loc0512><loc0614>"
  out = run("box_to_loc", **{"objects/bbox": np.zeros([0, 4], np.float32)})
  assert out["suffix"].numpy() == b""


def test_box_to_loc_errors():
  with pytest.raises(TypeError, match="labels 'l' must be strings"):
    run("box_to_loc(labels_key='l')", **{"objects/bbox": [[0, 0, 1, 1]], "l": [3]})
  with pytest.raises(KeyError, match="'box_to_loc' needs key 'objects/bbox'"):
    run("box_to_loc", x=1)


def test_flip_lr_image_and_boxes():
  img = np.arange(2 * 3 * 1).reshape(2, 3, 1)
  box = [[0.1, 0.2, 0.5, 0.7]]
  out = run("flip_lr(boxes_key='b', prob=1.0)", image=img, b=box)
  np.testing.assert_array_equal(out["image"], img[:, ::-1])
  np.testing.assert_allclose(out["b"], [[0.1, 0.3, 0.5, 0.8]], atol=1e-6)
  out = run("flip_lr(boxes_key='b', prob=0)", image=img, b=box)
  np.testing.assert_array_equal(out["image"], img)
  np.testing.assert_allclose(out["b"], box)
  fn = builder.get_preprocess_fn("flip_lr")
  flips = {bool(fn({"image": tf.constant(img), "_seed": tf.constant([i, 0])})["image"][0, 0, 0]
                != 0) for i in range(20)}
  assert flips == {True, False}
  with pytest.raises(ValueError, match="prob=2 must be a number in"):
    builder.get_preprocess_fn("flip_lr(prob=2)")


def test_crop_masks_64():
  mask = np.zeros((1, 40, 80), np.uint8)
  mask[0, 10:30, 20:60] = 255
  out = ops_task.crop_masks_64(mask, [[0.25, 0.25, 0.75, 0.75]]).numpy()
  assert out.shape == (1, 64, 64)
  np.testing.assert_allclose(out, 1.0)


def test_crop_masks_64_rounds_edges_half_to_even_and_clamps():
  """big_vision's refcoco_mask2str crops mask[round(h*ymin):round(h*ymax), ...] with
  tf.round (half-to-even): 3.5 -> 4 and 6.5 -> 6 here, not floor/ceil's 3 and 7."""
  mask = (np.arange(10)[:, None] * 20 + np.arange(10)[None, :]).astype(np.uint8)[None]
  resize = lambda m: tf.image.resize(m[..., None].astype(np.float32) / 255, [64, 64],
                                     "bilinear", antialias=True).numpy()[..., 0]
  out = ops_task.crop_masks_64(mask, [[0.35, 0.25, 0.65, 0.85]]).numpy()
  np.testing.assert_allclose(out[0], resize(mask[0, 4:6, 2:8]), atol=1e-6)  # 8.5 -> 8.
  # A slightly negative edge (-0.6 px rounds to -1) is clamped to row 0 (the reference
  # would wrap it to the last row); an edge past the image stops at its border.
  out = ops_task.crop_masks_64(mask, [[-0.06, 0.0, 0.3, 1.04]]).numpy()
  np.testing.assert_allclose(out[0], resize(mask[0, 0:3, 0:10]), atol=1e-6)
  # A box thinner than a pixel keeps one row.
  out = ops_task.crop_masks_64(mask, [[0.51, 0.0, 0.52, 1.0]]).numpy()
  np.testing.assert_allclose(out[0], resize(mask[0, 5:6, 0:10]), atol=1e-6)


def test_mask_to_seg_with_tiny_vqvae(tmp_path):
  from big_vision_lite.models import vqvae  # pylint: disable=import-outside-toplevel
  state = vqvae.random_state_dict(enc_widths=(4, 4, 4, 4), embed_dim=8, dec_width=4,
                                  up_widths=(4, 4, 4, 4))
  path = str(tmp_path / "vae.npz")
  np.savez(path, **state)
  rng = np.random.default_rng(0)
  masks = (rng.uniform(size=(2, 32, 48, 1)) > 0.5).astype(np.uint8) * 255
  boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.25, 0.5, 1.0, 1.0]], np.float32)
  out = run(f"mask_to_seg({path!r}, labels_key='l')", l=["a", "b"],
            **{"objects/mask": masks, "objects/bbox": boxes})
  objs, invalid = tokenizer_lib.parse_segmentations(out["suffix"].numpy().decode())
  assert not invalid and [o.label for o in objs] == ["a", "b"]
  want = vqvae.encode_masks(vqvae.load_vqvae(path), ops_task.crop_masks_64(masks, boxes))
  np.testing.assert_array_equal(np.stack([o.codes for o in objs]), want)
  np.testing.assert_array_equal(objs[1].bins, tokenizer_lib.coords_to_bins(boxes[1]))
  with pytest.raises(ValueError, match="vqvae_checkpoint=3 must be"):
    builder.get_preprocess_fn("mask_to_seg(3)")


def test_box_bins_by_centre():
  boxes = np.array([[0.0, 0.0, 0.2, 0.2],      # centre x 0.1, y 0.1
                    [0.5, 0.4, 0.9, 0.6],      # centre x 0.5 (border: upper bin), y 0.7
                    [0.1, 0.6, 0.3, 1.0],      # centre x 0.8, y 0.2
                    [0.2, 0.2, 0.4, 0.2]], np.float32)  # x 0.2 -> first of 3 bins
  out = run("box_bins(names=('left', 'right'))", **{"objects/bbox": boxes})
  assert [v.decode() for v in out["objects/bin"].numpy()] == ["left", "right", "right",
                                                              "left"]
  out = run("box_bins(names=('t', 'm', 'b'), axis='y', outkey='row')",
            **{"objects/bbox": boxes})
  assert [v.decode() for v in out["row"].numpy()] == ["t", "b", "t", "t"]
  out = run("box_bins(names=('left', 'right'))|label_counts(inkey=('objects/label', "
            "'objects/bin'), classes=['a left', 'a right', 'b left', 'b right'], "
            "max_count=2)", **{"objects/bbox": boxes, "objects/label": ["a", "a", "b", "a"]})
  np.testing.assert_array_equal(out["labels"].numpy().reshape(4, 3),
                                [[0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
  out = run("box_bins(names=('l', 'r'))", **{"objects/bbox": np.zeros([0, 4], np.float32)})
  assert out["objects/bin"].shape == (0,)


def test_box_bins_errors():
  with pytest.raises(ValueError, match="names=\\('l',\\) must be two or more"):
    run("box_bins(names=('l',))", x=1)
  with pytest.raises(ValueError, match="axis='z' must be 'x' or 'y'"):
    run("box_bins(names=('l', 'r'), axis='z')", x=1)
  with pytest.raises(KeyError, match="'box_bins' needs key 'objects/bbox'"):
    run("box_bins(names=('l', 'r'))", x=1)


def test_label_counts_one_hot_per_class():
  ex = {"objects/label": ["circle", "square", "circle", "circle", "circle"],
        "objects/color": ["red", "red", "blue", "red", "green"]}
  out = run("label_counts(inkey='objects/label', classes=['circle', 'square', 'star'], "
            "max_count=3)", **ex)
  # circle x4 -> clipped to 3, square x1, star x0: one positive per class.
  np.testing.assert_array_equal(out["labels"].numpy().reshape(3, 4),
                                [[0, 0, 0, 1], [0, 1, 0, 0], [1, 0, 0, 0]])
  out = run("label_counts(inkey=('objects/color', 'objects/label'), max_count=1, "
            "classes=['red circle', 'red square', 'blue square', 'green circle', "
            "'blue circle'], outkey='p')", **ex)
  np.testing.assert_array_equal(out["p"].numpy(), [0, 1, 0, 1, 1, 0, 0, 1, 0, 1])
  out = run("label_counts(inkey='l', classes=['a'], max_count=2)",
            l=np.zeros([0], np.bytes_))
  np.testing.assert_array_equal(out["labels"].numpy(), [1, 0, 0])  # No objects: count 0.


def test_label_counts_errors():
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"(?s)a label of l is not one of \['a', 'b'\].*'c'"):
    run("label_counts(inkey='l', classes=['a', 'b'], max_count=1)", l=["a", "c"])
  with pytest.raises(ValueError, match="classes=.*distinct"):
    run("label_counts(inkey='l', classes=['a', 'a'], max_count=1)", l=["a"])
  with pytest.raises(ValueError, match="max_count=0 must be an int >= 1"):
    run("label_counts(inkey='l', classes=['a'], max_count=0)", l=["a"])
  with pytest.raises(TypeError, match="'l' is int32; it must hold strings"):
    run("label_counts(inkey='l', classes=['a'], max_count=1)", l=[1])
  with pytest.raises(KeyError, match="'label_counts' needs key 'l'"):
    run("label_counts(inkey='l', classes=['a'], max_count=1)", x=1)


def test_patch_labels_token_order_and_first_box():
  ex = {"objects/bbox": [[0.0, 0.0, 0.5, 0.5], [0.5, 0.6, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]],
        "objects/label": ["square", "circle", "circle"], "c": ["red", "red", "blue"]}
  # The third box covers everything: patches held by an earlier box keep its class.
  out = run("patch_labels(grid=4, classes=['circle', 'square'], outkey='p')", **ex)
  np.testing.assert_array_equal(out["p"].numpy().argmax(-1).reshape(4, 4),
                                [[2, 2, 1, 1], [2, 2, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]])
  assert out["p"].shape == (16, 3) and np.all(out["p"].numpy().sum(-1) == 1)
  # Patch centres at 1/4, 3/4; a box [0.5, 0.6, 1, 1] holds only the bottom-right one.
  ex = dict(ex, **{"objects/bbox": ex["objects/bbox"][:2]},
            **{"objects/label": ["square", "circle"], "c": ["red", "blue"]})
  out = run("patch_labels(grid=2, classes=['red square', 'blue circle'], "
            "labels_key=('c', 'objects/label'))", **ex)
  np.testing.assert_array_equal(out["patch_labels"].numpy().argmax(-1), [1, 0, 0, 2])
  out = run("patch_labels(grid=2, classes=['a'])", **{
      "objects/bbox": np.zeros([0, 4], np.float32), "objects/label": np.zeros([0], np.bytes_)})
  np.testing.assert_array_equal(out["patch_labels"].numpy().argmax(-1), [0, 0, 0, 0])


def test_patch_labels_errors():
  ex = {"objects/bbox": [[0.0, 0.0, 1.0, 1.0]], "objects/label": ["star"]}
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)not one of \['a'\].*star"):
    run("patch_labels(grid=2, classes=['a'])", **ex)
  with pytest.raises(ValueError, match="grid=0 must be an int >= 1"):
    run("patch_labels(grid=0, classes=['a'])", **ex)
  with pytest.raises(ValueError, match="classes=.*distinct"):
    run("patch_labels(grid=2, classes=[])", **ex)


def test_label_counts_and_patch_labels_skip_scalar_objects():
  # The shapes scenes' word: one scalar label and box per image, "" when none is drawn.
  word = {"word": "cat", "word_box": [0.0, 0.5, 0.4, 1.0]}
  pp = "label_counts(inkey='word', classes=['cat', 'dog'], max_count=1, skip=('',))"
  np.testing.assert_array_equal(run(pp, **word)["labels"].numpy(), [0, 1, 1, 0])
  no_word = {"word": "", "word_box": [0.0, 0.0, 0.0, 0.0]}
  np.testing.assert_array_equal(run(pp, **no_word)["labels"].numpy(), [1, 0, 1, 0])
  pp = ("patch_labels(grid=2, classes=['cat', 'dog'], boxes_key='word_box', "
        "labels_key='word', skip=('',))")
  np.testing.assert_array_equal(run(pp, **word)["patch_labels"].numpy().argmax(-1),
                                [0, 1, 0, 0])
  # A skipped object covers nothing, even where its box would hold patch centres.
  skipped = {"word": "", "word_box": [0.0, 0.0, 1.0, 1.0]}
  np.testing.assert_array_equal(run(pp, **skipped)["patch_labels"].numpy().argmax(-1),
                                [0, 0, 0, 0])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"(?s)not one of \['cat', 'dog'\] \(or one of skip=\[''\]\).*emu"):
    run(pp, word="emu", word_box=[0.0, 0.0, 1.0, 1.0])
  with pytest.raises(ValueError, match="skip=.*not classes"):
    run("label_counts(inkey='word', classes=['cat'], max_count=1, skip=('cat',))", **word)
  with pytest.raises(ValueError, match="skip=.*list of strings"):
    run("patch_labels(grid=2, classes=['cat'], labels_key='word', skip='')", **word)


def test_patch_merge_first_input_wins_and_classes_are_offset():
  ex = {"objects/bbox": [[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 0.4]],
        "objects/label": ["square", "circle"], "word": "dog", "word_box": [0.0, 0.0, 1.0, 1.0]}
  pp = ("patch_labels(grid=2, classes=['circle', 'square'], outkey='p_obj')|"
        "patch_labels(grid=2, classes=['cat', 'dog'], boxes_key='word_box', "
        "labels_key='word', outkey='p_word')|patch_merge(inkeys=('p_obj', 'p_word'))")
  out = run(pp, **ex)["patch_labels"].numpy()
  # Square (2) top left, circle (1) bottom left; the word box covers all: dog = 2 + 2.
  assert out.shape == (4, 5) and np.all(out.sum(-1) == 1)
  np.testing.assert_array_equal(out.argmax(-1), [2, 4, 1, 4])
  with pytest.raises(tf.errors.InvalidArgumentError, match="not one of"):
    run(pp, **dict(ex, word=""))  # "" is not a class, and the word op has no skip.


def test_patch_merge_errors():
  with pytest.raises(ValueError, match="inkeys='p' must be a list of two or more keys"):
    run("patch_merge(inkeys='p')", p=np.eye(3, dtype=np.float32))
  with pytest.raises(ValueError, match=r"'q' has shape \(3,\); it must be float32\[P, 1 \+ K\]"):
    run("patch_merge(inkeys=('p', 'q'))", p=np.eye(3, dtype=np.float32),
        q=np.ones(3, np.float32))
  with pytest.raises(KeyError, match="'patch_merge' needs key 'q'"):
    run("patch_merge(inkeys=('p', 'q'))", p=np.eye(3, dtype=np.float32))


def test_patch_boxes_distances_to_the_first_box():
  ex = {"objects/bbox": [[0.0, 0.0, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]]}
  out = run("patch_boxes(grid=2)", **ex)["patch_boxes"].numpy()
  # Patch centres (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75) in token order;
  # the first box holds only the top-left one, the second (whole image) the rest.
  np.testing.assert_allclose(out, [[1, 0.25, 0.25, 0.25, 0.35],
                                   [1, 0.25, 0.75, 0.75, 0.25],
                                   [1, 0.75, 0.25, 0.25, 0.75],
                                   [1, 0.75, 0.75, 0.25, 0.25]], atol=1e-6)
  out = run("patch_boxes(grid=2, boxes_key='b', outkey='t')", b=[0.6, 0.6, 1.0, 1.0])["t"]
  np.testing.assert_allclose(out.numpy(), [[0] * 5, [0] * 5, [0] * 5,
                                           [1, 0.15, 0.15, 0.25, 0.25]], atol=1e-6)
  out = run("patch_boxes(grid=3)", **{"objects/bbox": np.zeros([0, 4], np.float32)})
  np.testing.assert_array_equal(out["patch_boxes"].numpy(), np.zeros([9, 5]))
  with pytest.raises(ValueError, match="grid=2.5 must be an int >= 1"):
    run("patch_boxes(grid=2.5)", **ex)
  with pytest.raises(KeyError, match="'patch_boxes' needs key 'objects/bbox'"):
    run("patch_boxes(grid=2)", x=1)
