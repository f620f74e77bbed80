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


def run(*args, timeout=120):
    try:
        p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "", "timeout"
    return p.returncode, p.stdout, p.stderr


def expect_error(name, args, *needles, timeout=120):
    """Exit status 1 and exactly one stderr line, holding 'error' and every needle."""
    rc, out, err = run(*args, timeout=timeout)
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
bad = text("hexlabel.csv", "".join(rows[:1]) + rows[1].rsplit(",", 1)[0] + ",0x3\n" + "".join(rows[2:]))
expect_error("CSV hexadecimal label", [net, "train", "--data", bad], "hexlabel.csv:2:", "label '0x3' is not a decimal integer")
bad = text("hexfeature.csv", "".join(rows[:2]) + "0x1," + rows[2].split(",", 1)[1] + "".join(rows[3:]))
expect_error("CSV hexadecimal feature", [net, "train", "--data", bad], "hexfeature.csv:3:", "field 1 '0x1' is not a decimal number")
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
# Only regular files are read: a device or a FIFO (which no one writes) is refused at once, unopened,
# never read until memory runs out or waited on.
fifo = path("fifo")
os.mkfifo(fifo)
for what, bad in (("/dev/zero", "/dev/zero"), ("a FIFO", fifo)):
    kind = "a character device" if bad == "/dev/zero" else "a FIFO"
    for opt, args in (("train --data", ["train", "--data", bad]),
                      ("train --labels", ["train", "--data", x, "--labels", bad]),
                      ("train --val", ["train", "--data", good_csv, "--val", bad]),
                      ("train --val-labels", ["train", "--data", x, "--labels", y, "--val", x, "--val-labels", bad]),
                      ("eval --data", ["eval", "--data", bad, "--weights", ckpt]),
                      ("eval --labels", ["eval", "--data", x, "--labels", bad, "--weights", ckpt])):
        expect_error(f"{opt} {what}", [net, *args], bad + ": not a regular file (" + kind + ")", timeout=20)

# Options.
for opt, val in [("--lr", "abc"), ("--lr", "-0.1"), ("--lr", "nan"), ("--epochs", "0"), ("--batch", "x"),
                 ("--threads", "0"), ("--replicas", "-2"), ("--seed", "-1"), ("--lr", "0"), ("--lr", "inf")]:
    expect_error(f"bad {opt} {val}", [net, "train", "--data", good_csv, opt, val], opt, val)
# Range errors worded as infer words them, with the real limits.
for opt, val, want in [("--threads", "0", "--threads needs an integer from 1 to 4096, not '0'"),
                       ("--epochs", "0", "--epochs needs an integer from 1 to 1000000, not '0'"),
                       ("--batch", "0", "--batch needs an integer from 1 to 16777216, not '0'"),
                       ("--replicas", "0", "--replicas needs an integer from 1 to 4096, not '0'"),
                       ("--microbatches", "0", "--microbatches needs an integer from 1 to 65536, not '0'"),
                       ("--lr", "0", "--lr needs a finite positive number, not '0'")]:
    expect_error(f"{opt} {val} names the range", [net, "train", "--data", good_csv, opt, val], want)
expect_error("eval --batch 0 names the range", [net, "eval", "--data", good_csv, "--weights", ckpt, "--batch", "0"],
             "--batch needs an integer from 1 to 16777216, not '0'")
# Each option once.
for opt, a, b in [("--data", good_csv, x), ("--labels", y, y), ("--val", good_csv, good_csv), ("--save", path("s1.st"), path("s2.st")),
                  ("--weights", ckpt, ckpt), ("--resume", ckpt, ckpt), ("--epochs", "1", "2"), ("--no-shuffle", None, None)]:
    args = [opt] + ([a] if a else []) + [opt] + ([b] if b else [])
    expect_error(f"{opt} given twice", [net, "train", "--data", good_csv, *args] if opt != "--data" else [net, "train", *args],
                 f"{opt} given twice")
expect_error("eval --weights given twice", [net, "eval", "--data", good_csv, "--weights", ckpt, "--weights", ckpt],
             "--weights given twice")
