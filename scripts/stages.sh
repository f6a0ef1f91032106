# Wall time per stage, for the scripts that run the pipeline many times (reproduce.sh, compare.sh), which source
# this file:  stages_start NAME TIMINGS_FILE; stage LABEL CMD [ARGS...] ...; stages_end
# Each stage is announced as "==== NAME: LABEL" on stderr; its seconds go to TIMINGS_FILE (stage<TAB>seconds).
# A stage that fails ends the script with its exit status, naming the stage (its error, and its log where it has
# one, are above), also inside a command substitution (x=$(stage ...)) under set -e.

stages_start() {
  STAGES_NAME=$1 STAGES_TIMINGS=$2 STAGES_STARTED=$(date +%s)
  mkdir -p "$(dirname "$STAGES_TIMINGS")"
  printf 'stage\tseconds\n' > "$STAGES_TIMINGS"
}

stage() {
  local name=$1 start status=0
  shift
  start=$(date +%s)
  echo "==== $STAGES_NAME: $name" >&2
  "$@" || status=$?
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - start ))" >> "$STAGES_TIMINGS"
  if [ "$status" -ne 0 ]; then
    echo "==== $STAGES_NAME: stage $name failed (exit status $status, its error above); no later stage ran" >&2
    exit "$status"
  fi
}

stages_end() {
  printf 'total\t%s\n' "$(( $(date +%s) - STAGES_STARTED ))" >> "$STAGES_TIMINGS"
  echo "==== $STAGES_NAME: wall time per stage (s)" >&2
  column -t -s $'\t' "$STAGES_TIMINGS" >&2
}

# pipelines DIR_PREFIX DIR_SUFFIX [VAR=VALUE ...]: the pipeline (NLG_<framework>/scripts/pipeline.sh) in both
# frameworks with those variables and RUN_DIR=DIR_PREFIX<framework>DIR_SUFFIX.
# PARALLEL=1 (the default) runs the two at once on half the cores each (OMP_NUM_THREADS), each one's output in
# RUN_DIR.log: on 2 cores that takes about a quarter less wall time than one after the other on both cores, as
# Jittor's matrix products of this size gain little from a second thread. PARALLEL=0: one after the other, output
# on the console, the second not run when the first fails. A failure shows the end of the run's log, or says that
# the second failed the same way (the same last lines) rather than show them twice.
pipelines() {
  local prefix=$1 suffix=$2 framework folder run_dir status=0 threads shown=
  shift 2
  local -A pids logs
  threads=${OMP_NUM_THREADS:-$(( $(nproc) > 3 ? $(nproc) / 2 : 1 ))}
  for framework in torch jittor; do
    folder=NLG_pytorch
    [ "$framework" = torch ] || folder=NLG_jittor
    run_dir=$prefix$framework$suffix
    if [ "${PARALLEL:-1}" = 1 ]; then
      logs[$framework]=$run_dir.log
      mkdir -p "$(dirname "$run_dir")"
      echo "== $framework: $folder/scripts/pipeline.sh -> $run_dir (output in $run_dir.log)" >&2
      env "$@" RUN_DIR="$run_dir" OMP_NUM_THREADS="$threads" "$folder/scripts/pipeline.sh" \
        > "${logs[$framework]}" 2>&1 &
      pids[$framework]=$!
    else
      env "$@" RUN_DIR="$run_dir" "$folder/scripts/pipeline.sh" || return
    fi
  done
  for framework in torch jittor; do
    [ -n "${pids[$framework]:-}" ] || continue
    if ! wait "${pids[$framework]}"; then
      status=1
      if [ "$(tail -n 20 "${logs[$framework]}")" = "$shown" ]; then
        echo "== $framework failed the same way (${logs[$framework]})" >&2
      else
        shown=$(tail -n 20 "${logs[$framework]}")
        echo "== $framework failed; the end of ${logs[$framework]}:" >&2
        printf '%s\n' "$shown" >&2
      fi
    fi
  done
  return "$status"
}
