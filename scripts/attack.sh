#!/bin/sh
# The attack (docs/testing.md, "Reliability (the attack)"): crafted and mutated .pnet sources,
# .npy, safetensors, checkpoints, CSV and IDX data; special files for every input and output
# option; signals during training; a full disk, a read-only mount, concurrent writers; the
# embedding API's hostile callers. Each case under a time limit, the whole run bounded.
#
#   sh scripts/attack.sh [--quick] [--seconds N] [--seed S] [--cases N] [--only CAT,...] [--keep DIR] [-v]
#
# About 5 minutes on the 2-core machine; --quick about 1. Categories (--only): pnet, npy,
# safetensors, ckpt, data, special, signals, full, readonly, concurrent, embed.
# Builds pnet in build/ (BUILD=dir for another) unless PNETC=path/to/pnetc is given. Prints a
# Markdown table of categories and cases; exit status 1 when any case failed. Needs root for the
# tmpfs mounts of the full-disk and read-only cases (skipped, with a note, without them).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
if [ -z "${PNETC:-}" ]; then
    if [ ! -f "$BUILD/build.ninja" ] && [ ! -f "$BUILD/Makefile" ]; then
        cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    fi
    if ! out=$(cmake --build "$BUILD" 2>&1); then
        printf '%s\n' "$out" >&2
        echo "attack.sh: building pnet in $BUILD failed" >&2
        exit 1
    fi
    PNETC=$BUILD/pnetc
fi
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" tests/attack/attack.py --pnetc "$PNETC" --src . --build "$BUILD" "$@"
