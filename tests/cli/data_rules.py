#!/usr/bin/env python3
"""The data rules every loader and `infer` share (docs/training.md, "Data"): uint8 samples mean the same
thing in an IDX file and a .npy file, for train, eval and infer alike, and each says what it did; one shape
rule, so infer takes the (n, 4, 5) array that train and eval take for f32[batch, 1, 4, 5], and its error
names the file's real dtype; and the CSV label column, chosen with --label-column and checked.

usage: data_rules.py PNETC
"""
import os
import struct
import subprocess
import sys
import tempfile

PNETC = sys.argv[1]
os.environ["PNET_ADAPTIVE_THREADS"] = "0"
TMP = tempfile.mkdtemp(prefix="pnet-data-rules-")
N, H, W, CLASSES = 24, 4, 5, 3
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def path(name):
    return os.path.join(TMP, name)


def npy(name, dtype, shape, values):
    """A .npy file (format 1.0) written by hand: dtype 'f4', 'i4' or 'u1'."""
    descr = {"f4": "<f4", "i4": "<i4", "u1": "|u1"}[dtype]
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join(f"{d}, " for d in shape) if len(shape) != 1 else f"{shape[0]},")
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    data = struct.pack("<%d%s" % (len(values), {"f4": "f", "i4": "i", "u1": "B"}[dtype]), *values)
    with open(path(name), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data)
    return path(name)


def idx(name, dims, values):
    """An IDX file of uint8 values, as MNIST stores them."""
    with open(path(name), "wb") as f:
        f.write(bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(values))
    return path(name)


def text(name, content):
    with open(path(name), "w") as f:
        f.write(content)
    return path(name)


def run(*args):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def expect_error(name, args, *needles):
    """Exit status 1 and exactly one stderr line, holding 'error' and every needle."""
    rc, out, err = run(*args)
    lines = [l for l in err.splitlines() if l.strip()]
    check(name, rc == 1 and len(lines) == 1 and "error" in err and all(n in err for n in needles),
          f"(rc={rc}, want {needles!r}, stderr={err.strip()[:400]!r})")


def read(p):
    with open(p, "rb") as f:
        return f.read()


net = path("img")
src = text("img.pnet", """network img {
    input x : f32[batch, 1, 4, 5];
    f  = flatten(x);
    fc = dense(f, 3);
    output probs = softmax(fc);
    train {
        label     : i32[batch];
        loss      = cross_entropy(fc, label);
        optimizer = sgd(lr = 0.5);
        batch     = 4;
    }
}
""")
rc, _, err = run(PNETC, src, "-o", net)
check("compile", rc == 0, err)
if rc != 0:
    sys.exit(1)

