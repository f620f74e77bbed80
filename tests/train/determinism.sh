#!/bin/sh
# Bitwise determinism of training: sh determinism.sh PNETC TRAIN_DIR
#
# Compiles TRAIN_DIR/cases/dropout_det.pnet (conv2d, batchnorm, dropout) and trains it, shuffled,
# on TRAIN_DIR/data/det_{x,y}.npy (150 samples: batches of 100 = chunks 32+32+32+4, then 50):
#   - on 1 to 4 threads and 1 to 4 replicas: the saved checkpoints must be byte-identical;
#   - 1 epoch, then --resume to 2: identical to 2 epochs in one go;
#   - Ctrl-C (SIGINT), SIGTERM and SIGHUP in a longer run: exit 130, 143 and 129, no temporary file
#     left, and a checkpoint that eval loads, and resuming it ends identical to the uninterrupted run;
#   - eval prints `accuracy: A` and `loss: L`, the same for any threads.
# Prints one line per check and then `N passed, M failed`; exit status 1 on any failure.
set -u
export PNET_ADAPTIVE_THREADS=0 # every requested thread runs, however small the step
if [ $# -ne 2 ]; then
    echo "usage: sh determinism.sh PNETC TRAIN_DIR" >&2
    exit 2
fi
PNETC=$1 DIR=$2
X=$DIR/data/det_x.npy Y=$DIR/data/det_y.npy
passed=0 failed=0 bg=
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pnet-det.XXXXXX") || exit 1
cleanup() {
    [ -n "$bg" ] && kill "$bg" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] || exit 1
    exit 0
}
# train OUT ARGS...: trains into $WORK/OUT.st; a failure prints the log's tail.
train() {
    out=$1
    shift
    "$WORK/net" train --data "$X" --labels "$Y" --save "$WORK/$out.st" "$@" >"$WORK/$out.log" 2>&1
    rc=$?
    [ $rc -eq 0 ] && return 0
    fail "train $* (exit $rc): $(tail -n 2 "$WORK/$out.log" | tr '\n' ' ')"
    return 1
}
same() { cmp -s "$WORK/$1.st" "$WORK/$2.st"; }

if "$PNETC" "$DIR/cases/dropout_det.pnet" -o "$WORK/net" >"$WORK/compile.log" 2>&1; then
    pass "compile dropout_det"
else
    fail "compile dropout_det: $(head -n 3 "$WORK/compile.log" | tr '\n' ' ')"
    finish
fi

# Threads and replicas.
train t1 --epochs 2 --batch 100 --threads 1 || finish
for cfg in "--threads 2" "--threads 2 --replicas 1" "--threads 3 --replicas 3" "--threads 4 --replicas 2" \
    "--replicas 4 --threads 4"; do
    name=$(printf '%s' "$cfg" | tr -d ' -')
    # shellcheck disable=SC2086 # $cfg is a list of options
    train "$name" --epochs 2 --batch 100 $cfg || continue
    if same t1 "$name"; then
        pass "2 shuffled epochs, $cfg: checkpoint identical to --threads 1"
    else
        fail "2 shuffled epochs, $cfg: checkpoint differs from --threads 1 ($(cmp "$WORK/t1.st" "$WORK/$name.st" 2>&1))"
    fi
done

# A network of dense layers only: its chunks add their gradients into their left siblings' slots
# (PNET_GRAD_ADD=0 turns that off); every schedule and batch gives the bits of one thread that
# writes a slot per chunk and adds them by the tree (batches of 100: chunks 32+32+32+4; of 150: five).
if "$PNETC" "$DIR/cases/dense_det.pnet" -o "$WORK/dnet" >"$WORK/dcompile.log" 2>&1; then
    for b in 100 150; do
        PNET_GRAD_ADD=0 "$WORK/dnet" train --data "$X" --labels "$Y" --save "$WORK/d$b.st" --epochs 2 --batch $b \
            --threads 1 >"$WORK/d$b.log" 2>&1 || fail "dense_det, batch $b, PNET_GRAD_ADD=0: $(tail -n 1 "$WORK/d$b.log")"
        for cfg in "--threads 1" "--threads 2" "--threads 3 --replicas 3" "--threads 4 --replicas 2"; do
            name=d$b$(printf '%s' "$cfg" | tr -d ' -')
            # shellcheck disable=SC2086 # $cfg is a list of options
            "$WORK/dnet" train --data "$X" --labels "$Y" --save "$WORK/$name.st" --epochs 2 --batch $b $cfg \
                >"$WORK/$name.log" 2>&1 || { fail "dense_det $cfg: $(tail -n 1 "$WORK/$name.log")"; continue; }
            if same "d$b" "$name"; then
                pass "dense_det, batch $b, $cfg (gradients added into the left sibling's slot): identical to slots added by the tree"
            else
                fail "dense_det, batch $b, $cfg: differs from slots added by the tree"
            fi
        done
    done
