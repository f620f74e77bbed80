#!/bin/sh
# pnet training benchmark: `NET bench --train` vs the same training step in PyTorch.
#
# usage: sh bench/train.sh [--rounds R] [--seconds S] [--models a,b] [--batches a,b] [--threads a,b]
#                          [--out FILE.md] [--system-blas]
#   --rounds R     measurements per engine and configuration; the table shows the median (3)
#   --seconds S    timed seconds per measurement (3)
#   --models LIST  a comma-separated subset of mlp_s,cnn (the models with a train { } block)
#   --batches LIST batch sizes (64,256)
#   --threads LIST thread counts (1,nproc)
#   --out FILE.md  also write the Markdown report to FILE.md
#   --system-blas  give PyTorch the system libblas.so.3 instead of the private OpenBLAS
# The environment variables ROUNDS, SECONDS and OUT set the same as the options; PNETC names the
# compiler (default build/pnetc, built like scripts/test.sh does when missing), PY the Python
# that runs bench/train_torch.py (default /usr/bin/python3).
#
# For every model x batch x threads T: compiles the model once (-O3, host CPU), then for R rounds
# runs pnet and bench/train_torch.py in each configuration torch {1, T} x BLAS {1, T} threads one
# right after the other (pnet first in odd rounds, last in even ones), each in a fresh process.
# PyTorch's row is its configuration with the best median (a peer runs as its users would tune
# it; bench/README.md). On T > 1 threads each round also runs pnet on one thread right beside, and
# pnet's efficiency is the median of the rounds' ratios (T threads over T times one), so that a
# machine whose speed drifts between rows cannot skew it; PyTorch's is the ratio of its rows'
# medians. The "% of peak" column counts 3 forward passes per training sample against
# the fp32 peak that bench/peak.sh measures on the same thread count just before.
# Report on stdout, progress on stderr; exit 1 when any measurement failed.
set -eu
self="$0"
cd "$(dirname "$0")/.."

# SECONDS is an ordinary variable in sh (in bash it counts time): run this with sh.
# shellcheck disable=SC3028
seconds="${SECONDS:-3}"
rounds="${ROUNDS:-3}"; out="${OUT:-}"; models="mlp_s,cnn"
batches="64,256"; threads=""; system_blas=0
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
        --threads) threads="$2"; shift ;;
        --threads=*) threads="${1#--threads=}" ;;
        --out) out="$2"; shift ;;
        --out=*) out="${1#--out=}" ;;
        --system-blas) system_blas=1 ;;
        -h|--help) sed -n '2,22p' "$self" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "train.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$out" in ""|/*) ;; *) out="$(pwd)/$out" ;; esac  # (we cd'ed to the repo root)

exec 3>&1 1>&2                # until the report: everything to stderr
PY="${PY:-/usr/bin/python3}" # Debian's interpreter: the one python3-torch serves
nproc=$(nproc)
[ -n "$threads" ] || threads="1,$nproc"

# 1. The peer's Debian package, when PY cannot import torch.
sh bench/torch.sh "$PY"

# 2. The compiler; the executables go beside it, into its bench/train/.
pnetc="${PNETC:-build/pnetc}"
if [ -z "${PNETC:-}" ] && [ ! -x "$pnetc" ]; then
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build
fi
[ -x "$pnetc" ] || { echo "train.sh: no compiler at $pnetc" >&2; exit 2; }
exe_dir="$(dirname "$pnetc")/bench/train"
mkdir -p "$exe_dir"
flops=""  # "MODEL=FLOPs per sample of the forward pass" (EXE info), for the share of peak
for m in $(echo "$models" | tr , ' '); do
    "$pnetc" -O3 "bench/models/$m.pnet" -o "$exe_dir/$m"
    flops="$flops $m=$("$exe_dir/$m" info | sed -n 's/^ *total: .*, \([0-9]*\) FLOPs per sample.*/\1/p')"
done

# 3. PyTorch's BLAS: the private OpenBLAS of bench/openblas.sh (never the reference BLAS), unless
#    --system-blas.
torch_ld="${LD_LIBRARY_PATH:-}"; blas_name="system libblas.so.3"
if [ "$system_blas" = 0 ]; then
    torch_ld="$(sh bench/openblas.sh)${torch_ld:+:$torch_ld}"; blas_name="OpenBLAS (openmp)"
