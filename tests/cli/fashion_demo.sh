#!/bin/sh
# docs/training.md's Fashion-MNIST demonstration: examples/lenet.pnet trained with its own settings
# (adam, batch 64, 5 epochs) on the 60,000 training images must reach a test accuracy of at least
# 0.88 on the 10,000 test images. The data come from Debian's dataset-fashion-mnist, which
# `sh scripts/setup.sh --test` (and so scripts/test.sh) installs; without it the test is skipped
# (exit 77), loudly.
# usage: sh fashion_demo.sh PNETC SRC
set -eu
pnetc=$1 src=$2
F=${PNET_FASHION_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -r "$F/train-images-idx3-ubyte.gz" ]; then
    echo "SKIP: no Fashion-MNIST in $F; install it with: sh scripts/setup.sh --test"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$pnetc" "$src/examples/lenet.pnet" -o "$tmp/lenet"
"$tmp/lenet" train --data "$F/train-images-idx3-ubyte.gz" --labels "$F/train-labels-idx1-ubyte.gz" \
    --save "$tmp/w.safetensors" >"$tmp/train.log"
tail -n 1 "$tmp/train.log"
"$tmp/lenet" eval --data "$F/t10k-images-idx3-ubyte.gz" --labels "$F/t10k-labels-idx1-ubyte.gz" \
    --weights "$tmp/w.safetensors" | tee "$tmp/eval.log"
acc=$(sed -n 's/^accuracy: //p' "$tmp/eval.log")
if awk -v a="$acc" 'BEGIN { exit !(a >= 0.88) }'; then
    echo "PASS test accuracy $acc >= 0.88 after 5 epochs"
else
    echo "FAIL test accuracy $acc < 0.88 after 5 epochs"
    exit 1
fi
