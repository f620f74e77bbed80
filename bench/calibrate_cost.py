#!/usr/bin/env python3
"""Calibrates pnetc's static cost model (compiler/ir/cost_table.def) on the machine at hand.

For each op kind (convolution, dense, pooling, normalisation, element-wise) it compiles a few
one-layer networks of different shapes with build/pnetc, times each layer with
`./net bench --profile` (one thread, batch 64 by default), which splits a layer's time into a
part per sample and a part per call (`call_s`, from two call sizes), and fits the kind's four
rates to those layers by non-negative least squares on relative error, as compiler/ir/report.c
prices a node: per sample, and per call of any number of samples,

    forward_s - call_s / batch = flops / FLOP/s + bytes / (bytes/s)
    call_s = call + max(0, param bytes - cached) / (param bytes/s)

bytes: the layer's inputs and output per sample; param bytes: its parameters, which every call
reads again (a pipeline's micro-batch too), from memory beyond what a core's cache keeps between
calls (cached: this machine's L2 per core).
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
        ("4096", "dense(x, 4096)"),
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
    per_call = float(p["samples"])  # forward_s and call_s are of calls of min(batch, chunk) samples
    call = min(float(l["call_s"]), float(l["forward_s"]) * per_call)
    row = (float(l["flops"]), 4.0 * (elems(l["type"]) + ins), float(l["forward_s"]) - call / per_call)
    return row, (1.0, max(0.0, 4.0 * l["params"] - cache_bytes()), call), machine["cpu"], machine["target"]


def cache_bytes():
    """A core's L2 (sysfs), which keeps a layer's parameters between its calls where they fit;
    1 MiB where the machine does not say."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(base)):
            with open(os.path.join(base, index, "level")) as f:
                if f.read().strip() != "2":
                    continue
            with open(os.path.join(base, index, "size")) as f:
                size = f.read().strip()
            units = {"K": 1024, "M": 1048576, "G": 1073741824}
            return float(size[:-1]) * units[size[-1]] if size[-1] in units else float(size)
    except (OSError, ValueError):
        pass
    return 1048576.0


def fit(rows, floor):
    """Non-negative least squares of t over two columns: the best subset with both weights >= 0;
    the weights, and the worst layer's error relative to its t plus floor (seconds: a per-call
    part of a few nanoseconds is noise, not a size to fit to)."""
    import numpy as np
    A = np.array([[r[0], r[1]] for r in rows])
    t = np.array([max(r[2], 0.0) for r in rows])
    # Relative error: each layer counts the same whatever its size.
    w = 1.0 / (t + floor)
    best = None
    for k in range(1, 3):
        for cols in itertools.combinations(range(2), k):
            x, *_ = np.linalg.lstsq(A[:, cols] * w[:, None], t * w, rcond=None)
            if (x < 0).any():
                continue
            full = np.zeros(2)
            full[list(cols)] = x
            err = float(np.sum(((A @ full - t) * w) ** 2))
            if best is None or err < best[0]:
                best = (err, full)
    rel = [abs(A[i] @ best[1] - t[i]) * w[i] for i in range(len(t))]
    return abs(best[1][0]), abs(best[1][1]), max(rel)  # abs: no "-0" in the table


def rate(seconds_per_unit):
    return 1.0 / seconds_per_unit if seconds_per_unit > 0 else 1e15


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pnetc", default=os.path.join(ROOT, "build", "pnetc"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="profiles per layer; the least time counts")
    ap.add_argument("--write", action="store_true", help="replace compiler/ir/cost_table.def")
    ap.add_argument("--params-only", action="store_true",
                    help="refit only the parameter columns (parameter bytes/s, cached bytes), keeping the table's "
                         "per-sample and per-call rates")
    args = ap.parse_args()
    if not os.access(args.pnetc, os.X_OK):
        sys.exit("calibrate_cost: %s: no pnetc there; build first or pass --pnetc" % args.pnetc)
    table = os.path.join(ROOT, "compiler", "ir", "cost_table.def")
    kept, provenance = {}, []
    if args.params_only:
        with open(table) as f:
            old = f.read()
        for m in re.finditer(r'PN_COST_KIND\((\w+), "[^"]*", ([^,]+), ([^,]+), ([^,)]+)', old):
            kept[m.group(1)] = tuple(float(x) for x in m.group(2, 3, 4))
        # The kept rates' origin: " * Generated by ... */", or an earlier --params-only's first line.
        provenance = [l.replace(" */", "").replace(" * Generated", " * Per sample and per call: generated")
                      for l in old.splitlines() if l.startswith((" * Generated", " * Per sample and per call:"))]
        if len(kept) != len(KINDS) or not provenance:
            sys.exit("calibrate_cost: %s: not a table of every kind; run without --params-only" % table)
    lines, cpu, target = [], "unknown", "unknown"
    with tempfile.TemporaryDirectory() as tmp:
        for kid, kname, nets in KINDS:
            rows, calls = [], []
            for i, (shape, expr) in enumerate(nets):
                row, per_call, cpu, target = profile(args.pnetc, tmp, "%s_%d" % (kid.lower(), i), shape, expr,
                                                     args.batch, args.threads, args.repeat)
                rows.append(row)
                calls.append(per_call)
                if os.environ.get("CALIBRATE_VERBOSE"):
                    print("  %-40s %12.0f FLOP %10.0f B %10.3g s per sample; %10.0f param B %10.3g s per call" % (
                        expr, row[0], row[1], row[2], per_call[1], per_call[2]), file=sys.stderr)
            a, b, worst = fit(rows, 1e-9)
            call, p, worst_call = fit(calls, 1e-6)
            fr, br, pr = rate(a), rate(b), rate(p)
            if args.params_only:  # the kept rates, printed and written, beside the refitted parameter ones
                fr, br, call = kept[kid]
            print("%-14s %10.3g FLOP/s %10.3g B/s; per call %10.3g s + params beyond %.0f KiB at %10.3g B/s  (worst "
                  "layer off by %.0f%% per sample, %.0f%% per call)" % (kname, fr, br, call, cache_bytes() / 1024, pr,
                                                                      100 * worst, 100 * worst_call))
            lines.append('PN_COST_KIND(%s, "%s", %.3e, %.3e, %.3e, %.3e, %.0f)' % (kid, kname, fr, br, call, pr,
                                                                                 cache_bytes()))
    head = """/* The static cost model's rates per op kind, on one core of the machine that generated it:
 * PN_COST_KIND(ID, name, FLOP/s, bytes/s, seconds per kernel call, parameter bytes/s, cached
 * parameter bytes). A node costs, per sample, flops / FLOP/s + bytes / (bytes/s), where bytes are
 * its inputs and output; and per kernel call, whatever its samples, call + its parameter bytes
 * beyond the cached ones / (parameter bytes/s), since every call reads them again. Regenerate on
 * the machine at hand with
 * `/usr/bin/python3 bench/calibrate_cost.py --write` (docs/schedules.md, "The cost model").
 * %s by bench/calibrate_cost.py on %s (%s), %d thread%s, batch %d, %s. */
""" % ("Parameter columns (--params-only)" if args.params_only else "Generated", cpu, target, args.threads,
       "" if args.threads == 1 else "s", args.batch, time.strftime("%Y-%m-%d", time.gmtime()))
    if args.params_only:  # the kept rates' origin, then the refit's
        head = head.replace(" * Parameter columns", provenance[0] + "\n * Parameter columns")
    text = head + "\n".join(lines) + "\n"
    if args.write:
        with open(table, "w") as f:
            f.write(text)
        print("calibrate_cost: wrote compiler/ir/cost_table.def; rebuild pnetc")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
