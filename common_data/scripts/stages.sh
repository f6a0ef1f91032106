# Wall time per stage, for the scripts that run the pipeline many times (reproduce.sh, compare.sh), which source
# this file:  stages_start NAME TIMINGS_FILE; stage LABEL CMD [ARGS...] ...; stages_end
# Each stage is announced as "==== NAME: LABEL" on stderr; its seconds go to TIMINGS_FILE (stage<TAB>seconds).

stages_start() {
  STAGES_NAME=$1 STAGES_TIMINGS=$2 STAGES_STARTED=$(date +%s)
  mkdir -p "$(dirname "$STAGES_TIMINGS")"
  printf 'stage\tseconds\n' > "$STAGES_TIMINGS"
}

stage() {
  local name=$1 start
  shift
  start=$(date +%s)
  echo "==== $STAGES_NAME: $name" >&2
  "$@"
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - start ))" >> "$STAGES_TIMINGS"
}

stages_end() {
  printf 'total\t%s\n' "$(( $(date +%s) - STAGES_STARTED ))" >> "$STAGES_TIMINGS"
  echo "==== $STAGES_NAME: wall time per stage (s)" >&2
  column -t -s $'\t' "$STAGES_TIMINGS" >&2
}
