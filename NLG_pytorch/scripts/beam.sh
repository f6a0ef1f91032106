#!/usr/bin/env bash
# The beam step of the NLG pipeline in the torch environment; options: -h (common_data/scripts/steps.sh).
FRAMEWORK=torch
source "$(dirname "${BASH_SOURCE[0]}")/../../common_data/scripts/steps.sh"
run_step beam "$@"
