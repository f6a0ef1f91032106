#!/usr/bin/env bash
# The NLG pipeline steps behind NLG_pytorch/scripts/*.sh and NLG_jittor/scripts/*.sh, which source this file.
#
# Usage:  NLG_<framework>/scripts/STEP.sh [--option VALUE ...] [-- EXTRA ARGS FOR THE PYTHON SCRIPT]
#   STEP      train      fine-tune with gpt2_ft.py                  -> RUN_DIR/model.N.safetensors, train.log
#             beam       beam search with gpt2_beam.py on the test set -> RUN_DIR/predict.jsonl
#             decode     token ids to text with gpt2_decode.py       -> RUN_DIR/ref*, RUN_DIR/pred.txt
#             eval       official metrics with nlg-eval              -> RUN_DIR/scores.json
#             pipeline   all four in order
#   Every step runs in its framework's environment (environments/run torch|jittor); decode and eval are
#   framework-neutral and run there too. Each step's console goes to RUN_DIR/<step>.log as well, and its
#   wall time is appended to RUN_DIR/timings.tsv.
#
# Options: an environment variable, or the same name as a flag in lower case (--max_step 300 or
# --max-step=300 sets MAX_STEP); flags win. -h prints this text.
#   RECIPE         the numbers of the run: a YAML file of gpt2_ft.py flags (train:) and gpt2_beam.py flags
#                  (beam:), given to both scripts as --config (recipes/, README "Recipes"). Default: the
#                  embedded default recipes/embedded/<dataset>.yaml (for another method, its recipe
#                  recipes/methods/<dataset>_<adapter>.yaml where there is one), with INIT_CHECKPOINT the LoRA
#                  paper's recipes/lora_paper/<dataset>_gpt2_md.yaml. Every option below that is set wins over it; the
#                  data, the base weights and the run folder are the pipeline's (see data, INIT_CHECKPOINT).
#   DATASET        e2e | webnlg | dart                                   (e2e)
#   ADAPTER        lora | jelly | dora | pissa | adalora | bitfit   (the recipe's, else lora)
#   JELLY_MODE     parallel | sequential | seq2par                        (seq2par)
#   SWITCH_STEP / SWITCH_EPOCH   seq2par switch; default: half of MAX_STEP, or epoch 1 with MAX_EPOCH
#   RUN_DIR        the run folder                                        (runs/<framework>_<dataset>_<adapter>)
#   INIT_CHECKPOINT  a real GPT-2 base in the checkpoint layout (model_process.py import-hf). Set: the
#                  LoRA paper's recipe (GPT-2 M, 5 epochs of batch 8, seq_len 512, lr 2e-4, warm-up 500,
#                  r 4, alpha 32, dropout 0.1, label smoothing 0.1 on E2E; beam 10, length penalty 0.9 on
#                  E2E / 0.8). Empty: the embedded default, a small base GPT-2 built once with the torch
#                  trainer and cached (see BASE_* below), then a deterministic LoRA run (dropout 0,
#                  recipes/embedded/<dataset>.yaml) that both frameworks repeat up to float32 rounding.
#   recipe values  the recipe's, unless set: MODEL_CARD SEED (random_seed) and, under the names of their
#                  flags in upper case, training LORA_DIM LORA_ALPHA LORA_DROPOUT LORA_TARGETS LR
#                  WEIGHT_DECAY WARMUP_STEP MAX_STEP MAX_EPOCH VALID_BATCH_SIZE SEQ_LEN LABEL_SMOOTH
#                  LOG_INTERVAL EVAL_INTERVAL SAVE_INTERVAL BATCH_SIZE (train_batch_size), beam search BEAM
#                  LENGTH_PENALTY NO_REPEAT_NGRAM_SIZE REPETITION_PENALTY EVAL_LEN EOS_TOKEN_ID BEAM_BATCH_SIZE
#                  (batch_size). Training stops at MAX_STEP or MAX_EPOCH, whichever comes first; a run
#                  shorter than EVAL_INTERVAL validates at its end.
#   RESUME=1       continue the run in RUN_DIR; otherwise train starts afresh and removes its earlier outputs
#   CHECKPOINT     the adapters beam search decodes with (default: the newest model.N.safetensors in RUN_DIR)
#   data           TRAIN_DATA VALID_DATA TEST_DATA (encoded, default common_data/<dataset>/encoded/*.jsonl),
#                  VALID_ROWS (validate on N rows of VALID_DATA spread evenly over it, rows i * total / N: the
#                  splits are sorted by source or size, so the first N would not stand for the split; embedded
#                  default 200, else all),
#                  TEST_FORMATTED (common_data/<dataset>/sampled/test_formatted.jsonl), REF_NUM (webnlg,
#                  dart: reference files written by decode)
#   embedded base  what it reads, all from the encoded train splits (the valid splits for its valid loss):
#                  BASE_TEXTS ("e2e webnlg dart": the target sentences only, no data record) and BASE_ROWS
#                  (none: whole rows, record then sentence), packed into rows of BASE_SEQ_LEN tokens
#                  (common_data/data/base_corpus.py); BASE_CARD, BASE_MAX_STEP, BASE_BATCH_SIZE, BASE_SEQ_LEN,
#                  BASE_LR, BASE_WARMUP_STEP, BASE_SEED; trained by full fine-tuning (--lora_dim 0, float32:
#                  bf16 autocast is ~25x slower on a CPU without bf16 instructions) and cached as
#                  $NLG_CACHE_DIR/base/<recipe hash>.safetensors (default .cache/base/).
#                  `scripts/steps.sh base` builds it alone and prints its path.

