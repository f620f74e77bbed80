#!/usr/bin/env python3
"""What the schedules' defences against a busy machine cost on a quiet one: the same executables
run with and without them, interleaved, many short rounds.

usage: python3 bench/quiet.py [--pnetc build/pnetc] [--seconds S] [--rounds R]
                              [--models mlp_s,cnn,deep_mlp] [--batch N] [--out FILE.md]

The schedules issue added two defences: waits that spin, then sleep (runtime/core/wait.c), and
plans that adapt to the machine (runtime/core/plan.c). Both can be turned off at run time:
PNET_WAIT_POLICY=active spins only, as every wait did before, and PNET_ADAPTIVE_THREADS=0 runs
every call on the threads asked for. For each model (bench/models; deep_mlp gets an mse train
block, as in busy.py) and each of inference and training, `NET bench` runs as serial (1 thread),
threads (every core) and pipeline (the model's 2-stage auto-partition, 8 micro-batches, 1F1B),
each once with the defaults ("now") and once with both turned off ("before"), back to back in an
order that alternates from round to round. A row's ratio is the median over the rounds of
now / before within a round, which cancels the slow drifts of a shared machine's speed; the
spread is the middle half of those ratios. The target (issue 15): no row loses more than 3%.
Report on stdout (and --out), progress on stderr.
"""
import argparse
import math
import os
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from busy import build, log, measure  # noqa: E402

BEFORE = {"PNET_WAIT_POLICY": "active", "PNET_ADAPTIVE_THREADS": "0"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pnetc", default=os.path.join(ROOT, "build", "pnetc"))
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--models", default="mlp_s,cnn,deep_mlp")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out")
    a = ap.parse_args()
    nproc = os.cpu_count() or 1
    tmp = tempfile.mkdtemp(prefix="pnet-quiet-")
    exes = {m: build(a.pnetc, m, tmp) for m in a.models.split(",")}
    rows = [(m, mode, sched, piped, threads) for m in a.models.split(",") for mode in ("infer", "train")
            for sched, piped, threads in (("serial", False, 1), ("threads", False, nproc), ("pipeline", True, nproc))]
    now_env = {k: v for k, v in os.environ.items() if k not in BEFORE}
    before_env = dict(now_env, **BEFORE)
    res = {}
    for r in range(a.rounds):
        log(f"quiet.py: round {r + 1}/{a.rounds}")
        for (m, mode, sched, piped, threads) in rows:
            cmd = [exes[m][1 if piped else 0], "bench", "--batch", str(a.batch), "--seconds", str(a.seconds),
                   "--threads", str(threads)] + (["--train"] if mode == "train" else [])
            order = (("now", now_env), ("before", before_env))
            got = {}
            for tag, env in (order if r % 2 == 0 else order[::-1]):
                got[tag] = measure(cmd, a.seconds, env)
            res.setdefault((m, mode, sched), []).append(got)
        report(a, nproc, rows, res, r + 1)
    return 0


def report(a, nproc, rows, res, rounds):
    """Writes the table of the rounds so far (stdout at the end; --out after every round)."""
    def q(v, f):
        v = sorted(v)
        return v[min(len(v) - 1, max(0, int(round(f * (len(v) - 1)))))]

    lines = [f"Batch {a.batch}, {nproc} cores, {rounds} rounds of {a.seconds:g} s per run. now: the defaults; "
             f"before: {' '.join(f'{k}={v}' for k, v in BEFORE.items())} (waits spin only, plans as asked). "
             "ratio: median over the rounds of now/before within a round; spread: its middle half.", "",
             "| model | mode | schedule | now samples/s | before samples/s | now / before | spread |",
             "|---|---|---|---:|---:|---:|---|"]
    logs = []
    for (m, mode, sched, piped, threads) in rows:
        runs = [g for g in res[(m, mode, sched)] if g.get("now") and g.get("before")]
        if not runs:
            lines.append(f"| {m} | {mode} | {sched} ({threads} thr) | — | — | — | |")
            continue
        ratios = [g["now"] / g["before"] for g in runs]
        logs.append(math.log(statistics.median(ratios)))
        lines.append(f"| {m} | {mode} | {sched} ({threads} thr) | {statistics.median(g['now'] for g in runs):.0f} | "
                     f"{statistics.median(g['before'] for g in runs):.0f} | {statistics.median(ratios):.3f} | "
                     f"{q(ratios, 0.25):.3f}–{q(ratios, 0.75):.3f} |")
    if logs:
        lines += ["", f"Geometric mean of the rows' ratios: {math.exp(sum(logs) / len(logs)):.3f}."]
    text = "\n".join(lines) + "\n"
    if rounds == a.rounds:
        sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
