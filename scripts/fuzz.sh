#!/bin/sh
# Builds the libFuzzer targets (ASan + UBSan, clang-19) and runs each in turn from a seed corpus of the repository's
# own files; see docs/testing.md for what each target covers.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (default 60 seconds each, all targets)
#   TARGET: check npy safetensors data graph partition ckpt onnx
# A crash leaves build-fuzz/crash-* (or leak-*, timeout-*, oom-*); the corpora grow in build-fuzz/corpus-TARGET.
# PNETC=path/to/pnetc adds the examples' graph IR to the graph seeds.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-check npy safetensors data graph partition ckpt onnx}
sh scripts/setup.sh --fuzz
cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang-19 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPNET_FUZZ=ON -DPNET_TESTS=OFF >/dev/null
for t in $targets; do
    case $t in check) bin=pnet_fuzz ;; npy | safetensors | data | graph | partition | ckpt | onnx) bin=pnet_fuzz_$t ;;
    *) echo "fuzz.sh: unknown target '$t'; expected check npy safetensors data graph partition ckpt onnx" >&2; exit 2 ;; esac
    cmake --build build-fuzz --target $bin
done

# seeds: copied into each corpus on every run; the fuzzer keeps what it finds beside them
seed() {
    corpus=build-fuzz/corpus-$1
    mkdir -p "$corpus"
    case $1 in
    check | partition) cp examples/*.pnet stdlib/*.pnet tests/diag/*.pnet tests/e2e/cases/*.pnet "$corpus"/ ;;
    npy) find tests -name '*.npy' -size -64k -exec cp {} "$corpus"/ \; ;;
    safetensors) find tests -name '*.safetensors' -size -64k -exec cp {} "$corpus"/ \;
        python3 tests/fuzz/seeds.py safetensors "$corpus" ;;
    data) python3 tests/fuzz/seeds.py data "$corpus" ;;
    ckpt) python3 tests/fuzz/seeds.py ckpt "$corpus" ;;
    onnx) # the ONNX conformance suite's small models (libonnx-testdata), one file per test
        for f in /usr/share/libonnx-testdata/data/*/*/model.onnx; do
            [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 65536 ] && cp "$f" "$corpus/$(basename "$(dirname "$f")").onnx"
        done ;;
    graph)
        cp tests/graphs/*.graph "$corpus"/
        pnetc=${PNETC:-}
        if [ -n "$pnetc" ]; then
            for f in examples/*.pnet tests/e2e/cases/*.pnet; do
                "$pnetc" --emit=graph -o "$corpus/$(basename "$f" .pnet).graph" "$f" 2>/dev/null || true
            done
        fi ;;
    esac
}

for t in $targets; do
    seed $t
    case $t in check) bin=pnet_fuzz dict=pnet ;; partition) bin=pnet_fuzz_$t dict=pnet ;;
    data) bin=pnet_fuzz_$t dict=npy ;; *) bin=pnet_fuzz_$t dict=$t ;; esac
    # the op names come from compiler/ops.def, the one list of ops, after the dictionary's own tokens
    case $dict in pnet) open= ;; graph) open='(' ;; *) open=none ;; esac
    if [ "$open" != none ]; then
        { cat tests/fuzz/$dict.dict
          sed -n "s/^PN_OP([A-Z0-9_]*, *\"\([a-z0-9_]*\)\".*/\"\1$open\"/p" compiler/ops.def; } >build-fuzz/$dict.dict
        dictpath=$dict.dict
    else
        dictpath=../tests/fuzz/$dict.dict
    fi
    extra=
    [ $t = partition ] && [ -d build-fuzz/corpus-check ] && extra=corpus-check # read only: new finds go to the first
    echo "== $bin: $secs s" >&2
    (cd build-fuzz && ./$bin -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -dict=$dictpath -print_final_stats=1 corpus-$t $extra)
done
