r"""PaliGemma transfer to GQA (balanced; published recipe).

  python -m big_vision_lite.train --config transfers/gqa.py:res=224,data_dir=/tfds \
      --workdir /tmp/gqa

Data: TFDS `gqa` (keys image, question, answer, example_id). Prompt
"answer en {question}". Evaluator: accuracy on testdev_balanced. The ViT is frozen at
448 px and trained at 224 px, as in the published sweep.
"""
import ml_collections

from transfers import common


def get_config(arg=None):
  """Best published hyper-parameters: 1 epoch, lr 1e-5, wd 0, batch 256.

  `freeze_vit`: -1 (default) is the published choice (frozen at res >= 448); 0 or 1 forces.
  """
  a = common.parse(arg, res=224, text_len=32, batch_size=256, final_split=False,
                   freeze_vit=-1)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("answer en {question}", outkey="prefix")'
  freeze_vit = a.res >= 448 if a.freeze_vit == -1 else bool(a.freeze_vit)

  # Input.
  split = "train_balanced+val_balanced" if a.final_split else "train_balanced"
  c.input = dict(data=common.tfds("gqa", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, prompt, 'copy(inkey="answer", outkey="suffix")'))
  c.total_epochs = 1

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
  c.schedule = [("img/.*", None if freeze_vit else cosine), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  pp = common.eval_pp(a, prompt, 'copy(inkey="example_id", outkey="question_id")',
                      keep=("answer", "question_id"))
  c.evals = {}
  for name, split, freq in [("val_balanced", "val_balanced", 0.125),
                            ("testdev_balanced", "testdev_balanced", 1.0)]:
    c.evals[f"gqa/{name}"] = common.decode_eval(
        "vqa", common.tfds("gqa", split, a), pp, a, log_percent=freq)
  c.evals["gqa/minival/pplx"] = common.pplx_eval(
      common.tfds("gqa", "val_balanced[:5%]", a), c.input.pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