fi

# The machine's fp32 peak on each thread count (bench/peak.sh), measured before the runs.
peaks=""
for t in $(echo "$threads" | tr , '\n' | sort -nu); do peaks="$peaks $t=$(sh bench/peak.sh "$t")"; done
echo "train.sh: fp32 peak measured (threads=GFLOP/s):$peaks"

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

# 4. Measure, interleaved per configuration. A round's values go to $vals as "KEY VALUE" lines:
#    KEY is "pnet" or PyTorch's configuration "TORCHxBLAS".
echo "train.sh: $rounds rounds of ${seconds} s per engine and configuration"
rows=""; failed=0
for m in $(echo "$models" | tr , ' '); do
    for b in $(echo "$batches" | tr , ' '); do
        for t in $(echo "$threads" | tr , '\n' | sort -nu); do
            common="--batch $b --seconds $seconds"
            configs=""
            for tt in $(printf '%s\n' 1 "$t" | sort -nu); do
                for bb in $(printf '%s\n' 1 "$t" | sort -nu); do configs="$configs ${tt}x$bb"; done
            done
            vals=""; r=1
            while [ "$r" -le "$rounds" ]; do
                line=""
                pv="" p1=""
                # On T > 1 threads pnet also runs on one, right beside: the efficiency is the median of
                # the rounds' ratios, which a VM whose speed drifts between rows cannot skew.
                # shellcheck disable=SC2086
                [ $((r % 2)) = 1 ] && [ "$t" -gt 1 ] && p1=$(measure env OMP_NUM_THREADS=1 "$exe_dir/$m" bench --train --threads 1 $common)
                # shellcheck disable=SC2086
                [ $((r % 2)) = 1 ] && pv=$(measure env OMP_NUM_THREADS="$t" "$exe_dir/$m" bench --train --threads "$t" $common)
                for c in $configs; do
                    # shellcheck disable=SC2086
                    qv=$(measure env LD_LIBRARY_PATH="$torch_ld" OMP_NUM_THREADS="${c#*x}" \
                        OPENBLAS_NUM_THREADS="${c#*x}" MKL_NUM_THREADS="${c#*x}" \
                        "$PY" bench/train_torch.py "$m" --threads "${c%x*}" $common)
                    vals="$vals$c $qv
"
                    line="$line  PyTorch ${c%x*}×${c#*x} $qv"
                done
                # shellcheck disable=SC2086
                [ $((r % 2)) = 0 ] && pv=$(measure env OMP_NUM_THREADS="$t" "$exe_dir/$m" bench --train --threads "$t" $common)
                # shellcheck disable=SC2086
                [ $((r % 2)) = 0 ] && [ "$t" -gt 1 ] && p1=$(measure env OMP_NUM_THREADS=1 "$exe_dir/$m" bench --train --threads 1 $common)
                vals="${vals}pnet $pv
"
                [ "$t" -gt 1 ] && vals="${vals}paired $(awk -v a="$pv" -v b="$p1" -v t="$t" \
                    'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.4f", a / (t * b) }')
