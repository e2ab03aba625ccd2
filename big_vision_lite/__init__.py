"""big_vision_lite: PaliGemma in JAX/Flax, in the style of big_vision.

The top level is the trainer core (`train`, `steps`, `optim`, `sharding`, `resume`,
`checkpoint`, `input_pipeline`, `metrics_log`) and the config checks; subpackages hold
`models`, `datasets`, `pp`, `decode`, `evaluators`, `hf` (Hugging Face interop), `serve`
and `bench` (benchmarks of `tools/benchmark.py`). README.md's layout table lists every
module.
"""
