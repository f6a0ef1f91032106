#!/usr/bin/env bash
# bench/gpu_check.sh [--dry-run] OUT_DIR [--encoded DIR ...]   (make gpu-check OUT=...)
#
# The prepared GPU check in one command: on CUDA, our trainers in torch and Jittor at GPT-2 medium against
# microsoft/LoRA's padded-512 configuration and transformers + peft (fp32 and bf16), loss alignment of
# torch CUDA, Jittor CUDA and torch CPU, and beam search against generate; see bench/gpu_check.py. It writes
# OUT_DIR/bench_gpu.json (log/bench.json's record layout) and OUT_DIR/bench_gpu.png.
#
# On a bare GPU machine that reaches no package index (python3 with torch, transformers, peft, but no Jittor):
#   here:  bench/gpu_wheels.sh              downloads Jittor and what it needs, for Python 3.12, into
#                                           bench/wheels (ignored by git; ~40 MiB)
#   there: bench/gpu_check.sh OUT           with bench/wheels and common_data/e2e/encoded carried along
# The torch environment is python3's own packages (a venv with --system-site-packages), the Jittor one a venv
# of the wheels alone (Jittor needs numpy < 2); both go to $NLG_ENV_DIR (default /tmp/nlg-gpu-env).
#
# --dry-run: the same stages on this machine's CPU with a tiny model and 2 steps each, in the usual
# environments (.venv/torch, .venv/jittor), no wheels: the test suite runs it so that the script cannot rot.
set -euo pipefail

usage() { echo "usage: bench/gpu_check.sh [--dry-run] OUT_DIR [python -m bench.gpu_check options]" >&2; exit 2; }
dry_run=()
if [ "${1:-}" = --dry-run ]; then dry_run=(--dry-run); shift; fi
[ $# -ge 1 ] || usage
out=$(mkdir -p "$1" && cd "$1" && pwd)
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [ ${#dry_run[@]} -eq 0 ]; then
  wheels=$root/bench/wheels
  [ -d "$wheels" ] || { echo "gpu_check: $wheels is missing: run bench/gpu_wheels.sh and carry it" >&2; exit 1; }
  export NLG_ENV_DIR=${NLG_ENV_DIR:-/tmp/nlg-gpu-env} NLG_ENV_PREBUILT=1
  setup_log=$out/logs/setup.log
  mkdir -p "$out/logs"
  start=$SECONDS
  {
    if [ ! -x "$NLG_ENV_DIR/torch/bin/python" ]; then
      python3 -m venv --system-site-packages "$NLG_ENV_DIR/torch"
      "$NLG_ENV_DIR/torch/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation -e "$root"
    fi
    if [ ! -x "$NLG_ENV_DIR/jittor/bin/python" ]; then
      python3 -m venv "$NLG_ENV_DIR/jittor"
      "$NLG_ENV_DIR/jittor/bin/python" -m pip install -q --no-index --find-links "$wheels" \
        -r "$root/bench/gpu_wheels.txt"
      "$NLG_ENV_DIR/jittor/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation -e "$root"
    fi
  } >"$setup_log" 2>&1 || { tail -n 20 "$setup_log" >&2; echo "gpu_check: setting up the environments failed" >&2; exit 1; }
  echo "gpu_check: environments ready in $NLG_ENV_DIR ($((SECONDS - start)) s)"
  nvidia-smi -L || echo "gpu_check: WARNING nvidia-smi lists no GPU: the stages run on the CPU"
fi
exec environments/run torch python -m bench.gpu_check "${dry_run[@]}" "$out" "$@"
