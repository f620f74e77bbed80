#!/bin/sh
# Model parallelism that saves memory: sh memory.sh PNETC
#
# big4 has 4 GiB of parameters in four pipeline stages. Run by `bench` as 4 ranks, one stage per
# rank, each rank loads, prepares and touches only its stage's quarter: every rank's peak resident
# memory, as the operating system counts it (getrusage) and bench prints it, stays under 1.6 GiB.
# One process holding all four stages peaks above 4 GiB. A rank that cannot get its memory (a
# ulimit on that rank alone) fails with the bytes it needed, and every rank ends, within 30 s.
# Training with one stage per rank (big4t) peaks per rank under half of one process's memory, and
# saving it raises rank 0's peak by no more than a piece of a tensor.
# Prints one line per check and then `N passed, M failed`; exit status 1 on any failure.
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PNET_ADAPTIVE_THREADS=0
PNETC=$1
DIR=$(dirname "$0")
passed=0 failed=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pnet-memory.XXXXXX") || exit 1
export TMPDIR=$WORK
trap 'pkill -9 -f "$WORK/big4" 2>/dev/null; rm -rf "$WORK"' EXIT
trap 'exit 1' INT TERM HUP
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] || exit 1
    exit 0
}
"$PNETC" "$DIR/cases/big4.pnet" -o "$WORK/big4" >"$WORK/compile.log" 2>&1 || { fail "compile big4: $(head -n 2 "$WORK/compile.log")"; finish; }

# 4 ranks, one stage each: every rank's peak under 1.6 GiB (1638.4 MiB).
timeout 120 mpirun -np 4 --oversubscribe "$WORK/big4" bench --batch 4 --seconds 0.1 --threads 1 >"$WORK/ranks.log" 2>&1
rc=$?
line=$(grep "^memory: peak resident per rank:" "$WORK/ranks.log")
if [ $rc -eq 0 ] && [ -n "$line" ] && printf '%s\n' "$line" | awk '{
        n = 0; ok = 1
        for (i = 1; i <= NF; i++) if ($i == "rank") { v = $(i + 2) + 0; n++; if (v >= 1638.4 || v <= 0) ok = 0 }
        exit !(ok && n == 4) }'; then
    pass "4 GiB of parameters on 4 stage ranks: ${line#memory: }"
else
    fail "4 stage ranks: exit $rc: $(tail -n 3 "$WORK/ranks.log" | tr '\n' ' ')"
fi

# One process holds every stage: above 4 GiB.
"$WORK/big4" bench --batch 4 --seconds 0.1 --threads 2 >"$WORK/one.log" 2>&1
rc=$?
mib=$(sed -n 's/^memory: peak resident \([0-9.]*\) MiB.*/\1/p' "$WORK/one.log")
if [ $rc -eq 0 ] && [ -n "$mib" ] && awk -v m="$mib" 'BEGIN { exit !(m > 4096) }'; then
    pass "one process holding all four stages: peak resident $mib MiB"
else
    fail "one process: exit $rc, peak '$mib' MiB: $(tail -n 2 "$WORK/one.log" | tr '\n' ' ')"
fi

# Training: big4t (112 MiB of parameters in four stages, adam) trained by `bench --train` with one
# stage per rank. Each rank holds its stage's parameters, optimizer state, partial sums of the
# gradient and activations alone: every rank's peak under half of one process's, which holds all.
if "$PNETC" "$DIR/cases/big4t.pnet" -o "$WORK/big4t" >"$WORK/compile.log" 2>&1; then
    "$WORK/big4t" bench --train --batch 32 --seconds 0.1 --threads 2 >"$WORK/tone.log" 2>&1
    rc1=$?
    one=$(sed -n 's/^memory: peak resident \([0-9.]*\) MiB.*/\1/p' "$WORK/tone.log")
    timeout 120 mpirun -np 4 --oversubscribe "$WORK/big4t" bench --train --batch 32 --seconds 0.1 --threads 1 >"$WORK/tranks.log" 2>&1
    rc=$?
    line=$(grep "^memory: peak resident per rank:" "$WORK/tranks.log")
    if [ $rc1 -eq 0 ] && [ -n "$one" ] && [ $rc -eq 0 ] && [ -n "$line" ] && printf '%s\n' "$line" | awk -v one="$one" '{
            n = 0; ok = 1
            for (i = 1; i <= NF; i++) if ($i == "rank") { v = $(i + 2) + 0; n++; if (v >= one / 2 || v <= 0) ok = 0 }
            exit !(ok && n == 4) }'; then
        pass "training 4 stages on 4 ranks: ${line#memory: }, against $one MiB in one process"
    else
        fail "training on 4 stage ranks: exit $rc1/$rc, one process '$one' MiB: $line $(tail -n 2 "$WORK/tranks.log" | tr '\n' ' ')"
    fi