else
    fail "compile dense_det: $(head -n 3 "$WORK/dcompile.log" | tr '\n' ' ')"
fi
# The same in a pipeline of dense stages (one stage per thread group, and two replica pipelines).
if "$PNETC" "$DIR/cases/dense_pipe_det.pnet" -o "$WORK/pnet" >"$WORK/pcompile.log" 2>&1; then
    PNET_GRAD_ADD=0 "$WORK/pnet" train --data "$X" --labels "$Y" --save "$WORK/p0.st" --epochs 2 --threads 1 \
        >"$WORK/p0.log" 2>&1 || fail "dense_pipe_det, PNET_GRAD_ADD=0: $(tail -n 1 "$WORK/p0.log")"
    for cfg in "--threads 1" "--threads 2" "--threads 4" "--threads 4 --replicas 2 --microbatches 2"; do
        name=p$(printf '%s' "$cfg" | tr -d ' -')
        # shellcheck disable=SC2086 # $cfg is a list of options
        "$WORK/pnet" train --data "$X" --labels "$Y" --save "$WORK/$name.st" --epochs 2 $cfg \
            >"$WORK/$name.log" 2>&1 || { fail "dense_pipe_det $cfg: $(tail -n 1 "$WORK/$name.log")"; continue; }
        if same p0 "$name"; then
            pass "dense_pipe_det, $cfg ($(sed -n 's/^schedule: //p' "$WORK/$name.log" | head -n 1)): identical to slots added by the tree"
        else
            fail "dense_pipe_det, $cfg: differs from slots added by the tree"
        fi
    done
else
    fail "compile dense_pipe_det: $(head -n 3 "$WORK/pcompile.log" | tr '\n' ' ')"
fi

# Resume after an epoch.
if train a --epochs 1 --batch 100 && train b --resume "$WORK/a.st" --epochs 2 --batch 100 --threads 2; then
    if same t1 b; then pass "1 epoch, then --resume to 2: identical to 2 epochs"; else fail "1 epoch, then --resume to 2: differs from 2 epochs"; fi
fi

# --resume shuffles with the checkpoint's seed (as its dropout does), not the train block's.
if train s7 --epochs 2 --batch 100 --seed 7 && train s7a --epochs 1 --batch 100 --seed 7 &&
    train s7b --resume "$WORK/s7a.st" --epochs 2 --batch 100; then
    if same s7 s7b; then
        pass "--seed 7 for 1 epoch, then --resume (no --seed) to 2: identical to 2 epochs"
    else
        fail "--seed 7 for 1 epoch, then --resume (no --seed) to 2: differs from 2 epochs (shuffle seed not restored)"
    fi
fi

# --lr with --resume overrides the checkpoint's learning rate.
if train l0 --resume "$WORK/a.st" --epochs 2 --batch 100 && train l5 --resume "$WORK/a.st" --epochs 2 --batch 100 --lr 0.5; then
    if same l0 l5; then
        fail "--resume with --lr 0.5 trains exactly as without it (--lr ignored)"
    else
        pass "--resume with --lr 0.5 changes the training"
    fi
fi

