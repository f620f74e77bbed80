#!/bin/sh
# Runs a compiled network's commands (good and bad), a pipelined bench and the hostile embedding
# caller tests/cli/embed_hostile.c under valgrind: no invalid read or write, no use of uninitialised
# values, no definite or indirect leak. Exits 77 (skipped) without valgrind.
set -eu
build=$1 src=$2
command -v valgrind >/dev/null 2>&1 || { echo "SKIP: valgrind is not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMP_NUM_THREADS=2
data=$src/examples/data/digits_test.csv.gz
pass=0

# vg RC CMD...: CMD must exit with RC and valgrind must report nothing. OpenMP's thread stacks are
# "possibly lost", which neither fails nor prints.
vg() {
    want=$1
    shift
    rc=0
    valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
        --error-exitcode=99 --log-file=vg.log "$@" >out.txt 2>err.txt || rc=$?
    if [ "$rc" != "$want" ] || [ -s vg.log ]; then
        echo "FAIL: $* exited $rc (expected $want)"
        cat err.txt vg.log
        exit 1
    fi
    pass=$((pass + 1))
}

# valgrind does not decode AVX-512: the networks are compiled for a generic CPU.
"$build/pnetc" --cpu generic "$src/examples/digits_mlp.pnet" -o net
"$build/pnetc" --cpu generic -w "$src/tests/e2e/cases/parallel_small.pnet" -o par
python3 - <<'EOF'
import struct
def npy(path, descr, shape, raw):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, "".join("%d," % d for d in shape))
    h += " " * (63 - (len(h) + 10) % 64) + "\n"
    open(path, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + raw)
npy("x.npy", "<f4", [5, 64], struct.pack("<320f", *[(i * 7) % 17 for i in range(320)]))
npy("x63.npy", "<f4", [5, 63], bytes(5 * 63 * 4))
open("bad.npy", "wb").write(b"garbage")
EOF
vg 0 ./net info
vg 0 ./net infer --input x=x.npy --output probs=p.npy
vg 0 ./net bench --batch 8 --seconds 0.1
vg 0 ./net train --data "$data" --epochs 1 --save ck.safetensors
vg 0 ./net train --data "$data" --resume ck.safetensors --epochs 2 --save ck2.safetensors
vg 0 ./net eval --data "$data" --weights ck2.safetensors
vg 0 ./par bench --schedule pipeline --microbatches 4 --threads 2 --batch 8 --seconds 0.1
vg 1 ./net infer --input x=missing.npy
vg 1 ./net infer --input x=bad.npy
vg 1 ./net infer --input x=x63.npy
vg 1 ./net eval --data "$data" --weights /dev/null
vg 1 ./net train --data "$data" --save "$data"
vg 1 ./par bench --weights ck.safetensors --seconds 0.1
head -c 2000 ck.safetensors >trunc.safetensors
vg 1 ./net infer --input x=x.npy --weights trunc.safetensors

# The embedding API: the hostile caller (30 rounds: a leak shows in one; the heap
# check needs more than 20).
"$build/pnetc" --cpu generic "$src/examples/digits_mlp.pnet" -c -o digits_mlp.o
"$build/pnetc" --cpu generic -w "$src/tests/e2e/cases/parallel_small.pnet" -c -o parallel_small.o
libs="-L$build -Wl,-rpath,$build -lpnetrt -fopenmp -lm"
# shellcheck disable=SC2086
cc -std=c11 -g -I. "$src/tests/cli/embed_hostile.c" digits_mlp.o parallel_small.o $libs -o hostile
vg 0 ./hostile 30
echo "$pass passed, 0 failed"