STEPS_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$STEPS_LIB_DIR/.." && pwd)
OPTION_NAMES=(RECIPE DATASET ADAPTER JELLY_MODE SWITCH_STEP SWITCH_EPOCH RUN_DIR INIT_CHECKPOINT MODEL_CARD SEED
  LORA_DIM LORA_ALPHA LORA_DROPOUT LORA_TARGETS LR WEIGHT_DECAY WARMUP_STEP MAX_STEP MAX_EPOCH BATCH_SIZE
  VALID_BATCH_SIZE SEQ_LEN LABEL_SMOOTH LOG_INTERVAL EVAL_INTERVAL SAVE_INTERVAL RESUME
  BEAM LENGTH_PENALTY NO_REPEAT_NGRAM_SIZE REPETITION_PENALTY EVAL_LEN BEAM_BATCH_SIZE EOS_TOKEN_ID CHECKPOINT
  TRAIN_DATA VALID_DATA VALID_ROWS TEST_DATA TEST_FORMATTED REF_NUM
  BASE_ROWS BASE_TEXTS BASE_CARD BASE_MAX_STEP BASE_BATCH_SIZE BASE_SEQ_LEN BASE_LR BASE_WARMUP_STEP BASE_SEED)
# The options that stand for a flag of gpt2_ft.py (train) or gpt2_beam.py (beam), OPTION:flag; unset, they take the
# recipe's value. EOS_TOKEN_ID does not (the recipe may list several ids): set, it replaces the recipe's.
TRAIN_FLAGS=(ADAPTER:adapter MODEL_CARD:model_card SEED:random_seed LORA_DIM:lora_dim LORA_ALPHA:lora_alpha
  LORA_DROPOUT:lora_dropout LORA_TARGETS:lora_targets LR:lr WEIGHT_DECAY:weight_decay WARMUP_STEP:warmup_step
  MAX_STEP:max_step MAX_EPOCH:max_epoch BATCH_SIZE:train_batch_size VALID_BATCH_SIZE:valid_batch_size
  SEQ_LEN:seq_len LABEL_SMOOTH:label_smooth LOG_INTERVAL:log_interval EVAL_INTERVAL:eval_interval
  SAVE_INTERVAL:save_interval SWITCH_STEP:switch_step SWITCH_EPOCH:switch_epoch)
