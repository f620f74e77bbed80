#!/bin/sh
# Traces and reports of training: sh train_trace.sh PNETC TRAIN_DIR
#
# `train --trace` and `bench --train --trace` write a Chrome trace whose slices are the parts of
# each step (forward and backward per stage and micro-batch in a pipeline, a chunk's forward and
# backward otherwise, batch-statistics segments and syncs, the reductions and the update), on
# tracks named after their replica and stage; `train` prints its schedule once, first; `bench
# --train` of a pipelined network prints the measured bubble beside the GPipe and 1F1B prediction.
set -u
PNETC=$1 DIR=$2
passed=0 failed=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pnet-trtrace.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
for c in mlp_adam pipe dropout_det; do
    "$PNETC" "$DIR/cases/$c.pnet" -o "$WORK/$c" >/dev/null 2>&1 || fail "compile $c"
done
# slices FILE NAME...: the trace is valid JSON with a slice of every NAME, and every track named.
slices() {
    f=$1
    shift
    /usr/bin/python3 - "$f" "$@" <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
names = {e["name"] for e in ev if e["ph"] == "X"}
tids = {e["tid"] for e in ev if e["ph"] == "X"}
named = {e["tid"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
missing = [n for n in sys.argv[2:] if n not in names]
sys.exit(1 if missing or not tids <= named else 0)
PY
}
R=$DIR/refs/mlp_adam
B=$(sed -n 's/^batch *//p' "$R/case.txt")
out=$("$WORK/mlp_adam" train --data "$R/x.npy" --labels "$R/y.npy" --batch "$B" --epochs 1 --threads 2 \
    --trace "$WORK/t.json" 2>&1)
if printf '%s\n' "$out" | head -n 1 | grep -q "^schedule: [0-9]* threads*: " &&
    [ "$(printf '%s\n' "$out" | grep -c '^schedule: ')" = 1 ] &&
    slices "$WORK/t.json" "forward+backward" prep reduce update; then
    pass "train --trace: its schedule first, and a trace of each chunk, the reductions and the update"
else
    fail "train --trace: $(printf '%s' "$out" | head -n 3 | tr '\n' ' ')"
fi
R=$DIR/refs/pipe
out=$("$WORK/pipe" bench --train --batch 256 --seconds 0.2 --threads 2 --trace "$WORK/b.json" 2>&1)
if printf '%s\n' "$out" | grep -q "^bubble: measured [0-9.]*% (mean of [0-9]* steps.*predicted 20.0% for GPipe and for 1F1B" &&
    slices "$WORK/b.json" "stage 0 forward" "stage 1 forward" "stage 1 backward" "stage 0 backward" reduce update &&
    grep -q '"thread 1: replica 0, stage 1"' "$WORK/b.json"; then
    pass "bench --train --trace of a pipeline: forward and backward per stage, tracks named, the bubble measured and predicted"
else
    fail "bench --train --trace of a pipeline: $(printf '%s' "$out" | tail -n 3 | tr '\n' ' ')"
fi
out=$("$WORK/dropout_det" train --data "$DIR/data/det_x.npy" --labels "$DIR/data/det_y.npy" --batch 100 --threads 2 \
    --trace "$WORK/d.json" 2>&1)
if slices "$WORK/d.json" segment sync reduce update; then
    pass "train --trace with batchnorm: its segments and the syncs between them"
else
    fail "train --trace with batchnorm: $(printf '%s' "$out" | tail -n 2 | tr '\n' ' ')"
fi
out=$("$WORK/dropout_det" train --data "$DIR/data/det_x.npy" --labels "$DIR/data/det_y.npy" --trace "$WORK/no/t.json" 2>&1)
rc=$?
if [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -q "no/t.json: cannot write the trace" && ! printf '%s\n' "$out" | grep -q "^epoch"; then
    pass "train --trace to a missing directory: an error before training"
else
    fail "train --trace to a missing directory: exit $rc: $(printf '%s' "$out" | head -n 2 | tr '\n' ' ')"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
