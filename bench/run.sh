#!/bin/sh
# pnet inference benchmark: pnet vs ONNX Runtime vs PyTorch on the standard models.
#
# usage: sh bench/run.sh [--quick] [--out FILE.md] [--peak GFLOPS] [--seconds S] [--models a,b]
#                        [--system-blas]
#   --quick        1 s per measurement instead of 3 s
#   --out FILE.md  also write the Markdown report to FILE.md
#   --peak GFLOPS  the machine's fp32 peak for the "% of peak" table (default: measured by
#                  bench/peak.sh on all cores before the runs)
#   --seconds S    timed seconds per measurement (overrides --quick)
#   --models LIST  a comma-separated subset of mlp_s,mlp_l,cnn
#   --system-blas  give PyTorch the system libblas.so.3 (on Debian by default the slow reference
#                  BLAS) instead of a private OpenBLAS; see bench/README.md
#
# Installs what is missing (Debian packages, onnxruntime-node into bench/.node/, a private OpenBLAS
# into build/bench/openblas/), builds pnet into build/, compiles bench/models/*.pnet into
# build/bench/, exports them to ONNX (build/bench/onnx/) and runs bench/compare.py.
set -eu
self="$0"
cd "$(dirname "$0")/.."

seconds=3; out=""; peak=""; models="mlp_s,mlp_l,cnn"; system_blas=0; seconds_set=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) [ "$seconds_set" = 1 ] || seconds=1 ;;
        --out) out="$2"; shift ;;
        --out=*) out="${1#--out=}" ;;
        --peak) peak="$2"; shift ;;
        --peak=*) peak="${1#--peak=}" ;;
        --seconds) seconds="$2"; seconds_set=1; shift ;;
        --seconds=*) seconds="${1#--seconds=}"; seconds_set=1 ;;
        --models) models="$2"; shift ;;
        --models=*) models="${1#--models=}" ;;
        --system-blas) system_blas=1 ;;
        -h|--help) sed -n '2,16p' "$self" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$out" in ""|/*) ;; *) out="$(pwd)/$out" ;; esac  # (we cd'ed to the repo root)

exec 3>&1 1>&2                # until the measurement: everything to stderr, the report to stdout
PY=/usr/bin/python3          # Debian's interpreter: the one python3-torch and python3-onnx serve
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo

# 1. Debian packages: pnet's own (scripts/setup.sh), then the peers'.
sh scripts/setup.sh
missing=""
for p in python3-torch python3-onnx; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    echo "bench: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
fi

# 2. ONNX Runtime for Node, privately in bench/.node/ (the CPU binaries ship in the npm package;
#    ONNXRUNTIME_NODE_INSTALL=skip skips the post-install download of the CUDA ones). The version
#    is pinned, so that results stay comparable with docs/performance.md.
ort_version=1.30.0
if ! grep -q "\"version\": \"$ort_version\"" bench/.node/node_modules/onnxruntime-node/package.json 2>/dev/null; then
    echo "bench: installing onnxruntime-node $ort_version into bench/.node/"
    mkdir -p bench/.node
    ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix bench/.node --no-audit --no-fund \
        --loglevel=error "onnxruntime-node@$ort_version" >/dev/null
fi

# 3. A private OpenBLAS for PyTorch: Debian's torch calls whatever libblas.so.3 is selected, and
#    by default that is the unoptimised reference BLAS. Extracted, not installed, so that the
#    system's BLAS alternative (and everything else using it) stays as it is.
blas_arg=""
if [ "$system_blas" = 0 ]; then
    blas_arg="--blas-lib=$(sh bench/openblas.sh)"
fi

# 4. pnet itself, as scripts/test.sh builds it, and the models.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build
mkdir -p build/bench/onnx
for m in $(echo "$models" | tr , ' '); do
    build/pnetc "bench/models/$m.pnet" -o "build/bench/$m"
done

# 5. The same models for the peers (skipped when up to date).
# shellcheck disable=SC2046
$PY bench/export.py build/bench/onnx $(echo "$models" | tr , ' ')

# 6. Measure, interleaved per configuration.
echo "bench: measuring ${seconds} s per run; progress on stderr, the report on stdout"
[ -n "$peak" ] || peak=$(sh bench/peak.sh)
echo "bench: fp32 peak measured: $peak GFLOP/s on $(nproc) threads" >&2
set -- --exe-dir build/bench --onnx-dir build/bench/onnx --seconds "$seconds" --peak "$peak" \
    --models "$models" --threads "1,$(nproc)"
[ -n "$out" ] && set -- "$@" --out "$out"
[ -n "$blas_arg" ] && set -- "$@" "$blas_arg"
exec $PY bench/compare.py "$@" 1>&3 3>&-
