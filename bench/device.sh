#!/bin/sh
# The 16-core measurements of issues 4 and 5, split for the device machine (which has no pnetc):
#
#   sh bench/device.sh prepare        here: build pnetc, compile every benchmark executable for
#                                     x86-64-v4 into build-device/ (git ignores it; carry it)
#   sh bench/device.sh run [SECONDS]  there: schedule scaling (bench/scaling.py --exe-dir),
#                                     training throughput on 1 and all cores, next to PyTorch
#                                     when python3 can import torch (at its fastest of torch
#                                     {1, T} x BLAS {1, T} threads), and all cores as ranks of
#                                     mpirun against threads (bench/mpi.py), and the cost model's
#                                     stages against their measurement (bench/cost_accuracy.py,
#                                     raw: cost_accuracy.json); Markdown into $OUT (or .)
#   python3 bench/cost_accuracy.py --prepare build-device/cost --results OUT/cost_accuracy.json
#                                     here, after run: the cost model's table for the device
#
# With the device tool: run(command="sh bench/device.sh run", carry=["build-device"]).
set -eu
cd "$(dirname "$0")/.."
dir=build-device
case "${1:-}" in
prepare)
    sh scripts/setup.sh
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build >/dev/null
    # The schedule and training executables without MPI, so they run on a machine without Open MPI.
    cmake -S . -B build-nompi -G Ninja -DCMAKE_BUILD_TYPE=Release -DPNET_MPI=OFF >/dev/null
    cmake --build build-nompi >/dev/null
    rm -rf "$dir" && mkdir -p "$dir"
    python3 bench/scaling.py build-nompi/pnetc --prepare "$dir" --cpu x86-64-v4
    for m in mlp_s cnn; do
        ./build-nompi/pnetc --cpu x86-64-v4 "bench/models/$m.pnet" -o "$dir/train_$m"
        # Chunks of 16 samples: 16 replicas at batch 256 instead of 8 replicas of 2 threads.
        ./build-nompi/pnetc --cpu x86-64-v4 --train-chunk 16 "bench/models/$m.pnet" -o "$dir/train_${m}_c16"
    done
    # Distributed runs: 16 ranks x 1 thread against 1 process x 16 threads (bench/mpi.py). These
    # executables need Open MPI's library where they run; run skips them when it is missing.
    python3 bench/mpi.py --prepare "$dir" --pnetc build/pnetc --cpu x86-64-v4
    # The cost model against measurement with a core per stage (the 4-stage deep_mlp needs 4 cores),
    # partitioned for the device's 16 CPUs; `--results` here makes the table from what run measured.
    python3 bench/cost_accuracy.py --prepare "$dir/cost" --pnetc build-nompi/pnetc --cpu x86-64-v4 --cores 16
    du -sh "$dir"
    ;;
run)
    secs=${2:-2}
    out=${OUT:-.}
    n=$(nproc)
    export PNET_ADAPTIVE_THREADS=0
    # 1, 4, 8 and all threads on a machine of 16 or more cores keeps the whole run near 4 minutes.
    threads=1,2
    [ "$n" -ge 16 ] && threads=1,4,8,$n
    python3 bench/scaling.py --exe-dir "$dir" --threads "$threads" --seconds "$secs" --out "$out/scaling.md" || true
    torch=0
    python3 -c "import torch" 2>/dev/null && torch=1
    {
        echo "training, $n cores, $secs s per run"
        echo
        echo "| model | batch | threads | pnet samples/s | pnet efficiency | PyTorch samples/s | PyTorch torch × BLAS threads | PyTorch efficiency |"
        echo "|---|---:|---:|---:|---:|---:|---|---:|"
        for v in mlp_s cnn mlp_s_c16 cnn_c16; do
            m=${v%_c16}
            for b in 64 256; do
                [ "$v" != "$m" ] && [ "$b" != 256 ] && continue
                p1= q1=
                for t in 1 $n; do
                    p=$("$dir/train_$v" bench --train --batch "$b" --threads "$t" --seconds "$secs" |
                        sed -n 's/^throughput: *\([0-9.]*\).*/\1/p')
                    # PyTorch at its fastest configuration, as bench/train.sh runs it (one run each).
                    q=- qc=-
                    if [ $torch = 1 ] && [ "$v" = "$m" ]; then
                        q=0
                        for tt in $(printf '%s\n' 1 "$t" | sort -nu); do
                            for bb in $(printf '%s\n' 1 "$t" | sort -nu); do
                                x=$(env OMP_NUM_THREADS="$bb" OPENBLAS_NUM_THREADS="$bb" MKL_NUM_THREADS="$bb" \
                                    python3 bench/train_torch.py "$m" --batch "$b" --threads "$tt" --seconds "$secs" \
                                    2>/dev/null | sed -n 's/^throughput: *\([0-9.]*\).*/\1/p')
                                if [ -z "$x" ]; then q=-1
                                elif awk -v x="$x" -v q="$q" 'BEGIN { exit !(q >= 0 && x > q) }'; then
                                    q=$x qc="${tt}×$bb"
                                fi
                            done
                        done
                        [ "$q" = -1 ] && q=- qc=-   # a configuration failed: no best to report
                    fi
                    [ -z "$p1" ] && p1=$p q1=$q
                    echo "$v $b $t $p $p1 ${q:--} ${q1:--} $qc"
                done
            done
        done | awk '{ pe = $5 > 0 ? sprintf("%.0f%%", 100 * $4 / ($3 * $5)) : "-";
                      qe = ($6 != "-" && $7 != "-" && $7 > 0) ? sprintf("%.0f%%", 100 * $6 / ($3 * $7)) : "-";
                      qc = $8; sub(/×/, " × ", qc); if (qc == "-") qc = "—"
                      printf "| %s | %s | %s | %.0f | %s | %s | %s | %s |\n", $1, $2, $3, $4, pe, $6, qc, qe }'
    } | tee "$out/training.md"
    python3 bench/cost_accuracy.py --exe-dir "$dir/cost" --out "$out/cost_accuracy.json" --runs 3 --seconds "$secs" || true
    if command -v mpirun >/dev/null 2>&1 && ! ldd "$dir/mpi_cnn" | grep -q "not found"; then
        python3 bench/mpi.py --exe-dir "$dir" --ranks "$n" --seconds "$secs" --out "$out/mpi.md" || true
    else
        echo "mpi: skipped (no mpirun or no Open MPI library on this machine)" | tee "$out/mpi.md"
    fi
    ;;
*)
    echo "usage: sh bench/device.sh prepare | run [SECONDS]" >&2
    exit 2
    ;;
esac
