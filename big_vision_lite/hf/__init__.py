"""Hugging Face interop: config.json <-> model config, safetensors I/O, npz <-> HF conversion.

Modules: `config` (config.json of PaliGemmaForConditionalGeneration), `shapes` (tensor
shapes a config.json implies), `io` (safetensors / npz readers and writers, streaming),
`processor` (processor and tokenizer files), `convert` (npz <-> HF directory).
"""
