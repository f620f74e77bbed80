#!/usr/bin/env python3
"""Calibrates pnetc's static cost model (compiler/ir/cost_table.def) on the machine at hand.

For each op kind (convolution, dense, pooling, normalisation, element-wise) it compiles a few
one-layer networks of different shapes with build/pnetc, times each layer with
`./net bench --profile` (one thread, batch 64 by default), and fits the kind's three rates to the
seconds per sample t of those layers by non-negative least squares, as compiler/ir/report.c
prices a node:

    t = flops / FLOP/s + bytes / (bytes/s) + call / batch

bytes: the layer's inputs and output, and its parameters once per 64 samples (PN_COST_BATCH).
Prints the table, and with --write replaces compiler/ir/cost_table.def (then rebuild pnetc).

    /usr/bin/python3 bench/calibrate_cost.py [--pnetc build/pnetc] [--batch 64] [--repeat 3] [--write]

CALIBRATE_VERBOSE=1 also prints every layer's FLOPs, bytes and seconds per sample.
"""
import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# kind id, name, then (input shape without the batch, the layer's expression of x) per network.
KINDS = [
    ("CONV", "convolution", [
        ("1, 28, 28", "conv2d(x, 6, 5, padding = 2)"),
        ("6, 14, 14", "conv2d(x, 16, 5)"),
        ("16, 32, 32", "conv2d(x, 16, 3, padding = 1)"),
        ("32, 16, 16", "conv2d(x, 32, 3, padding = 1)"),
        ("3, 32, 32", "conv2d(x, 16, 3, padding = 1)"),
        ("64, 8, 8", "conv2d(x, 64, 3, padding = 1)"),
    ]),
    ("DENSE", "dense", [
        ("400", "dense(x, 120)"),
        ("84", "dense(x, 10)"),
        ("256", "dense(x, 256)"),
        ("1024", "dense(x, 1024)"),
        ("784", "dense(x, 4096)"),
        ("4096", "dense(x, 64)"),
    ]),
    ("POOL", "pooling", [
        ("6, 28, 28", "maxpool2d(x, 2)"),
        ("16, 32, 32", "maxpool2d(x, 2)"),
        ("32, 16, 16", "avgpool2d(x, 2)"),
        ("32, 16, 16", "global_avgpool(x)"),
        ("64, 32, 32", "maxpool2d(x, 3, stride = 2, padding = 1)"),
    ]),
    ("NORM", "normalisation", [
        ("16, 32, 32", "batchnorm(x)"),
        ("32, 16, 16", "batchnorm(x)"),
        ("1024", "layernorm(x)"),
        ("10", "softmax(x)"),
        ("1000", "softmax(x)"),
    ]),
    ("ELTWISE", "element-wise", [
        ("1024", "relu(x)"),
        ("16, 32, 32", "relu(x)"),
        ("4096", "sigmoid(x)"),
        ("4096", "x + x"),
        ("16, 32, 32", "tanh(x)"),
        ("256", "gelu(x)"),
    ]),
]
BATCH_SHARE = 64  # PN_COST_BATCH in compiler/ir/report.h


def elems(type_text):
    """Elements per sample of "f32[batch,16,32,32]"."""
    dims = re.findall(r"\d+", type_text.split("[", 1)[1])
    n = 1
    for d in dims:
        n *= int(d)
    return n


def profile(pnetc, tmp, name, shape, expr, batch, threads, repeat):
    src = os.path.join(tmp, name + ".pnet")
    with open(src, "w") as f:
        f.write("network %s {\n    input x : f32[batch, %s];\n    y = %s;\n    output out = y;\n}\n" % (name, shape, expr))
    exe = os.path.join(tmp, name)
    subprocess.run([pnetc, src, "-o", exe], check=True)
    prof = os.path.join(tmp, name + ".json")
    best = None
    for _ in range(repeat):  # the least of a few profiles: a busy machine only ever slows a layer down
        subprocess.run([exe, "bench", "--batch", str(batch), "--threads", str(threads), "--seconds", "0.2", "--profile",
                        prof], check=True, stdout=subprocess.DEVNULL)
        with open(prof) as f:
            p = json.load(f)
        types = {l["name"]: l["type"] for l in p["layers"]}
        layer = next((l for l in p["layers"] if l["kernel"]), None)
        if layer is None:
            raise SystemExit("calibrate_cost: %s: no layer with a kernel in the profile" % name)
        if best is None or layer["forward_s"] < best[0]["forward_s"]:
            best = (layer, types, p["machine"])
    l, types, machine = best
    ins = sum(elems(types[i.strip()]) for i in l["inputs"].split(",") if i.strip() in types)
    nbytes = 4.0 * (elems(l["type"]) + ins) + 4.0 * l["params"] / BATCH_SHARE
    return float(l["flops"]), nbytes, float(l["forward_s"]), machine["cpu"], machine["target"]