# Ctrl-C, then SIGTERM and SIGHUP: interrupt a run on 3 replicas once its first checkpoint exists;
# resume the Ctrl-C one on 2 threads, and compare with an uninterrupted run on 1 thread. Batches of 34 (5 steps
# an epoch, the first four of 2 chunks), so the interrupt usually falls inside an epoch. Each exits
# with 128 + the signal, writes one line and a whole checkpoint, and leaves no temporary file.
EP=300
train u --epochs $EP --batch 34 || finish
interrupt() { # SIGNAL EXIT_STATUS
    sig=$1 code=$2
    rm -f "$WORK/c.st"
    "$WORK/net" train --data "$X" --labels "$Y" --epochs $EP --batch 34 --threads 3 --replicas 3 --save "$WORK/c.st" \
        >"$WORK/c.log" 2>"$WORK/c.err" &
    bg=$!
    i=0
    while [ ! -f "$WORK/c.st" ] && [ $i -lt 400 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    sleep 0.3
    kill -"$sig" "$bg" 2>/dev/null
    wait "$bg"
    rc=$?
    bg=
    if [ $rc -eq 0 ]; then
        echo "NOTE the $EP-epoch run finished before SIG$sig arrived: interrupt checks skipped"
        return
    elif [ $rc -ne "$code" ]; then
        fail "SIG$sig: exit $rc, not $code: $(tail -n 2 "$WORK/c.err" | tr '\n' ' ')"
        return
    fi
    pass "SIG$sig: exit $code"
    if [ "$(wc -l <"$WORK/c.err")" -eq 1 ] && grep -q "checkpoint written to $WORK/c.st" "$WORK/c.err"; then
        pass "SIG$sig: one-line note naming the checkpoint ($(sed 's/.*(\(.*\)).*/\1/' "$WORK/c.err"))"
    else
        fail "SIG$sig: stderr is not one line naming the checkpoint: $(tr '\n' '|' <"$WORK/c.err")"
    fi
    if ls -A "$WORK" | grep -q 'pnet-tmp'; then
        fail "SIG$sig: temporary files left: $(ls -A "$WORK" | grep pnet-tmp | tr '\n' ' ')"
    else
        pass "SIG$sig: no temporary file left"
    fi
    if "$WORK/net" eval --data "$X" --labels "$Y" --weights "$WORK/c.st" >"$WORK/ce.log" 2>&1 && grep -q '^accuracy: ' "$WORK/ce.log"; then
        pass "eval loads the checkpoint of SIG$sig"
    else
        fail "eval of the checkpoint of SIG$sig: $(tr '\n' ' ' <"$WORK/ce.log")"
    fi
    [ "$sig" = INT ] || return # resuming does not depend on the signal: once is enough
    if train r --resume "$WORK/c.st" --epochs $EP --batch 34 --threads 2; then
        if same u r; then
            pass "run interrupted by SIG$sig resumed to $EP epochs: identical to the uninterrupted run"
        else
            fail "run interrupted by SIG$sig resumed to $EP epochs: differs from the uninterrupted run"
        fi
    fi
}
interrupt INT 130
interrupt TERM 143
interrupt HUP 129

# Eval output: format, and the same for any threads and replicas.
ev1=$("$WORK/net" eval --data "$X" --labels "$Y" --weights "$WORK/t1.st" --threads 1 2>&1)
ev4=$("$WORK/net" eval --data "$X" --labels "$Y" --weights "$WORK/t1.st" --threads 4 --replicas 4 2>&1)
if printf '%s\n' "$ev1" | grep -Eq '^accuracy: [01]\.[0-9]{4}$' && printf '%s\n' "$ev1" | grep -Eq '^loss: [0-9]+\.[0-9]{4}$' &&
    [ "$(printf '%s\n' "$ev1" | wc -l)" -eq 2 ]; then
    pass "eval prints accuracy and loss lines"
else
    fail "eval output: $(printf '%s' "$ev1" | tr '\n' '|')"
fi
if [ "$ev1" = "$ev4" ]; then pass "eval identical for --threads 1 and --threads 4 --replicas 4"; else fail "eval differs: '$ev1' vs '$ev4'"; fi

# Pipeline training (tests/train/cases/pipe.pnet: 2 stages, 1F1B): unpipelined on 1 thread, then
# pipelined with several micro-batch counts and as 2 replicas of 2-stage pipelines, 2 epochs
# shuffled: byte-identical checkpoints.
PX=$DIR/refs/pipe/x.npy PY=$DIR/refs/pipe/y.npy
if "$PNETC" "$DIR/cases/pipe.pnet" -o "$WORK/pipe" >"$WORK/pipe.log" 2>&1; then
    ptrain() {
        out=$1
        shift
        "$WORK/pipe" train --data "$PX" --labels "$PY" --epochs 2 --batch 70 --save "$WORK/$out.st" "$@" >"$WORK/$out.log" 2>&1 ||
            { fail "pipe train $* : $(tail -n 2 "$WORK/$out.log" | tr '\n' ' ')"; return 1; }
    }
    if ptrain p1 --threads 1; then
        for cfg in "--threads 2" "--threads 2 --microbatches 1" "--threads 3 --microbatches 3" \
            "--threads 4 --replicas 2 --microbatches 2"; do
            name=p$(printf '%s' "$cfg" | tr -d ' -')
            # shellcheck disable=SC2086 # $cfg is a list of options
            if ptrain "$name" $cfg; then
                if same p1 "$name"; then pass "pipeline $cfg: identical to 1 thread"; else fail "pipeline $cfg: differs from 1 thread"; fi
            fi
        done
    fi
else
    fail "compile pipe: $(head -n 3 "$WORK/pipe.log" | tr '\n' ' ')"
fi

finish