BEAM_FLAGS=(MODEL_CARD:model_card SEQ_LEN:seq_len BEAM:beam LENGTH_PENALTY:length_penalty
  NO_REPEAT_NGRAM_SIZE:no_repeat_ngram_size REPETITION_PENALTY:repetition_penalty EVAL_LEN:eval_len
  BEAM_BATCH_SIZE:batch_size)

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

usage() {
  sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$STEPS_LIB_DIR/steps.sh"
  exit "${1:-0}"
}

# --name VALUE / --name=VALUE -> NAME=VALUE; what follows `--` is kept in EXTRA_ARGS.
parse_options() {
  EXTRA_ARGS=()
  while [ $# -gt 0 ]; do
    case "$1" in
      -h|--help) usage 0 ;;
      --) shift; EXTRA_ARGS=("$@"); return ;;
      --*=*) set_option "${1%%=*}" "${1#*=}"; shift ;;
      --*) [ $# -ge 2 ] || die "option $1 needs a value"; set_option "$1" "$2"; shift 2 ;;
      *) die "unexpected argument '$1' (see -h)" ;;
    esac
  done
}

set_option() {
  local name
  name=$(echo "${1#--}" | tr 'a-z-' 'A-Z_')
  [[ " ${OPTION_NAMES[*]} " == *" $name "* ]] || die "unknown option $1 (see -h)"
  printf -v "$name" '%s' "$2"
  export "${name?}"
}

# Defaults: the recipe (the paper's with INIT_CHECKPOINT, else the embedded default), then what follows from it.
set_defaults() {
  local eval_interval_given=${EVAL_INTERVAL:-}
  : "${DATASET:=e2e}" "${JELLY_MODE:=seq2par}"
  case "$DATASET" in e2e|webnlg|dart) ;; *) die "DATASET must be e2e, webnlg or dart, not '$DATASET'" ;; esac
  case "${ADAPTER:-lora}" in lora|jelly|dora|pissa|adalora|bitfit) ;;
    *) die "ADAPTER must be lora, jelly, dora, pissa, adalora or bitfit, not '$ADAPTER'" ;;
  esac
  if [ -n "${INIT_CHECKPOINT:-}" ]; then
    : "${RECIPE:=recipes/lora_paper/${DATASET}_gpt2_md.yaml}"
  else
    if [ -f "$REPO_ROOT/recipes/methods/${DATASET}_${ADAPTER:-}.yaml" ]; then
      : "${RECIPE:=recipes/methods/${DATASET}_$ADAPTER.yaml}"
    fi
    : "${RECIPE:=recipes/embedded/$DATASET.yaml}" "${VALID_ROWS:=200}"
    : "${BASE_ROWS=}" "${BASE_TEXTS=e2e webnlg dart}" "${BASE_CARD:=gpt2.tiny}" "${BASE_MAX_STEP:=400}"
    : "${BASE_BATCH_SIZE:=8}" "${BASE_SEQ_LEN:=128}" "${BASE_LR:=0.002}" "${BASE_WARMUP_STEP:=50}"
    : "${BASE_SEED:=1}"
  fi
  load_recipe
  : "${ADAPTER:=lora}"
  : "${RUN_DIR:=runs/${FRAMEWORK}_${DATASET}_${ADAPTER}}"
  : "${TRAIN_DATA:=common_data/$DATASET/encoded/train.jsonl}" "${VALID_DATA:=common_data/$DATASET/encoded/valid.jsonl}"
  : "${TEST_DATA:=common_data/$DATASET/encoded/test.jsonl}"
  : "${TEST_FORMATTED:=common_data/$DATASET/sampled/test_formatted.jsonl}" "${REF_NUM:=6}"
  if [ -z "$eval_interval_given" ] && [ -n "${MAX_STEP:-}" ] && [ "${EVAL_INTERVAL:-0}" -gt "$MAX_STEP" ]; then
    EVAL_INTERVAL=$MAX_STEP
  fi
  if [ "$ADAPTER" = jelly ] && [ "$JELLY_MODE" = seq2par ] && [ -z "${SWITCH_STEP:-}${SWITCH_EPOCH:-}" ]; then
    if [ -n "${MAX_STEP:-}" ]; then SWITCH_STEP=$((MAX_STEP / 2)); else SWITCH_EPOCH=1; fi
  fi
}

