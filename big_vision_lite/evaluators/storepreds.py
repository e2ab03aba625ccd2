"""Writes predictions of any task to `{workdir}/{name}_predictions.json`; no metrics.

Each record is {"id", "prompt", "answer"}, plus any extra keys listed in `keep` that the
eval pp kept. `id_key` names the example id key (e.g. "question_id", "image/id");
`prompt_key` the raw prompt string kept by the pp (e.g. "prefix").
"""
import numpy as np

from big_vision_lite.evaluators import common


class Evaluator:
  """Stores predictions; yields only `num`."""

  def __init__(self, predict_fn, tokenizer, *, data, pp_fn, batch_size, id_key="id",
               prompt_key="prefix", keep=(), name="storepreds", workdir=None):
    self.predict_fn, self.tok = predict_fn, tokenizer
    self.data, self.pp_fn, self.batch_size = data, pp_fn, batch_size
    self.id_key, self.prompt_key, self.keep = id_key, prompt_key, tuple(keep)
    self.name, self.workdir = name, workdir

  def run(self, params):
    """Predicts on the whole eval set; yields ("num", count) and writes the JSON."""
    records = []
    batches = common.eval_batches(self.data, self.pp_fn, self.batch_size)
    keys = (self.id_key, self.prompt_key) + self.keep
    for gt, answer in common.decoded_examples(self.predict_fn, params, self.tok,
                                              batches, keys):
      rec = {"id": gt.get(self.id_key), "prompt": gt.get(self.prompt_key),
             "answer": answer}
      rec.update({k: gt[k].tolist() if isinstance(gt[k], np.ndarray) else gt[k]
                  for k in self.keep if k in gt})
      records.append(rec)
    records = common.gather_json(records)
    yield "num", len(records)
    common.write_json(self.workdir, self.name, records)
