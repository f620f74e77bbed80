#!/bin/sh
# Sets up the Debian packages, builds pnet with AddressSanitizer and UndefinedBehaviorSanitizer in
# build-asan (-DPNET_SANITIZE=ON) and runs the whole test suite there through ctest.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh --test
cmake -S . -B build-asan -G Ninja -DPNET_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-asan
ctest --test-dir build-asan --output-on-failure -j"$(nproc)"