in_env() { "$REPO_ROOT/environments/run" "$FRAMEWORK" "$@"; }

# The recipe's values for the options of TRAIN_FLAGS and BEAM_FLAGS that are not set (its keys and types checked).
load_recipe() {
  local values section key value pair name
  values=$(in_env python -m common_data.cli.recipe "$RECIPE") || die "RECIPE=$RECIPE cannot be used (see above)"
  while IFS=$'\t' read -r section key value; do
    for pair in $(flag_pairs "$section"); do
      name=${pair%%:*}
      if [ "${pair#*:}" = "$key" ] && [ -z "${!name:-}" ]; then export "$name=$value"; fi
    done
  done <<< "$values"
}

flag_pairs() { case "$1" in train) echo "${TRAIN_FLAGS[*]}" ;; beam) echo "${BEAM_FLAGS[*]}" ;; esac; }

# FLAGS=(--flag VALUE ...) for the set options of the OPTION:flag pairs given.
set_flags() {
  local pair name
  FLAGS=()
  for pair in "$@"; do
    name=${pair%%:*}
    [ -z "${!name:-}" ] || FLAGS+=("--${pair#*:}" "${!name}")
  done
}

# The framework's copy of a microsoft/LoRA script: NLG_pytorch/src/NAME or NLG_jittor/src/NAME.
framework_script() {
  local path=NLG_$FRAMEWORK_DIR/src/$1
  [ -f "$path" ] || die "$path does not exist (yet)"
  printf '%s\n' "$path"
}

# Run "$@" with its stdout also in RUN_DIR/<name>.log, and append its wall time to RUN_DIR/timings.tsv.
logged() {
  local name=$1 start status
  shift
  mkdir -p "$RUN_DIR"
  start=$(date +%s)
  echo "== $FRAMEWORK $name: $*" >&2
  set +e
  "$@" | tee "$RUN_DIR/$name.log"
  status=${PIPESTATUS[0]}
  set -e
  printf '%s\t%s\t%s\n' "$name" "$(( $(date +%s) - start ))" "$status" >> "$RUN_DIR/timings.tsv"
  echo "== $FRAMEWORK $name: $(( $(date +%s) - start )) s, exit status $status" >&2
  return "$status"
}

# base_corpus SPLIT FOLDER: the embedded base's text of that split (BASE_TEXTS, BASE_ROWS) -> FOLDER/SPLIT.jsonl
base_corpus() {
  local inputs=()
  [ -z "$BASE_TEXTS" ] || inputs+=(--texts $(printf "common_data/%s/encoded/$1.jsonl " $BASE_TEXTS))
  [ -z "$BASE_ROWS" ] || inputs+=(--rows $(printf "common_data/%s/encoded/$1.jsonl " $BASE_ROWS))
  environments/run torch python -m common_data.cli.base_corpus --pack "$BASE_SEQ_LEN" --out "$2/$1.jsonl" "${inputs[@]}"
}

