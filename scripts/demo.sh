#!/bin/sh
# Sets up, builds pnetc, compiles examples/digits_mlp.pnet into an executable, trains it on the
# digits data (1,437 training rows, 360 test rows) and evaluates it on the test rows.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build >/dev/null
./build/pnetc examples/digits_mlp.pnet -o build/digits_mlp
echo "== ./build/digits_mlp train (20 epochs, sgd lr 0.1 momentum 0.9, batch 32: the file's settings)"
./build/digits_mlp train --data examples/data/digits_train.csv.gz --val examples/data/digits_test.csv.gz \
    --save build/digits_mlp.safetensors
echo "== ./build/digits_mlp eval on the 360 test rows"
./build/digits_mlp eval --data examples/data/digits_test.csv.gz --weights build/digits_mlp.safetensors
