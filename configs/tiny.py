"""Smallest PaliGemma config (ViT "mu" + "gemma_tiny") on a tiny shapes set: for tests.

  python -m big_vision_lite.train --config configs/tiny.py:data_dir=/tmp/shapes_tiny \
      --workdir /tmp/tiny
"""
from big_vision_lite.config_args import parse_arg
from configs import common
import ml_collections

TOKENIZER_BASE_VOCAB = 300


def get_config(arg=None):
  """Returns the tiny config; args: data_dir, total_steps, batch_size, res."""
  a = parse_arg(arg, data_dir="data/shapes_tiny", total_steps=2, batch_size=8, res=28,
                text_len=24)
  c = ml_collections.ConfigDict()
  data = dict(out_dir=a.data_dir, num_train=16, num_val=8, res=32, seed=0)
  tok = a.data_dir + "/tokenizer.model"
  c.ensure_shapes = data
  c.train_tokenizer = common.shapes_tokenizer(data, tok, TOKENIZER_BASE_VOCAB)
  c.tokenizer = tok

  # Input.
  c.input = common.shapes_mixture({"caption": 1.0, "vqa": 1.0}, data=data, res=a.res,
                                  text_len=a.text_len, tokenizer=tok,
                                  batch_size=a.batch_size, shuffle_buffer_size=16)
  c.total_steps = a.total_steps
  c.log_training_steps = 1

  # Model.
  c.model_name = "paligemma"
  c.model = common.paligemma_model(
      img=dict(variant="mu", depth=2, mlp_dim=64, patch_size=(14, 14), scan=True,
               remat_policy="none"),
      llm=dict(variant="gemma_tiny", scan=True, remat_policy="none"),
      vocab_size=TOKENIZER_BASE_VOCAB + common.NUM_LOC_SEG)
  c.model_init = None
  c.seed = 0

  # Optimizer.
  c.optax_name = "scale_by_adam"
  c.lr = 1e-3
  c.wd = 1e-4
  c.grad_clip_norm = 1.0
  c.schedule = dict(decay_type="cosine", warmup_steps=1)

  # Sharding.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation and checkpointing.
  c.evals = {}
  c.ckpt_steps = 1
  return c
