"""Video pp ops: sample frames uniformly (decoding encoded ones), or make a still video.

A video in an example is one of:
  * uint8[F, H, W, 3]: decoded frames (the TFDS `Video` feature);
  * string[F]: encoded frames (PNG/JPEG bytes), as the `shapes` video tasks serve them;
  * string[F]: image file paths (a list of image files), with `read_files=True`.

`video_sample(N)` turns any of them into uint8[N, H, W, 3]. The image ops `resize`
and `value_range` act on the trailing [H, W, 3] and so work on it unchanged, and the
model folds the frames into its batch: image float32[B, N, H, W, 3] gives N * P tokens.
"""
import tensorflow as tf

from big_vision_lite.pp import builder
from big_vision_lite.pp import ops_image
from big_vision_lite.pp.builder import PP_OPS


def _positive_int(op, name, value):
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"pp op '{op}': {name}={value!r} must be a positive int.")


def _get(data, op, key):
  if key not in data:
    raise KeyError(f"pp op '{op}' needs key {key!r}, the example has {sorted(data)}.")
  return data[key]


def uniform_indices(num_available, num_frames, offsets=None):
  """Indices of `num_frames` frames spread uniformly over `num_available` ones.

  Frame i is taken from the i-th of `num_frames` equal segments: at its centre, or at
  `offsets[i]` (in [0, 1)) of the way through it. Fewer available frames than wanted
  repeat frames (each still in time order).

  Args:
    num_available: int32 scalar F >= 1.
    num_frames: N (python int).
    offsets: optional float32[N] in [0, 1); default 0.5 (segment centres).

  Returns:
    int32[N], non-decreasing, in [0, F).
  """
  f = tf.cast(num_available, tf.float32)
  pos = tf.range(num_frames, dtype=tf.float32)
  pos += 0.5 if offsets is None else offsets
  idx = tf.cast(tf.floor(pos * f / num_frames), tf.int32)
  return tf.clip_by_value(idx, 0, tf.cast(num_available, tf.int32) - 1)


@PP_OPS.register("video_sample")
def get_video_sample(num_frames, key="image", read_files=False, random=False, seed=None):
  """Samples `num_frames` frames uniformly in time from the video `data[key]`.

  Args:
    num_frames: N, the frames kept (videos with fewer frames repeat some).
    key: the video: uint8[F, H, W, 3], or string[F] encoded frames or file paths.
    read_files: the strings are file paths: read them (only the sampled ones).
    random: take each frame at a random point of its segment (training jitter; from
      the example's `_seed`) instead of the segment centre.
    seed: for `random` without `_seed` (TF's stateful ops).

  Returns data with `data[key]` uint8[N, H, W, 3]; encoded frames are decoded (exact
  JPEG), only the sampled ones. Frames of one video must share their size.
  """
  _positive_int("video_sample", "num_frames", num_frames)
  builder.check_choice("video_sample", "read_files", read_files, (True, False))
  builder.check_choice("video_sample", "random", random, (True, False))

  def _sample(data):
    data = dict(data)
    video = _get(data, "video_sample", key)
    if video.dtype == tf.string:
      if video.shape.rank != 1:
        raise ValueError(f"pp op 'video_sample': string {key!r} must be [F] (one encoded "
                         f"frame or path per entry), got rank {video.shape.rank}.")
    elif video.shape.rank != 4:
      raise ValueError(f"pp op 'video_sample': {key!r} must be uint8[F, H, W, 3] or "
                       f"string[F], got {video.dtype.name} of rank {video.shape.rank}. "
                       "For a single image use video_from_image.")
    n_avail = tf.shape(video)[0]
    check = tf.debugging.assert_positive(
        n_avail, message=f"pp op 'video_sample': the video {key!r} has no frames.")
    offsets = (builder.uniform(data, "video_sample", (num_frames,), seed=seed)
               if random else None)
    with tf.control_dependencies([check]):
      frames = tf.gather(video, uniform_indices(n_avail, num_frames, offsets))
    if video.dtype == tf.string:
      if read_files:
        frames = tf.map_fn(tf.io.read_file, frames, fn_output_signature=tf.string)
      frames = tf.map_fn(ops_image.decode_image, frames,
                         fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    frames.set_shape([num_frames, None, None, 3])
    data[key] = frames
    return data
  return _sample


@PP_OPS.register("video_from_image")
def get_video_from_image(num_frames, key="image"):
  """Repeats an image [H, W, C] into a still video [num_frames, H, W, C].

  Lets image data train or evaluate a video model (same token count per example).
  """
  _positive_int("video_from_image", "num_frames", num_frames)

  def _still(data):
    data = dict(data)
    image = _get(data, "video_from_image", key)
    if image.shape.rank != 3:
      raise ValueError(f"pp op 'video_from_image': {key!r} must be an image [H, W, C], "
                       f"got rank {image.shape.rank}.")
    data[key] = tf.repeat(image[None], num_frames, axis=0)
    return data
  return _still