# The same images four ways: uint8 IDX, uint8 .npy of shape (n, 4, 5), and float32 .npy of (n, 20) holding the
# bytes divided by 255, or the bytes themselves.
pixels = [(i * 37 + (i // 20) * 11) % 256 for i in range(N * H * W)]
labels = [i % CLASSES for i in range(N)]
x_idx, y_idx = idx("x-idx3-ubyte", [N, H, W], pixels), idx("y-idx1-ubyte", [N], labels)
x_u8 = npy("x_u8.npy", "u1", [N, H, W], pixels)
x_01 = npy("x_01.npy", "f4", [N, H * W], [v / 255.0 for v in pixels])
x_raw = npy("x_raw.npy", "f4", [N, H * W], [float(v) for v in pixels])
y = npy("y.npy", "i4", [N], labels)
SCALED = "uint8 samples divided by 255, to [0, 1] (--no-scale keeps 0..255)"

# 1. uint8 means the same thing everywhere: training on any of the three scaled forms gives the same weights.
ck = {}
for name, x, yy, extra in (("idx", x_idx, y_idx, []), ("u8", x_u8, y, []), ("01", x_01, y, []),
                           ("u8 --no-scale", x_u8, y, ["--no-scale"]), ("raw", x_raw, y, [])):
    ck[name] = path(name.replace(" ", "") + ".st")
    rc, out, err = run(net, "train", "--data", x, "--labels", yy, "--epochs", "2", "--no-shuffle", "--save", ck[name],
                       *extra)
    check(f"train on {name}", rc == 0 and "epoch 2/2" in out, out + err)
    if name in ("idx", "u8"):
        check(f"train on {name} says how it scaled", err == f"img: note: {x}: {SCALED}\n", repr(err))
    elif name == "u8 --no-scale":
        check("train --no-scale says so", err == f"img: note: {x}: uint8 samples kept as 0..255 (--no-scale)\n",
              repr(err))
    else:
        check(f"train on {name}: float32 is not scaled, and nothing is said", err == "", repr(err))
check("uint8 .npy trains as the IDX file does", read(ck["idx"]) == read(ck["u8"]))
check("uint8 .npy trains as float32 / 255 does", read(ck["u8"]) == read(ck["01"]))
check("--no-scale trains as the raw bytes in float32 do", read(ck["u8 --no-scale"]) == read(ck["raw"]))
check("scaling changes training", read(ck["u8"]) != read(ck["raw"]))

# eval: the same accuracy and loss from the IDX file, the uint8 .npy and the float32 one.
evals = {}
for name, x, yy in (("idx", x_idx, y_idx), ("u8", x_u8, y), ("01", x_01, y)):
    rc, out, err = run(net, "eval", "--data", x, "--labels", yy, "--weights", ck["idx"])
    evals[name] = out
    check(f"eval on {name}", rc == 0 and out.startswith("accuracy: "), out + err)
    check(f"eval on {name} says how it scaled", err == ("" if name == "01" else f"img: note: {x}: {SCALED}\n"), repr(err))
check("eval agrees on IDX, uint8 .npy and float32 .npy", evals["idx"] == evals["u8"] == evals["01"], repr(evals))
rc, out, err = run(net, "eval", "--data", x_u8, "--labels", y, "--weights", ck["idx"], "--no-scale")
check("eval --no-scale differs", rc == 0 and out != evals["u8"], out + err)
rc, out, err = run(net, "eval", "--data", x_01, "--labels", y, "--weights", ck["idx"], "--no-scale")
check("--no-scale on float32 data is a note", rc == 0 and out == evals["01"] and
      err == f"img: note: --no-scale has no effect on {x_01}: it holds float32, and only uint8 samples are scaled\n",
      repr(err))

# 2. infer: the (n, 4, 5) uint8 array train and eval take, scaled by the same rule.
infer = {}
for name, x, extra in (("u8", x_u8, []), ("01", x_01, []), ("u8 --no-scale", x_u8, ["--no-scale"]),
                       ("raw", x_raw, [])):
    rc, out, err = run(net, "infer", "--input", "x=" + x, "--weights", ck["idx"], *extra)
    infer[name] = out
    check(f"infer on {name}", rc == 0 and out.startswith("probs: f32[batch,3], batch 24\n"), out + err)
check("infer says how it scaled", run(net, "infer", "--input", x_u8, "--weights", ck["idx"])[2] ==
      f"img: note: {x_u8}: {SCALED}\n")
check("infer of uint8 equals infer of float32 / 255", infer["u8"] == infer["01"])
check("infer --no-scale equals infer of the raw bytes", infer["u8 --no-scale"] == infer["raw"])
x_4d = npy("x_4d.npy", "f4", [N, 1, H, W], [v / 255.0 for v in pixels])
check("infer of the input's own shape", run(net, "infer", "--input", x_4d, "--weights", ck["idx"])[1] == infer["01"])
bad = npy("x_bad.npy", "u1", [N, H, W + 1], [0] * (N * H * (W + 1)))
expect_error("infer names the file's dtype and shape", [net, "infer", "--input", "x=" + bad, "--weights", ck["idx"]],
             f"{bad}: expected 20 values per sample (input 'x' f32[batch,1,4,5]), found uint8 of shape (24, 4, 6)")
expect_error("train names the file's dtype and shape", [net, "train", "--data", bad, "--labels", y],
             f"{bad}: expected 20 values per sample (input 'x' f32[batch,1,4,5]), found uint8 of shape (24, 4, 6)")
expect_error("infer --no-scale twice", [net, "infer", "--input", x_u8, "--no-scale", "--no-scale"],
             "--no-scale given twice")

# 3. The CSV label column: the raw bytes with the label last, first, or third.
def csv(name, col):
    rows = []
    for i in range(N):
        f = [str(v) for v in pixels[i * H * W:(i + 1) * H * W]]
        f.insert(len(f) if col == "last" else col - 1, str(labels[i]))
        rows.append(",".join(f) + "\n")
    return text(name, "".join(rows))


last, first, third = csv("last.csv", "last"), csv("first.csv", 1), csv("third.csv", 3)
for name, data, extra in (("last", last, []), ("--label-column last", last, ["--label-column", "last"]),
                          ("--label-column first", first, ["--label-column", "first"]),
                          ("--label-column 1", first, ["--label-column", "1"]),
                          ("--label-column 3", third, ["--label-column", "3"])):
    out_st = path("csv.st")
    rc, out, err = run(net, "train", "--data", data, "--epochs", "2", "--no-shuffle", "--save", out_st, *extra)
    check(f"CSV {name} trains as the raw bytes do", rc == 0 and err == "" and read(out_st) == read(ck["raw"]),
          out + err)
rc, out, err = run(net, "eval", "--data", first, "--label-column", "first", "--weights", ck["raw"])
rc2, out2, _ = run(net, "eval", "--data", x_raw, "--labels", y, "--weights", ck["raw"])
check("eval --label-column first", rc == 0 and rc2 == 0 and out == out2 and out.startswith("accuracy: "), out + err)
rc, out, err = run(net, "train", "--data", first, "--val", first, "--label-column", "first", "--epochs", "1")
check("--label-column holds for --val", rc == 0 and "val_accuracy" in out, out + err)
expect_error("--label-column holds for --val's errors", [net, "train", "--data", first, "--val", last, "--label-column",
             "first", "--epochs", "1"], "last.csv:2: label '239' is out of range [0, 3)")
# The label in the first column, read from the last: a pixel out of range, and the hint names the column.
expect_error("label first, read as last", [net, "train", "--data", first],
             "first.csv:1: label '", "is out of range [0, 3); labels are read from column 21 (the last), but column 1 "
             "holds class ids on every row: give --label-column first")
# A last column of class ids too (fewer distinct values than the first): trains, with a warning.
amb = text("ambiguous.csv", "".join(",".join([str(labels[i])] + ["0.5"] * (H * W - 1) + [str(i % 2)]) + "\n"
                                    for i in range(N)))
rc, out, err = run(net, "train", "--data", amb, "--epochs", "1")
check("a likelier label column warns", rc == 0 and "epoch 1/1" in out and err ==
      f"img: warning: {amb}: column 21 holds the labels (2 distinct classes), but column 1 also holds class ids on every "
      "row (3 distinct); if the labels are there, give --label-column first\n", repr(err))
rc, out, err = run(net, "train", "--data", amb, "--epochs", "1", "--label-column", "last")
check("no warning once the column is given", rc == 0 and err == "", repr(err))
expect_error("--label-column 0", [net, "train", "--data", last, "--label-column", "0"],
             "--label-column needs an integer from 1 to 2147483647, not '0'")
expect_error("--label-column word", [net, "train", "--data", last, "--label-column", "middle"],
             "--label-column needs first, last or a column number from 1, not 'middle'")
expect_error("--label-column past the row", [net, "eval", "--data", last, "--weights", ck["raw"], "--label-column", "22"],
             "last.csv: a row holds 21 columns (20 features + 1 label), so the label column must lie in [1, 21], not 22")
expect_error("--label-column for .npy data", [net, "train", "--data", x_u8, "--labels", y, "--label-column", "1"],
             "x_u8.npy: is a .npy file, whose labels come from a labels file; a label column is chosen only in CSV data")
expect_error("--label-column twice", [net, "train", "--data", last, "--label-column", "1", "--label-column", "1"],
             "--label-column given twice")
rc, out, _ = run(net, "--help")
check("the usage names the options", "--label-column first|last|N" in out and "--no-scale" in out, out)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
