#!/bin/sh
# Sets up the Debian packages, builds pnet and runs the whole test suite through ctest.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh --test
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build
ctest --test-dir build --output-on-failure -j"$(nproc)"