for cmd in ("train", "eval"):
    rc, out, err = run(net, cmd, "--data", good_csv, "--help")
    check(f"{cmd} --help prints the usage", rc == 0 and out.startswith("usage:") and "train --data FILE" in out and not err,
          f"(rc={rc}, stderr={err.strip()!r})")
expect_error("unknown option", [net, "train", "--data", good_csv, "--learning-rate", "0.1"], "--learning-rate")
# An unknown option names the closest one the command takes (the list the parser checks, so a new
# option is suggested too), and another tool's name for one: --learning-rate is --lr.
for cmd, bad, want in [("train", "--epoch", "--epochs"), ("train", "--weight", "--weights"), ("train", "--val_labels", "--val-labels"),
                       ("train", "--learning-rate", "--lr"), ("train", "--batch-size", "--batch"), ("eval", "--weight", "--weights")]:
    expect_error(f"{cmd} {bad} suggests {want}", [net, cmd, "--data", good_csv, "--weights", ckpt, bad, "1"] if cmd == "eval"
                 else [net, cmd, "--data", good_csv, bad, "1"], f"unknown option '{bad}' for {cmd}; did you mean '{want}'?")
expect_error("no suggestion for a name far from all", [net, "train", "--data", good_csv, "--frobnicate", "1"],
             "unknown option '--frobnicate' for train; see ")
expect_error("bench --train suggests", [net, "bench", "--train", "--second", "1"], "did you mean '--seconds'?")
# --opt=value is --opt value, for every option of every command; a flag takes no value.
rc, out, err = run(net, "train", f"--data={good_csv}", "--epochs=1", "--batch=16", "--no-shuffle", f"--save={path('eq.st')}")
check("train --data=FILE --epochs=1", rc == 0 and "epoch 1/1" in out and os.path.exists(path("eq.st")), f"(rc={rc}, {err.strip()[:300]!r})")
rc, out2, err = run(net, "eval", f"--data={good_csv}", f"--weights={path('eq.st')}")
check("eval --data=FILE --weights=FILE", rc == 0 and "accuracy:" in out2, f"(rc={rc}, {err.strip()[:300]!r})")
expect_error("--epochs=bad names the range", [net, "train", "--data", good_csv, "--epochs=0"], "--epochs needs an integer from 1 to 1000000, not '0'")
expect_error("--data= names no file", [net, "train", "--data="], "--data needs a value, not an empty one")
expect_error("--no-shuffle=1", [net, "train", "--data", good_csv, "--no-shuffle=1"], "--no-shuffle takes no value ('--no-shuffle=1')")
expect_error("--epochs= and --epochs", [net, "train", "--data", good_csv, "--epochs=1", "--epochs", "2"], "--epochs given twice")
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

# --save never overwrites a file that is read: the data, labels or validation files (also through
# a hard link); --save CKPT --resume CKPT is the normal flow.
csv_bytes, x_bytes, y_bytes = open(good_csv, "rb").read(), open(x, "rb").read(), open(y, "rb").read()
expect_error("--save onto --data (CSV)", [net, "train", "--data", good_csv, "--epochs", "1", "--save", good_csv],
             "good.csv: --save and --data name the same file")
expect_error("--save onto --data (.npy)", [net, "train", "--data", x, "--labels", y, "--epochs", "1", "--save", x],
             "--save and --data name the same file")
expect_error("--save onto --labels", [net, "train", "--data", x, "--labels", y, "--epochs", "1", "--save", y],
             "--save and --labels name the same file")
expect_error("--save onto --val", [net, "train", "--data", x, "--labels", y, "--val", good_csv, "--epochs", "1", "--save", good_csv],
             "--save and --val name the same file")
expect_error("--save onto --val-labels", [net, "train", "--data", good_csv, "--val", x, "--val-labels", y, "--epochs", "1",
                                          "--save", y], "--save and --val-labels name the same file")
os.link(good_csv, path("good_link.csv"))
expect_error("--save onto a hard link of --data", [net, "train", "--data", good_csv, "--epochs", "1", "--save",
                                                   path("good_link.csv")], "are the same file (--save and --data)")
