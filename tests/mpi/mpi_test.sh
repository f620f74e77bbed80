#!/bin/sh
# Distributed runs under mpirun: sh mpi_test.sh PNETC TRAIN_DIR [quick]
#
# Data-parallel training over 1 to 4 ranks (oversubscribed on this machine's cores), with shared
# memory and again with --mca btl self,tcp (the path runs across machines take): the saved weights
# must be bitwise those of the threads-only run, for batchnorm and dropout with shuffling
# (dropout_det), adam (mlp_adam), a CNN (cnn), and networks with pipeline stages (pipe: 1F1B,
# pipe_gpipe: GPipe; pipe_std: tensor constants that both stages read; skip3: three stages)
# trained one stage per rank (pipelines of ranks, and replicas of them), or every stage in each
# rank. Evaluation (eval, train --val) one stage per rank: every digit of the accuracy and loss is
# one process's. Also: a rank count that leaves a rank without chunks, and errors every rank reports
# the same way.
# Prints one line per check and then `N passed, M failed`; exit status 1 on any failure.
set -u
export PNET_ADAPTIVE_THREADS=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI's shared-memory transport needs no special setup in a container; keep its session
# directory in the test's own temporary directory.
if [ $# -lt 2 ]; then
    echo "usage: sh mpi_test.sh PNETC TRAIN_DIR [quick]" >&2
    exit 2
fi
PNETC=$1 DIR=$2 QUICK=${3:-}
passed=0 failed=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pnet-mpi.XXXXXX") || exit 1
export TMPDIR=$WORK
trap 'rm -rf "$WORK"' EXIT
trap 'exit 1' INT TERM HUP
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] || exit 1
    exit 0
}
# mpi NP BTL ARGS...: runs ARGS under mpirun with NP ranks (BTL "shm": shared memory, Open MPI's
# vader, forced so that a silent fall back to TCP would fail; "tcp": the path runs across machines
# take), 60 s at most.
mpi() {
    np=$1 btl=$2
    shift 2
    if [ "$btl" = tcp ]; then
        timeout 60 mpirun -np "$np" --oversubscribe --mca btl self,tcp "$@"
    else
        timeout 60 mpirun -np "$np" --oversubscribe --mca btl self,vader "$@"
    fi
}