# The embedded base: build it (once per recipe) and print the path of the cached safetensors.
base_checkpoint() {
  local cache corpus recipe key out work
  cache=${NLG_CACHE_DIR:-$REPO_ROOT/.cache}/base
  mkdir -p "$cache"
  [ -n "$BASE_ROWS$BASE_TEXTS" ] || die "BASE_ROWS and BASE_TEXTS are both empty: the base has nothing to read"
  corpus=$(base_corpus train "$cache" | awk '{print $NF}') || die "writing the base corpus failed"
  recipe="text: whole train rows of [${BASE_ROWS}] and train sentences of [${BASE_TEXTS}], packed to"
  recipe+=" $BASE_SEQ_LEN tokens (sha256 $corpus);"
  recipe+=" full fine-tuning of a random $BASE_CARD (seed $BASE_SEED), float32, $BASE_MAX_STEP steps of"
  recipe+=" $BASE_BATCH_SIZE rows, lr $BASE_LR, warmup $BASE_WARMUP_STEP, linear decay, AdamW wd 0.01 beta2 0.999"
  key=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
  out=$cache/$key.safetensors
  if [ ! -f "$out" ]; then
    work=$cache/$key.run
    rm -rf "$work"
    echo "== building the embedded base model -> $out" >&2
    echo "   $recipe" >&2
    base_corpus valid "$cache" >/dev/null || die "writing the base validation text failed"
    environments/run torch python NLG_pytorch/src/gpt2_ft.py \
      --train_data "$cache/train.jsonl" --valid_data "$cache/valid.jsonl" --model_card "$BASE_CARD" --lora_dim 0 \
      --train_batch_size "$BASE_BATCH_SIZE" --valid_batch_size 32 --seq_len "$BASE_SEQ_LEN" --pad_multiple 8 \
      --lr "$BASE_LR" --correct_bias --adam_beta2 0.999 --weight_decay 0.01 --warmup_step "$BASE_WARMUP_STEP" \
      --max_step "$BASE_MAX_STEP" --log_interval 50 --eval_interval "$BASE_MAX_STEP" \
      --save_interval "$BASE_MAX_STEP" --random_seed "$BASE_SEED" --work_dir "$work" > "$cache/$key.log" \
      || die "building the base model failed (log: $cache/$key.log)"
    printf '%s\n' "$recipe" > "$cache/$key.recipe.txt"
    rm -f "$work"/trainer.*.safetensors
    cp "$work/model.$BASE_MAX_STEP.safetensors" "$out.tmp" && mv "$out.tmp" "$out"
  fi
  printf '%s\n' "$out"
}

# spread_rows N FILE: N lines of FILE spread evenly over it (0-based lines i * total / N), all of them if fewer.
spread_rows() {
  awk -v n="$1" -v total="$(wc -l < "$2")" 'total <= n || NR - 1 == int(picked * total / n) { print; picked++ }' "$2"
}

newest_checkpoint() {
  local newest
  newest=$(find "$RUN_DIR" -maxdepth 1 -name 'model.*.safetensors' | sed 's/.*model\.\([0-9]*\)\.safetensors/\1/' \
    | sort -n | tail -n 1)
  [ -n "$newest" ] || die "no model.N.safetensors in $RUN_DIR: run train first"
  printf '%s\n' "$RUN_DIR/model.$newest.safetensors"
}

# The base weights the adapters sit on: INIT_CHECKPOINT, or the embedded base.
base_weights() {
  if [ -n "${INIT_CHECKPOINT:-}" ]; then printf '%s\n' "$INIT_CHECKPOINT"; else base_checkpoint; fi
}

