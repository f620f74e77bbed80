#!/bin/sh
# Builds the libFuzzer target (parser + checker, with ASan and UBSan) with clang-19 and runs it
# from a seed corpus of the examples, the stdlib and the diagnostic tests.
# Usage: scripts/fuzz.sh [SECONDS]   (default 60)
set -eu
cd "$(dirname "$0")/.."
secs=${1:-60}
sh scripts/setup.sh --fuzz
cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang-19 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPNET_FUZZ=ON -DPNET_TESTS=OFF >/dev/null
cmake --build build-fuzz --target pnet_fuzz
corpus=build-fuzz/corpus
mkdir -p "$corpus"
cp examples/*.pnet stdlib/*.pnet tests/diag/*.pnet "$corpus"/ 2>/dev/null || true
./build-fuzz/pnet_fuzz -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
    -dict=tests/fuzz/pnet.dict "$corpus"
