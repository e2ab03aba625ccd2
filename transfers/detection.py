r"""PaliGemma transfer to COCO-style object detection: "detect cat ; dog" -> boxes.

  python -m big_vision_lite.train --config transfers/detection.py:res=448,train=/data/train.jsonl,val=/data/val.jsonl \
      --workdir /tmp/detection

Data: JSONL rows {"image": "path.jpg", "image/id": 1, "classes": "cat ; dog",
"objects": {"bbox": [[ymin, xmin, ymax, xmax], ...] (normalised), "label": ["cat", ...]}}
(`classes`: the queried classes joined by " ; "). Prompt "detect {classes}", target
"<loc>x4 label ; ..." (PaliGemma's detection format). Evaluator: COCO mAP.
big_vision publishes no detection transfer config: the hyper-parameters follow its
RefCOCO-style recipes (lr 1e-5, no weight decay, batch 64).
"""
import ml_collections

from transfers import common


def get_config(arg=None):
  """lr 1e-5, wd 0, batch 64, 10 epochs, text_len 128 (room for ~12 objects)."""
  a = common.parse(arg, res=448, text_len=128, batch_size=64, train="", val="",
                   total_epochs=10)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("detect {classes}", outkey="prefix")'
  target = 'box_to_loc(inkey="objects/bbox", labels_key="objects/label", outkey="suffix")'
  jsonl = lambda f: dict(name="jsonl", fname=f, fopen_keys=("image",))

  # Input.
  c.input = dict(data=jsonl(a.train or f"{a.data_dir or 'data'}/train.jsonl"),
                 batch_size=a.batch_size, shuffle_buffer_size=10_000,
                 pp=common.train_pp(a, prompt, target))
  c.total_epochs = a.total_epochs

  # Model.
  c.model_name = "paligemma"
  c.model = common.model(a)
  c.model_init = common.checkpoint(a)  # Read at startup; README: where to get it.
  c.tokenizer = a.tokenizer

  # Optimizer: Adam, cosine schedule with 5% warmup, gradient norm clipped at 1.
  c.optax_name = "scale_by_adam"
  c.optax = dict(b2=0.999)
  c.lr = 1e-5
  c.wd = 0.0
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.0
  cosine = dict(decay_type="cosine", warmup_percent=0.05)
  c.schedule = [("img/.*", cosine), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  val = jsonl(a.val or f"{a.data_dir or 'data'}/val.jsonl")
  pp = common.eval_pp(a, prompt, keep=("image/id", "objects/bbox", "objects/label"))
  c.evals = {}
  c.evals["detection/val"] = common.decode_eval("detection", val, pp, a, log_percent=0.1)
  c.evals["detection/val/pplx"] = common.pplx_eval(val, c.input.pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
