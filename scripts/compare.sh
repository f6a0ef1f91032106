#!/usr/bin/env bash
# `make compare`: adapter methods on the embedded E2E default, each trained in PyTorch and in Jittor with one
# budget of steps, decoded, scored and compared in one report.
#
#   1. data, base      as `make reproduce` (scripts/reproduce.sh)
#   2. <method>        NLG_<framework>/scripts/pipeline.sh with the method's recipe, MAX_STEP steps, in both
#                      frameworks at once (PARALLEL=1, scripts/stages.sh) -> runs/compare/<framework>_<method>/
#      <method> verdict  python -m alignment verify: when the two runs part, Jittor replays segments from PyTorch's
#                      states (saved every SAVE_INTERVAL, MAX_STEP / 4, steps) and the float32 envelope is measured
#                      once
#   3. report          python -m alignment methods -> log/methods_report.md (+ .html), figure/methods.png
#
# METHODS   (lora jelly dora pissa adalora bitfit full) in report order: an adapter of the pipeline scripts (its
#           recipe recipes/methods/e2e_<adapter>.yaml where there is one, else the embedded default with that
#           adapter; jelly switches from sequential to parallel at half the steps), or a LoRA recipe of
#           recipes/methods/: `full` (full fine-tuning), `rslora`, `loraplus`
# MAX_STEP  the budget of every run (300: the E2E default's recipe at a quarter of its 1,200 steps, sized for the
#           seven methods in 45 minutes on 2 cores, the envelopes of log/envelopes/ reused; a first run measures one
#           for each method whose runs part); EVAL_INTERVAL (MAX_STEP / 2) with a step-0 evaluation; VALID_ROWS
#           (200) as the pipeline. Wall times of the stages go to runs/compare/timings.tsv.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
case "${1:-}" in -h|--help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac
[ $# -eq 0 ] || { echo "compare.sh: takes no arguments; set options as environment variables (-h)" >&2; exit 2; }
for name in RUN_DIR ADAPTER RECIPE DATASET; do
  [ -z "${!name:-}" ] || { echo "compare.sh: $name is set per method; unset it" >&2; exit 2; }
done
methods=${METHODS:-lora jelly dora pissa adalora bitfit full}
for method in $methods; do
  case "$method" in lora|jelly|dora|pissa|adalora|bitfit|full|rslora|loraplus) ;;
    *) echo "compare.sh: METHODS: '$method' is not one of lora jelly dora pissa adalora bitfit full rslora" \
         "loraplus" >&2; exit 2 ;;
  esac
done
[ -n "${methods// /}" ] || { echo "compare.sh: METHODS is empty" >&2; exit 2; }
export DATASET=e2e MAX_STEP=${MAX_STEP:-300}
export EVAL_INTERVAL=${EVAL_INTERVAL:-$(( MAX_STEP / 2 ))} SAVE_INTERVAL=${SAVE_INTERVAL:-$(( MAX_STEP / 4 ))}
mkdir -p runs/compare log figure
source scripts/stages.sh
stages_start compare runs/compare/timings.tsv

stage data environments/run torch nlg-data prepare
stage base scripts/steps.sh base >/dev/null
for method in $methods; do
  settings=(ADAPTER="$method")
  case "$method" in full|rslora|loraplus) settings=(ADAPTER=lora RECIPE="recipes/methods/e2e_$method.yaml") ;; esac
  stage "$method" pipelines runs/compare/ "_$method" "${settings[@]}"
  stage "$method verdict" environments/run torch python -m alignment verify --torch "runs/compare/torch_$method" \
    --jittor "runs/compare/jittor_$method"
done
stage report environments/run torch python -m alignment methods --runs runs/compare --methods $methods \
  --out-md log/methods_report.md --figures figure
stages_end