check("the data survive", open(good_csv, "rb").read() == csv_bytes and open(x, "rb").read() == x_bytes
      and open(y, "rb").read() == y_bytes)
shutil.copy(ckpt, path("again.st"))
rc, out, err = run(net, "train", "--data", good_csv, "--resume", path("again.st"), "--epochs", "2", "--save", path("again.st"))
check("--resume CKPT --save CKPT", rc == 0 and "epoch 2/2" in out, f"(rc={rc}, stderr={err.strip()!r})")
shutil.copy(init, path("init_copy.st"))
rc, out, err = run(net, "train", "--data", good_csv, "--weights", path("init_copy.st"), "--epochs", "1", "--save", path("init_copy.st"))
check("--weights W --save W", rc == 0 and "epoch 1/1" in out, f"(rc={rc}, stderr={err.strip()!r})")
expect_error("--resume with --weights", [net, "train", "--data", good_csv, "--resume", ckpt, "--weights", init],
             "--resume", "--weights", "both give the starting weights")


def edit_meta(src, dst, **meta):
    blob = open(src, "rb").read()
    hlen = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + hlen])
    header["__metadata__"].update(meta)
    header["__metadata__"] = {k: v for k, v in header["__metadata__"].items() if v is not None}  # None: no key
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + blob[8 + hlen:])
    return dst


# A mid-epoch checkpoint needs as many batches in the data it resumes on (N = 12 at batch 4: 3).
mid = edit_meta(ckpt, path("mid.st"), epoch="0", batch="5")
rc, out, err = run(net, "train", "--data", good_csv, "--resume", mid, "--epochs", "3")
check("--resume past the data's batches", rc == 1 and "epoch" not in out and len(err.strip().splitlines()) == 1 and
      "mid.st: the checkpoint stopped at batch 5 of epoch 1, but " + good_csv + " gives only 3 batches of 4" in err,
      f"(rc={rc}, stdout={out!r}, stderr={err.strip()!r})")
end = edit_meta(ckpt, path("end.st"), epoch="0", batch="3")
rc, out, err = run(net, "train", "--data", good_csv, "--resume", end, "--epochs", "2")
check("--resume after an epoch's last batch starts the next epoch", rc == 0 and out.removeprefix(out.split("\n", 1)[0] + "\n" if out.startswith("schedule: ") else "").startswith("epoch 2/2") and
      out.count("epoch") == 1, f"(rc={rc}, stdout={out!r}, stderr={err.strip()!r})")

# Files of no known format: named as empty or binary, never taken for CSV.
idx_labels = text("l.idx", b"\x00\x00\x08\x01" + struct.pack(">I", N) + bytes(i % CLASSES for i in range(N)), "wb")
ff = text("i_ff.idx", b"\xff\xfe\x08\x03" + struct.pack(">III", N, 4, 5) + bytes(N * FEATURES), "wb")
expect_error("IDX with a broken magic, with labels", [net, "train", "--data", ff, "--labels", idx_labels],
             "i_ff.idx: is not a .npy, IDX or CSV file (it starts with bytes ff fe 08 03)")
expect_error("IDX with a broken magic, without labels", [net, "train", "--data", ff], "i_ff.idx: is not a .npy, IDX or CSV file")
empty_idx = text("e.idx", b"", "wb")
expect_error("empty data file with labels", [net, "train", "--data", empty_idx, "--labels", idx_labels], "e.idx: is empty")
expect_error("empty labels file", [net, "train", "--data", x, "--labels", empty_idx], "e.idx: is empty")
rand = bytes((i * 2654435761 >> 7) & 0xff for i in range(3000))
rand_gz = text("rand.gz", gzip.compress(rand), "wb")
expect_error("gzip of random bytes with labels", [net, "train", "--data", rand_gz, "--labels", idx_labels],
             "rand.gz: is not a .npy, IDX or CSV file (its decompressed content starts with bytes")
