#!/usr/bin/env bash
# The pipeline step of the NLG pipeline in the jittor environment; options: -h (common_data/scripts/steps.sh).
FRAMEWORK=jittor
source "$(dirname "${BASH_SOURCE[0]}")/../../common_data/scripts/steps.sh"
run_step pipeline "$@"
