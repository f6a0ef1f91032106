#!/usr/bin/env bash
# `make reproduce`: the same LoRA run in PyTorch and in Jittor, scored and compared.
#
#   1. data       environments/run torch nlg-data prepare (skipped when up to date)
#   2. base       the embedded base GPT-2, built once and cached (common_data/scripts/steps.sh base);
#                 skipped when INIT_CHECKPOINT names a real GPT-2 (then the LoRA paper's recipe runs)
#   3. torch      NLG_pytorch/scripts/pipeline.sh: train, beam, decode, eval -> runs/torch_<dataset>_<adapter>/
#   4. jittor     NLG_jittor/scripts/pipeline.sh, the same                   -> runs/jittor_<dataset>_<adapter>/
#   5. report     python -m alignment report -> log/alignment_report.md (+ .html), figures in figure/; other
#                 than DATASET=e2e ADAPTER=lora: log/alignment_report_<dataset>_<adapter>.md, figures
#                 figure/<dataset>_<adapter>_*.png, so that the default run's report stays
#
# Every option of the pipeline scripts (NLG_pytorch/scripts/pipeline.sh -h) passes through as an
# environment variable, e.g. DATASET=webnlg ADAPTER=jelly make reproduce; RUN_DIR is set per framework.
# Wall times of the stages are printed at the end and written to runs/reproduce_timings.tsv.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
case "${1:-}" in -h|--help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac
[ $# -eq 0 ] || { echo "reproduce.sh: takes no arguments; set options as environment variables (-h)" >&2; exit 2; }
[ -z "${RUN_DIR:-}" ] || { echo "reproduce.sh: RUN_DIR is set per framework; unset it" >&2; exit 2; }

export DATASET=${DATASET:-e2e} ADAPTER=${ADAPTER:-lora}
timings=runs/reproduce_timings.tsv
mkdir -p runs log figure
printf 'stage\tseconds\n' > "$timings"
started=$(date +%s)

stage() {
  local name=$1 start
  shift
  start=$(date +%s)
  echo "==== reproduce: $name" >&2
  "$@"
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - start ))" >> "$timings"
}

stage data environments/run torch nlg-data prepare
[ -n "${INIT_CHECKPOINT:-}" ] || stage base common_data/scripts/steps.sh base
stage torch NLG_pytorch/scripts/pipeline.sh
stage jittor NLG_jittor/scripts/pipeline.sh

torch_run=runs/torch_${DATASET}_${ADAPTER}
jittor_run=runs/jittor_${DATASET}_${ADAPTER}
report=log/alignment_report.md prefix=
if [ "$DATASET/$ADAPTER" != e2e/lora ]; then
  report=log/alignment_report_${DATASET}_${ADAPTER}.md prefix=${DATASET}_${ADAPTER}_
fi
stage report environments/run torch python -m alignment report --dataset "$DATASET" \
  --torch "$torch_run" --jittor "$jittor_run" \
  --torch-pred "$torch_run/pred.txt" --jittor-pred "$jittor_run/pred.txt" \
  --torch-scores "$torch_run/scores.json" --jittor-scores "$jittor_run/scores.json" \
  --out-md "$report" --figures figure --figure-prefix "$prefix"
printf 'total\t%s\n' "$(( $(date +%s) - started ))" >> "$timings"

echo "==== reproduce: wall time per stage (s)" >&2
column -t "$timings" >&2
echo "==== reproduce: per-step times of each run in $torch_run/timings.tsv and $jittor_run/timings.tsv" >&2
