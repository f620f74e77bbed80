#!/usr/bin/env python3
"""The cost model against measurement (docs/schedules.md, "How good the predictions are").

For each network: `pnetc --auto-partition S` (the static model), then on the partitioned file
`./net bench --profile` (one thread: each stage of the pipeline gets one), `pnetc --report` without
and with that profile (the predicted slowest-stage share and bubble at the bench's batch), and
`./net bench --schedule pipeline --threads S` (the measured ones: the stages' busy time, as their
trace slices add up, and the median call's bubble; the median of --runs runs). Where the machine
has a core per stage, each run binds the stages' threads to cores, and the runs take turns: run r
puts stage k on core (k + r) mod cores, since a VM's cores can differ (this one's stage on CPU 0
ran a memory-bound stage up to 1.4x slower than on CPU 1), and the model assumes equal cores.
Prints a Markdown table with the relative error of each prediction.

    /usr/bin/python3 bench/cost_accuracy.py [--pnetc build/pnetc] [--seconds 3] [--runs 3]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name, source, stages, batch (the training batch where there is one: the report's chunk)
NETS = [
    ("lenet", "examples/lenet.pnet", 2, 64),
    ("resnet_small", "examples/resnet_small.pnet", 2, 128),
    ("wide_mlp", "examples/wide_mlp.pnet", 2, 64),
    ("deep_mlp", "bench/models/deep_mlp.pnet", 4, 64),
]


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit("cost_accuracy: %s failed:\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))
    return r.stdout + r.stderr


def predicted(report):
    m = re.search(r"predicted with these costs for a batch of \d+ in chunks of (\d+): slowest stage (\d+)% of the stages' "
                  r"time, bubble ([\d.]+)%", report)
    if not m:
        sys.exit("cost_accuracy: no prediction in the report:\n" + report)
    return int(m.group(1)), float(m.group(2)), float(m.group(3))


def rel(p, m):
    return "%+.0f%%" % (100 * (p - m) / m) if m else "—"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pnetc", default=os.path.join(ROOT, "build", "pnetc"))
    ap.add_argument("--seconds", default="3")
    ap.add_argument("--runs", type=int, default=4, help="bench runs per network (the median counts), taking turns on the cores")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, src, S, batch in NETS:
            part = os.path.join(tmp, name + ".pnet")
            run([args.pnetc, "-I", os.path.join(ROOT, "stdlib"), "--auto-partition", str(S), os.path.join(ROOT, src), "-o", part])
            exe = os.path.join(tmp, name)
            run([args.pnetc, "-I", os.path.join(ROOT, "stdlib"), part, "-o", exe])
            prof = os.path.join(tmp, name + ".json")
            run([exe, "bench", "--batch", str(batch), "--threads", "1", "--profile", prof])
            static = predicted(run([args.pnetc, "-I", os.path.join(ROOT, "stdlib"), "--report", part]))
            measured_cost = predicted(run([args.pnetc, "-I", os.path.join(ROOT, "stdlib"), "--report", "--profile", prof, part]))
            # The median of the runs, each with the stages on other cores where there is a core per stage.
            cores = os.cpu_count() or 1
            outs = []
            for r in range(args.runs):
                env = None
                if S <= cores:
                    env = dict(os.environ, OMP_PROC_BIND="true",
                               OMP_PLACES=",".join("{%d}" % ((k + r) % cores) for k in range(S)))
                outs.append(run([exe, "bench", "--batch", str(batch), "--threads", str(S), "--schedule", "pipeline",
                                 "--seconds", args.seconds], env))
            out = outs[-1]
            bub = statistics.median(float(re.search(r"bubble: measured ([\d.]+)%", o).group(1)) for o in outs)
            share = statistics.median(float(re.search(r"the slowest (\d+)% of the stages' time", o).group(1)) for o in outs)
            M = int(re.search(r"Q = \d+ micro-batches streamed \((\d+) per chunk\)", out).group(1))
            thr = statistics.median(float(re.search(r"throughput: ([\d.]+)", o).group(1)) for o in outs)
            rows.append((name, S, M, batch, share, bub, static, measured_cost, thr))
            if os.environ.get("COST_VERBOSE"):
                print(out, run([args.pnetc, "-I", os.path.join(ROOT, "stdlib"), "--report", "--profile", prof, part]),
                      file=sys.stderr)
            print("%s done" % name, file=sys.stderr)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print("| network | S | M | batch | measured: slowest stage share, bubble | model: share, bubble (error) | "
          "profile: share, bubble (error) |")
    print("|---|---:|---:|---:|---|---|---|")
    for name, S, M, batch, share, bub, st, pr, thr in rows:
        print("| %s | %d | %d | %d | %.0f%%, %.1f%% | %.0f%% (%s), %.1f%% (%s) | %.0f%% (%s), %.1f%% (%s) |" % (
            name, S, M, batch, share, bub, st[1], rel(st[1], share), st[2], rel(st[2], bub), pr[1], rel(pr[1], share),
            pr[2], rel(pr[2], bub)))
    print("\nload average at the end: %s" % load)


if __name__ == "__main__":
    main()
