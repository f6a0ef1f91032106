#!/usr/bin/env bash
# Installs the Debian packages the project uses, when they are missing:
#   libdnnl-dev     oneDNN, for Jittor's CPU matmuls (without it a training step is ~15x slower)
#   openmpi-bin, libopenmpi-dev   MPI, for multi-process Jittor (mpirun -np N)
#   default-jre-headless  Java for the official scorers (METEOR, PTB tokenizer), unless java is on PATH
# As root it runs apt-get; otherwise it prints the command to run and carries on.
set -euo pipefail
missing=()
for pkg in libdnnl-dev openmpi-bin libopenmpi-dev; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
done
command -v java >/dev/null || missing+=(default-jre-headless)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "environments: installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >&2 \
    || echo "environments: apt-get could not install ${missing[*]}" >&2
else
  echo "environments: missing system packages: ${missing[*]}" >&2
  echo "  install them with: sudo apt-get install ${missing[*]}" >&2
fi
