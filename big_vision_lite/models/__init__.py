"""Model modules: each defines `Model` and `load` (towers are imported by name).

`get_module(name)` resolves `config.model_name`; `model_kwargs(name, model_cfg,
compute_dtype)` returns the Model kwargs that compute in `compute_dtype`.
"""
import dataclasses
import importlib
import pkgutil

from big_vision_lite import registry

# Model fields that set the dtype a tower computes in (ViT matmuls, Gemma's stream).
_COMPUTE_FIELDS = ("dtype_mm", "embed_dtype")
_TOWERS = {"img": ("img_model", "vit"), "llm": ("llm_model", "gemma")}


def get_module(name, kind="model_name"):
  """`config.model_name` (or a tower's `img_model` / `llm_model`, named by `kind` in
  errors) -> the module `big_vision_lite.models.<name>`, which defines Model and load."""
  pkg = importlib.import_module("big_vision_lite.models")
  known = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__))
  if name not in known:
    raise registry.unknown_name(kind, name, known)
  module = importlib.import_module(f"big_vision_lite.models.{name}")
  for attr in ("Model", "load"):
    if not hasattr(module, attr):
      raise ValueError(f"big_vision_lite.models.{name} has no `{attr}`; a model module "
                       "must define `Model` and `load`.")
  return module


def _with_compute(name, cfg, dtype):
  fields = {f.name for f in dataclasses.fields(get_module(name).Model)}
  cfg = dict(cfg or {})
  cfg.update({f: dtype for f in _COMPUTE_FIELDS if f in fields})
  if name == "paligemma":
    for tower, (key, default) in _TOWERS.items():
      cfg[tower] = _with_compute(cfg.get(key, default), cfg.get(tower), dtype)
  return cfg


def model_kwargs(name, model_cfg, compute_dtype=None):
  """Model kwargs of `config.model` (a plain dict) computing in `compute_dtype`.

  Args:
    name: `config.model_name`.
    model_cfg: `config.model` (dict or ConfigDict; not modified).
    compute_dtype: None/"float32" keeps `model_cfg`; "bfloat16" sets every tower's
      compute-dtype field (ViT `dtype_mm`, Gemma `embed_dtype`). Params stay as they
      are: the train step casts them (f32 master params, bf16 compute).
  """
  cfg = model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dict(model_cfg or {})
  if compute_dtype in (None, "float32"):
    return cfg
  if compute_dtype not in ("bfloat16", "float16"):
    raise registry.unknown_name("compute_dtype", compute_dtype,
                                ("float32", "bfloat16", "float16"))
  return _with_compute(name, cfg, compute_dtype)
