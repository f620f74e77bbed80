#!/bin/sh
# Sets up, builds pnetc, then checks every example and prints its graph.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build >/dev/null
for f in examples/*.pnet; do
    echo "== $f"
    ./build/pnetc --check "$f"
    ./build/pnetc --emit=graph "$f"
    echo
done
