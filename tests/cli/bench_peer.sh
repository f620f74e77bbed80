#!/bin/sh
# The PyTorch peer runs at its best (bench/README.md, "a peer runs as its users would tune it"):
# bench/train.sh and bench/compare.py try torch {1, T} x BLAS {1, T} threads, report the fastest
# configuration by its median and name it, and mark the row failed when a configuration failed.
# A fake interpreter stands in for PyTorch: its samples/s depend on --threads and
# OPENBLAS_NUM_THREADS, and torch 2 x BLAS 1 has one outlier round (a median, not a maximum).
set -eu
pnetc=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "bench_peer: $*" >&2; exit 1; }

cat >"$tmp/fakepy" <<'FAKE'
#!/bin/sh
t=""
while [ $# -gt 0 ]; do [ "$1" = --threads ] && t=$2; shift; done
b=${OPENBLAS_NUM_THREADS:-unset}
[ "${OMP_NUM_THREADS:-}" = "$b" ] || { echo "OMP_NUM_THREADS ${OMP_NUM_THREADS:-unset} != $b"; exit 3; }
[ "$t$b" = "${FAKE_FAIL:-}" ] && exit 1
n=$(cat "$FAKE_DIR/n$t$b" 2>/dev/null || echo 0); echo $((n + 1)) >"$FAKE_DIR/n$t$b"
case "$t$b" in
11) v=100 ;; 12) v=400 ;; 22) v=200 ;;
21) v=300; [ "$n" = 1 ] && v=1000 ;;
*) echo "unexpected torch $t x BLAS $b"; exit 3 ;;
esac
echo "throughput: $v samples/s"
FAKE
chmod +x "$tmp/fakepy"
export FAKE_DIR="$tmp"

# train.sh: 3 rounds; the fastest median is torch 1 x BLAS 2 (400), not 2 x 1's outlier (1000).
PNETC="$pnetc" PY="$tmp/fakepy" sh "$src/bench/train.sh" --models mlp_s --batches 8 --threads 1,2 \
    --rounds 3 --seconds 0.05 >"$tmp/train.md" 2>"$tmp/train.err" || { cat "$tmp/train.err"; fail "train.sh failed"; }
grep -q '^| mlp_s | 8 | 1 | [0-9,.]* | 100 | 1 × 1 | ' "$tmp/train.md" || { cat "$tmp/train.md"; fail "train.sh: 1-thread row"; }
grep -q '^| mlp_s | 8 | 2 | [0-9,.]* | 400 | 1 × 2 | ' "$tmp/train.md" || { cat "$tmp/train.md"; fail "train.sh: 2-thread row not torch 1 x BLAS 2 at 400"; }
grep -q '^| mlp_s | 8 | 2 | 100 | \*\*400\*\* | 300 | 200 |$' "$tmp/train.md" || { cat "$tmp/train.md"; fail "train.sh: the configurations' table"; }
# pnet's 2-thread efficiency is paired with a 1-thread run beside it in every round.
[ "$(grep -c '^  mlp_s batch 8 threads 2 round [123]: pnet [0-9.]* (1 thread beside: [0-9.]*) ' "$tmp/train.err")" -eq 3 ] ||
    { cat "$tmp/train.err"; fail "train.sh: no 1-thread run beside the 2-thread one"; }
grep -q '^| mlp_s | 8 | 2 | [0-9,.]* | 400 | 1 × 2 | [0-9.]*× | [0-9]*% | 200% | ' "$tmp/train.md" ||
    { cat "$tmp/train.md"; fail "train.sh: the 2-thread row's efficiencies"; }

# A configuration that fails leaves no best: the cell is empty and the exit status 1.
rm -f "$tmp"/n*
if FAKE_FAIL=22 PNETC="$pnetc" PY="$tmp/fakepy" sh "$src/bench/train.sh" --models mlp_s --batches 8 \
    --threads 2 --rounds 1 --seconds 0.05 >"$tmp/fail.md" 2>/dev/null; then
    fail "train.sh: exit 0 with a failed configuration"
fi
grep -q '^| mlp_s | 8 | 2 | [0-9,.]* | — | — | — | ' "$tmp/fail.md" || { cat "$tmp/fail.md"; fail "train.sh: failed row"; }

# compare.py: one measurement per configuration; ORT is not measured here (no ONNX files).
rm -f "$tmp"/n*
"$pnetc" "$src/bench/models/mlp_s.pnet" -o "$tmp/mlp_s"
python3 "$src/bench/compare.py" --exe-dir "$tmp" --onnx-dir "$tmp" --models mlp_s --batches 4 \
    --threads 1,2 --seconds 0.05 --python "$tmp/fakepy" >"$tmp/cmp.md" 2>"$tmp/cmp.err" || true
grep -q '^| mlp_s | 4 | 1 | [0-9,.]* | — | 100 | 1 × 1 | ' "$tmp/cmp.md" || { cat "$tmp/cmp.md" "$tmp/cmp.err"; fail "compare.py: 1-thread row"; }
grep -q '^| mlp_s | 4 | 2 | [0-9,.]* | — | 400 | 1 × 2 | ' "$tmp/cmp.md" || { cat "$tmp/cmp.md" "$tmp/cmp.err"; fail "compare.py: 2-thread row"; }
echo "bench_peer: ok"