expect_error("random labels file", [net, "train", "--data", x, "--labels", text("rand.bin", rand, "wb")],
             "rand.bin: is not a .npy or IDX file (it starts with bytes")
expect_error("CSV labels file", [net, "train", "--data", x, "--labels", good_csv], "good.csv: is not a .npy or IDX file (it is text")
nul = text("nul.csv", ("".join(rows[:2]) + rows[2].replace(",", ",\0", 1) + "".join(rows[3:])).encode(), "wb")
expect_error("CSV with a NUL byte", [net, "train", "--data", nul], "nul.csv:3: byte 0x00 at position")
y16 = path("y16.npy")
with open(y16, "wb") as f:
    h = "{'descr': '<i2', 'fortran_order': False, 'shape': (%d,), }" % N
    h += " " * (64 - (10 + len(h) + 1) % 64) + "\n"
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + struct.pack("<%dh" % N, *range(N)))
expect_error("int16 labels", [net, "train", "--data", x, "--labels", y16], "y16.npy: dtype '<i2' is not supported; class ids must be")

# Embedding ids (tests/train/cases/misc.pnet: 6 ids in [0, 11), 5 classes), checked as the data loads:
# by CSV line (blank lines counted) or .npy record, for --data, --val and eval's --data.
misc = path("misc")
rc, _, err = run(PNETC, os.path.join(SRC, "tests", "train", "cases", "misc.pnet"), "-o", misc)
check("compile misc", rc == 0, err)
id_rows = ["%s,%d\n" % (",".join(str((i * 3 + k) % 11) for k in range(6)), i % 5) for i in range(10)]
ids_good = text("ids.csv", "".join(id_rows))
ids_oob = text("ids_oob.csv", "".join(id_rows[:3]) + "\n" + id_rows[3].replace(",", ",11,", 1).replace(",", "", 1)[1:] +
               "".join(id_rows[4:]))
rc, out, err = run(misc, "train", "--data", ids_good, "--epochs", "1")
check("good ids train", rc == 0 and "epoch 1/1" in out, out + err)
expect_error("id outside the vocabulary, CSV", [misc, "train", "--data", ids_oob],
             "ids_oob.csv:5: input 'ids' holds 11, outside the vocabulary [0, 11)")
ids_neg = text("ids_neg.csv", "".join(id_rows[:1]) + "-1" + id_rows[1][id_rows[1].index(","):] + "".join(id_rows[2:]))
expect_error("negative id, CSV", [misc, "train", "--data", ids_neg], "ids_neg.csv:2: input 'ids' holds -1, outside the vocabulary")
ids_frac = text("ids_frac.csv", "".join(id_rows[:3]) + "2.5" + id_rows[3][id_rows[3].index(","):] + "".join(id_rows[4:]))
expect_error("fractional id, CSV", [misc, "train", "--data", ids_frac], "ids_frac.csv:4: input 'ids' takes integers, not 2.5")
ids_npy = npy("ids.npy", "f4", [10, 6], [float((i * 3 + k) % 11) for i in range(10) for k in range(6)][:46] + [11.0] +
              [0.0] * 13)
ids_y = npy("ids_y.npy", "i4", [10], [i % 5 for i in range(10)])
expect_error("id outside the vocabulary, .npy", [misc, "train", "--data", ids_npy, "--labels", ids_y],
             "ids.npy: record 7: input 'ids' holds 11, outside the vocabulary [0, 11)")
rc, out, err = run(misc, "train", "--data", ids_good, "--val", ids_oob, "--epochs", "2")
check("bad --val ids fail before training", rc == 1 and "epoch" not in out and "ids_oob.csv:5: input 'ids'" in err and
      len(err.strip().splitlines()) == 1, f"(rc={rc}, stdout={out!r}, stderr={err.strip()!r})")
mck = path("misc.safetensors")
rc, out, err = run(misc, "train", "--data", ids_good, "--epochs", "1", "--save", mck)
check("misc saves a checkpoint", rc == 0, err)
expect_error("eval of bad ids", [misc, "eval", "--data", ids_oob, "--weights", mck], "ids_oob.csv:5: input 'ids' holds 11")

