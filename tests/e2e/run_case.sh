#!/bin/sh
# End-to-end test of one case: sh run_case.sh PNETC NPY_COMPARE CASE.pnet REFDIR WORKDIR
#
# Compiles CASE.pnet (at the default level and at -O0), runs `infer` on the reference inputs of
# REFDIR (written by scripts/make_refs.py) for batch sizes 1 and 7, and compares every output with
# the reference (npy_compare, rtol/atol from E2E_RTOL/E2E_ATOL, default 1e-4/1e-5). Batch 7 also
# runs with --threads 1 and --threads 3, whose outputs must be bitwise identical. Prints one line
# per check and then `N passed, M failed`; exit status 1 on any failure.
set -u
# Every requested thread runs, however small the case (see docs/codegen.md).
export PNET_ADAPTIVE_THREADS=0
if [ $# -ne 5 ]; then
    echo "usage: sh run_case.sh PNETC NPY_COMPARE CASE.pnet REFDIR WORKDIR" >&2
    exit 2
fi
PNETC=$1 CMP=$2 SRC=$3 REF=$4 WORK=$5
RTOL=${E2E_RTOL:-1e-4} ATOL=${E2E_ATOL:-1e-5}
passed=0 failed=0

pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

[ -f "$REF/case.txt" ] || { fail "no reference: $REF/case.txt is missing (run /usr/bin/python3 scripts/make_refs.py)"; finish; }
INPUTS=$(sed -n 's/^inputs *//p' "$REF/case.txt")
OUTPUTS=$(sed -n 's/^outputs *//p' "$REF/case.txt")
mkdir -p "$WORK" || { fail "cannot create $WORK"; finish; }

# compile OPTLEVEL EXE: pnetc SRC -o EXE (OPTLEVEL empty for the default)
compile() {
    "$PNETC" $1 "$SRC" -o "$2" >"$2.log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        pass "compile ${1:-default}"
        return 0
    fi
    fail "compile ${1:-default} (exit $rc): $(head -n 3 "$2.log" | tr '\n' ' ')"
    return 1
}

# infer EXE B PREFIX [--threads N]: writes WORK/PREFIX_B_NAME.npy for every output
infer() {
    exe=$1 b=$2 prefix=$3
    shift 3
    set -- "$@" --weights "$REF/weights.safetensors"
    for n in $INPUTS; do set -- "$@" --input "$n=$REF/in_${b}_$n.npy"; done
    for n in $OUTPUTS; do
        rm -f "$WORK/${prefix}_${b}_$n.npy"
        set -- "$@" --output "$n=$WORK/${prefix}_${b}_$n.npy"
    done
    if "$exe" infer "$@" >"$WORK/$prefix.$b.log" 2>&1; then
        return 0
    fi
    fail "infer $prefix batch $b: $(head -n 3 "$WORK/$prefix.$b.log" | tr '\n' ' ')"
    return 1
}

# check PREFIX B: compare every output against the reference
check() {
    for n in $OUTPUTS; do
        if msg=$("$CMP" "$WORK/${1}_${2}_$n.npy" "$REF/out_${2}_$n.npy" --rtol "$RTOL" --atol "$ATOL" 2>&1); then
            pass "$1 batch $2 output $n"
        else
            fail "$1 batch $2 output $n: $msg"
        fi
    done
}

if compile "" "$WORK/net"; then
    for b in 1 7; do
        infer "$WORK/net" $b out && check out $b
    done
    if infer "$WORK/net" 7 t1 --threads 1 && infer "$WORK/net" 7 t3 --threads 3; then
        check t1 7
        for n in $OUTPUTS; do
            if msg=$("$CMP" "$WORK/t3_7_$n.npy" "$WORK/t1_7_$n.npy" --exact 2>&1); then
                pass "threads 3 == threads 1, output $n"
            else
                fail "threads 3 != threads 1, output $n: $msg"
            fi
        done
    fi
fi
if compile -O0 "$WORK/net_O0"; then
    infer "$WORK/net_O0" 7 O0 && check O0 7
fi
finish