# A libpnetrt built without MPI: mpirun of an executable fails on every rank with one line that
# says so, instead of running K copies of one run.
if [ "$QUICK" = without-mpi ]; then
    if "$PNETC" "$DIR/cases/mlp_adam.pnet" -o "$WORK/net" >"$WORK/compile.log" 2>&1; then
        out=$(mpi 2 shm "$WORK/net" info 2>&1)
        rc=$?
        if [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -q "net: error: this libpnetrt was built without MPI"; then
            pass "built without MPI: mpirun -np 2 fails with a message (exit $rc)"
        else
            fail "built without MPI: exit $rc: $(printf '%s' "$out" | head -n 3 | tr '\n' ' ')"
        fi
    else
        fail "compile mlp_adam: $(head -n 2 "$WORK/compile.log" | tr '\n' ' ')"
    fi
    finish
fi

EXAMPLES=$DIR/../../examples
for c in dropout_det mlp_adam cnn pipe pipe_gpipe pipe_std digits_mlp; do
    src=$DIR/cases/$c.pnet
    [ "$c" = digits_mlp ] && src=$EXAMPLES/digits_mlp.pnet
    if ! "$PNETC" "$src" -o "$WORK/$c" >"$WORK/$c.compile" 2>&1; then
        fail "compile $c: $(head -n 2 "$WORK/$c.compile" | tr '\n' ' ')"
        continue
    fi
    if [ "$c" = dropout_det ]; then
        args="--data $DIR/data/det_x.npy --labels $DIR/data/det_y.npy --epochs 2 --batch 100"
    elif [ "$c" = digits_mlp ]; then
        # 1,437 samples in batches of 1,000 and 437: 32 and 14 chunks, folded by the tree on each
        # rank and reduced across them (docs/distributed.md).
        args="--data $EXAMPLES/data/digits_train.csv.gz --epochs 2 --batch 1000"
    else
        R=$DIR/refs/$c
        B=$(sed -n 's/^batch *//p' "$R/case.txt")
        args="--data $R/x.npy --labels $R/y.npy --weights $R/init.safetensors --epochs 1 --batch $B --no-shuffle"
    fi
    # shellcheck disable=SC2086 # $args is a list of options
    if ! "$WORK/$c" train $args --threads 2 --save "$WORK/$c.ref.st" >"$WORK/$c.log" 2>&1; then
        fail "$c: threads-only run: $(tail -n 2 "$WORK/$c.log" | tr '\n' ' ')"
        continue
    fi
    # digits_mlp's trained parameters are all dense layers': its chunks add their gradients into
    # their left siblings' slots (docs/training.md); without that, the same bits.
    if [ "$c" = digits_mlp ]; then
        # shellcheck disable=SC2086
        PNET_GRAD_ADD=0 "$WORK/$c" train $args --threads 1 --save "$WORK/$c.nogadd.st" >"$WORK/$c.nogadd.log" 2>&1
        if cmp -s "$WORK/$c.ref.st" "$WORK/$c.nogadd.st"; then
            pass "$c: threads-only run, gradients added into the left siblings' slots: bitwise the run without"
        else
            fail "$c: threads-only run differs from PNET_GRAD_ADD=0's: $(tail -n 2 "$WORK/$c.nogadd.log" | tr '\n' ' ')"
        fi
    fi
    for np in 1 2 3 4; do
        [ -n "$QUICK" ] && [ "$np" != 2 ] && [ "$np" != 3 ] && continue
        for btl in shm tcp; do
            threads=1
            # More threads than this rank's share of the cores: still the same bits.
            { [ "$np" = 2 ] || { [ "$np" = 3 ] && [ "$btl" = shm ]; }; } && threads=2
            rm -f "$WORK/$c.st"
            # pipe and pipe_gpipe train one stage per rank on 2 ranks (one pipeline) and 4 (two); on 3,
            # which two stages do not divide, every rank runs both stages (--rank-layout replicas).
            layout=
            case $c in pipe*) [ "$np" = 3 ] && layout="--rank-layout replicas" ;; esac
            # shellcheck disable=SC2086
            if mpi "$np" "$btl" "$WORK/$c" train $args --threads $threads --save "$WORK/$c.st" $layout >"$WORK/$c.mpi.log" 2>&1 &&
                cmp -s "$WORK/$c.ref.st" "$WORK/$c.st"; then
                pass "$c: $np ranks ($btl, $threads thread(s) each${layout:+, $layout}): weights bitwise the threads-only run's"
            else
                fail "$c: $np ranks ($btl): $(tail -n 3 "$WORK/$c.mpi.log" | tr '\n' ' ')"
            fi
        done
    done
done

