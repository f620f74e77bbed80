#!/usr/bin/env python3
"""Scaling of pnet's schedules: samples/s for threads 1..N under each schedule, with speedup and
efficiency against 1 thread, and the measured pipeline bubble next to the predicted one.

usage: scaling.py PNETC [--threads 1,2,4,...] [--batch 256] [--seconds S] [--out FILE.md]
       scaling.py PNETC --prepare DIR [--cpu NAME]   compile every variant into DIR, run nothing
       scaling.py --exe-dir DIR [--threads ...]      run the executables in DIR (made by --prepare)

--prepare and --exe-dir split the work for a machine without pnetc (the 16-core device): compile
here with `--cpu x86-64-v4`, carry DIR, run there (bench/device.sh does both halves).

Models: mlp_l and cnn (bench/models), wide_mlp (examples/wide_mlp.pnet), and deep_mlp
(bench/models: eight equal layers, whose 4-stage partition is balanced, for the bubble target). The layer-parallel
variants with 2 and 4 stages are made by `pnetc --auto-partition`; hybrid is 2 replicas of the
2-stage pipeline. Micro-batches: 16. "batch" runs one replica per thread (--replicas T); "picked"
lets the runtime pick the replicas (--schedule batch alone), and the table shows its choice.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pnetc", nargs="?")
    ap.add_argument("--prepare", help="compile every variant into this directory and stop")
    ap.add_argument("--cpu", help="with --prepare: the target CPU (default: the host)")
    ap.add_argument("--exe-dir", help="run the executables --prepare made here, compiling nothing")
    ap.add_argument("--threads", default=",".join(str(t) for t in sorted({1, 2, 4, 8, 16, os.cpu_count() or 1}) if t <= (os.cpu_count() or 1)))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--microbatches", type=int, default=16)
    ap.add_argument("--out")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    if not a.exe_dir and not a.pnetc:
        ap.error("give PNETC, or --exe-dir DIR")
    tmp = a.prepare or a.exe_dir or tempfile.mkdtemp(prefix="pnet-scaling-")
    os.makedirs(tmp, exist_ok=True)
    cpu = ["--cpu", a.cpu] if a.cpu else []
    models = {"mlp_l": os.path.join(HERE, "models", "mlp_l.pnet"), "cnn": os.path.join(HERE, "models", "cnn.pnet"),
              "wide_mlp": os.path.join(ROOT, "examples", "wide_mlp.pnet"),
              "deep_mlp": os.path.join(HERE, "models", "deep_mlp.pnet")}
    rows = []
    for name, src in models.items():
        variants = {"batch": src, "picked": src}
        for s in (2, 4):
            part = os.path.join(tmp, f"{name}_s{s}.pnet")
            if a.exe_dir:
                variants[f"pipeline{s}"] = part
                continue
            p = subprocess.run([a.pnetc, "-I", os.path.join(ROOT, "stdlib"), "--auto-partition", str(s), src, "-o", part],
                               capture_output=True, text=True)
            if p.returncode == 0:
                variants[f"pipeline{s}"] = part
            else:
                print(f"{name}: no {s}-stage partition: {p.stderr.strip()}", file=sys.stderr)
        if "pipeline2" in variants:
            variants["hybrid"] = variants["pipeline2"]
        for vname, vsrc in variants.items():
            exe = os.path.join(tmp, f"{name}_{'batch' if vname == 'picked' else vname}")
            if a.exe_dir or vname == "picked":  # picked runs the batch variant's executable
                if not os.path.exists(exe):
                    print(f"{name} {vname}: no {exe}", file=sys.stderr)
                    continue
            else:
                p = subprocess.run([a.pnetc, "-I", os.path.join(ROOT, "stdlib"), *cpu, vsrc, "-o", exe],
                                   capture_output=True, text=True)
                if p.returncode != 0:
                    print(f"{name} {vname}: compile failed: {p.stderr.strip()}", file=sys.stderr)
                    continue
            if a.prepare:
                continue
            base = None
            for t in threads:
                sched = {"batch": ["--schedule", "batch", "--replicas", str(t)], "picked": ["--schedule", "batch"],
                         "hybrid": ["--schedule", "hybrid", "--replicas", "2"]}
                args = sched.get(vname, ["--schedule", "pipeline"])
                cmd = [exe, "bench", "--batch", str(a.batch), "--seconds", str(a.seconds), "--threads", str(t),
                       "--microbatches", str(a.microbatches), *args]
                out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PNET_ADAPTIVE_THREADS="0")).stdout
                m = re.search(r"throughput: ([0-9.]+)", out)
                if not m:
                    continue
                sps = float(m.group(1))
                base = base or sps
                b = re.search(r"bubble: measured ([0-9.]+)%[^,]*, predicted ([0-9.]+)%", out)
                r = re.search(r"replicas ([0-9]+)", out)
                rows.append((name, vname, t, sps, sps / base, sps / base / t, b.group(1) if b else "", b.group(2) if b else "",
                             r.group(1) if r else ""))
                print(f"{name} {vname} threads {t}: {sps:,.0f} samples/s", file=sys.stderr)
    if a.prepare:
        print(f"scaling.py: executables in {tmp}", file=sys.stderr)
        return
    lines = [f"pnet scaling, batch {a.batch}, {a.microbatches} micro-batches, {os.cpu_count()} cores", "",
             "| model | schedule | threads | replicas | samples/s | speedup | efficiency | bubble measured | bubble predicted |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[8]} | {r[3]:,.0f} | {r[4]:.2f}× | {100 * r[5]:.0f}% | "
                     f"{r[6] + '%' if r[6] else ''} | {r[7] + '%' if r[7] else ''} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
