#!/bin/sh
# Training test of one case: sh run_case.sh PNETC ST_COMPARE CASE.pnet REFDIR [TRAIN ARGS ...]
#
# Compiles CASE.pnet, trains one epoch in order on the reference data of REFDIR (written by
# scripts/make_train_refs.py) from its initial weights, with the batch size of REFDIR/case.txt and
# any extra TRAIN ARGS (such as --threads 2 or --replicas 2), and compares the saved parameters and
# buffers with PyTorch's (st_compare, rtol/atol from case.txt). Prints one line per check and then
# `N passed, M failed`; exit status 1 on any failure.
set -u
# Every requested thread runs, however small the case (see docs/codegen.md).
export PNET_ADAPTIVE_THREADS=0
if [ $# -lt 4 ]; then
    echo "usage: sh run_case.sh PNETC ST_COMPARE CASE.pnet REFDIR [TRAIN ARGS ...]" >&2
    exit 2
fi
PNETC=$1 CMP=$2 SRC=$3 REF=$4
shift 4
passed=0 failed=0
WORK=

pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() {
    [ -n "$WORK" ] && rm -rf "$WORK"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}
setting() { sed -n "s/^$1 *//p" "$REF/case.txt"; }

[ -f "$REF/case.txt" ] || { fail "no reference: $REF/case.txt is missing (run /usr/bin/python3 scripts/make_train_refs.py)"; finish; }
BATCH=$(setting batch) RTOL=$(setting rtol) ATOL=$(setting atol)
[ -n "$BATCH" ] && [ -n "$RTOL" ] && [ -n "$ATOL" ] || { fail "$REF/case.txt lacks batch, rtol or atol"; finish; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pnet-train.XXXXXX") || { fail "cannot create a temporary directory"; finish; }

if "$PNETC" "$SRC" -o "$WORK/net" >"$WORK/compile.log" 2>&1; then
    pass "compile"
else
    rc=$?
    fail "compile (exit $rc): $(head -n 3 "$WORK/compile.log" | tr '\n' ' ')"
    finish
fi

if "$WORK/net" train --data "$REF/x.npy" --labels "$REF/y.npy" --weights "$REF/init.safetensors" \
        --epochs 1 --batch "$BATCH" --no-shuffle --save "$WORK/out.safetensors" "$@" >"$WORK/train.log" 2>&1; then
    pass "train $*"
else
    rc=$?
    fail "train $* (exit $rc): $(tail -n 3 "$WORK/train.log" | tr '\n' ' ')"
    finish
fi

if "$CMP" "$REF/after.safetensors" "$WORK/out.safetensors" "$RTOL" "$ATOL" >"$WORK/compare.log" 2>&1; then
    pass "parameters and buffers after training (rtol $RTOL, atol $ATOL)"
else
    fail "parameters and buffers after training (rtol $RTOL, atol $ATOL):"
    sed 's/^/    /' "$WORK/compare.log"
fi
finish
