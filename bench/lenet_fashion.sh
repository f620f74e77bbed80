#!/bin/sh
# bench/lenet_fashion.sh — a real workload: examples/lenet.pnet trained on Fashion-MNIST by pnet and
# by PyTorch (bench/lenet_torch.py: the same network, adam lr 0.001, batch 64), on 1 thread and on
# all cores, side by side: the wall time of an epoch's training (median over the epochs) and the
# final accuracy on the 10,000 test images.
#
# usage: sh bench/lenet_fashion.sh [--epochs E] [--threads 1,N] [--probe STEPS] [--out FILE.md]
#   --epochs   epochs per run (default 5, the train { } block's own)
#   --threads  thread counts (default 1 and nproc)
#   --probe    steps PyTorch times in each of its thread configurations before it trains on the
#              fastest (default 300; bench/peer.py: torch {1, T} x BLAS {1, T})
#   --out      also write the report there
# The data come from Debian's dataset-fashion-mnist (PNET_FASHION_DIR overrides the directory); the
# compiler is build/pnetc (PNETC), PyTorch's Python /usr/bin/python3 (PY), on the private OpenBLAS
# of bench/openblas.sh (never the reference BLAS). Progress goes to stderr, the report
# (Markdown) to stdout.
set -eu
cd "$(dirname "$0")/.."
epochs=5 threads="1,$(nproc)" probe=300 out=""
while [ $# -gt 0 ]; do
    case $1 in
    --epochs) epochs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --probe) probe=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "lenet_fashion.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
F=${PNET_FASHION_DIR:-/usr/share/datasets/fashion-mnist}
[ -r "$F/train-images-idx3-ubyte.gz" ] || {
    echo "lenet_fashion.sh: no Fashion-MNIST in $F (apt-get install dataset-fashion-mnist)" >&2; exit 2; }
PY="${PY:-/usr/bin/python3}"
sh bench/torch.sh "$PY"   # the peer's Debian package, when PY cannot import torch
pnetc="${PNETC:-build/pnetc}"
if [ -z "${PNETC:-}" ] && [ ! -x "$pnetc" ]; then
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build >&2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$pnetc" -O3 examples/lenet.pnet -o "$tmp/lenet"
torch_ld="$(sh bench/openblas.sh)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"  # never the reference BLAS
torch_env() { # torch_env BLAS_THREADS CMD...: PyTorch's process with that many BLAS threads
    b=$1; shift
    env LD_LIBRARY_PATH="$torch_ld" OMP_NUM_THREADS="$b" OPENBLAS_NUM_THREADS="$b" MKL_NUM_THREADS="$b" "$@"
}
# The median of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

report="$tmp/report.md"
{
    echo "LeNet (examples/lenet.pnet) on Fashion-MNIST, $epochs epochs, adam lr 0.001, batch 64;"
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average at the start $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| threads | engine | threads (torch × BLAS) | s per epoch | samples/s | test accuracy | pnet/PyTorch speed |"
    echo "|---:|---|---|---:|---:|---:|---:|"
} >"$report"
for T in $(echo "$threads" | tr ',' ' '); do
    # pnet: the epoch lines' samples/s (training only) and the last epoch's validation accuracy,
    # computed in inference mode like eval.
    echo "lenet_fashion.sh: pnet, $T thread(s)" >&2
    PNET_PROGRESS=0 "$tmp/lenet" train --data "$F/train-images-idx3-ubyte.gz" --labels "$F/train-labels-idx1-ubyte.gz" \
        --val "$F/t10k-images-idx3-ubyte.gz" --val-labels "$F/t10k-labels-idx1-ubyte.gz" \
        --epochs "$epochs" --threads "$T" 2>/dev/null | tee "$tmp/pnet.$T" >&2
    p_sps=$(sed -n 's/^epoch .*, \([0-9.]*\) samples\/s.*/\1/p' "$tmp/pnet.$T" | median)
    p_acc=$(sed -n 's/.*val_accuracy \([0-9.]*\).*/\1/p' "$tmp/pnet.$T" | tail -n 1)
    # PyTorch: its fastest thread configuration on T threads, from a short probe of each.
    best="1x1" best_v=0
    for c in $("$PY" -c "import sys; sys.path.insert(0, 'bench'); import peer; print(' '.join(f'{t}x{b}' for t, b in peer.configs($T)))"); do
        v=$(torch_env "${c#*x}" "$PY" bench/lenet_torch.py --dir "$F" --threads "${c%x*}" --probe "$probe" |
            sed -n 's/^throughput: \([0-9.]*\).*/\1/p')
        echo "lenet_fashion.sh: PyTorch $c probe: ${v:-failed} samples/s" >&2
        if [ -n "$v" ] && awk -v a="$v" -v b="$best_v" 'BEGIN { exit !(a > b) }'; then best=$c best_v=$v; fi
    done
    echo "lenet_fashion.sh: PyTorch, torch ${best%x*} × BLAS ${best#*x}" >&2
    torch_env "${best#*x}" "$PY" bench/lenet_torch.py --dir "$F" --threads "${best%x*}" --epochs "$epochs" |
        tee "$tmp/torch.$T" >&2
    t_sps=$(sed -n 's/^epoch .*, \([0-9.]*\) samples\/s.*/\1/p' "$tmp/torch.$T" | median)
    t_acc=$(sed -n 's/^test_accuracy: //p' "$tmp/torch.$T")
    awk -v T="$T" -v ps="$p_sps" -v pa="$p_acc" -v ts="$t_sps" -v ta="$t_acc" -v c="${best%x*} × ${best#*x}" 'BEGIN {
        printf "| %d | pnet | — | %.1f | %.0f | %s | %.2f× |\n", T, 60000 / ps, ps, pa, ps / ts
        printf "| %d | PyTorch | %s | %.1f | %.0f | %s | |\n", T, c, 60000 / ts, ts, ta }' >>"$report"
done
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$report"
cat "$report"
[ -z "$out" ] || cp "$report" "$out"
