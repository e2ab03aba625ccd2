r"""POPE (object hallucination), zero-shot: an eval-only config (0 training steps).

  python -m big_vision_lite.train --config transfers/pope.py:ckpt=/ckpts/my_model.npz,data_dir=/tfds \
      --workdir /tmp/pope

Data: TFDS `pope_random`, `pope_popular`, `pope_adversarial` (split test; keys image,
question, answer "yes"/"no", question_id). The prompt is the bare question. Evaluator:
accuracy, precision/recall/F1 of "yes". Point `ckpt` at the model to evaluate.
"""
import ml_collections

from transfers import common

DATASETS = ("pope_random", "pope_popular", "pope_adversarial")


def get_config(arg=None):
  """Evaluates the checkpoint on the three POPE sets without training."""
  a = common.parse(arg, res=224, text_len=48, batch_size=256)
  c = ml_collections.ConfigDict()
  prompt = 'strfmt("{question}", outkey="prefix")'

  # Input (never read for training: it only fixes the shapes of the train state).
  pp = common.train_pp(a, prompt, 'copy(inkey="answer", outkey="suffix")')
  c.input = dict(data={ds: 1.0 for ds in DATASETS}, batch_size=a.batch_size)
  for ds in DATASETS:
    c.input[ds] = dict(data=common.tfds(ds, "test", a), pp=pp)
  c.total_steps = 0

  # Model.
  c.model_name = "paligemma"
  c.model = common.model(a)
  c.model_init = common.checkpoint(a)  # Read at startup; README: where to get it.
  c.tokenizer = a.tokenizer

  # Optimizer (a placeholder: nothing is trained).
  c.optax_name = "identity"
  c.lr = 0.0

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  eval_pp = common.eval_pp(a, prompt, keep=("question_id", "answer"))
  c.evals = {}
  for ds in DATASETS:
    c.evals[f"pope/{ds}"] = common.decode_eval(
        "pope", common.tfds(ds, "test", a), eval_pp, a, log_percent=1.0)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
