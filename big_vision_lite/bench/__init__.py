"""Benchmarks run by `tools/benchmark.py`, and the analytic FLOP / memory model.

Modules: `timing` (timed repetitions, device sync), `train` (train step MFU), `loop`
(`train()` loop overhead), `decode` (ours vs HF generate), `input` (input pipeline),
`memory` (fine-tune memory, fit scale), `serve` (HTTP server), `bv` (side by side with
big_vision), `flops` (analytic FLOPs, bytes and memory).
"""
