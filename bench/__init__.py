"""Benchmarks against the original microsoft/LoRA configuration and Hugging Face (`make bench`).

`python -m bench` (bench/__main__.py) runs every implementation in its own process, repeat by repeat, and
writes log/bench.json and figure/bench.png. `workload` says what is measured (framework-neutral), `gemm` the
machine's matrix-product limit; `torch_worker` (ours-torch, padded512; torch's, its oneDNN's and numpy's
products), `hf_worker` (hf-peft, hf-generate) and `jittor_worker` (ours-jittor; Jittor's products) measure one
implementation once; `evaluation` times the E2E scorer; `report` turns the measurements into records and the
figure.
"""