"
                echo "  $m batch $b threads $t round $r: pnet $pv${p1:+ (1 thread beside: $p1)}$line samples/s"
                r=$((r + 1))
            done
            # The medians: "PNET BEST CONFIG PAIRED" then each configuration's "CONFIG=MEDIAN" ("-" when
            # a round failed; BEST is "-" when any configuration failed; PAIRED is the median of the
            # rounds' efficiency against pnet on one thread beside, "none" on one thread).
            row=$(printf '%s' "$vals" | awk '
                !($1 in n) && $1 != "pnet" && $1 != "paired" { order[++nk] = $1 }
                { n[$1]++; v[$1, n[$1]] = $2; if ($2 == "-") bad[$1] = 1 }
                function med(k,   i, j, t, c) {
                    if (bad[k]) return "-"
                    c = n[k]; for (i = 1; i <= c; i++) a[i] = v[k, i]
                    for (i = 2; i <= c; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
                        t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
                    return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2 }
                END { best = ""; cfgs = ""
                      for (i = 1; i <= nk; i++) {
                          k = order[i]; q = med(k); cfgs = cfgs " " k "=" q
                          if (q == "-") anybad = 1
                          else if (best == "" || q + 0 > bq + 0) { best = k; bq = q } }
                      if (anybad || best == "") { best = "-"; bq = "-" }
                      print med("pnet"), bq, best, ("paired" in n ? med("paired") : "none") cfgs }')
            case " $row " in *" - "*|*"=- "*) failed=1 ;; esac
            rows="$rows$m $b $t $row
"
        done
    done
done

# 5. The report: the table, then every PyTorch configuration of the rows on more than one thread.
report=$(printf '%s' "$rows" | awk -v stamp="$(date '+%Y-%m-%d %H:%M')" -v host="$(hostname)" \
    -v cores="$nproc" -v secs="$seconds" -v rounds="$rounds" -v blas="$blas_name" -v flops="$flops" -v peaks="$peaks" '
    function group(s,   r) { r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r;
                                                             s = substr(s, 1, length(s) - 3) }
                             return s r }
    function fmt(x) { if (x == "-") return "—"; if (x >= 100) return group(sprintf("%.0f", x));
                      return x >= 10 ? sprintf("%.1f", x) : sprintf("%.2f", x) }
    function label(c) { if (c == "-") return "—"; sub(/x/, " × ", c); return c }
    BEGIN { printf "pnet vs PyTorch training (SGD momentum, cross-entropy) — %s, %s, %d cores, " \
                   "median of %d interleaved rounds of %g s (pnet efficiency: of the rounds'"'"' ratios to one thread beside); " \
                   "PyTorch on %s; fp32 peak measured (threads=GFLOP/s):%s\n\n", stamp, host, cores, rounds, secs, blas, peaks
            print "| model | batch | threads | pnet samples/s | PyTorch samples/s | PyTorch torch × BLAS threads | pnet/PyTorch | pnet efficiency | PyTorch efficiency | pnet % of peak |"
            print "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"
            n = split(flops, f, " "); for (i = 1; i <= n; i++) { split(f[i], kv, "="); fl[kv[1]] = kv[2] }
            n = split(peaks, f, " "); for (i = 1; i <= n; i++) { split(f[i], kv, "="); pk[kv[1]] = kv[2] } }
    # Share of peak: a training sample costs about 3 forward passes (forward, dx and dW).
    function share(x, m, t) { return (x == "-" || !(m in fl) || pk[t] + 0 == 0) ? "—" : sprintf("%.0f%%", 100 * x * 3 * fl[m] / (pk[t] * 1e9)) }
    # Efficiency: samples/s over threads times the 1-thread row of the same model and batch; for
    # pnet the median of the rounds'"'"' ratios to one thread run beside (paired) when there is one.
    function eff(x, one, t) { return (x == "-" || one == "" || one == "-" || one == 0) ? "—" : sprintf("%.0f%%", 100 * x / (t * one)) }
    function peff(x, one, t, pe) { return pe == "-" ? "—" : pe != "none" ? sprintf("%.0f%%", 100 * pe) : eff(x, one, t) }
    { ratio = ($4 == "-" || $5 == "-" || $5 == 0) ? "—" : sprintf("%.2f×", $4 / $5)
      if ($3 == 1) { p1[$1 " " $2] = $4; q1[$1 " " $2] = $5 }
      printf "| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, fmt($4), fmt($5),
             label($6), ratio, peff($4, p1[$1 " " $2], $3, $7), eff($5, q1[$1 " " $2], $3), share($4, $1, $3)
      if ($3 > 1) { line = sprintf("| %s | %d | %d |", $1, $2, $3)
                    for (i = 8; i <= NF; i++) { split($i, kv, "=")
                        line = line sprintf(kv[1] == $6 ? " **%s** |" : " %s |", fmt(kv[2])) }
                    multi = multi line "\n" } }
    END { if (multi == "") exit
          print "\nPyTorch in each configuration of torch × BLAS threads (T = the row'"'"'s threads), median samples/s; the fastest in bold:\n"
          print "| model | batch | threads | 1 × 1 | 1 × T | T × 1 | T × T |"
          print "|---|---:|---:|---:|---:|---:|---:|"
          printf "%s", multi }')
exec 1>&3 3>&-
echo "$report"
if [ -n "$out" ]; then
    echo "$report" >"$out"
    echo "train.sh: wrote $out" >&2
fi
exit "$failed"