step_train() {
  local base args valid script
  script=$(framework_script gpt2_ft.py)
  base=$(base_weights)
  if [ "${RESUME:-0}" = 1 ]; then
    args=(--resume)
  else
    args=()
    rm -f "$RUN_DIR"/model.*.safetensors "$RUN_DIR"/model.*.json "$RUN_DIR"/trainer.*.safetensors \
      "$RUN_DIR"/metrics.jsonl "$RUN_DIR"/run*.json "$RUN_DIR"/timings.tsv "$RUN_DIR"/*.log "$RUN_DIR"/predict.jsonl \
      "$RUN_DIR"/pred.txt "$RUN_DIR"/scores.json "$RUN_DIR"/valid.jsonl
    rm -rf "$RUN_DIR"/ref.txt "$RUN_DIR"/ref "$RUN_DIR"/replays "$RUN_DIR"/envelope "$RUN_DIR"/envelope.*
  fi
  valid=$VALID_DATA
  if [ -n "${VALID_ROWS:-}" ]; then
    valid=$RUN_DIR/valid.jsonl
    mkdir -p "$RUN_DIR"
    spread_rows "$VALID_ROWS" "$VALID_DATA" > "$valid"
  fi
  set_flags "${TRAIN_FLAGS[@]}"
  logged train in_env python "$script" --config "$RECIPE" "${FLAGS[@]}" \
    --train_data "$TRAIN_DATA" --valid_data "$valid" --init_checkpoint "$base" \
    --adapter "$ADAPTER" --jelly_mode "$JELLY_MODE" --work_dir "$RUN_DIR" "${args[@]}" "${EXTRA_ARGS[@]}"
}

step_beam() {
  local base checkpoint script
  script=$(framework_script gpt2_beam.py)
  base=$(base_weights)
  checkpoint=${CHECKPOINT:-$(newest_checkpoint)}
  set_flags "${BEAM_FLAGS[@]}" EOS_TOKEN_ID:eos_token_id
  logged beam in_env python "$script" --config "$RECIPE" "${FLAGS[@]}" \
    --data "$TEST_DATA" --init_checkpoint "$base" --adapter_checkpoint "$checkpoint" \
    --work_dir "$RUN_DIR" --output_file predict.jsonl "${EXTRA_ARGS[@]}"
}

step_decode() {
  local script
  script=$(framework_script gpt2_decode.py)
  if [ "$DATASET" = e2e ]; then
    logged decode in_env python "$script" --sample_file "$RUN_DIR/predict.jsonl" \
      --input_file "$TEST_FORMATTED" --output_ref_file "$RUN_DIR/ref.txt" --output_pred_file "$RUN_DIR/pred.txt" \
      "${EXTRA_ARGS[@]}"
  else
    logged decode in_env python "$script" --sample_file "$RUN_DIR/predict.jsonl" \
      --input_file "$TEST_FORMATTED" --ref_type "$DATASET" --ref_num "$REF_NUM" --tokenize --lower \
      --output_ref_file "$RUN_DIR/ref" --output_pred_file "$RUN_DIR/pred.txt" "${EXTRA_ARGS[@]}"
  fi
}

step_eval() {
  if [ "$DATASET" = e2e ]; then
    logged eval in_env nlg-eval e2e "$RUN_DIR/ref.txt" "$RUN_DIR/pred.txt" --json "$RUN_DIR/scores.json"
  else
    logged eval in_env nlg-eval "$DATASET" --refs "$RUN_DIR/ref/reference" --hyp "$RUN_DIR/pred.txt" \
      --num-refs "$REF_NUM" --json "$RUN_DIR/scores.json"
  fi
}

step_pipeline() {
  [ ${#EXTRA_ARGS[@]} -eq 0 ] || die "pipeline takes no arguments after --; run the steps one by one for that"
  step_train
  step_beam
  step_decode
  step_eval
}

# run_step STEP [OPTIONS...]: the entry point of the wrappers (FRAMEWORK set to torch or jittor).
run_step() {
  local step=$1
  shift
  set -euo pipefail
  case "$FRAMEWORK" in torch) FRAMEWORK_DIR=pytorch ;; jittor) FRAMEWORK_DIR=jittor ;;
    *) die "FRAMEWORK must be torch or jittor, not '${FRAMEWORK:-}'" ;; esac
  parse_options "$@"
  cd "$REPO_ROOT"
  set_defaults
  case "$step" in
    base) base_checkpoint ;;
    train|beam|decode|eval|pipeline) "step_$step" ;;
    *) die "unknown step '$step'" ;;
  esac
}

# Run directly: scripts/steps.sh STEP [OPTIONS...] (FRAMEWORK from the environment, default torch).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in ""|-h|--help) usage "$([ $# -ge 1 ] && echo 0 || echo 2)" ;; esac
  FRAMEWORK=${FRAMEWORK:-torch}
  run_step "$@"
fi
