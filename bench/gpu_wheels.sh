#!/usr/bin/env bash
# bench/gpu_wheels.sh: fetch into bench/wheels (ignored by git) what bench/gpu_check.sh installs on a GPU
# machine that reaches no package index: the packages of bench/gpu_wheels.txt and what they need, as wheels
# for CPython 3.12 on x86-64 (the device machine's python3). Jittor is published as a source archive only:
# its wheel is built here (pure Python; Jittor compiles its C++ core on the machine, at first import).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wheels=$root/bench/wheels
mkdir -p "$wheels"
python3 -m pip wheel -q --no-deps -w "$wheels" "$(grep -E '^jittor==' "$root/bench/gpu_wheels.txt")"
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  --find-links "$wheels" -d "$wheels" -r "$root/bench/gpu_wheels.txt"
du -sh "$wheels"