# Ranks' runs of chunks cut by their speed (docs/distributed.md): digits_mlp (32 and 14 chunks a
# batch) with the ranks reporting the seconds per chunk PNET_TEST_RANK_SECONDS gives (so every step
# after the first is cut: 24+8 chunks of 32 on 2 ranks, 12+12+3+5 on 4, as bench shows), and
# dropout_det (batchnorm, dropout, shuffling; 4 chunks a batch) cut by the speeds measured
# (PNET_ADAPTIVE_THREADS=1, oversubscribed): the weights bitwise the threads-only run's.
for run in digits_mlp:2:shm:1,3 digits_mlp:4:tcp:1,1,4,2 dropout_det:2:shm:measured dropout_det:3:tcp:measured; do
    c=${run%%:*} rest=${run#*:}
    np=${rest%%:*} rest=${rest#*:}
    btl=${rest%%:*} speeds=${rest#*:}
    [ -n "$QUICK" ] && [ "$np" = 4 ] && continue
    [ -f "$WORK/$c.ref.st" ] || continue
    if [ "$c" = dropout_det ]; then
        args="--data $DIR/data/det_x.npy --labels $DIR/data/det_y.npy --epochs 2 --batch 100"
    else
        args="--data $EXAMPLES/data/digits_train.csv.gz --epochs 2 --batch 1000"
    fi
    rm -f "$WORK/$c.st"
    if [ "$speeds" = measured ]; then
        # shellcheck disable=SC2086
        PNET_ADAPTIVE_THREADS=1 mpi "$np" "$btl" "$WORK/$c" train $args --threads 1 --save "$WORK/$c.st" >"$WORK/$c.cut.log" 2>&1
    else
        # shellcheck disable=SC2086
        PNET_TEST_RANK_SECONDS=$speeds mpi "$np" "$btl" "$WORK/$c" train $args --threads 1 --save "$WORK/$c.st" >"$WORK/$c.cut.log" 2>&1
    fi
    # bench --train prints its last step's schedule, which shows the cut the reported speeds give.
    shown=measured
    [ "$speeds" = measured ] ||
        shown=$(PNET_TEST_RANK_SECONDS=$speeds mpi "$np" "$btl" "$WORK/$c" bench --train --batch 1000 --seconds 0.3 --threads 1 2>&1 |
            sed -n "s/^training: batch 1000, rank 0 of $np (\(runs of [0-9+]* chunks\) by the ranks' speed).*/\1/p")
    want=measured
    [ "$speeds" = 1,3 ] && want="runs of 24+8 chunks"
    [ "$speeds" = 1,1,4,2 ] && want="runs of 12+12+3+5 chunks"
    if cmp -s "$WORK/$c.ref.st" "$WORK/$c.st" && [ "$shown" = "$want" ]; then
        label=$speeds
        [ "$shown" = measured ] || label="$speeds: $shown"
        pass "$c: $np ranks ($btl) cut by the ranks' speed ($label): weights bitwise the threads-only run's"
    else
        fail "$c: $np ranks ($btl) cut by speed ($speeds): shown '$shown', want '$want'; $(tail -n 2 "$WORK/$c.cut.log" | tr '\n' ' ')"
    fi
done

# Inference: each rank computes its share of the batch and every rank gets all the outputs; rank 0
# writes them. Bitwise those of one process, for a CNN and a network with pipeline stages: pipe's
# two stages run one per rank on 2 ranks (one pipeline) and 4 (two pipelines), and every stage in
# each rank on 3 (--rank-layout replicas).
for c in cnn:probs pipe:probs mlp_adam:logits; do
    net=${c%%:*} out=${c#*:}
    [ -x "$WORK/$net" ] || continue
    x=$DIR/refs/$net/x.npy
    "$WORK/$net" infer --input "x=$x" --output "$out=$WORK/$net.ref.npy" --threads 2 >/dev/null 2>&1 ||
        { fail "$net: infer: threads-only run failed"; continue; }
    for np in 2 3 4; do
        [ -n "$QUICK" ] && [ "$np" = 4 ] && continue
        for btl in shm tcp; do
            rm -f "$WORK/$net.npy"
            layout=
            [ "$net" = pipe ] && [ "$np" = 3 ] && layout="--rank-layout replicas"
            # shellcheck disable=SC2086 # $layout is a list of options
            if mpi "$np" "$btl" "$WORK/$net" infer --input "x=$x" --output "$out=$WORK/$net.npy" --threads 1 $layout \
                >"$WORK/$net.infer.log" 2>&1 && cmp -s "$WORK/$net.ref.npy" "$WORK/$net.npy"; then
                pass "$net: infer on $np ranks ($btl${layout:+, $layout}): outputs bitwise the threads-only run's"
            else
                fail "$net: infer on $np ranks ($btl): $(tail -n 3 "$WORK/$net.infer.log" | tr '\n' ' ')"
            fi
        done
    done
done

# Evaluation of pipe (1F1B, two stages) one stage per rank on 2 ranks and 4 (two pipelines), and
# with --rank-layout replicas on 2: every digit of the accuracy and loss is one process's.
if [ -x "$WORK/pipe" ]; then
    R=$DIR/refs/pipe
    eargs="--data $R/x.npy --labels $R/y.npy --weights $R/after.safetensors --batch 50 --exact"
    # shellcheck disable=SC2086
    one=$("$WORK/pipe" eval $eargs --threads 2 2>&1)
    for run in 2:shm 2:tcp 4:shm 4:tcp 2:shm:replicas; do
        np=${run%%:*} rest=${run#*:} btl=${rest%%:*} layout=
        [ "$rest" != "$btl" ] && layout="--rank-layout ${rest#*:}"
        [ -n "$QUICK" ] && [ "$np" = 4 ] && continue
        # shellcheck disable=SC2086
        got=$(mpi "$np" "$btl" "$WORK/pipe" eval $eargs --threads 1 $layout 2>&1)
        if printf '%s\n' "$one" | grep -q "^accuracy: .* of 175)" && [ "$one" = "$got" ]; then
            pass "pipe: eval on $np ranks ($btl${layout:+, $layout}): accuracy and loss bitwise one process's"
        else
            fail "pipe: eval on $np ranks ($btl${layout:+, $layout}): '$got', one process: '$one'"
        fi
    done
fi

# One pipeline stage per rank: skip3's stage 2 reads a value of stage 0 (forwarded by stage 1) and
# stage 0 writes an output; 77 samples in micro-batches of a third of a chunk. On 3 ranks (one
# pipeline) and 6 (two pipelines), both outputs are bitwise the threads-only run's.
S3=$WORK/skip3
if "$PNETC" "$DIR/../mpi/cases/skip3.pnet" -o "$S3" >"$WORK/skip3.compile" 2>&1 &&
    /usr/bin/python3 -c "import numpy as np; np.random.seed(1); np.save('$WORK/sx.npy', np.random.randn(77, 3, 8, 8).astype(np.float32))" &&
    "$S3" infer --input "x=$WORK/sx.npy" --output "hidden=$WORK/h.ref.npy" --output "probs=$WORK/p.ref.npy" --threads 2 >/dev/null 2>&1; then
    for np in 3 6; do
        [ -n "$QUICK" ] && [ "$np" = 6 ] && continue
        for btl in shm tcp; do
            rm -f "$WORK/h.npy" "$WORK/p.npy"
            if mpi "$np" "$btl" "$S3" infer --input "x=$WORK/sx.npy" --output "hidden=$WORK/h.npy" --output "probs=$WORK/p.npy" \
                --threads 1 >"$WORK/skip3.log" 2>&1 && cmp -s "$WORK/h.ref.npy" "$WORK/h.npy" && cmp -s "$WORK/p.ref.npy" "$WORK/p.npy"; then
                pass "skip3: one stage per rank on $np ranks ($btl): both outputs bitwise the threads-only run's"
            else
                fail "skip3: stages on $np ranks ($btl): $(tail -n 3 "$WORK/skip3.log" | tr '\n' ' ')"
            fi
        done
    done
    # Training, one stage per rank: 1F1B with adam over 3 ranks (one pipeline) and 6 (two), two
    # epochs in batches of 40 (two chunks of 32 and 8 samples, three micro-batches); the weights and
    # adam's state bitwise the threads-only run's. Then one epoch on 3 ranks, resumed on 6 over TCP.
    /usr/bin/python3 -c "import numpy as np; np.random.seed(2); np.save('$WORK/sy.npy', np.random.randint(0, 10, 77).astype(np.int32))"
    targs="--data $WORK/sx.npy --labels $WORK/sy.npy --batch 40 --no-shuffle"
    # shellcheck disable=SC2086
    "$S3" train $targs --epochs 2 --threads 2 --save "$WORK/s.ref.st" >/dev/null 2>&1
    for np in 3 6; do
        [ -n "$QUICK" ] && [ "$np" = 6 ] && continue
        for btl in shm tcp; do
            rm -f "$WORK/s.st"
            # shellcheck disable=SC2086
            if mpi "$np" "$btl" "$S3" train $targs --epochs 2 --threads 1 --save "$WORK/s.st" >"$WORK/skip3t.log" 2>&1 &&
                cmp -s "$WORK/s.ref.st" "$WORK/s.st" && grep -q "^schedule: rank 0 of $np: stage 0 of pipeline 0" "$WORK/skip3t.log"; then
                pass "skip3: trained one stage per rank on $np ranks ($btl): weights and adam's state bitwise the threads-only run's"
            else
                fail "skip3: training on $np stage ranks ($btl): $(tail -n 3 "$WORK/skip3t.log" | tr '\n' ' ')"
            fi
        done
    done
    rm -f "$WORK/s.st"
    # shellcheck disable=SC2086
    if mpi 3 shm "$S3" train $targs --epochs 1 --threads 1 --save "$WORK/s.st" >"$WORK/skip3r.log" 2>&1 &&
        mpi 6 tcp "$S3" train $targs --epochs 2 --threads 1 --resume "$WORK/s.st" --save "$WORK/s.st" >>"$WORK/skip3r.log" 2>&1 &&
        cmp -s "$WORK/s.ref.st" "$WORK/s.st"; then
        pass "skip3: one epoch on 3 stage ranks, resumed on 6: bitwise the uninterrupted run"
    else
        fail "skip3: resume across stage rank counts: $(tail -n 3 "$WORK/skip3r.log" | tr '\n' ' ')"
    fi
    # Evaluation, one stage per rank (the default, as for inference): the stages' evaluation
    # forward through the pipeline of ranks, the loss and the correct count on the last stage's
    # ranks; every digit (--exact) is one process's, on 3 ranks (one pipeline) and 6 (two).
    eargs="--data $WORK/sx.npy --labels $WORK/sy.npy --weights $WORK/s.ref.st --batch 40 --exact"
    # shellcheck disable=SC2086
    one=$("$S3" eval $eargs --threads 2 2>&1)
    for np in 3 6; do
        [ -n "$QUICK" ] && [ "$np" = 6 ] && continue
        for btl in shm tcp; do
            # shellcheck disable=SC2086
            got=$(mpi "$np" "$btl" "$S3" eval $eargs --threads 1 2>&1)
            if printf '%s\n' "$one" | grep -q "^loss: [0-9.]*[0-9]\{10\}" && [ "$one" = "$got" ]; then
                pass "skip3: eval one stage per rank on $np ranks ($btl): accuracy and loss bitwise one process's"
            else
                fail "skip3: eval on $np stage ranks ($btl): '$got', one process: '$one'"
            fi
        done
    done
    # train --val with one stage per rank: the validation of each epoch runs through the stage
    # ranks too; the epoch lines and the weights are one process's.
    # shellcheck disable=SC2086
    "$S3" train $targs --epochs 2 --threads 2 --val "$WORK/sx.npy" --val-labels "$WORK/sy.npy" --save "$WORK/sv.ref.st" 2>/dev/null |
        grep -o "epoch [0-9]/2: .*" | sed 's/[0-9]* samples\/s//' >"$WORK/sv.ref.txt"
    rm -f "$WORK/sv.st"
    # shellcheck disable=SC2086
    mpi 3 tcp "$S3" train $targs --epochs 2 --threads 1 --val "$WORK/sx.npy" --val-labels "$WORK/sy.npy" --save "$WORK/sv.st" \
        >"$WORK/sv.log" 2>&1
    grep -o "epoch [0-9]/2: .*" "$WORK/sv.log" | sed 's/[0-9]* samples\/s//' >"$WORK/sv.txt"
    if grep -q "^schedule: rank 0 of 3: stage 0 of pipeline 0" "$WORK/sv.log" && grep -q "val_accuracy" "$WORK/sv.txt" &&
        cmp -s "$WORK/sv.ref.txt" "$WORK/sv.txt" && cmp -s "$WORK/sv.ref.st" "$WORK/sv.st"; then
        pass "skip3: train --val on 3 stage ranks (tcp): the epochs' validation and the weights are one process's"
    else
        fail "skip3: train --val on 3 stage ranks: $(tail -n 3 "$WORK/sv.log" | tr '\n' ' ')"
    fi
    # bench with stages on ranks: the mapping, the measured bubble and each rank's peak memory.
    out=$(mpi 3 shm "$S3" bench --batch 64 --seconds 0.2 --threads 1 2>&1)
    if printf '%s\n' "$out" | grep -q "^ranks: 3, one pipeline stage per rank: 1 replica pipeline x 3 stages" &&
        printf '%s\n' "$out" | grep -q "^bubble: measured" &&
        printf '%s\n' "$out" | grep -q "^memory: peak resident per rank: rank 0 .* rank 2 .*MiB"; then
        pass "skip3: bench on 3 stage ranks prints the mapping, the bubble and each rank's peak memory"
    else
        fail "skip3: bench on 3 stage ranks: $(printf '%s' "$out" | tail -n 4 | tr '\n' ' ')"
    fi
else
    fail "skip3: compile or threads-only run: $(head -n 2 "$WORK/skip3.compile" | tr '\n' ' ')"
fi

# Rank layouts that do not fit, each a one-line error on every rank and a non-zero exit: 3 ranks for
# 2 stages (inference, and evaluation, which runs one stage per rank too), --rank-layout stages for a
# network without stages, and a bad value.
if [ -x "$WORK/pipe" ] && [ -x "$WORK/mlp_adam" ]; then
    x=$DIR/refs/pipe/x.npy
    o1=$(mpi 3 shm "$WORK/pipe" infer --input "x=$x" --output "probs=$WORK/no.npy" 2>&1)
    r1=$?
    o2=$(mpi 2 shm "$WORK/mlp_adam" infer --input "x=$DIR/refs/mlp_adam/x.npy" --output "logits=$WORK/no.npy" --rank-layout stages 2>&1)
    r2=$?
    o3=$(mpi 3 shm "$WORK/pipe" eval --data "$x" --labels "$DIR/refs/pipe/y.npy" --weights "$DIR/refs/pipe/init.safetensors" 2>&1)
    r3=$?
    o4=$("$WORK/pipe" info --rank-layout sideways 2>&1)
    r4=$?
    if [ $r1 -ne 0 ] && printf '%s\n' "$o1" | grep -q "pipe: rank 0: error: 3 ranks do not fit network 'pipe' of 2 pipeline stages" &&
        [ $r2 -ne 0 ] && printf '%s\n' "$o2" | grep -q "error: --rank-layout stages: network '.*' has no pipeline stages" &&
        [ $r3 -ne 0 ] && printf '%s\n' "$o3" | grep -q "pipe: rank 0: error: 3 ranks do not fit network 'pipe' of 2 pipeline stages" &&
        [ $r4 -ne 0 ] && printf '%s\n' "$o4" | grep -q "error: --rank-layout needs replicas or stages, not 'sideways'" &&
        [ ! -e "$WORK/no.npy" ]; then
        pass "rank layouts that do not fit: one-line errors, non-zero exits"
    else
        fail "rank layouts: $r1 $r2 $r3 $r4: $(printf '%s|%s|%s|%s' "$o1" "$o2" "$o3" "$o4" | grep error | head -n 4 | tr '\n' ' ')"
    fi
fi

# --trace on ranks: one Chrome trace from rank 0 with a process per rank (pid = rank), each with its
# slices and its "messages" (the calls' communication).
if mpi 3 shm "$WORK/cnn" infer --input "x=$DIR/refs/cnn/x.npy" --output "probs=$WORK/tr.npy" --trace "$WORK/t.json" \
        --threads 1 >"$WORK/trace.log" 2>&1 &&
    python3 - "$WORK/t.json" <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
pids = {e["pid"] for e in ev if e["ph"] == "X"}
names = {e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "process_name"}
msgs = {e["pid"] for e in ev if e["name"] == "messages"}
sys.exit(0 if pids == {0, 1, 2} and msgs == {0, 1, 2} and names == {"cnn rank 0", "cnn rank 1", "cnn rank 2"} else 1)
PY
then
    pass "--trace on 3 ranks: one file, a process per rank with its slices and messages"
else
    fail "--trace on 3 ranks: $(tail -n 3 "$WORK/trace.log" | tr '\n' ' ')"
fi

# Data-parallel training on ranks traces its collectives too: every step's reduce-scatter and
# all-gather are "messages" slices, the same number on every rank (bench/mpi.py pairs them).
if mpi 2 shm "$WORK/cnn" bench --train --batch 128 --seconds 0.3 --threads 1 --trace "$WORK/tt.json" \
        >"$WORK/ttrace.log" 2>&1 &&
    python3 - "$WORK/tt.json" <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
n = {p: sum(1 for e in ev if e["ph"] == "X" and e["pid"] == p and e["name"] == "messages") for p in (0, 1)}
up = {p: sum(1 for e in ev if e["ph"] == "X" and e["pid"] == p and e["name"] == "update") for p in (0, 1)}
sys.exit(0 if n[0] == n[1] == 2 * up[0] and up[0] > 0 and up[0] == up[1] else 1)
PY
then
    pass "bench --train --trace on 2 ranks: two messages slices per step on each rank"
else
    fail "bench --train --trace on 2 ranks: $(tail -n 3 "$WORK/ttrace.log" | tr '\n' ' ')"
fi

# More ranks than chunks: dropout_det at batch 20 is one chunk, so ranks 1-3 own none; they still
# take part in every reduction and end with the same weights.
X=$DIR/data/det_x.npy Y=$DIR/data/det_y.npy
if "$WORK/dropout_det" train --data "$X" --labels "$Y" --batch 20 --threads 1 --save "$WORK/small.ref.st" >/dev/null 2>&1 &&
    mpi 4 shm "$WORK/dropout_det" train --data "$X" --labels "$Y" --batch 20 --threads 1 --save "$WORK/small.st" \
        >"$WORK/small.log" 2>&1 && cmp -s "$WORK/small.ref.st" "$WORK/small.st"; then
    pass "4 ranks on one-chunk batches: ranks without chunks keep the same weights"
else
    fail "4 ranks on one-chunk batches: $(tail -n 3 "$WORK/small.log" | tr '\n' ' ')"
fi

# Resuming on another rank count: one epoch on 2 ranks, the second on 3, ends bitwise where two
# epochs in one process end (shuffled, with dropout and batchnorm: the checkpoint keeps the step,
# seed and order).
"$WORK/dropout_det" train --data "$X" --labels "$Y" --batch 50 --epochs 2 --threads 1 --save "$WORK/two.st" >/dev/null 2>&1
if mpi 2 shm "$WORK/dropout_det" train --data "$X" --labels "$Y" --batch 50 --epochs 1 --threads 1 --save "$WORK/resume.st" \
        >"$WORK/resume.log" 2>&1 &&
    mpi 3 tcp "$WORK/dropout_det" train --data "$X" --labels "$Y" --batch 50 --epochs 2 --threads 1 --resume "$WORK/resume.st" \
        --save "$WORK/resume.st" >>"$WORK/resume.log" 2>&1 && cmp -s "$WORK/two.st" "$WORK/resume.st"; then
    pass "resume on another rank count (2 ranks, then 3): bitwise the uninterrupted run"
else
    fail "resume on another rank count: $(tail -n 3 "$WORK/resume.log" | tr '\n' ' ')"
fi

# bench and bench --train under mpirun: the ranks agree on every round (no hang), and rank 0 prints
# each rank's time in communication.
if out=$(mpi 2 shm "$WORK/mlp_adam" bench --train --batch 256 --seconds 0.3 --threads 1 2>&1) &&
    printf '%s\n' "$out" | grep -q "^throughput:" && printf '%s\n' "$out" | grep -q "^ranks: 2; time in communication.*rank 1" &&
    out2=$(mpi 3 tcp "$WORK/cnn" bench --batch 64 --seconds 0.3 --threads 1 2>&1) &&
    printf '%s\n' "$out2" | grep -q "^ranks: 3; time in communication"; then
    pass "bench --train on 2 ranks and bench on 3: throughput and each rank's communication time"
else
    fail "bench on ranks: $(printf '%s %s' "$out" "${out2:-}" | tail -n 4 | tr '\n' ' ')"
fi

# info --ranks K: each rank's samples, memory and the bytes its gradient reduction moves (for ranks of
# one speed: the note that steps cut the runs by speed).
out=$("$WORK/digits_mlp" info --ranks 3 --batch 1000 2>&1)
if printf '%s\n' "$out" | grep -q "^ranks: 3, data parallel" &&
    printf '%s\n' "$out" | grep -q "rank 2: samples \[672, 1000) of a batch of 1000:.*sends .* and receives .*folded tree" &&
    printf '%s\n' "$out" | grep -q "^  training: these runs for ranks of one speed; each step cuts them by the ranks' measured speed" &&
    ! "$WORK/digits_mlp" info --ranks 0 >/dev/null 2>&1 && ! "$WORK/digits_mlp" info --batch 10 >/dev/null 2>&1; then
    pass "info --ranks 3 --batch 1000: the mapping, each rank's samples and reduction bytes; bad values refused"
else
    fail "info --ranks: $(printf '%s' "$out" | tail -n 4 | tr '\n' ' ')"
fi

# pnetc --report --ranks 3 prints the same rank section as ./net info --ranks 3 (the train block's
# batch); --ranks without --report is an error.
a=$("$PNETC" --report --ranks 3 "$EXAMPLES/digits_mlp.pnet" 2>&1 | sed -n '/^ranks: /,$p')
b=$("$WORK/digits_mlp" info --ranks 3 2>&1 | sed -n '/^ranks: /,$p')
if [ -n "$a" ] && [ "$a" = "$b" ] && ! "$PNETC" --ranks 3 "$EXAMPLES/digits_mlp.pnet" -o "$WORK/x" 2>/dev/null; then
    pass "pnetc --report --ranks 3 and ./net info --ranks 3 agree"
else
    fail "pnetc --report --ranks 3 differs from info --ranks 3: '$a' / '$b'"
fi

# eval on ranks: each computes its chunks' loss and correct counts, all-gathered and summed by the
# same tree: the printed accuracy and loss are one process's.
if [ -f "$WORK/digits_mlp.ref.st" ]; then
    D=$EXAMPLES/data/digits_test.csv.gz
    one=$("$WORK/digits_mlp" eval --data "$D" --weights "$WORK/digits_mlp.ref.st" 2>&1)
    three=$(mpi 3 tcp "$WORK/digits_mlp" eval --data "$D" --weights "$WORK/digits_mlp.ref.st" --threads 1 2>&1)
    if [ -n "$one" ] && [ "$one" = "$three" ]; then
        pass "eval on 3 ranks prints one process's accuracy and loss"
    else
        fail "eval on 3 ranks: '$three', one process: '$one'"
    fi
fi

# Only rank 0 prints: one "epoch" line per epoch, not one per rank.
n=$(mpi 3 shm "$WORK/dropout_det" train --data "$X" --labels "$Y" --batch 50 --epochs 1 2>&1 | grep -o "epoch 1/1: loss" | wc -l | tr -d " ")
if [ "$n" = 1 ]; then pass "3 ranks print one epoch line"; else fail "3 ranks printed $n epoch lines"; fi

# Each rank's default team: the node's cores divided by the ranks on it (OMPI_COMM_WORLD_LOCAL_SIZE),
# so that ranks never oversubscribe the cores.
want=$(($(getconf _NPROCESSORS_ONLN) / 2))
[ "$want" -ge 1 ] || want=1
out=$(unset OMP_NUM_THREADS; mpi 2 shm "$WORK/dropout_det" train --data "$X" --labels "$Y" --batch 50 --epochs 1 2>&1)
if printf '%s\n' "$out" | grep -q "rank 0 of 2, $want thread"; then
    pass "2 ranks without --threads: $want thread(s) each, the cores divided by the node's ranks"
else
    fail "2 ranks without --threads: expected $want thread(s) each: $(printf '%s' "$out" | grep -m1 schedule)"
fi

# An error that every rank sees (a missing file) ends the job: exit non-zero, each line names a rank.
out=$(mpi 2 shm "$WORK/dropout_det" train --data "$WORK/missing.npy" --labels "$Y" 2>&1)
rc=$?
if [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -q "dropout_det: rank [01]: error: .*missing.npy"; then
    pass "a missing file: exit $rc, the error names the rank and the file"
else
    fail "a missing file: exit $rc: $(printf '%s' "$out" | head -n 3 | tr '\n' ' ')"
fi
finish
