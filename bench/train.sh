#!/bin/sh
# pnet training benchmark: `NET bench --train` vs the same training step in PyTorch.
#
# usage: sh bench/train.sh [--rounds R] [--seconds S] [--models a,b] [--batches a,b] [--out FILE.md]
#                          [--system-blas]
#   --rounds R     measurements per engine and configuration; the table shows the median (3)
#   --seconds S    timed seconds per measurement (3)
#   --models LIST  a comma-separated subset of mlp_s,cnn (the models with a train { } block)
#   --batches LIST batch sizes (64,256)
#   --out FILE.md  also write the Markdown report to FILE.md
#   --system-blas  give PyTorch the system libblas.so.3 instead of the private OpenBLAS
# The environment variables ROUNDS, SECONDS and OUT set the same as the options; PNETC names the
# compiler (default build/pnetc, built like scripts/test.sh does when missing).
#
# For every model x batch x threads {1, nproc}: compiles the model once (-O3, host CPU), then for
# R rounds runs pnet and bench/train_torch.py one right after the other (the first of the pair
# alternates), each in a fresh process. Report on stdout, progress on stderr; exit 1 when any
# measurement failed.
set -eu
self="$0"
cd "$(dirname "$0")/.."

# SECONDS is an ordinary variable in sh (in bash it counts time): run this with sh.
# shellcheck disable=SC3028
seconds="${SECONDS:-3}"
rounds="${ROUNDS:-3}"; out="${OUT:-}"; models="mlp_s,cnn"
batches="64,256"; system_blas=0
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift ;;
        --rounds=*) rounds="${1#--rounds=}" ;;
        --seconds) seconds="$2"; shift ;;
        --seconds=*) seconds="${1#--seconds=}" ;;
        --models) models="$2"; shift ;;
        --models=*) models="${1#--models=}" ;;
        --batches) batches="$2"; shift ;;
        --batches=*) batches="${1#--batches=}" ;;
        --out) out="$2"; shift ;;
        --out=*) out="${1#--out=}" ;;
        --system-blas) system_blas=1 ;;
        -h|--help) sed -n '2,18p' "$self" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "train.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$out" in ""|/*) ;; *) out="$(pwd)/$out" ;; esac  # (we cd'ed to the repo root)

exec 3>&1 1>&2                # until the report: everything to stderr
PY=/usr/bin/python3          # Debian's interpreter: the one python3-torch serves
nproc=$(nproc)

# 1. The compiler; the executables go beside it, into its bench/train/.
pnetc="${PNETC:-build/pnetc}"
if [ -z "${PNETC:-}" ] && [ ! -x "$pnetc" ]; then
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build
fi
[ -x "$pnetc" ] || { echo "train.sh: no compiler at $pnetc" >&2; exit 2; }
exe_dir="$(dirname "$pnetc")/bench/train"
mkdir -p "$exe_dir"
for m in $(echo "$models" | tr , ' '); do
    "$pnetc" -O3 "bench/models/$m.pnet" -o "$exe_dir/$m"
done

# 2. PyTorch's BLAS: the private OpenBLAS that bench/run.sh extracts (see bench/README.md).
blas_dir="build/bench/openblas/usr/lib/x86_64-linux-gnu/openblas-openmp"
torch_ld="${LD_LIBRARY_PATH:-}"
if [ "$system_blas" = 0 ]; then
    if [ -f "$blas_dir/libblas.so.3" ]; then
        torch_ld="$(pwd)/$blas_dir${torch_ld:+:$torch_ld}"
    else
        echo "train.sh: warning: no $blas_dir (run bench/run.sh once); PyTorch runs on the" \
             "system BLAS" >&2
    fi
fi

tmo=$(awk -v s="$seconds" 'BEGIN { printf "%d", s * 3 + 120 }')  # covers start-up and warm-up
# One measurement: prints its samples/s, or "-" (and the output on stderr) when it failed.
measure() {
    if o=$(timeout "$tmo" "$@" 2>&1) &&
        v=$(echo "$o" | sed -n 's/^throughput: *\([0-9.eE+-]*\) *samples\/s.*/\1/p') &&
        [ -n "$v" ]; then
        echo "$v"
    else
        echo "  failed: $*" >&2; echo "$o" | tail -20 >&2; echo "-"
    fi
}

