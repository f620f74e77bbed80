#!/bin/sh
# The MPI embedding example, as a user builds it: installs pnet into a temporary prefix, compiles
# examples/digits_mlp.pnet to an object, links examples/embed/mpi_app.c with mpicc and pkg-config,
# and runs it on 1, 2 and 3 ranks: the weights trained on the ranks must be bitwise one process's.
set -eu
build=$1 src=$2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TMPDIR=$tmp
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$(dirname "$(find "$tmp/prefix" -name pnetrt.pc | head -1)")"
cd "$tmp"
test -f "$tmp/prefix/include/pnet_mpi.h" || { echo "FAIL: pnet_mpi.h is not installed"; exit 1; }
"$tmp/prefix/bin/pnetc" "$src/examples/digits_mlp.pnet" -c -o digits_mlp.o
# shellcheck disable=SC2046
mpicc -std=c11 -Wall -Werror -I. "$src/examples/embed/mpi_app.c" digits_mlp.o $(pkg-config --cflags --libs pnetrt) -o mpi_app
for np in 1 2 3; do
    timeout 120 mpirun -np "$np" --oversubscribe ./mpi_app ranks.st alone.st >out.txt 2>&1 || { cat out.txt; echo "FAIL: $np ranks"; exit 1; }
    cat out.txt
    grep -q "weights bitwise identical to one process's" out.txt || { echo "FAIL: $np ranks"; exit 1; }
done
echo "3 passed, 0 failed"
