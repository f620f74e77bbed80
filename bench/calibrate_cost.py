#!/usr/bin/env python3
"""Calibrates pnetc's static cost model (compiler/ir/cost_table.def) on the machine at hand.

For each op kind (convolution, dense, pooling, normalisation, element-wise) it compiles a few
one-layer networks of different shapes with build/pnetc, times each layer with
`./net bench --profile` (one thread, batch 64 by default), which splits a layer's time into a
part per sample and a part per call (`call_s`, from two call sizes), and fits the kind's four
rates to those layers by non-negative least squares on relative error, as compiler/ir/report.c
prices a node: per sample, and per call of any number of samples,

    forward_s - call_s / batch = flops / FLOP/s + bytes / (bytes/s)
                                 [+ gathered / (elements/s) + rows / (rows/s)]
    call_s = call + max(0, param bytes - cached) / (param bytes/s)

bytes: the layer's inputs and output per sample; gathered and rows: a convolution's patch panel
(input channels x taps x output pixels, and one row per output row of each), for the kernel that
gathers it (padded or strided), not the one that reads its input in place or pools inside; param bytes: its parameters, which every call
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
    # The three kernels of a convolution: an implicit GEMM that gathers its patches (padded or
    # strided), one that reads its input in place (stride 1, no padding), and one with its
    # max-pool inside (pass_fuse_pool).
    ("CONV", "convolution", [
        ("1, 28, 28", "conv2d(x, 6, 5, padding = 2)"),
        ("1, 28, 28", "conv2d(x, 16, 5, padding = 2)"),
        ("1, 28, 28", "conv2d(x, 32, 3, padding = 1)"),
        ("3, 32, 32", "conv2d(x, 16, 3, padding = 1)"),
        ("8, 32, 32", "conv2d(x, 8, 3, padding = 1)"),
        ("16, 32, 32", "conv2d(x, 16, 3, padding = 1)"),
        ("16, 32, 32", "conv2d(x, 32, 3, stride = 2, padding = 1)"),
        ("32, 16, 16", "conv2d(x, 32, 3, padding = 1)"),
        ("32, 16, 16", "conv2d(x, 96, 3, padding = 1)"),
        ("64, 8, 8", "conv2d(x, 64, 3, padding = 1)"),
        ("3, 64, 64", "conv2d(x, 32, 7, stride = 2, padding = 3)"),
        ("6, 14, 14", "conv2d(x, 16, 5)"),
        ("16, 32, 32", "conv2d(x, 16, 3)"),
        ("32, 16, 16", "conv2d(x, 64, 3)"),
        ("16, 16, 16", "conv2d(x, 64, 1)"),
        ("64, 16, 16", "conv2d(x, 16, 1)"),
        ("1, 28, 28", "maxpool2d(relu(conv2d(x, 6, 5, padding = 2)), 2)"),
        ("6, 14, 14", "maxpool2d(relu(conv2d(x, 16, 5)), 2)"),
        ("16, 32, 32", "maxpool2d(relu(conv2d(x, 32, 3, padding = 1)), 2)"),
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


def dims(type_text):
    """The dimensions after the batch of "f32[batch,16,32,32]"."""
    return [int(d) for d in re.findall(r"\d+", type_text.split("[", 1)[1])]


# The GEMM tile's rows that compiler/ir/report.c assumes (PN_COST_MR).
COST_MR = 8


def gathered(shape, expr, out_type):
    """A convolution's panel per sample, as compiler/ir/report.c counts it: (elements, rows), or
    (0, 0) where its kernel gathers nothing (pn_conv_gathers: stride 1 without padding in one
    group, groups of fewer than COST_MR channels, or a max-pool inside)."""
    m = re.match(r"conv2d\(x, (\d+), (\d+)((?:, \w+ = \d+)*)\)$", expr)
    if not m:
        return 0, 0
    oc, k = int(m.group(1)), int(m.group(2))
    opt = {a: int(v) for a, v in re.findall(r"(\w+) = (\d+)", m.group(3))}
    groups = opt.get("groups", 1)
    if groups == 1 and opt.get("stride", 1) == 1 and opt.get("padding", 0) == 0 or groups > 1 and oc // groups < COST_MR:
        return 0, 0
    c = int(shape.split(",")[0])
    oh, ow = dims(out_type)[1:3]
    return c * k * k * oh * ow, c * k * k * oh


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
    # A conv with its max-pool inside stores the pooled map (the network's output y), as
    # compiler/ir/report.c counts it.
    out_type = types["y"] if expr.startswith("maxpool2d(") else l["type"]
    per_call = float(p["samples"])  # forward_s and call_s are of calls of min(batch, chunk) samples
    call = min(float(l["call_s"]), float(l["forward_s"]) * per_call)
    row = (float(l["flops"]), 4.0 * (elems(out_type) + ins)) + gathered(shape, expr, l["type"]) + (
        float(l["forward_s"]) - call / per_call,)
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
    """Non-negative least squares of t (each row's last column) over the columns before it: the
    best subset with every weight >= 0; the weights, and the worst layer's error relative to its t
    plus floor (seconds: a per-call part of a few nanoseconds is noise, not a size to fit to)."""
    import numpy as np
    n = len(rows[0]) - 1
    A = np.array([r[:n] for r in rows], dtype=float)
    t = np.array([max(r[n], 0.0) for r in rows])
    # Relative error: each layer counts the same whatever its size.
    w = 1.0 / (t + floor)
    best = None
    for k in range(1, n + 1):
        for cols in itertools.combinations(range(n), k):
            x, *_ = np.linalg.lstsq(A[:, cols] * w[:, None], t * w, rcond=None)
            if (x < 0).any():
                continue
            full = np.zeros(n)
            full[list(cols)] = x
            err = float(np.sum(((A @ full - t) * w) ** 2))
            if best is None or err < best[0]:
                best = (err, full)
    rel = [abs(A[i] @ best[1] - t[i]) * w[i] for i in range(len(t))]
    return tuple(abs(v) for v in best[1]) + (max(rel),)  # abs: no "-0" in the table


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
        for m in re.finditer(r'PN_COST_KIND\((\w+), "[^"]*", ([^,]+), ([^,]+), ([^,]+), [^,]+, [^,]+, ([^,]+), ([^,)]+)\)',
                             old):
            kept[m.group(1)] = tuple(float(x) for x in m.group(2, 3, 4, 5, 6))
        # The kept rates' origin: " * Generated by ... */", or an earlier --params-only's first line.
        provenance = [l.replace(" */", "").replace(" * Generated", " * Per sample and per call: generated")
                      for l in old.splitlines() if l.startswith((" * Generated", " * Per sample and per call:"))]
        if len(kept) != len(KINDS) or not provenance:
            sys.exit("calibrate_cost: %s: not a table of every kind in this format; regenerate it without --params-only"
                     % table)
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
                    print("  %-50s %10.0f FLOP %8.0f B %8.0f gathered %6.0f rows %10.3g s per sample; %10.0f param B "
                          "%10.3g s per call" % (expr, row[0], row[1], row[2], row[3], row[4], per_call[1], per_call[2]),
                          file=sys.stderr)
            a, b, ge, gr, worst = fit(rows, 1e-9)
            call, p, worst_call = fit(calls, 1e-6)
            fr, br, pr, gr = rate(a), rate(b), rate(p), rate(gr)
            ge = rate(ge)
            if args.params_only:  # the kept rates, printed and written, beside the refitted parameter ones
                fr, br, call, ge, gr = kept[kid]
            print("%-14s %10.3g FLOP/s %10.3g B/s; gathered %10.3g elements/s, %10.3g rows/s; per call %10.3g s + "
                  "params beyond %.0f KiB at %10.3g B/s  (worst layer off by %.0f%% per sample, %.0f%% per call)" % (
                      kname, fr, br, ge, gr, call, cache_bytes() / 1024, pr, 100 * worst, 100 * worst_call))
            lines.append('PN_COST_KIND(%s, "%s", %.3e, %.3e, %.3e, %.3e, %.0f, %.3e, %.3e)' % (
                kid, kname, fr, br, call, pr, cache_bytes(), ge, gr))
    head = """/* The static cost model's rates per op kind, on one core of the machine that generated it:
 * PN_COST_KIND(ID, name, FLOP/s, bytes/s, seconds per kernel call, parameter bytes/s, cached
 * parameter bytes, gathered elements/s, gathered rows/s). A node costs, per sample, flops / FLOP/s
 * + bytes / (bytes/s), where bytes are its inputs and output, plus for a convolution that gathers
 * its patches (pn_conv_gathers) its panel's elements and rows at their rates; and per kernel
 * call, whatever its samples, call + its parameter bytes beyond the cached ones / (parameter
 * bytes/s), since every call reads them again. Regenerate on
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
