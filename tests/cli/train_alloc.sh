#!/bin/sh
# A training step allocates nothing after the first one at a batch: tests/cli/train_alloc.c, linked
# against the static libpnetrt with malloc and its kin wrapped (ld --wrap), counts the calls.
set -eu
pnetc=$1 build=$2 src=$3 cflags=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
"$pnetc" "$src/tests/train/cases/pipe.pnet" -c -o pipe.o 2>/dev/null
wrap=-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free,--wrap=posix_memalign,--wrap=aligned_alloc
# shellcheck disable=SC2086
cc -std=c11 -Wall -Werror -I. "$src/tests/cli/train_alloc.c" pipe.o "$build/libpnetrt.a" $wrap $cflags -lz -lm \
    -o train_alloc
./train_alloc
