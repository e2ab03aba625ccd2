"""Writes predictions of any task to `{workdir}/{name}_predictions.json`; no metrics.

Each record is {"id", "prompt", "answer"}, plus any extra keys listed in `keep` that the
eval pp kept. `id_key` names the example id key (e.g. "question_id", "image/id");
`prompt_key` the raw prompt string kept by the pp (e.g. "prefix").
"""
import dataclasses

import numpy as np

from big_vision_lite.evaluators import common


@dataclasses.dataclass(kw_only=True, eq=False)
class Evaluator(common.EvaluatorBase):
  """Stores predictions; yields only `num`."""

  id_key: str = "id"
  prompt_key: str = "prefix"
  keep: tuple = ()
  name: str = "storepreds"

  def __post_init__(self):
    self.keep = tuple(self.keep)

  def run(self, params):
    """Predicts on the whole eval set; yields ("num", count) and writes the JSON."""
    records = []
    batches = common.eval_batches(self.data, self.pp_fn, self.batch_size)
    keys = (self.id_key, self.prompt_key) + self.keep
    for gt, answer in common.decoded_examples(self.predict_fn, params, self.tokenizer,
                                              batches, keys):
      rec = {"id": gt.get(self.id_key), "prompt": gt.get(self.prompt_key),
             "answer": answer}
      rec.update({k: gt[k].tolist() if isinstance(gt[k], np.ndarray) else gt[k]
                  for k in self.keep if k in gt})
      records.append(rec)
    records = common.gather_json(records)
    yield "num", len(records)
    common.write_json(self.workdir, self.name, records)
