#!/usr/bin/env python3
"""Schedules on a busy machine: pnet's throughput with a CPU hog beside it, against a quiet run.

usage: python3 bench/busy.py [--pnetc build/pnetc] [--base OTHER/pnetc] [--seconds S] [--rounds R]
                             [--models mlp_s,cnn,deep_mlp] [--batch N] [--out FILE.md]

For each model (bench/models/*.pnet; deep_mlp gets an mse train block here) and each of
inference and training at --batch (256), it runs `NET bench` with:
  serial     --threads 1
  threads    --threads nproc
  pipeline   the model's `pnetc --auto-partition 2` rewrite with @pipeline(microbatches = 8,
             schedule = 1f1b), --threads nproc
  oversub    --threads 4*nproc (more threads than cores)
each on a quiet machine and again beside a hog: one busy-looping process per core. A round runs
every row quiet, then every row busy; the table shows the median of R rounds (3) and the ratios
the schedules issue sets targets for: busy runs keep at least 70% of the busy serial run, and
oversubscription loses at most 20% against `threads`. With --base, every measurement also runs
the executables of a second compiler right after this one's (interleaved), for before/after
quiet-machine comparisons. Report on stdout (and --out), progress on stderr.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_DEEP = """
    train {
        label     : f32[batch, 1024];
        loss      = mse(y, label);
        optimizer = sgd(lr = 0.001);
        batch     = 64;
    }
}
"""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def source(model):
    text = open(os.path.join(ROOT, "bench", "models", model + ".pnet")).read()
    if "train {" not in text:
        text = text[: text.rstrip().rfind("}")] + TRAIN_DEEP
    return text


def build(pnetc, model, outdir):
    """Compiles the model and its 2-stage auto-partitioned rewrite; returns both executables."""
    src = os.path.join(outdir, model + ".pnet")
    with open(src, "w") as f:
        f.write(source(model))
    plain = os.path.join(outdir, model)
    subprocess.run([pnetc, "-O3", src, "-o", plain], check=True)
    piped_src = os.path.join(outdir, model + "_p2.pnet")
    text = subprocess.run([pnetc, "--auto-partition", "2", src], check=True, capture_output=True, text=True).stdout
    text = re.sub(r"(?m)^ *@pipeline\(.*\);\n", "", text)  # the auto-partition's own micro-batch count
    at = text.find("    train {")
    at = at if at >= 0 else text.rstrip().rfind("}")
    with open(piped_src, "w") as f:
        f.write(text[:at] + "    @pipeline(microbatches = 8, schedule = 1f1b);\n" + text[at:])
    piped = os.path.join(outdir, model + "_p2")
    subprocess.run([pnetc, "-O3", piped_src, "-o", piped], check=True)
    return plain, piped


def measure(cmd, seconds, env=None):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 10 + 60, env=env).stdout
    except subprocess.TimeoutExpired:
        return None
    m = re.search(r"throughput: ([0-9.]+) samples/s", out)
    return float(m.group(1)) if m else None


class Hog:
    """One busy-looping process per core, for the duration of a with-block."""

    def __init__(self, n):
        self.n, self.procs = n, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pnetc", default=os.path.join(ROOT, "build", "pnetc"))
    ap.add_argument("--base", help="a second pnetc, measured interleaved (before/after)")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="mlp_s,cnn,deep_mlp")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out")
    a = ap.parse_args()
    nproc = os.cpu_count() or 1
    tmp = tempfile.mkdtemp(prefix="pnet-busy-")
    builds = {"new": a.pnetc}
    if a.base:
        builds["base"] = a.base
    exes = {}
    for tag, pnetc in builds.items():
        os.makedirs(os.path.join(tmp, tag))
        for m in a.models.split(","):
            exes[tag, m] = build(pnetc, m, os.path.join(tmp, tag))
    rows = []
    for m in a.models.split(","):
        for mode in ("infer", "train"):
            extra = ["--train"] if mode == "train" else []
            for sched, piped, threads in (("serial", False, 1), ("threads", False, nproc), ("pipeline", True, nproc),
                                          ("oversub", False, 4 * nproc)):
                rows.append((m, mode, sched, piped, threads, extra))
    res = {}
    for r in range(a.rounds):
        for load in ("quiet", "busy"):
            log(f"busy.py: round {r + 1}/{a.rounds}, {load}")
            hog = Hog(nproc) if load == "busy" else None
            if hog:
                hog.__enter__()
            try:
                for (m, mode, sched, piped, threads, extra) in rows:
                    for tag in builds:
                        exe = exes[tag, m][1 if piped else 0]
                        cmd = [exe, "bench", "--batch", str(a.batch), "--seconds", str(a.seconds), "--threads",
                               str(threads)] + extra
                        v = measure(cmd, a.seconds)
                        res.setdefault((tag, m, mode, sched, load), []).append(v)
            finally:
                if hog:
                    hog.__exit__()

    def med(key):
        vals = [v for v in res.get(key, []) if v is not None]
        return statistics.median(vals) if vals else None

    def fmt(v, ratio=False):
        if v is None:
            return "—"
        return f"{v:.2f}" if ratio else (f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}")

    lines = [f"Batch {a.batch}, {nproc} cores, median of {a.rounds} rounds of {a.seconds:g} s; busy = one "
             f"busy-looping process per core beside the run. `vs serial`: busy samples/s over the busy serial "
             f"run's; `oversub/threads`: --threads {4 * nproc} over --threads {nproc}, each load.", ""]
    head = "| model | mode | schedule | quiet | busy | busy vs serial | oversub/threads quiet | oversub/threads busy |"
    if a.base:
        head += " quiet new/base |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    ok = True
    for (m, mode, sched, piped, threads, extra) in rows:
        q, b = med(("new", m, mode, sched, "quiet")), med(("new", m, mode, sched, "busy"))
        bs = med(("new", m, mode, "serial", "busy"))
        vs = b / bs if b and bs else None
        o = ["", ""]
        if sched == "oversub":
            for i, load in enumerate(("quiet", "busy")):
                x, t = med(("new", m, mode, "oversub", load)), med(("new", m, mode, "threads", load))
                o[i] = fmt(x / t if x and t else None, True)
        line = f"| {m} | {mode} | {sched} ({threads} thr) | {fmt(q)} | {fmt(b)} | " \
               f"{fmt(vs, True) if sched != 'serial' else ''} | {o[0]} | {o[1]} |"
        if a.base:
            qb = med(("base", m, mode, sched, "quiet"))
            line += f" {fmt(q / qb if q and qb else None, True)} |"
        if q is None or b is None:
            ok = False
        lines.append(line)
    report = "\n".join(lines) + "\n"
    sys.stdout.write(report)
    if a.out:
        with open(a.out, "w") as f:
            f.write(report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