# Options checked before any training: --val-labels needs --val; --save must name a file in a
# writable directory.
rc, out, err = run(net, "train", "--data", good_csv, "--val-labels", y, "--epochs", "1")
check("--val-labels without --val", rc == 1 and "--val-labels" in err and "--val FILE" in err and "epoch" not in out,
      f"(rc={rc}, stderr={err.strip()!r})")
for name, target in [("a directory", TMP), ("a directory with a slash", TMP + "/"),
                     ("a path under a file", os.path.join(good_csv, "c.safetensors")),
                     ("a missing directory", path("nodir/c.safetensors"))]:
    rc, out, err = run(net, "train", "--data", good_csv, "--epochs", "1", "--save", target)
    check(f"--save {name} fails before training", rc == 1 and "epoch" not in out and target in err and
          len(err.strip().splitlines()) == 1 and not os.path.exists(os.path.join(TMP, ".tmp")),
          f"(rc={rc}, stdout={out!r}, stderr={err.strip()!r})")
before = set(os.listdir(TMP))
rc, out, err = run(net, "train", "--data", path("nope.csv"), "--save", path("new.safetensors"))
check("--save checks create nothing", rc == 1 and set(os.listdir(TMP)) == before, f"(rc={rc}, stderr={err.strip()!r})")

# --save follows a link (the target is replaced, the link kept), refuses a device or FIFO before
# training and leaves it as it was, and removes the temporary files of a killed earlier save.
def kind(p):
    return subprocess.run(["stat", "-c", "%F", p], capture_output=True, text=True).stdout.strip()


SV = path("saves")
os.mkdir(SV)
shutil.copy(ckpt, os.path.join(SV, "real.st"))
os.symlink("real.st", os.path.join(SV, "link.st"))
old = open(os.path.join(SV, "real.st"), "rb").read()
rc, out, err = run(net, "train", "--data", good_csv, "--epochs", "2", "--save", os.path.join(SV, "link.st"))
check("--save through a link writes its target and keeps the link",
      rc == 0 and os.path.islink(os.path.join(SV, "link.st")) and open(os.path.join(SV, "real.st"), "rb").read() != old,
      f"(rc={rc}, stderr={err.strip()!r})")
rc, out, err = run(net, "eval", "--data", good_csv, "--weights", os.path.join(SV, "link.st"))
check("the checkpoint saved through the link loads", rc == 0 and "accuracy:" in out, err)
os.mkfifo(os.path.join(SV, "fifo"))
specials = [(os.path.join(SV, "fifo"), "a FIFO", "fifo")]
try:
    os.mknod(os.path.join(SV, "myfull"), 0o644 | __import__("stat").S_IFCHR, os.makedev(1, 7))  # /dev/full
    specials.append((os.path.join(SV, "myfull"), "a character device", "character special file"))
except OSError:
    print("NOTE mknod needs root: --save onto a character device not checked")
for target, what, k in specials:
    rc, out, err = run(net, "train", "--data", good_csv, "--epochs", "1", "--save", target)
    check(f"--save onto {what} is refused before training", rc == 1 and "epoch" not in out and len(err.strip().splitlines()) == 1
          and f"not a regular file ({what}); refusing to replace it" in err, f"(rc={rc}, stderr={err.strip()!r})")
    check(f"--save leaves {what} as it was", kind(target) == k, kind(target))
dead = subprocess.Popen(["true"])
dead.wait()
stale = os.path.join(SV, f".real.st.pnet-tmp.{dead.pid}.0")
with open(stale, "w") as f:
    f.write("left by a killed save")
rc, out, err = run(net, "train", "--data", good_csv, "--epochs", "1", "--save", os.path.join(SV, "link.st"))
check("a save removes the temporary file of a dead process", rc == 0 and not os.path.exists(stale)
      and not [n for n in os.listdir(SV) if ".pnet-tmp." in n], f"(rc={rc}, {os.listdir(SV)}, stderr={err.strip()!r})")