# The median of the arguments, or "-" when any is "-".
median() {
    printf '%s\n' "$@" | sort -g | awk '/^-$/ { bad = 1 } { v[NR] = $1 }
        END { if (bad || NR == 0) print "-";
              else print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# 3. Measure, interleaved per configuration.
echo "train.sh: $rounds rounds of ${seconds} s per engine and configuration"
rows=""; failed=0
for m in $(echo "$models" | tr , ' '); do
    for b in $(echo "$batches" | tr , ' '); do
        for t in $(printf '%s\n' 1 "$nproc" | sort -nu); do
            export OMP_NUM_THREADS="$t" OPENBLAS_NUM_THREADS="$t"
            common="--batch $b --threads $t --seconds $seconds"
            p=""; q=""; r=1
            while [ "$r" -le "$rounds" ]; do
                # shellcheck disable=SC2086
                if [ $((r % 2)) = 1 ]; then
                    pv=$(measure "$exe_dir/$m" bench --train $common)
                    qv=$(measure env LD_LIBRARY_PATH="$torch_ld" "$PY" bench/train_torch.py "$m" $common)
                else
                    qv=$(measure env LD_LIBRARY_PATH="$torch_ld" "$PY" bench/train_torch.py "$m" $common)
                    pv=$(measure "$exe_dir/$m" bench --train $common)
                fi
                echo "  $m batch $b threads $t round $r: pnet $pv  PyTorch $qv samples/s"
                p="$p $pv"; q="$q $qv"; r=$((r + 1))
            done
            # shellcheck disable=SC2086  # (split into the rounds' values)
            { pm=$(median $p); qm=$(median $q); }
            if [ "$pm" = "-" ] || [ "$qm" = "-" ]; then failed=1; fi
            rows="$rows$m $b $t $pm $qm
"
        done
    done
done

# 4. The report.
report=$(printf '%s' "$rows" | awk -v stamp="$(date '+%Y-%m-%d %H:%M')" -v host="$(hostname)" \
    -v cores="$nproc" -v secs="$seconds" -v rounds="$rounds" '
    function group(s,   r) { r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r;
                                                             s = substr(s, 1, length(s) - 3) }
                             return s r }
    function fmt(x) { if (x == "-") return "—"; if (x >= 100) return group(sprintf("%.0f", x));
                      return x >= 10 ? sprintf("%.1f", x) : sprintf("%.2f", x) }
    BEGIN { printf "pnet vs PyTorch training (SGD momentum, cross-entropy) — %s, %s, %d cores, " \
                   "median of %d rounds of %g s\n\n", stamp, host, cores, rounds, secs
            print "| model | batch | threads | pnet samples/s | PyTorch samples/s | pnet/PyTorch | pnet efficiency | PyTorch efficiency |"
            print "|---|---:|---:|---:|---:|---:|---:|---:|" }
    # Efficiency: samples/s over threads times the 1-thread row of the same model and batch.
    function eff(x, one, t) { return (x == "-" || one == "" || one == "-" || one == 0) ? "—" : sprintf("%.0f%%", 100 * x / (t * one)) }
    { ratio = ($4 == "-" || $5 == "-" || $5 == 0) ? "—" : sprintf("%.2f×", $4 / $5)
      if ($3 == 1) { p1[$1 " " $2] = $4; q1[$1 " " $2] = $5 }
      printf "| %s | %d | %d | %s | %s | %s | %s | %s |\n", $1, $2, $3, fmt($4), fmt($5), ratio,
             eff($4, p1[$1 " " $2], $3), eff($5, q1[$1 " " $2], $3) }')
exec 1>&3 3>&-
echo "$report"
if [ -n "$out" ]; then
    echo "$report" >"$out"
    echo "train.sh: wrote $out" >&2
fi
exit "$failed"
