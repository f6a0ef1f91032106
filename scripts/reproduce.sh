#!/usr/bin/env bash
# `make reproduce`: the same LoRA run in PyTorch and in Jittor on E2E, WebNLG and DART, scored and compared in
# one report.
#
#   1. data            environments/run torch nlg-data prepare (skipped when up to date)
#   2. base            the embedded base GPT-2, built once and cached (scripts/steps.sh base);
#                      skipped when INIT_CHECKPOINT names a real GPT-2 (then the LoRA paper's recipes run)
#   3. <dataset>       for each dataset of DATASETS, in both frameworks at once (PARALLEL=1, one thread each on 2
#                      cores; scripts/stages.sh): NLG_<framework>/scripts/pipeline.sh, train, beam,
#                      decode, eval -> runs/<framework>_<dataset>_<adapter>/ (its output in the same name + .log)
#   4. <dataset> verdict  python -m alignment verify: when the two runs are not step-exact, Jittor replays the
#                      segments of the recipe's verdict: section from PyTorch's saved states and the float32 envelope
#                      is measured unless log/envelopes/<recipe>.json holds it (runs/<framework>_<dataset>_<adapter>/
#                      replays, envelope)
#   5. trace           the embedded default only (no INIT_CHECKPOINT, ADAPTER or RECIPE): python -m alignment
#                      trace --isolate, 2 steps of one batch of 2 rows of the first dataset with the model, adapter
#                      and optimizer of its recipe, and beam search on 1 context -> runs/trace/, log/trace_report.md
#                      (~50 s of CPU time)
#   6. report          python -m alignment report on every dataset (and the trace) -> log/alignment_report.md
#                      (+ .html), figures in figure/; with ADAPTER other than lora or a RECIPE:
#                      log/alignment_report_<variant>.md and figures figure/<variant>_*.png (variant: the adapter,
#                      the recipe's file name, or both), so that the default run's report stays
#
# DATASETS="e2e webnlg dart" (the default) or any subset, e.g. DATASETS=e2e make reproduce for a quick run;
# DATASET=name is taken as DATASETS=name. Every other option of the pipeline scripts
# (NLG_pytorch/scripts/pipeline.sh -h) passes through as an environment variable, e.g. ADAPTER=jelly; a RECIPE
# given applies to every dataset; RUN_DIR is set per framework and dataset. Wall times of the stages are printed
# at the end and written to runs/reproduce_timings.tsv.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
case "${1:-}" in -h|--help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;; esac
[ $# -eq 0 ] || { echo "reproduce.sh: takes no arguments; set options as environment variables (-h)" >&2; exit 2; }
[ -z "${RUN_DIR:-}" ] || { echo "reproduce.sh: RUN_DIR is set per framework and dataset; unset it" >&2; exit 2; }

datasets=${DATASETS:-${DATASET:-e2e webnlg dart}}
for dataset in $datasets; do
  case "$dataset" in e2e|webnlg|dart) ;;
    *) echo "reproduce.sh: DATASETS: '$dataset' is not one of e2e, webnlg, dart" >&2; exit 2 ;; esac
done
[ -n "${datasets// /}" ] || { echo "reproduce.sh: DATASETS is empty" >&2; exit 2; }
export ADAPTER=${ADAPTER:-lora}
mkdir -p runs log figure
source scripts/stages.sh
stages_start reproduce runs/reproduce_timings.tsv

# The trace's flags: the train section of the embedded recipe of dataset $1, the keys probe.py takes.
trace_flags() {
  local section key value
  while IFS=$'\t' read -r section key value; do
    case "$section:$key" in
      train:correct_bias) [ "$value" != true ] || printf '%s\n' --correct_bias ;;
      train:model_card|train:lora_dim|train:lora_alpha|train:lora_targets|train:lr|train:weight_decay|\
      train:adam_beta2|train:random_seed|train:label_smooth|train:seq_len) printf '%s\n' "--$key" "$value" ;;
    esac
  done < <(environments/run torch python -m common_data.cli.recipe "recipes/embedded/$1.yaml")
}

stage data environments/run torch nlg-data prepare
[ -n "${INIT_CHECKPOINT:-}" ] || base=$(stage base scripts/steps.sh base)
report_args=()
for dataset in $datasets; do
  stage "$dataset" pipelines runs/ "_${dataset}_$ADAPTER" DATASET="$dataset"
  torch_run=runs/torch_${dataset}_${ADAPTER} jittor_run=runs/jittor_${dataset}_${ADAPTER}
  stage "$dataset verdict" environments/run torch python -m alignment verify --torch "$torch_run" --jittor "$jittor_run"
  report_args+=(--dataset "$dataset" --torch "$torch_run" --jittor "$jittor_run"
    --torch-pred "$torch_run/pred.txt" --jittor-pred "$jittor_run/pred.txt"
    --torch-scores "$torch_run/scores.json" --jittor-scores "$jittor_run/scores.json"
    --test-input "common_data/$dataset/sampled/test_formatted.jsonl")
done

# the default run's report is log/alignment_report.md; another adapter or recipe names its own
variant=
[ "$ADAPTER" = lora ] || variant=$ADAPTER
[ -z "${RECIPE:-}" ] || variant=${variant:+${variant}_}$(basename "${RECIPE%.*}")
if [ -z "$variant" ] && [ -z "${INIT_CHECKPOINT:-}" ]; then
  read -r first _ <<< "$datasets"
  mapfile -t flags < <(trace_flags "$first")
  stage trace environments/run torch python -m alignment trace --isolate --work-dir runs/trace \
    --out-md log/trace_report.md --figures figure -- --data "common_data/$first/encoded/train.jsonl" \
    --init_checkpoint "$base" "${flags[@]}" --rows 2 --batch_size 2 --steps 2 --beam_contexts 1
  report_args+=(--trace runs/trace)
fi
report=log/alignment_report${variant:+_$variant}.md prefix=${variant:+${variant}_}
stage report environments/run torch python -m alignment report "${report_args[@]}" \
  --out-md "$report" --figures figure --figure-prefix "$prefix"
stages_end

echo "==== reproduce: per-step times of each run in runs/<framework>_<dataset>_$ADAPTER/timings.tsv" >&2