def strip_checkpoint(src, dst, edit=None):
    """Writes the parameters of checkpoint src as plain weights (no optimizer state, no metadata);
    edit(name, bytes) may change a tensor's bytes."""
    blob = open(src, "rb").read()
    hlen = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + hlen])
    out, data = {}, b""
    for name, t in header.items():
        if name == "__metadata__" or name.startswith("optimizer."):
            continue
        b = blob[8 + hlen + t["data_offsets"][0]:8 + hlen + t["data_offsets"][1]]
        if edit:
            b = edit(name, b)
        out[name] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(out).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)
    return dst


# eval reads only the parameters and buffers, as infer --weights does: a checkpoint of the same
# network trained with another optimizer, plain weights, and the network's own checkpoint agree.
adam_src = open(os.path.join(SRC, "tests", "train", "cases", "mlp_sgd.pnet")).read()
adam_src = adam_src.replace("network mlp_sgd", "network mlp_adamw").replace(
    "optimizer = sgd(lr = 0.1, momentum = 0.9, weight_decay = 0.0001, nesterov = true)", "optimizer = adam(lr = 0.01)")
check("adam variant differs", "adam(" in adam_src)
adam = path("adamnet")
rc, _, err = run(PNETC, text("adamnet.pnet", adam_src), "-o", adam)
ack = path("adam.safetensors")
rc2, _, err2 = run(adam, "train", "--data", good_csv, "--epochs", "2", "--batch", "4", "--save", ack)
check("adam variant trains", rc == 0 and rc2 == 0, err + err2)
rc, want, err = run(adam, "eval", "--data", good_csv, "--weights", ack)
check("eval of its own adam checkpoint", rc == 0 and "accuracy: " in want and "loss: " in want, err)
expect_error("--resume of another optimizer's checkpoint", [net, "train", "--data", good_csv, "--resume", ack],
             "adam.safetensors: the checkpoint holds the state of the adam optimizer, but network 'mlp_sgd' trains with sgd")
expect_error("--resume of another optimizer's checkpoint, without the optimizer key",
             [net, "train", "--data", good_csv, "--resume", edit_meta(ack, path("adam_old.st"), optimizer=None)],
             "the checkpoint holds the state of the adam optimizer")
expect_error("--resume of a checkpoint of an unknown optimizer",
             [net, "train", "--data", good_csv, "--resume", edit_meta(ack, path("adam_bad.st"), optimizer="?")],
             "adam_bad.st: metadata field 'optimizer' is \"?\"; expected \"sgd\" or \"adam\"")
expect_error("--resume of an sgd checkpoint into adam", [adam, "train", "--data", good_csv, "--resume", ckpt],
             "holds the state of the sgd optimizer, but network 'mlp_adamw' trains with adam")
rc, out, err = run(net, "eval", "--data", good_csv, "--weights", ack)
check("eval of a checkpoint of another optimizer", rc == 0 and out == want, f"(rc={rc}, out={out!r}, want={want!r}, stderr={err.strip()!r})")
rc, out, err = run(net, "eval", "--data", good_csv, "--weights", strip_checkpoint(ack, path("plain_w.safetensors")))
check("eval of plain weights", rc == 0 and out == want, f"(rc={rc}, out={out!r}, want={want!r}, stderr={err.strip()!r})")
rc, out, err = run(net, "infer", "--weights", path("plain_w.safetensors"), "--input", "x=" + x)
check("infer takes the same plain weights", rc == 0, err)
rc, out, err = run(net, "eval", "--data", good_csv, "--weights", ckpt)
check("eval of the network's own checkpoint", rc == 0 and "accuracy: " in out, err)
expect_error("eval of another network's weights", [net, "eval", "--data", good_csv, "--weights", ock], "fc1.weight")
# Embedded weights are evaluated as they are, not redrawn from the train block's seed.
seeded_src = open(os.path.join(SRC, "tests", "train", "cases", "mlp_sgd.pnet")).read().replace("batch     = 8;", "batch = 8;\n        seed = 3;")
emb = path("emb")
rc, _, err = run(PNETC, text("seeded.pnet", seeded_src), "--weights", ckpt, "-o", emb)
rc2, want, err2 = run(net, "eval", "--data", good_csv, "--weights", ckpt)
rc3, out, err3 = run(emb, "eval", "--data", good_csv)
check("eval of embedded weights with a train seed", "seed = 3" in seeded_src and rc == rc2 == rc3 == 0 and out == want,
      f"(out={out!r}, want={want!r}, stderr={(err + err2 + err3).strip()!r})")

