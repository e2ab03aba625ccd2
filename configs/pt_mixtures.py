"""PaliGemma pre-training task families: prompts (the paper's task prefixes) and sources.

WebLI and most of the paper's pre-training data are not public, so every task reads
data given as an argument `{task}=SPEC`, SPEC being a JSONL file ("path.jsonl", image
paths relative to it) or a prepared TFDS dataset ("tfds:name:split"). Default:
`{data_dir}/{task}.jsonl`. The keys each task reads:

  caption      image, lang ("en"), caption     prefix "caption {lang}"
  ocr          image, text                     prefix "ocr"
  vqa          image, lang, question, answer   prefix "answer {lang} {question}"
  qgen         image, lang, question, answer   prefix "question {lang} {answer}"
  detect       image, classes ("cat ; dog"), objects/bbox [n, 4], objects/label [n]
                                               prefix "detect {classes}"
  segment      image, thing, objects/mask [1, H, W, 1], objects/bbox [1, 4]
                                               prefix "segment {thing}" (needs `vqvae`)
  grounded     image, box [4], caption         prefix "caption <loc>x4" (region caption)
"""
from transfers import common

# task -> pp ops making prefix and suffix ({vqvae!r}: the VQ-VAE file of `mixture`).
TASKS = {
    "caption": ('strfmt("caption {lang}", outkey="prefix")'
                '|copy(inkey="caption", outkey="suffix")'),
    "ocr": 'strfmt("ocr", outkey="prefix")|copy(inkey="text", outkey="suffix")',
    "vqa": ('strfmt("answer {lang} {question}", outkey="prefix")'
            '|copy(inkey="answer", outkey="suffix")'),
    "qgen": ('strfmt("question {lang} {answer}", outkey="prefix")'
             '|copy(inkey="question", outkey="suffix")'),
    "detect": ('strfmt("detect {classes}", outkey="prefix")|box_to_loc('
               'inkey="objects/bbox", labels_key="objects/label", outkey="suffix")'),
    "segment": ('strfmt("segment {thing}", outkey="prefix")|mask_to_seg({vqvae!r}, '
                'mask_key="objects/mask", box_key="objects/bbox")'),
    "grounded": ('box_to_loc(inkey="box", outkey="region")'
                 '|strfmt("caption {region}", outkey="prefix")'
                 '|copy(inkey="caption", outkey="suffix")'),
}


def task_args():
  """The `{task}=SPEC` arguments (empty: `{data_dir}/{task}.jsonl`)."""
  return {task: "" for task in TASKS}


def source(spec, task, a, split="train"):
  """Data source config of one task from its SPEC argument."""
  spec = spec or f"{a.data_dir or 'data'}/{task}.jsonl"
  if spec.startswith("tfds:"):
    parts = spec.split(":")
    if len(parts) not in (2, 3):
      raise ValueError(f"{task}={spec!r}: use 'tfds:name' or 'tfds:name:split'.")
    return dict(name=parts[1], split=parts[2] if len(parts) == 3 else split,
                data_dir=a.data_dir or None)
  if not spec.endswith(".jsonl"):
    raise ValueError(f"{task}={spec!r} is neither a .jsonl file nor 'tfds:name[:split]'.")
  return dict(name="jsonl", fname=spec, fopen_keys=("image",))


def mixture(a, weights, *, vqvae):
  """`config.input` of the weighted mixture `weights` ({task: weight}) at `a.res`."""
  unknown = sorted(set(weights) - set(TASKS))
  if unknown:
    raise ValueError(f"Unknown pre-training tasks {unknown}; known: {sorted(TASKS)}.")
  cfg = dict(data={t: w for t, w in weights.items() if w}, batch_size=a.batch_size,
             shuffle_buffer_size=50_000)
  for task in cfg["data"]:
    ops = TASKS[task].replace("{vqvae!r}", repr(vqvae))
    cfg[task] = dict(data=source(a[task], task, a), pp=common.train_pp(a, ops, antialias=True))
  return cfg


def caption_pplx_eval(a, spec):
  """Perplexity on held-out captions (`spec` as the task arguments)."""
  return common.pplx_eval(source(spec, "caption_val", a, split="validation"),
                          common.train_pp(a, TASKS["caption"], antialias=True),
                          log_percent=0.1)
