#!/usr/bin/env bash
# The pipeline step of the NLG pipeline in the jittor environment; options: -h (scripts/steps.sh).
FRAMEWORK=jittor
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/steps.sh"
run_step pipeline "$@"