# Training starts from the embedded weights too: the same as from --weights with the same seed.
plain = path("seeded_plain")
rc, _, err = run(PNETC, path("seeded.pnet"), "-o", plain)
rc2, _, err2 = run(emb, "train", "--data", good_csv, "--epochs", "1", "--batch", "4", "--save", path("from_emb.st"))
rc3, _, err3 = run(plain, "train", "--data", good_csv, "--epochs", "1", "--batch", "4", "--weights", ckpt,
                   "--save", path("from_w.st"))
same = rc == rc2 == rc3 == 0 and open(path("from_emb.st"), "rb").read() == open(path("from_w.st"), "rb").read()
check("train starts from the embedded weights", same, (err + err2 + err3).strip())

# --stage-threads: a pipeline trains to the same bits with the user's thread shares; a bad list
# is a one-line error.
pipe = path("pipe")
rc, _, err = run(PNETC, os.path.join(SRC, "tests", "train", "cases", "pipe.pnet"), "-o", pipe)
pipe_csv = text("pipe.csv", "".join(",".join(str((i * 7 + k) % 11 / 11) for k in range(100)) + f",{i % 5}\n"
                                    for i in range(70)))
runs = [run(pipe, "train", "--data", pipe_csv, "--epochs", "1", "--threads", t, *extra, "--save", path(f"pipe{t}.st"))
        for t, extra in (("1", []), ("4", ["--stage-threads", "3,1"]))]
check("--stage-threads trains to the same weights", rc == 0 and all(r[0] == 0 for r in runs)
      and open(path("pipe1.st"), "rb").read() == open(path("pipe4.st"), "rb").read(), err + "".join(r[2] for r in runs))
expect_error("--stage-threads of the wrong length", [pipe, "train", "--data", pipe_csv, "--stage-threads", "1,2,3"],
             "2 stages")
expect_error("--stage-threads with a zero", [pipe, "train", "--data", pipe_csv, "--stage-threads", "1,0"],
             "--stage-threads")

# ... and batchnorm's running statistics come from the file.
bn = path("bn")
rc, _, err = run(PNETC, os.path.join(SRC, "tests", "train", "cases", "bn.pnet"), "-o", bn)
bx = npy("bnx.npy", "f4", [16, 3, 8, 8], [((i * 13) % 29) / 29.0 for i in range(16 * 192)])
by = npy("bny.npy", "i4", [16], [i % 4 for i in range(16)])
bck = path("bn.safetensors")
rc2, _, err2 = run(bn, "train", "--data", bx, "--labels", by, "--epochs", "3", "--save", bck)
check("bn trains", rc == 0 and rc2 == 0, err + err2)
rc, want, err = run(bn, "eval", "--data", bx, "--labels", by, "--weights", bck)
rc2, plain, err2 = run(bn, "eval", "--data", bx, "--labels", by, "--weights", strip_checkpoint(bck, path("bn_w.safetensors")))
check("bn eval of a checkpoint and of plain weights agree", rc == 0 and rc2 == 0 and want == plain, err + err2)
shifted = strip_checkpoint(bck, path("bn_shift.safetensors"),
                           lambda name, b: struct.pack("<%df" % (len(b) // 4), *[v + 3.0 for v in struct.unpack("<%df" % (len(b) // 4), b)])
                           if name.endswith("running_mean") else b)
rc, out, err = run(bn, "eval", "--data", bx, "--labels", by, "--weights", shifted)
check("bn eval reads the running statistics", rc == 0 and out != want, f"(rc={rc}, out={out!r}, want={want!r}, stderr={err.strip()!r})")

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
