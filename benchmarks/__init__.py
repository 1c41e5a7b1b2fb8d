"""smelt's benchmarks, each a module run from the repository root:

    .venv/bin/python -m benchmarks.<name> [--quick] [--out PATH]

Each writes its results as JSON, a Markdown table and a PNG plot under benchmarks/results/
(or beside `--out`). Speed is a ratio against a peer measured in the same run.

- cpu_latency: CPU latency at batch 1, float32: torch eager, smelt, onnxruntime.
- gpu_latency: smelt's CUDA libraries run by TVM's runtime against torch CUDA eager.
- int8: int8 inference (smelt W8A8, onnxruntime int8, torch fp32) and W8A8 digits accuracy.
- int8_layers: smelt's int8 kernels per layer against torch float32.
- sparsity: 2:4 structured sparsity: bytes, latency, accuracy.
- pruning: structured channel pruning: accuracy, MACs, latency by pruning ratio.
- equalization: cross-layer equalization: weight ranges and int8 / int4 weight SQNR.
- transformer_quant: W8A8 and W4A16 on MiniLM and a Llama block: accuracy, latency, bytes.
- mcu: microcontroller deployment: flash, SRAM and the static memory plan per board.
- rewrite_scale: how rewriting scales against torch.fx and TVM's pattern language.

Shared code: `harness` (timing, threads, machine facts, reports), `runtimes` (torch, smelt
and onnxruntime set up to run a model), `cpu_models`, `mcu_models` and `digits` (models and
data).
"""
