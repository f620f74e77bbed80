#!/bin/sh
# Scaling of every schedule over thread counts: sh bench/scaling.sh [--threads 1,2,...] [--out FILE.md]
# Builds pnet (build/) first. For the 16-core device: build here with `--cpu x86-64-v4` binaries and
# carry build/; see bench/README.md.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build >/dev/null
exec python3 bench/scaling.py build/pnetc "$@"
