#!/bin/sh
# Sets up the Debian packages, builds pnet with AddressSanitizer and UndefinedBehaviorSanitizer in
# build-asan (-DPNET_SANITIZE=ON) and runs the whole test suite there through ctest. This build is also
# the one without MPI (-DPNET_MPI=OFF: Open MPI's own allocations would swamp LeakSanitizer), so CI builds
# and tests pnet both ways: with MPI (scripts/test.sh) and without (here; mpi.unavailable).
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh --test
cmake -S . -B build-asan -G Ninja -DPNET_SANITIZE=ON -DPNET_MPI=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-asan
ctest --test-dir build-asan --output-on-failure -j"$(nproc)"
