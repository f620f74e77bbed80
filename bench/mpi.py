#!/usr/bin/env python3
"""Distributed runs against threads: K ranks x 1 thread against 1 process x K threads, interleaved.

usage: python3 bench/mpi.py [--pnetc build/pnetc] [--ranks K] [--seconds S] [--rounds R]
                            [--batch N] [--out FILE.md] [--cpu CPU]
       python3 bench/mpi.py --prepare DIR [--pnetc build/pnetc] [--cpu CPU]   (compile only)
       python3 bench/mpi.py --exe-dir DIR [...]                            (run DIR's executables)

For each case (bench/models/*.pnet; deep_mlp gets an mse train block, as in bench/busy.py) it runs
`NET bench` (inference) or `NET bench --train` at --batch (256):
  threads   NET bench ... --threads K                       (one process)
  ranks     mpirun -np K NET bench ... --threads 1          (data parallelism over K ranks)
one after the other in every round (interleaved), R rounds (3), and reports the median samples/s
of each, their ratio (the distributed-runs issue's target: ranks >= 0.9 x threads), and the share
of the ranks' run spent in communication (waiting on messages included) that `bench` reports per
rank, and (from the ranks run's --trace) the part of it after the last rank reached each
collective call: the transfer, without the waiting on a slower rank. K defaults to the machine's
cores. Report on stdout (and --out), progress on stderr.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from busy import source  # noqa: E402  (the models, with deep_mlp's train block)

# deep_mlp_2stages: deep_mlp cut into two pipeline stages by pnetc --auto-partition 2, with
# @pipeline(microbatches = 4, schedule = 1f1b); inference and 1F1B training. Its ranks run one
# stage each (K/2 pipelines x 2 stages), its threads the threads' pipeline.
CASES = [("cnn", True), ("mlp_s", True), ("deep_mlp", False), ("deep_mlp", True), ("deep_mlp_2stages", False),
         ("deep_mlp_2stages", True)]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=ENV).stdout
    tput = float(re.search(r"^throughput: ([0-9.]+)", out, re.M).group(1))
    m = re.search(r"^ranks: \d+; time in communication.*$", out, re.M)
    shares = [float(x) for x in re.findall(r"\(([0-9.]+)%\)", m.group(0))] if m else []
    return tput, shares


def transfer_share(path):
    """From a ranks run's trace (one process per rank, clocks aligned at start): the largest share
    of any rank's traced time spent in its "messages" slices after the last rank had arrived.

    Every rank of a data-parallel step makes the same collective calls in the same order (the
    gradient's reduce-scatter, the parameters' all-gather), so the k-th "messages" slice of each
    rank is the same call. A rank that arrives before the others waits inside the call for the
    slowest rank's compute: that is load imbalance, which threads pay at their barriers too, not
    data moving. The part of the call after the last arrival, max over ranks of end minus the
    latest begin, is the transfer. Returns None when the ranks' slices do not pair up (pipelines:
    point-to-point waits)."""
    import json
    with open(path) as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
    ranks = sorted({e["pid"] for e in events})
    msgs = {p: sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e["pid"] == p and e["name"] == "messages")
            for p in ranks}
    span = {p: max(e["ts"] + e["dur"] for e in events if e["pid"] == p) - min(e["ts"] for e in events if e["pid"] == p)
            for p in ranks}
    counts = {len(v) for v in msgs.values()}
    if len(ranks) < 2 or len(counts) != 1 or counts == {0}:
        return None
    moved = {p: 0.0 for p in ranks}
    for k in range(counts.pop()):
        last = max(msgs[p][k][0] for p in ranks)
        for p in ranks:
            moved[p] += max(0.0, msgs[p][k][1] - last)
    return max(100 * moved[p] / span[p] for p in ranks if span[p] > 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pnetc", default=os.path.join(ROOT, "build", "pnetc"))
    ap.add_argument("--ranks", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out")
    ap.add_argument("--cpu", help="pnetc --cpu for the executables (the device machine: x86-64-v4)")
    ap.add_argument("--prepare", help="only compile the executables into this directory")
    ap.add_argument("--exe-dir", help="run the executables that --prepare put here")
    a = ap.parse_args()
    K = a.ranks
    out_dir = a.prepare or a.exe_dir or tempfile.mkdtemp(prefix="pnet-mpi-bench.")
    os.makedirs(out_dir, exist_ok=True)
    exes = {}
    for model in sorted({m for m, _ in CASES}):
        exes[model] = os.path.join(out_dir, "mpi_" + model)
        if a.exe_dir:
            continue
        src = os.path.join(out_dir, "mpi_" + model + ".pnet")
        with open(src, "w") as f:
            f.write(source(model.replace("_2stages", "")))
        if model.endswith("_2stages"):
            staged = subprocess.run([a.pnetc, "--auto-partition", "2", src], check=True, capture_output=True, text=True).stdout
            staged = re.sub(r"(?m)^ *@pipeline\(.*\);\n", "", staged)  # the auto-partition's own micro-batch count
            end = staged.rstrip().rfind("}")
            with open(src, "w") as f:
                f.write(staged[:end] + "    @pipeline(microbatches = 4, schedule = 1f1b);\n}\n")
        subprocess.run([a.pnetc, "-O3"] + (["--cpu", a.cpu] if a.cpu else []) + [src, "-o", exes[model]], check=True)
    if a.prepare:
        return
    res = {c: {"threads": [], "ranks": [], "comm": [], "moved": []} for c in CASES}
    for rnd in range(a.rounds):
        for model, train in CASES:
            base = [exes[model], "bench"] + (["--train"] if train else []) + ["--batch", str(a.batch),
                                                                               "--seconds", str(a.seconds)]
            t, _ = run(base + ["--threads", str(K)])
            trace = os.path.join(out_dir, "trace.json")
            if os.path.exists(trace):
                os.remove(trace)
            r, shares = run(["mpirun", "-np", str(K), "--oversubscribe", "--bind-to", "none"] + base +
                            ["--threads", "1", "--trace", trace])
            pipeline = model.endswith("_2stages")  # its ranks' messages are hand-offs, not paired calls
            moved = transfer_share(trace) if os.path.exists(trace) and not pipeline else None
            res[(model, train)]["threads"].append(t)
            res[(model, train)]["ranks"].append(r)
            res[(model, train)]["comm"].append(max(shares) if shares else float("nan"))
            res[(model, train)]["moved"].append(float("nan") if moved is None else moved)
            log(f"round {rnd + 1}: {model} {'train' if train else 'infer'}: threads {t:.0f}, ranks {r:.0f} samples/s")
    cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True).stdout.strip()
    lines = [f"{K} ranks x 1 thread against 1 process x {K} threads, batch {a.batch}, {a.seconds:g} s per run, "
             f"median of {a.rounds} interleaved rounds ({cpu}, {os.cpu_count()} cores). Communication: the largest "
             "share of any rank's run spent in communication calls, waiting on the other ranks included (as `bench` "
             "prints it); of it, transfer: the largest share of any rank's traced time spent in collective calls "
             "after the last rank arrived (`--trace`, paired calls; — for pipelines, whose waits are point to point).", "",
             "| model | step | threads samples/s | ranks samples/s | ranks / threads | communication | of it, transfer |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for model, train in CASES:
        v = res[(model, train)]
        t, r, c = statistics.median(v["threads"]), statistics.median(v["ranks"]), statistics.median(v["comm"])
        mv = [x for x in v["moved"] if x == x]
        moved = f"{statistics.median(mv):.1f}%" if mv else "—"
        lines.append(f"| {model} | {'train' if train else 'infer'} | {t:.0f} | {r:.0f} | {r / t:.2f} | {c:.1f}% | {moved} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
