#!/usr/bin/env python3
"""`./net train` and `./net eval` on bad data, options and checkpoints: each must fail with exit
status 1 and a one-line error naming the file (and the CSV line or record where there is one).

usage: train_errors.py PNETC SOURCE_DIR
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

PNETC, SRC = sys.argv[1], sys.argv[2]
os.environ["PNET_ADAPTIVE_THREADS"] = "0"
TMP = tempfile.mkdtemp(prefix="pnet-train-err-")
FEATURES, CLASSES = 20, 5  # tests/train/cases/mlp_sgd.pnet
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
    """Writes a .npy file (format 1.0) by hand: dtype is 'f4' or 'i4'."""
    header = "{'descr': '<%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype, "".join(f"{d}, " for d in shape) if len(shape) != 1 else f"{shape[0]},")
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    data = struct.pack("<%d%s" % (len(values), "f" if dtype == "f4" else "i"), *values)
    with open(path(name), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data)
    return path(name)


def text(name, content, mode="w"):
    with open(path(name), mode) as f:
        f.write(content)
    return path(name)


def csv_rows(n, features=FEATURES):
    return "".join(",".join("%.3f" % (((i * 7 + k) % 11) / 11.0) for k in range(features)) + ",%d\n" % (i % CLASSES)
                   for i in range(n))


def run(*args):
    try:
        p = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return -1, "", "timeout"
    return p.returncode, p.stdout, p.stderr


def expect_error(name, args, *needles):
    """Exit status 1 and exactly one stderr line, holding 'error' and every needle."""
    rc, out, err = run(*args)
    lines = [l for l in err.splitlines() if l.strip()]
    if os.environ.get("VERBOSE"):
        print("     ", err.strip().replace(TMP + "/", ""))
    check(name, rc == 1 and len(lines) == 1 and "error" in err and all(n in err for n in needles),
          f"(rc={rc}, want {needles!r}, stderr={err.strip()[:400]!r})")


net = path("net")
rc, _, err = run(PNETC, os.path.join(SRC, "tests", "train", "cases", "mlp_sgd.pnet"), "-o", net)
check("compile mlp_sgd", rc == 0, err)
if rc != 0:
    sys.exit(1)

N = 12
x = npy("x.npy", "f4", [N, FEATURES], [((i * 5) % 17) / 17.0 for i in range(N * FEATURES)])
y = npy("y.npy", "i4", [N], [i % CLASSES for i in range(N)])
good_csv = text("good.csv", csv_rows(N))
ckpt = path("ckpt.safetensors")

# The good data trains, so the failures below are the data's fault.
rc, out, err = run(net, "train", "--data", x, "--labels", y, "--epochs", "1", "--batch", "4", "--save", ckpt)
check("good .npy pair trains", rc == 0 and "epoch 1/1" in out and os.path.exists(ckpt), out + err)
rc, out, err = run(net, "train", "--data", good_csv, "--epochs", "1", "--batch", "4")
check("good CSV trains", rc == 0 and "epoch 1/1" in out, out + err)

# Data files.
expect_error("missing data file", [net, "train", "--data", path("nope.csv")], "nope.csv")
expect_error("missing labels file", [net, "train", "--data", x, "--labels", path("nolabels.npy")], "nolabels.npy")
expect_error(".npy without --labels", [net, "train", "--data", x], "x.npy")
rows = csv_rows(N).splitlines(True)
bad = text("columns.csv", "".join(rows[:4]) + rows[4].replace(",", ",0.5,", 1) + "".join(rows[5:]))
expect_error("CSV with a wrong column count", [net, "train", "--data", bad], "columns.csv:5:")
bad = text("short.csv", "".join(rows[:2]) + rows[2].split(",", 1)[1] + "".join(rows[3:]))
expect_error("CSV with a missing column", [net, "train", "--data", bad], "short.csv:3:")
bad = text("word.csv", "".join(rows[:6]) + "abc," + rows[6].split(",", 1)[1] + "".join(rows[7:]))
expect_error("CSV with a non-numeric field", [net, "train", "--data", bad], "word.csv:7:", "abc")
bad = text("label.csv", "".join(rows[:3]) + rows[3].rsplit(",", 1)[0] + ",%d\n" % CLASSES + "".join(rows[4:]))
expect_error("CSV label out of range", [net, "train", "--data", bad], "label.csv:4:", "out of range")
bad = text("neglabel.csv", "".join(rows[:1]) + rows[1].rsplit(",", 1)[0] + ",-1\n" + "".join(rows[2:]))
expect_error("CSV negative label", [net, "train", "--data", bad], "neglabel.csv:2:")
bad = text("fraclabel.csv", rows[0].rsplit(",", 1)[0] + ",1.5\n" + "".join(rows[1:]))
expect_error("CSV fractional label", [net, "train", "--data", bad], "fraclabel.csv:1:")
expect_error("empty CSV", [net, "train", "--data", text("empty.csv", "")], "empty.csv")
ybad = npy("yrange.npy", "i4", [N], [i % CLASSES for i in range(N - 3)] + [CLASSES, 0, 0])
expect_error(".npy label out of range", [net, "train", "--data", x, "--labels", ybad], "yrange.npy", "record 9")
xnan = npy("xnan.npy", "f4", [N, FEATURES], [0.0] * (3 * FEATURES + 2) + [float("nan")] + [0.0] * ((N - 3) * FEATURES - 3))
expect_error(".npy with a NaN", [net, "train", "--data", xnan, "--labels", y], "xnan.npy", "record 3")
xw = npy("xwide.npy", "f4", [N, FEATURES + 1], [0.0] * (N * (FEATURES + 1)))
expect_error(".npy with the wrong feature count", [net, "train", "--data", xw, "--labels", y], "xwide.npy", str(FEATURES))
yshort = npy("yshort.npy", "i4", [N - 1], [0] * (N - 1))
expect_error("labels count mismatch", [net, "train", "--data", x, "--labels", yshort], "yshort.npy", str(N - 1), str(N))
yf = npy("yfloat.npy", "f4", [N], [0.0] * N)
expect_error("float class labels", [net, "train", "--data", x, "--labels", yf], "yfloat.npy")
raw = open(x, "rb").read()
expect_error("truncated .npy", [net, "train", "--data", text("xtrunc.npy", raw[:-7], "wb"), "--labels", y], "xtrunc.npy")
gz = gzip.compress(csv_rows(200).encode())
expect_error("truncated gzip", [net, "train", "--data", text("cut.csv.gz", gz[: len(gz) // 2], "wb")], "cut.csv.gz", "gzip")
corrupt = bytearray(gz)
for i in range(20, 40):
    corrupt[i] ^= 0x55
expect_error("corrupt gzip", [net, "train", "--data", text("bad.csv.gz", bytes(corrupt), "wb")], "bad.csv.gz", "gzip")
expect_error("bad validation file", [net, "train", "--data", good_csv, "--val", path("noval.csv")], "noval.csv")
expect_error("eval of a bad file", [net, "eval", "--data", path("label.csv"), "--weights", ckpt], "label.csv:4:")

# Options.
for opt, val in [("--lr", "abc"), ("--lr", "-0.1"), ("--lr", "nan"), ("--epochs", "0"), ("--batch", "x"),
                 ("--threads", "0"), ("--replicas", "-2"), ("--seed", "-1")]:
    expect_error(f"bad {opt} {val}", [net, "train", "--data", good_csv, opt, val], opt, val)
expect_error("unknown option", [net, "train", "--data", good_csv, "--learning-rate", "0.1"], "--learning-rate")
expect_error("option without a value", [net, "train", "--data", good_csv, "--epochs"], "--epochs")
expect_error("train without --data", [net, "train", "--epochs", "1"], "--data")
expect_error("eval without --weights", [net, "eval", "--data", good_csv], "--weights")
expect_error("eval rejects a train option", [net, "eval", "--data", good_csv, "--weights", ckpt, "--lr", "0.1"], "--lr")

# Checkpoints and weights.
expect_error("--resume of a missing file", [net, "train", "--data", good_csv, "--resume", path("none.safetensors")],
             "none.safetensors")
expect_error("--resume of a text file", [net, "train", "--data", good_csv, "--resume", text("notes.safetensors", "hello\n")],
             "notes.safetensors")
blob = open(ckpt, "rb").read()
expect_error("--resume of a truncated checkpoint",
             [net, "train", "--data", good_csv, "--resume", text("cut.safetensors", blob[: len(blob) - 100], "wb")],
             "cut.safetensors")
hlen = struct.unpack("<Q", blob[:8])[0]
header = json.loads(blob[8:8 + hlen])
header["__metadata__"]["step"] = "many"
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
expect_error("--resume of a checkpoint with malformed metadata",
             [net, "train", "--data", good_csv, "--resume", text("meta.safetensors", struct.pack("<Q", len(h)) + h + blob[8 + hlen:], "wb")],
             "meta.safetensors")
# --resume of a plain weights file (no checkpoint metadata) fails and points to --weights.
init = os.path.join(SRC, "tests", "train", "refs", "mlp_sgd", "init.safetensors")
rc, out, err = run(net, "train", "--data", good_csv, "--epochs", "1", "--resume", init)
check("--resume of a weights file without checkpoint metadata fails",
      rc == 1 and len(err.strip().splitlines()) == 1 and "init.safetensors" in err, f"(rc={rc}, stderr={err.strip()!r})")
# A checkpoint of another network: its tensors have other shapes.
other = path("other")
rc, _, err = run(PNETC, os.path.join(SRC, "tests", "train", "cases", "mlp_big.pnet"), "-o", other)
ock = path("other.safetensors")
rc2, out, err2 = run(other, "train", "--data", npy("xo.npy", "f4", [4, 30], [0.5] * 120), "--labels",
                     npy("yo.npy", "i4", [4], [0, 1, 2, 3]), "--epochs", "1", "--save", ock)
check("other network trains", rc == 0 and rc2 == 0, err + err2)
expect_error("--resume of another network's checkpoint", [net, "train", "--data", good_csv, "--resume", ock], "fc1.weight")
expect_error("--weights of a text file", [net, "train", "--data", good_csv, "--weights", path("notes.safetensors")],
             "notes.safetensors")
expect_error("unwritable --save", [net, "train", "--data", good_csv, "--epochs", "1", "--save", "/nonexistent/dir/c.safetensors"],
             "/nonexistent/dir/c.safetensors")

# A network without a train { } block cannot be trained or evaluated.
plain = path("plain")
plain_src = text("plain.pnet", "network plain {\n    input x : f32[batch, 20];\n    output y = softmax(dense(relu(dense(x, 16)), 5));\n}\n")
rc, _, err = run(PNETC, plain_src, "-o", plain)
check("compile a network without a train block", rc == 0, err)
expect_error("train without a train block", [plain, "train", "--data", good_csv], "train")
expect_error("eval without a train block", [plain, "eval", "--data", good_csv, "--weights", ckpt], "train")
expect_error("bench --train without a train block", [plain, "bench", "--train"], "train")

shutil.rmtree(TMP, ignore_errors=True)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
