#!/usr/bin/env bash
# Issue 13's alignment runs: every comparison method trained MAX_STEP (200) steps by both trainers on the embedded
# E2E default (gpt2.tiny on the embedded base, the method's recipes/methods/ recipe, dropout 0), training only;
# then per method the largest |Jittor - PyTorch| over the logged losses (every step) and, for AdaLoRA, whether
# both kept the same ranks (alignment/method_losses.py). Exit status 1 when a method is not aligned.
#   common_data/scripts/method_alignment.sh    (METHODS="lora adalora" MAX_STEP=50 RUNS=runs/method_alignment)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
methods=${METHODS:-lora jelly dora pissa adalora bitfit rslora loraplus}
runs=${RUNS:-runs/method_alignment}
export DATASET=e2e MAX_STEP=${MAX_STEP:-200}
export LOG_INTERVAL=1 EVAL_INTERVAL=$MAX_STEP SAVE_INTERVAL=$MAX_STEP LORA_DROPOUT=0.0
for method in $methods; do
  settings=(ADAPTER="$method")
  case "$method" in rslora|loraplus) settings=(ADAPTER=lora RECIPE="recipes/methods/e2e_$method.yaml") ;; esac
  for folder in NLG_pytorch NLG_jittor; do
    framework=torch
    [ "$folder" = NLG_pytorch ] || framework=jittor
    echo "==== method_alignment: $framework $method" >&2
    env "${settings[@]}" RUN_DIR="$runs/${framework}_$method" "$folder/scripts/train.sh" >/dev/null
  done
done
environments/run torch python -m alignment.method_losses --runs "$runs" --methods $methods
