#!/bin/sh
# The machine's fp32 peak in GFLOP/s on THREADS threads (default: every core), measured by
# bench/peak.c, built once into build/bench/peak with the system's cc for the host CPU.
# usage: sh bench/peak.sh [THREADS]     prints the number alone on stdout
set -eu
cd "$(dirname "$0")/.."
exe=build/bench/peak
if [ ! -x "$exe" ] || [ bench/peak.c -nt "$exe" ]; then
    mkdir -p build/bench
    ${CC:-cc} -O2 -march=native -ffp-contract=fast -fopenmp bench/peak.c -o "$exe"
fi
"$exe" "${1:-$(nproc)}" | sed -n 's/^peak: \([0-9]*\) GFLOP.*/\1/p'
