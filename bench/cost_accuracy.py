#!/usr/bin/env python3
"""The cost model against measurement (docs/schedules.md, "How good the predictions are").

For each network: `pnetc --auto-partition S` (the static model), then on the partitioned file
`./net bench --profile` (one thread: each stage of the pipeline gets one), `pnetc --report` without
and with that profile (the predicted slowest-stage share and bubble at the bench's batch), and
`./net bench --schedule pipeline --threads S` (the measured ones: the stages' busy time, as their
trace slices add up, averaged over --runs runs, and the median run's bubble). Where the machine
has a core per stage, each run binds the stages' threads to cores, and the runs take turns: run r
puts stage k on core (k + r) mod cores, since a VM's cores can differ (this one's CPU 0 ran a
stage up to 1.4x slower than CPU 1 while both were busy), and the model assumes equal cores: with
--runs a multiple of the cores, each stage's busy time averaged over the runs is in the ratio that
equal cores would give.
Prints a Markdown table with the relative error of each prediction.

    /usr/bin/python3 bench/cost_accuracy.py [--pnetc build/pnetc] [--seconds 3] [--runs 4]

Split for a machine without pnetc (bench/device.sh), in three steps:

    python3 bench/cost_accuracy.py --prepare DIR [--cpu x86-64-v4] [--cores N]   here: partition
        (for N CPUs: the target's) and compile into DIR
    python3 bench/cost_accuracy.py --exe-dir DIR --out M.json                    there: profile
        and run DIR's executables; the profiles and the bench outputs go into M.json
    python3 bench/cost_accuracy.py --prepare DIR --results M.json                here: predict
        with pnetc for the measured machine (its CPUs, its profiles) and print the table
"""
import argparse
import json
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


def pnetc(args, *rest):
    return run([args.pnetc, "-I", os.path.join(ROOT, "stdlib")] + list(rest))


def prepare(args, d):
    """Partitions every network by the static model and compiles it into d."""
    os.makedirs(d, exist_ok=True)
    cores = ["--cores", str(args.cores)] if args.cores else []
    cpu = ["--cpu", args.cpu] if args.cpu else []
    for name, src, S, batch in NETS:
        part = os.path.join(d, name + ".pnet")
        pnetc(args, "--auto-partition", str(S), *cores, os.path.join(ROOT, src), "-o", part)
        pnetc(args, *cpu, part, "-o", os.path.join(d, name))


def measure(args, d):
    """Profiles and runs d's executables on this machine: {name: {profile, outs}}, and the load."""
    cores = os.cpu_count() or 1
    got = {"cpus": cores, "nets": {}}
    for name, src, S, batch in NETS:
        exe = os.path.join(d, name)
        prof = os.path.join(d, name + ".json")
        run([exe, "bench", "--batch", str(batch), "--threads", "1", "--profile", prof])
        with open(prof) as f:
            profile = f.read()
        # The runs, each with the stages on other cores where there is a core per stage.
        outs = []
        for r in range(args.runs):
            env = None
            if S <= cores:
                env = dict(os.environ, OMP_PROC_BIND="true", OMP_PLACES=",".join("{%d}" % ((k + r) % cores) for k in range(S)))
            outs.append(run([exe, "bench", "--batch", str(batch), "--threads", str(S), "--schedule", "pipeline",
                             "--seconds", args.seconds], env))
        got["nets"][name] = {"profile": profile, "outs": outs}
        print("%s done" % name, file=sys.stderr)
    with open("/proc/loadavg") as f:
        got["load"] = " ".join(f.read().split()[:3])
    return got


def table(args, d, got):
    """The Markdown table: each network's measured share and bubble (medians of its runs) against
    pnetc's predictions for the measured machine, without and with its profile."""
    cores = ["--cores", str(got["cpus"])]
    print("| network | S | M | batch | measured: slowest stage share, bubble | model: share, bubble (error) | "
          "profile: share, bubble (error) |")
    print("|---|---:|---:|---:|---|---|---|")
    for name, src, S, batch in NETS:
        part = os.path.join(d, name + ".pnet")
        outs = got["nets"][name]["outs"]
        prof = os.path.join(d, name + ".measured.json")
        with open(prof, "w") as f:
            f.write(got["nets"][name]["profile"])
        st = predicted(pnetc(args, "--report", *cores, part))
        pr = predicted(pnetc(args, "--report", "--profile", prof, part))
        bub = statistics.median(float(re.search(r"bubble: measured ([\d.]+)%", o).group(1)) for o in outs)
        # Each stage's busy time averaged over the runs, which put it on every core equally often:
        # when a core runs everything a factor slower, the averages are in the ratio that equal
        # cores would give, which the model assumes (a run's own share is not: the stage on the
        # slower core sets it).
        busy = [[float(x) for x in re.search(r"stages: busy ([\d.e+-, ]+) us per sample", o).group(1).split(",")] for o in outs]
        mean = [statistics.fmean(b[k] for b in busy) for k in range(S)]
        share = 100 * max(mean) / sum(mean)
        M = int(re.search(r"Q = \d+ micro-batches streamed \((\d+) per chunk\)", outs[-1]).group(1))
        if os.environ.get("COST_VERBOSE"):
            print(outs[-1], pnetc(args, "--report", "--profile", prof, part), file=sys.stderr)
        print("| %s | %d | %d | %d | %.0f%%, %.1f%% | %.0f%% (%s), %.1f%% (%s) | %.0f%% (%s), %.1f%% (%s) |" % (
            name, S, M, batch, share, bub, st[1], rel(st[1], share), st[2], rel(st[2], bub), pr[1], rel(pr[1], share),
            pr[2], rel(pr[2], bub)))
    print("\n%d CPUs; load average at the end of the runs: %s" % (got["cpus"], got["load"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pnetc", default=os.path.join(ROOT, "build", "pnetc"))
    ap.add_argument("--seconds", default="3")
    ap.add_argument("--runs", type=int, default=4, help="bench runs per network (stage busy times averaged, the median bubble), taking turns on the cores")
    ap.add_argument("--prepare", metavar="DIR", help="partition and compile into DIR (with --results: predict from there)")
    ap.add_argument("--cpu", help="with --prepare: pnetc --cpu for the executables")
    ap.add_argument("--cores", type=int, help="with --prepare: the CPUs of the machine that will run them (pnetc --cores)")
    ap.add_argument("--exe-dir", metavar="DIR", help="profile and run the executables that --prepare put in DIR")
    ap.add_argument("--out", metavar="M.json", help="with --exe-dir: where the measurements go")
    ap.add_argument("--results", metavar="M.json", help="with --prepare DIR: the table of --exe-dir's measurements")
    args = ap.parse_args()
    if args.exe_dir:
        if not args.out:
            ap.error("--exe-dir needs --out M.json")
        got = measure(args, args.exe_dir)
        with open(args.out, "w") as f:
            json.dump(got, f)
        return
    if args.prepare and args.results:
        with open(args.results) as f:
            table(args, args.prepare, json.load(f))
        return
    if args.prepare:
        prepare(args, args.prepare)
        return
    with tempfile.TemporaryDirectory() as tmp:
        prepare(args, tmp)
        table(args, tmp, measure(args, tmp))


if __name__ == "__main__":
    main()
