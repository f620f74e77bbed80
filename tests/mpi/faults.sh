#!/bin/sh
# Faults of distributed runs never hang: sh faults.sh PNETC TRAIN_DIR
#
# Each case runs under mpirun with a 30-second limit; every rank must exit non-zero well within it,
# and the job's output must name the rank and the cause:
#   - a rank killed by SIGKILL in the middle of training (a checkpoint written before stays valid);
#   - a data file that one rank cannot read (the ranks run in different working directories);
#   - a rank that cannot get its memory (a ulimit on that rank alone);
#   - ranks that run different options, or different networks (the run's identity is checked at
#     start).
# Prints one line per check and then `N passed, M failed`; exit status 1 on any failure.
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
PNETC=$1 DIR=$2
passed=0 failed=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pnet-faults.XXXXXX") || exit 1
export TMPDIR=$WORK
trap 'pkill -9 -f "$WORK/net" 2>/dev/null; rm -rf "$WORK"' EXIT
trap 'exit 1' INT TERM HUP
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] || exit 1
    exit 0
}
"$PNETC" "$DIR/cases/dropout_det.pnet" -o "$WORK/net" >/dev/null 2>&1 || { fail "compile"; finish; }
cp "$DIR/data/det_x.npy" "$DIR/data/det_y.npy" "$WORK/"
X=$WORK/det_x.npy Y=$WORK/det_y.npy
# gone: no process of the run is left.
gone() { ! pgrep -f "$WORK/net" >/dev/null 2>&1; }

# 1. SIGKILL of rank 1 while training: mpirun ends the others; rc non-zero; the checkpoint that an
# earlier epoch wrote still loads.
timeout 60 mpirun -np 3 --oversubscribe "$WORK/net" train --data "$X" --labels "$Y" --epochs 1000000 --batch 50 \
    --threads 1 --save "$WORK/k.st" >"$WORK/kill.log" 2>&1 &
job=$!
i=0
while [ ! -f "$WORK/k.st" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
victim=$(pgrep -f "^$WORK/net train" | sed -n 2p) # a rank, not mpirun or timeout
start=$(date +%s)
[ -n "$victim" ] && kill -9 "$victim"
wait $job
rc=$?
took=$(($(date +%s) - start))
if [ -n "$victim" ] && [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $took -le 30 ] && gone &&
    grep -q "rank [0-9]* .*exited on signal 9" "$WORK/kill.log" && "$WORK/net" eval --data "$X" --labels "$Y" \
    --weights "$WORK/k.st" >/dev/null 2>&1; then
    pass "SIGKILL of a rank: every rank ended in ${took}s (exit $rc), the rank and signal named, the checkpoint loads"
else
    fail "SIGKILL of a rank: victim '$victim', exit $rc after ${took}s: $(grep -v '^epoch\|^--' "$WORK/kill.log" | tail -n 3 | tr '\n' ' ')"
fi

# 2. A file one rank cannot read: rank 1 runs in a directory without it.
mkdir -p "$WORK/a" "$WORK/b"
cp "$X" "$Y" "$WORK/a/"
start=$(date +%s)
timeout 30 mpirun --oversubscribe -np 1 -wdir "$WORK/a" "$WORK/net" train --data det_x.npy --labels det_y.npy \
    --threads 1 : -np 1 -wdir "$WORK/b" "$WORK/net" train --data det_x.npy --labels det_y.npy --threads 1 \
    >"$WORK/file.log" 2>&1
rc=$?
took=$(($(date +%s) - start))
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && gone && grep -q "net: rank 1: error: det_x.npy: cannot open" "$WORK/file.log"; then
    pass "a file rank 1 cannot read: exit $rc in ${took}s, one line names rank 1 and the file"
else
    fail "a file rank 1 cannot read: exit $rc: $(grep -v '^epoch\|^--' "$WORK/file.log" | head -n 3 | tr '\n' ' ')"
fi

# 3. Out of memory on rank 1 alone (400 MB of address space): a batch whose gradient slots need
# more fails there with the bytes it needed, and rank 0 learns that another rank failed.
start=$(date +%s)
timeout 30 mpirun --oversubscribe -np 1 "$WORK/net" bench --train --batch 60000 --seconds 1 --threads 1 : \
    -np 1 sh -c "ulimit -v 400000; exec \"$WORK/net\" bench --train --batch 60000 --seconds 1 --threads 1" \
    >"$WORK/oom.log" 2>&1
rc=$?
took=$(($(date +%s) - start))
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && gone && grep -q "net: rank 1: error: .*[0-9] bytes" "$WORK/oom.log"; then
    pass "out of memory on rank 1: exit $rc in ${took}s, rank 1 names the bytes it needed"
else
    fail "out of memory on rank 1: exit $rc: $(grep -v '^--' "$WORK/oom.log" | head -n 4 | tr '\n' ' ')"
fi

# 4. Different options on the ranks: found at start, before any work.
timeout 30 mpirun --oversubscribe -np 1 "$WORK/net" train --data "$X" --labels "$Y" --epochs 1 : \
    -np 1 "$WORK/net" train --data "$X" --labels "$Y" --epochs 2 >"$WORK/opts.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && gone && grep -q "net: rank 1: error: this rank's network or options differ from rank 0's" "$WORK/opts.log" &&
    ! grep -q "^epoch" "$WORK/opts.log"; then
    pass "different options on the ranks: exit $rc before training, rank 1 named"
else
    fail "different options on the ranks: exit $rc: $(grep -v '^--' "$WORK/opts.log" | head -n 3 | tr '\n' ' ')"
fi

# 5. A different network on rank 1 (its dropout rate changed), with the same options: found at start.
sed 's/dropout(f, 0.3)/dropout(f, 0.25)/' "$DIR/cases/dropout_det.pnet" >"$WORK/other.pnet"
if "$PNETC" "$WORK/other.pnet" -o "$WORK/net_other" >/dev/null 2>&1; then
    timeout 30 mpirun --oversubscribe -np 1 "$WORK/net" train --data "$X" --labels "$Y" --epochs 1 : \
        -np 1 "$WORK/net_other" train --data "$X" --labels "$Y" --epochs 1 >"$WORK/exe.log" 2>&1
    rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && gone && grep -q "rank 1: error: this rank's network or options differ from rank 0's" "$WORK/exe.log" &&
        ! grep -q "^epoch" "$WORK/exe.log"; then
        pass "a different network on rank 1: exit $rc before training, rank 1 named"
    else
        fail "a different network on rank 1: exit $rc: $(grep -v '^--' "$WORK/exe.log" | head -n 3 | tr '\n' ' ')"
    fi
else
    fail "compile the changed network"
fi
finish
