"""Benchmarks against the original microsoft/LoRA configuration and Hugging Face (`make bench`).

`python -m bench` (bench/__main__.py) runs every implementation in its own process, repeat by repeat, and
writes log/bench.json and figure/bench.png. `workload` says what is measured (framework-neutral);
`torch_worker` (ours-torch, padded512), `hf_worker` (hf-peft, hf-generate) and `jittor_worker` (ours-jittor)
measure one implementation once; `evaluation` times the E2E scorer; `report` turns the measurements into
records and the figure.
"""
