#!/usr/bin/python3
"""Runs pnet, ONNX Runtime and PyTorch side by side and prints a Markdown table.

Called by bench/run.sh once everything is built, installed and exported:
  /usr/bin/python3 bench/compare.py --exe-dir DIR --onnx-dir DIR [--seconds S] [--peak GFLOPS]
                                    [--models a,b] [--batches 1,64,256] [--threads 1,N]
                                    [--out FILE.md] [--blas-lib DIR] [--python PY]
For every model x batch x threads the three are measured one after another (interleaved), each
in its own process, so that drifting machine load hits all three alike. PyTorch on T threads is
measured in each configuration torch {1, T} x BLAS {1, T} and the fastest one is reported, with
its name (bench/peer.py: a peer runs as its users would tune it).
"""
import argparse
import datetime
import os
import platform
import re
import subprocess
import sys

import peer

HERE = os.path.dirname(os.path.abspath(__file__))
THROUGHPUT = re.compile(r"throughput:\s*([0-9.eE+-]+)\s*samples/s")
FLOPS = re.compile(r"total:.*?([0-9]+)\s+FLOPs per sample")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, env=None, timeout=None):
    """Runs cmd; returns its samples/s, or None (with the reason logged) when it failed."""
    try:
        p = subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        log(f"  timed out: {' '.join(cmd)}")
        return None
    m = THROUGHPUT.search(p.stdout)
    if p.returncode != 0 or not m:
        log(f"  failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stdout[-800:]}{p.stderr[-1500:]}")
        return None
    return float(m.group(1))


def flops_per_sample(exe):
    out = subprocess.run([exe, "info"], capture_output=True, text=True, check=True).stdout
    m = FLOPS.search(out)
    if not m:
        sys.exit(f"compare: no 'total: ... FLOPs per sample' line in '{exe} info'")
    return int(m.group(1))


def fmt(x):
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def ratio(a, b):
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def ints(s):
    return [int(v) for v in s.split(",") if v]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exe-dir", required=True, help="the compiled pnet executables, one per model")
    ap.add_argument("--onnx-dir", required=True, help="the exported MODEL.onnx files")
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    ap.add_argument("--peak", type=float, default=440.0, help="the machine's fp32 peak, GFLOP/s")
    ap.add_argument("--models", default="mlp_s,mlp_l,cnn")
    ap.add_argument("--batches", default="1,64,256")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}")
    ap.add_argument("--out", help="also write the Markdown report to this file")
    ap.add_argument("--blas-lib", help="a directory with an optimised libblas.so.3 for PyTorch")
    ap.add_argument("--python", default=sys.executable, help="the interpreter that runs torch_bench.py")
    a = ap.parse_args()

    models = [m for m in a.models.split(",") if m]
    batches = ints(a.batches)
    threads = sorted(set(ints(a.threads)))
    all_threads = max(threads)
    secs = a.seconds
    timeout = secs * 3 + 120  # generous: covers start-up and loading mlp_l's 160 MiB

    torch_env = dict(os.environ)
    if a.blas_lib:
        torch_env["LD_LIBRARY_PATH"] = a.blas_lib + (
            ":" + torch_env["LD_LIBRARY_PATH"] if torch_env.get("LD_LIBRARY_PATH") else "")

    flops = {m: flops_per_sample(os.path.join(a.exe_dir, m)) for m in models}
    rows = []
    for m in models:
        exe = os.path.join(a.exe_dir, m)
        onnx = os.path.join(a.onnx_dir, m + ".onnx")
        for b in batches:
            for t in threads:
                env = dict(os.environ, OMP_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t))
                common = ["--batch", str(b), "--threads", str(t), "--seconds", str(secs)]
                r_pnet = run([exe, "bench"] + common, env=env, timeout=timeout)
                r_ort = run(["node", os.path.join(HERE, "ort_bench.js"), onnx] + common,
                            env=env, timeout=timeout)
                tried = {}
                for tt, bb in peer.configs(t):
                    tried[tt, bb] = run([a.python, os.path.join(HERE, "torch_bench.py"), m, "--batch",
                                         str(b), "--threads", str(tt), "--seconds", str(secs)],
                                        env=peer.env(torch_env, bb), timeout=timeout)
                cfg, r_torch = peer.best(tried)
                rows.append((m, b, t, r_pnet, r_ort, r_torch, cfg))
                log(f"  {m:6} batch {b:4} threads {t}: pnet {fmt(r_pnet)}  ORT {fmt(r_ort)}  PyTorch "
                    + ", ".join(f"{peer.label(c)}: {fmt(v)}" for c, v in tried.items()) + " samples/s")

    lines = []
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines.append(f"pnet vs ONNX Runtime vs PyTorch — {stamp}, {platform.node()}, "
                 f"{os.cpu_count()} cores, {secs:g} s per measurement")
    lines.append("")
    lines.append("| model | batch | threads | pnet samples/s | ORT samples/s | PyTorch samples/s "
                 "| PyTorch torch × BLAS threads | pnet/ORT | pnet/PyTorch |")
    lines.append("|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for m, b, t, p, o, q, c in rows:
        lines.append(f"| {m} | {b} | {t} | {fmt(p)} | {fmt(o)} | {fmt(q)} | "
                     f"{'—' if c is None else peer.label(c)} | {ratio(p, o)} | {ratio(p, q)} |")
    lines.append("")
    lines.append("PyTorch at its fastest of torch {1, T} × BLAS {1, T} threads on T threads "
                 "(bench/peer.py).")
    lines.append("")
    big = max(batches)
    lines.append(f"Batch {big}, {all_threads} threads: GFLOP/s and share of the "
                 f"{a.peak:g} GFLOP/s fp32 peak (FLOPs per sample from `EXE info`)")
    lines.append("")
    lines.append("| model | FLOPs/sample | pnet GFLOP/s | ORT GFLOP/s | PyTorch GFLOP/s "
                 "| pnet % peak | ORT % peak | PyTorch % peak |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for m, b, t, p, o, q, _ in rows:
        if b != big or t != all_threads:
            continue
        g = [None if v is None else v * flops[m] / 1e9 for v in (p, o, q)]
        pct = ["—" if v is None else f"{100 * v / a.peak:.1f}%" for v in g]
        lines.append(f"| {m} | {flops[m]:,} | {fmt(g[0])} | {fmt(g[1])} | {fmt(g[2])} | "
                     f"{pct[0]} | {pct[1]} | {pct[2]} |")
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if a.out:
        with open(a.out, "w") as f:
            f.write(report)
        log(f"compare: wrote {a.out}")
    if any(v is None for r in rows for v in r[3:6]):
        sys.exit(1)


if __name__ == "__main__":
    main()
