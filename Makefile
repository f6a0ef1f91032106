# One command per step; `make help` lists them.
RUN := environments/run
PYTEST := python -m pytest -q

.PHONY: help env data test test-torch test-jittor reproduce compare bench gpu-check gpu-wheels clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

env:  ## create (or update) both environments: .venv/torch and .venv/jittor
	$(RUN) torch
	$(RUN) jittor

data:  ## convert, sample and encode E2E, WebNLG and DART (from ../shared, else the official URLs)
	$(RUN) torch nlg-data prepare

test:  ## run every test, each in its framework's environment: both suites at once, each one's output when it ends
	$(MAKE) --no-print-directory -j2 --output-sync=target test-torch test-jittor

test-torch:  ## framework-neutral, eval, alignment and PyTorch tests (torch environment)
	$(RUN) torch $(PYTEST) -p NLG_pytorch tests/common tests/eval tests/alignment tests/torch

test-jittor:  ## Jittor tests (jittor environment, no torch installed)
	$(RUN) jittor $(PYTEST) tests/jittor

reproduce:  ## the main job: data, base GPT-2, train/beam/decode/eval of E2E, WebNLG and DART in both frameworks, one alignment report (DATASETS=, ADAPTER=, ...)
	scripts/reproduce.sh

compare:  ## adapter methods (LoRA, JELLY, DoRA, PiSSA, AdaLoRA, BitFit, full) on E2E in both frameworks, one budget of steps: log/methods_report.md (METHODS=, MAX_STEP=)
	scripts/compare.sh

bench: data  ## the GEMM limit, speed and memory vs microsoft/LoRA's padded configuration and transformers (+peft) (BENCH_FLAGS=--baseline DIR: an earlier checkout too): log/bench.json, figure/bench.png
	$(RUN) torch python -m bench $(BENCH_FLAGS)

gpu-check:  ## the prepared GPU check (bench/gpu_check.sh) into OUT (default log/gpu_check); DRY_RUN=1: on the CPU, tiny
	bench/gpu_check.sh $(if $(DRY_RUN),--dry-run) $(or $(OUT),log/gpu_check)

gpu-wheels:  ## fetch the wheels bench/gpu_check.sh installs on a GPU machine without a package index (bench/wheels)
	bench/gpu_wheels.sh

clean:  ## remove prepared data and caches (keeps the environments)
	rm -rf common_data/*/formatted common_data/*/sampled common_data/*/encoded .pytest_cache
