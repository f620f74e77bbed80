#!/bin/sh
# examples/wine_std.pnet standardises its inputs with constants read from .npy files when compiling.
# Trained with its own settings on the raw training split, it must reach 0.94 on the test split.
# The checkpoint holds the parameters and no constant; -MD lists the constants' files; the object
# of -c, linked into a C program with the trained weights, computes the probabilities that `infer`
# prints for the same raw rows, with nothing beside it (the .npy files are moved away first).
# usage: sh wine_std.sh PNETC BUILD SRC CFLAGS
set -eu
pnetc=$1 build=$2 src=$3 cflags=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$src/examples" "$tmp/examples"
cd "$tmp"
"$pnetc" examples/wine_std.pnet -o wine_std -MD -MF wine_std.d
grep -q "examples/data/wine_mean.npy" wine_std.d && grep -q "examples/data/wine_std.npy" wine_std.d
"$pnetc" examples/wine_std.pnet -c -o wine.o
data=examples/data
./wine_std train --data "$data/wine_train.csv.gz" --save w.safetensors >train.log
tail -n 1 train.log
./wine_std eval --data "$data/wine_test.csv.gz" --weights w.safetensors | tee eval.log
acc=$(sed -n 's/^accuracy: //p' eval.log)
awk -v a="$acc" 'BEGIN { exit !(a >= 0.94) }' || { echo "FAIL test accuracy $acc < 0.94"; exit 1; }
echo "PASS test accuracy $acc >= 0.94"
# The checkpoint's header names the parameters only.
head -c 4096 w.safetensors | tr -c '[:print:]' ' ' >names.txt
grep -q '"fc.weight"' names.txt
if grep -q -e '"mean"' -e '"std"' names.txt; then echo "FAIL: a constant in the checkpoint"; exit 1; fi
# The first three test rows, raw, through infer and through the object linked into C.
gzip -dc "$data/wine_test.csv.gz" | head -n 3 | cut -d, -f1-13 >rows.csv
mv examples/data examples/moved
cat >app.c <<'EOF2'
#include "wine.h"
#include <stdio.h>
int main(void) {
    float x[3 * WINE_STD_X_SIZE], p[3 * WINE_STD_PROBS_SIZE];
    FILE *f = fopen("rows.csv", "r");
    for (int i = 0; i < 3 * WINE_STD_X_SIZE; i++)
        if (!f || fscanf(f, "%f,", &x[i]) != 1) return 2;
    fclose(f);
    wine_std *m;
    if (wine_std_create(&m, "w.safetensors") || wine_std_infer(m, 3, x, p)) return 1;
    for (int i = 0; i < 3; i++) printf("%.5f %.5f %.5f\n", p[3 * i], p[3 * i + 1], p[3 * i + 2]);
    wine_std_destroy(m);
    return 0;
}
EOF2
# shellcheck disable=SC2086
cc -std=c11 -Wall -Werror -I. app.c wine.o "$build/libpnetrt.a" $cflags -lz -lm -o app
./app | tee c.txt
/usr/bin/python3 -c "import numpy as np; np.save('rows.npy', np.loadtxt('rows.csv', delimiter=',', dtype=np.float32))" 2>/dev/null ||
    { echo "SKIP the infer comparison: no numpy"; exit 0; }
./wine_std infer --input x=rows.npy --weights w.safetensors --output probs=p.npy >/dev/null
/usr/bin/python3 -c "
import numpy as np
p = np.load('p.npy'); c = np.loadtxt('c.txt', dtype=np.float32)
assert np.allclose(p, c, atol=2e-5), (p, c)
print('PASS infer and the C program agree; predictions', p.argmax(axis=1).tolist())"