else
    fail "compile big4t: $(head -n 2 "$WORK/compile.log")"
fi

# Saving on stage ranks: rank 0 writes the one file, receiving each other stage's parameters and
# adam state piece by piece from the rank that trains it (docs/distributed.md, "Checkpoints"), so
# its peak with --save stays within 32 MiB of its peak without (before: it gathered all 336 MiB),
# as GNU time counts each rank's peak; the file is the one a single process saves.
if [ -x "$WORK/big4t" ] && [ -x /usr/bin/time ] && python3 - "$WORK" <<'PY'
import struct, sys
def npy(path, descr, shape, pack):
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, ", ".join(map(str, shape)) + ("," if len(shape) == 1 else ""))
    hdr += " " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + pack)
n = 128
npy(sys.argv[1] + "/x.npy", "<f4", (n, 2048), struct.pack("<%df" % (n * 2048), *[((i * 7919) % 1000) / 1000.0 for i in range(n * 2048)]))
npy(sys.argv[1] + "/y.npy", "<i4", (n,), struct.pack("<%di" % n, *[i % 10 for i in range(n)]))
PY
then
    targs="--data $WORK/x.npy --labels $WORK/y.npy --epochs 1 --batch 64 --no-shuffle"
    # shellcheck disable=SC2086 # $targs is a list of options
    "$WORK/big4t" train $targs --threads 2 --save "$WORK/one.st" >"$WORK/save1.log" 2>&1
    rc1=$?
    for save in no yes; do
        sv=
        [ $save = yes ] && sv="--save $WORK/ranks.st"
        # shellcheck disable=SC2086
        timeout 120 mpirun -np 4 --oversubscribe sh -c '/usr/bin/time -o "$0.$OMPI_COMM_WORLD_RANK" -f %M "$@"' \
            "$WORK/peak_$save" "$WORK/big4t" train $targs --threads 1 $sv >"$WORK/save_$save.log" 2>&1
        eval "rc_$save=$?"
        eval "peak_$save=$(tail -n 1 "$WORK/peak_$save.0" 2>/dev/null)"
    done
    # shellcheck disable=SC2154 # rc_*, peak_* are set by eval
    if [ $rc1 -eq 0 ] && [ "$rc_no" -eq 0 ] && [ "$rc_yes" -eq 0 ] && [ -n "$peak_no" ] && [ -n "$peak_yes" ] &&
        [ "$peak_yes" -le $((peak_no + 32768)) ] && cmp -s "$WORK/one.st" "$WORK/ranks.st"; then
        pass "saving on 4 stage ranks: rank 0 peaks at $((peak_yes / 1024)) MiB with --save, $((peak_no / 1024)) MiB without; the file is one process's"
    else
        fail "saving on 4 stage ranks: exit $rc1/$rc_no/$rc_yes, rank 0 peak '$peak_yes' KiB with --save against '$peak_no' without; $(cmp "$WORK/one.st" "$WORK/ranks.st" 2>&1 | head -n 1)"
    fi
else
    fail "saving on 4 stage ranks: no big4t, no /usr/bin/time (Debian's time) or no data"
fi

# Rank 2 with 2 GB of address space cannot map the parameters: it names the bytes, and every rank
# ends, non-zero, within 30 s.
start=$(date +%s)
timeout 30 mpirun --oversubscribe -np 2 "$WORK/big4" bench --batch 4 --seconds 0.1 --threads 1 : \
    -np 1 sh -c "ulimit -v 2000000; exec \"$WORK/big4\" bench --batch 4 --seconds 0.1 --threads 1" : \
    -np 1 "$WORK/big4" bench --batch 4 --seconds 0.1 --threads 1 >"$WORK/oom.log" 2>&1
rc=$?
took=$(($(date +%s) - start))
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && ! pgrep -f "$WORK/big4" >/dev/null 2>&1 &&
    grep -q "big4: rank 2: error: cannot allocate [0-9]* bytes" "$WORK/oom.log"; then
    pass "a stage rank out of memory: exit $rc in ${took}s, rank 2 names the bytes it needed"
else
    fail "a stage rank out of memory: exit $rc: $(grep -v '^--' "$WORK/oom.log" | head -n 3 | tr '\n' ' ')"
fi
finish
