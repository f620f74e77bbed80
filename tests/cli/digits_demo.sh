#!/bin/sh
# The README's demo: examples/digits_mlp.pnet trained with its own settings on the first 1,437
# digits must reach a test accuracy of at least 0.91 on the last 360.
# usage: sh digits_demo.sh PNETC SRC
set -eu
pnetc=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$pnetc" "$src/examples/digits_mlp.pnet" -o "$tmp/digits_mlp"
"$tmp/digits_mlp" train --data "$src/examples/data/digits_train.csv.gz" --save "$tmp/w.safetensors" >"$tmp/train.log"
tail -n 1 "$tmp/train.log"
"$tmp/digits_mlp" eval --data "$src/examples/data/digits_test.csv.gz" --weights "$tmp/w.safetensors" | tee "$tmp/eval.log"
acc=$(sed -n 's/^accuracy: //p' "$tmp/eval.log")
if awk -v a="$acc" 'BEGIN { exit !(a >= 0.91) }'; then
    echo "PASS test accuracy $acc >= 0.91"
else
    echo "FAIL test accuracy $acc < 0.91"
    exit 1
fi
