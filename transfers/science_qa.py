r"""PaliGemma transfer to ScienceQA (image questions, QCM -> A format; published recipe).

  python -m big_vision_lite.train --config transfers/science_qa.py:res=448,data_dir=/tfds \
      --workdir /tmp/science_qa

Data: TFDS `science_qa` (keys image, question, hint, choices [n], answer (index),
indexed_choices "(A) x, (B) y", indexed_answer "A", _id). Prompt "Question: ...\nContext:
...\nOptions: ...\nAnswer:", target "The answer is A.". As in the reference, training
shuffles the options per example (seeded by the example's `_seed`) and re-letters them;
evaluation uses the dataset's order. Evaluator: accuracy of the parsed letter. The ViT
is frozen.
"""
import ml_collections

from transfers import common

SHUFFLE = ('drop("indexed_choices", "indexed_answer")'
           '|sci_qa_choices_shuffle(choice_str_inkey="choices", ans_inkey="answer")')
PREFIX = "Question: {question}\nContext: {hint}\nOptions: {indexed_choices}\nAnswer:"
SUFFIX = "The answer is {indexed_answer}."


def get_config(arg=None):
  """Best published hyper-parameters: 20 epochs, lr 1e-5, wd 0, batch 128, frozen ViT."""
  a = common.parse(arg, res=448, text_len=512, batch_size=128, final_split=False)
  c = ml_collections.ConfigDict()
  prompt = f"strfmt({PREFIX!r}, outkey='prefix')"

  # Input.
  split = "train+val" if a.final_split else "train"
  c.input = dict(data=common.tfds("science_qa", split, a), batch_size=a.batch_size,
                 shuffle_buffer_size=50_000,
                 pp=common.train_pp(a, SHUFFLE, prompt,
                                    f"strfmt({SUFFIX!r}, outkey='suffix')"))
  c.total_epochs = 20

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
  c.schedule = [("img/.*", None), ("llm/.*", cosine)]

  # Sharding: FSDP, params and optimizer state split over all devices.
  c.mesh = [("data", -1)]
  c.sharding_strategy = [(".*", "fsdp(axis='data')")]
  c.sharding_rules = [("act_batch", "data")]

  # Evaluation.
  pp = common.eval_pp(a, prompt, f"strfmt({SUFFIX!r}, outkey='answer')",
                      'copy(inkey="_id", outkey="question_id")',
                      keep=("answer", "question_id"))
  c.evals = {}
  for name, split in [("minival", "val"), ("eval", "test")]:
    c.evals[f"science_qa/{name}"] = common.decode_eval(
        "science_qa", common.tfds("science_qa", split, a), pp, a, log_percent=0.125)
  c.evals["science_qa/minival/pplx"] = common.pplx_eval(
      common.tfds("science_qa", "val", a), c.input.pp, log_percent=0.05)

  # Logging: training metrics every 50 steps, a checkpoint every 1000.
  c.log_training_steps = 50
  c.ckpt_steps = 1000
  c.seed = 0
  return c