def fit(rows, batch):
    """Non-negative least squares over (flops, bytes, 1/batch): the best subset with all weights >= 0."""
    import numpy as np
    A = np.array([[r[0], r[1], 1.0 / batch] for r in rows])
    t = np.array([r[2] for r in rows])
    # Relative error: each layer counts the same whatever its size.
    w = 1.0 / t
    best = None
    for k in range(1, 4):
        for cols in itertools.combinations(range(3), k):
            x, *_ = np.linalg.lstsq(A[:, cols] * w[:, None], t * w, rcond=None)
            if (x < 0).any():
                continue
            full = np.zeros(3)
            full[list(cols)] = x
            err = float(np.sum(((A @ full - t) * w) ** 2))
            if best is None or err < best[0]:
                best = (err, full)
    a, b, c = best[1]
    flops_rate = 1.0 / a if a > 0 else 1e15
    bytes_rate = 1.0 / b if b > 0 else 1e15
    rel = [abs(A[i] @ best[1] - t[i]) / t[i] for i in range(len(t))]
    return flops_rate, bytes_rate, c, max(rel)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pnetc", default=os.path.join(ROOT, "build", "pnetc"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="profiles per layer; the least time counts")
    ap.add_argument("--write", action="store_true", help="replace compiler/ir/cost_table.def")
    args = ap.parse_args()
    if not os.access(args.pnetc, os.X_OK):
        sys.exit("calibrate_cost: %s: no pnetc there; build first or pass --pnetc" % args.pnetc)
    lines, cpu, target = [], "unknown", "unknown"
    with tempfile.TemporaryDirectory() as tmp:
        for kid, kname, nets in KINDS:
            rows = []
            for i, (shape, expr) in enumerate(nets):
                fl, nb, t, cpu, target = profile(args.pnetc, tmp, "%s_%d" % (kid.lower(), i), shape, expr, args.batch,
                                                 args.threads, args.repeat)
                rows.append((fl, nb, t))
                if os.environ.get("CALIBRATE_VERBOSE"): print("  %-40s %12.0f FLOP %10.0f B %10.3g s" % (expr, fl, nb, t), file=sys.stderr)
            fr, br, call, worst = fit(rows, args.batch)
            print("%-14s %10.3g FLOP/s %10.3g B/s %10.3g s per call  (worst layer off by %.0f%%)" % (kname, fr, br, call,
                                                                                                     100 * worst))
            lines.append('PN_COST_KIND(%s, "%s", %.3e, %.3e, %.3e)' % (kid, kname, fr, br, call))
    head = """/* The static cost model's rates per op kind, on one core of the machine that generated it:
 * PN_COST_KIND(ID, name, FLOP/s, bytes/s, seconds per kernel call). A node costs, per sample,
 * flops / FLOP/s + bytes / (bytes/s) + call / samples per call, where bytes are its inputs and
 * output and its parameters once per PN_COST_BATCH samples. Regenerate on the machine at hand with
 * `/usr/bin/python3 bench/calibrate_cost.py --write` (docs/schedules.md, "The cost model").
 * Generated by bench/calibrate_cost.py on %s (%s), %d thread%s, batch %d, %s. */
""" % (cpu, target, args.threads, "" if args.threads == 1 else "s", args.batch, time.strftime("%Y-%m-%d", time.gmtime()))
    text = head + "\n".join(lines) + "\n"
    if args.write:
        with open(os.path.join(ROOT, "compiler", "ir", "cost_table.def"), "w") as f:
            f.write(text)
        print("calibrate_cost: wrote compiler/ir/cost_table.def; rebuild pnetc")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
