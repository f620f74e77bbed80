#!/usr/bin/env python3
"""The generated executables as a user drives them: infer, bench and info, and a clean one-line
error (naming the file) with exit status 1 for every kind of bad file or option.

usage: exe_test.py PNETC SOURCE_DIR
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

PNETC, SRC = sys.argv[1], sys.argv[2]
os.environ["PNET_ADAPTIVE_THREADS"] = "0"  # run every requested thread, however small the call
TMP = tempfile.mkdtemp(prefix="pnet-exe-")
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def npy(path, dtype, shape, values=None, version=1, raw_tail=b""):
    descr = {"f4": "<f4", "i4": "<i4", "f8": "<f8", "i8": "<i8", "u1": "|u1", "i2": "<i2"}[dtype]
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join(f"{d}, " for d in shape) if len(shape) != 1 else f"{shape[0]},")
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    n = 1
    for d in shape:
        n *= d
    values = values if values is not None else [((i * 7) % 13) / 13.0 for i in range(n)]
    fmt = {"f4": "f", "i4": "i", "f8": "d", "i8": "q", "u1": "B", "i2": "h"}[dtype]
    data = struct.pack("<%d%s" % (n, fmt), *values)
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<H", len(header)) + header.encode() + data + raw_tail)
    return path


def safetensors(path, tensors, corrupt=None):
    header, blob = {}, b""
    for name, shape, values in tensors:
        data = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    if corrupt == "json":
        h = h[: len(h) // 2]
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h) + (1000 if corrupt == "length" else 0)) + h + blob)
    return path


def run(*args):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def expect_error(name, args, needle):
    rc, out, err = run(*args)
    lines = [l for l in err.splitlines() if l.strip()]
    check(name, rc == 1 and len(lines) == 1 and needle in err and "error" in err,
          f"(rc={rc}, stderr={err.strip()[:300]!r})")


exe = os.path.join(TMP, "digits")
rc, _, err = run(PNETC, os.path.join(SRC, "examples", "digits_mlp.pnet"), "-o", exe)
check("compile digits_mlp", rc == 0, err)
x = npy(os.path.join(TMP, "x.npy"), "f4", [3, 64])

# infer: text output, then .npy output.
rc, out, err = run(exe, "infer", "--input", "x=" + x)
check("infer prints outputs", rc == 0 and out.startswith("probs: f32[batch,10], batch 3") and len(out.splitlines()) == 4, out + err)
rc, out, err = run(exe, "infer", "--input", x, "--output", "probs=" + os.path.join(TMP, "p.npy"), "--threads", "2")
check("infer writes .npy", rc == 0 and os.path.getsize(os.path.join(TMP, "p.npy")) == 128 + 3 * 10 * 4, err)
# Determinism across thread counts, through the command line.
outs = [run(exe, "infer", "--input", x, "--threads", str(t))[1] for t in (1, 2, 5)]
check("infer identical for 1, 2 and 5 threads", outs[0] == outs[1] == outs[2])
outs = [run(exe, "infer", "--input", x, *a)[1] for a in (["--schedule", "serial"], ["--replicas", "2"],
                                                        ["--replicas", "3", "--threads", "2"], ["--replicas", "7", "--threads", "4"])]
check("infer identical for every replica count (incl. more replicas than samples)", len(set(outs)) == 1 and outs[0])
expect_error("unknown schedule", [exe, "infer", "--input", x, "--schedule", "zigzag"], "zigzag")
expect_error("bad replicas", [exe, "bench", "--replicas", "0"], "--replicas")

# bench and info.
rc, out, err = run(exe, "bench", "--batch", "8", "--seconds", "0.2")
check("bench prints throughput", rc == 0 and "throughput:" in out and "samples/s" in out and "latency:" in out, out + err)
rc, out, err = run(exe, "info")
check("info lists layers, plan and stages", rc == 0 and "fc1" in out and "dense" in out and "memory plan" in out
      and "stage 0" in out and "flops/sample" in out, out + err)
rc, out, err = run(exe, "--help")
check("--help", rc == 0 and "usage:" in out)

# Bad inputs: each a single line naming the file.
expect_error("missing file", [exe, "infer", "--input", "x=" + os.path.join(TMP, "nope.npy")], "nope.npy")
with open(os.path.join(TMP, "text.npy"), "w") as f:
    f.write("this is not numpy\n")
expect_error("not npy", [exe, "infer", "--input", "x=" + os.path.join(TMP, "text.npy")], "text.npy")
good = open(x, "rb").read()
with open(os.path.join(TMP, "trunc.npy"), "wb") as f:
    f.write(good[: len(good) - 10])
expect_error("truncated npy", [exe, "infer", "--input", "x=" + os.path.join(TMP, "trunc.npy")], "trunc.npy")
# Only regular files are read: a device or a FIFO is refused at once, unopened (never read until
# memory runs out, never waited on for a writer).
fifo = os.path.join(TMP, "fifo")
os.mkfifo(fifo)
for bad, kind in (("/dev/zero", "a character device"), (fifo, "a FIFO")):
    cases = [("--input", [exe, "infer", "--input", "x=" + bad]), ("--weights", [exe, "bench", "--weights", bad]),
             ("pnetc --weights", [PNETC, "--weights", bad, SRC + "/examples/digits_mlp.pnet", "-o", os.path.join(TMP, "w_exe")])]
    for opt, args in cases:
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=20)
            rc, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired:
            rc, err = -1, "timeout"
        check(f"{opt} {kind}", rc == 1 and err.strip().count("\n") == 0 and f"{bad}: not a regular file ({kind})" in err,
              f"(rc={rc}, {err.strip()[:200]!r})")
# Other dtypes convert as the training loader converts them: float64, int32, int64 and uint8 (which the
# loader's one rule divides by 255, unless --no-scale; tests/cli/data_rules.py).
ints = [(i * 5) % 7 for i in range(192)]
want = run(exe, "infer", "--input", "x=" + npy(os.path.join(TMP, "if.npy"), "f4", [3, 64], [float(v) for v in ints]))[1]
for dt in ("i4", "i8", "u1", "f8"):
    rc, out, err = run(exe, "infer", "--input", "x=" + npy(os.path.join(TMP, f"{dt}.npy"), dt, [3, 64], ints),
                       *(["--no-scale"] if dt == "u1" else []))
    check(f"infer converts {dt}", rc == 0 and out == want and want.startswith("probs:"), err)
expect_error("int16", [exe, "infer", "--input", "x=" + npy(os.path.join(TMP, "h.npy"), "i2", [3, 64], ints)],
             "h.npy: dtype '<i2' is not supported")
expect_error("float64 beyond float32", [exe, "infer", "--input", "x=" + npy(os.path.join(TMP, "big.npy"), "f8", [3, 64],
             [0.0] * 100 + [1e300] + [0.0] * 91)], "big.npy: record 1: value 1e+300 is outside the float32 range")
expect_error("wrong shape", [exe, "infer", "--input", "x=" + npy(os.path.join(TMP, "s.npy"), "f4", [3, 63])], "s.npy")
expect_error("wrong rank", [exe, "infer", "--input", "x=" + npy(os.path.join(TMP, "r.npy"), "f4", [192])], "r.npy")
expect_error("unknown input name", [exe, "infer", "--input", "y=" + x], "'y'")
expect_error("missing input", [exe, "infer"], "--input x")
expect_error("bad threads", [exe, "infer", "--input", x, "--threads", "0"], "--threads")
expect_error("unknown command", [exe, "frobnicate"], "frobnicate")
expect_error("a misspelt command", [exe, "infre"], "unknown command 'infre'; did you mean 'infer'?")
# info and the schedule report it embeds (pnetc --report) count bytes in the same units, KiB.
rc, out, err = run(exe, "info")
check("info and --report agree on units", rc == 0 and "total: 9610 parameters (37.5 KiB)" in out
      and "parameters 37.5 KiB, activations 1.6 KiB per sample" in out and " KB" not in out and " MB" not in out, out[-600:])
# An unknown option names the closest one the command takes; --opt=value is --opt value everywhere.
expect_error("infer --weight suggests", [exe, "infer", "--input", x, "--weight", "w.st"],
             "unknown option '--weight' for infer; did you mean '--weights'?")
expect_error("infer --imput suggests", [exe, "infer", "--imput", x], "did you mean '--input'?")
expect_error("bench --thread suggests", [exe, "bench", "--thread", "2"], "unknown option '--thread' for bench; did you mean '--threads'?")
expect_error("info --rank suggests", [exe, "info", "--rank", "2"], "unknown option '--rank' for info; did you mean '--ranks'?")
expect_error("infer --threads without a value", [exe, "infer", "--input", x, "--threads"], "--threads needs a value")
rc, out, err = run(exe, "infer", "--input", x)
rc2, out2, err2 = run(exe, "infer", f"--input=x={x}", "--threads=2", "--schedule=serial")
check("infer --input=x=FILE --threads=2", rc == 0 and rc2 == 0 and out2 == out, f"(rc={rc2}, {err2.strip()[:300]!r})")
rc, out, err = run(exe, "info", "--ranks=2", "--batch=64")
check("info --ranks=2 --batch=64", rc == 0 and "ranks: 2" in out, f"(rc={rc}, {err.strip()[:300]!r})")
expect_error("--threads=0 names the range", [exe, "infer", "--input", x, "--threads=0"], "--threads needs an integer from 1 to 4096, not '0'")
expect_error("--weights= names no file", [exe, "infer", "--input", x, "--weights="], "--weights needs a value, not an empty one")
expect_error("bench --train=1", [exe, "bench", "--train=1"], "--train takes no value ('--train=1')")
expect_error("bad bench batch", [exe, "bench", "--batch", "-3"], "--batch")
expect_error("unwritable output", [exe, "infer", "--input", x, "--output", "probs=/nonexistent/dir/p.npy"], "/nonexistent/dir/p.npy")

# No file written may be a file read: the input, the weights, or another output.
x_bytes = open(x, "rb").read()
expect_error("--output onto the input", [exe, "infer", "--input", "x=" + x, "--output", "probs=" + x],
             "--output probs and --input x name the same file")
os.link(x, os.path.join(TMP, "x_link.npy"))
expect_error("--output onto a hard link of the input",
             [exe, "infer", "--input", "x=" + x, "--output", "probs=" + os.path.join(TMP, "x_link.npy")],
             "x_link.npy and " + x + " are the same file")
expect_error("--trace onto the input", [exe, "infer", "--input", "x=" + x, "--trace", x], "--trace and --input x")
check("the input survives", open(x, "rb").read() == x_bytes)
# An empty file name.
expect_error("--input x= names no file", [exe, "infer", "--input", "x="], "--input x needs a file name after '='")
expect_error("--output probs= names no file", [exe, "infer", "--input", "x=" + x, "--output", "probs="],
             "--output probs needs a file name after '='")
# Options given twice.
expect_error("--input of one name twice", [exe, "infer", "--input", "x=" + x, "--input", "x=" + x], "--input x given twice")
expect_error("--output of one name twice", [exe, "infer", "--input", x, "--output", "probs=" + os.path.join(TMP, "p1.npy"),
             "--output", "probs=" + os.path.join(TMP, "p2.npy")], "--output probs given twice")
expect_error("--threads twice", [exe, "infer", "--input", x, "--threads", "1", "--threads", "2"], "--threads given twice")
expect_error("bench --batch twice", [exe, "bench", "--batch", "1", "--batch", "2"], "--batch given twice")
# Every command's --help prints the usage on stdout.
for cmd in ("infer", "bench", "info", "train", "eval"):
    rc, out, err = run(exe, cmd, "--help")
    check(f"{cmd} --help", rc == 0 and out.startswith("usage:") and f"  {cmd}" in out and "--epochs=3" in out and not err,
          f"(rc={rc}, {err!r})")
# Range errors name the limits.
expect_error("bench --batch 0", [exe, "bench", "--batch", "0"], "--batch needs an integer from 1 to 16777216, not '0'")
expect_error("bench --train --threads 0", [exe, "bench", "--train", "--threads", "0"],
             "--threads needs an integer from 1 to 4096, not '0'")
expect_error("bench --train --batch 0", [exe, "bench", "--train", "--batch", "0"],
             "--batch needs an integer from 1 to 16777216, not '0'")
rc, out, err = run(exe, "info")
check("info names batchnorm's split only with several segments", "  segments: 1\n" in out, out)
expect_error("an output where no file can be created", [exe, "infer", "--input", x, "--output", "probs=/proc/version"],
             "/proc/version: cannot write it: creating the temporary file /proc/.version.pnet-tmp.")

# User-named outputs (docs/codegen.md, "Output files"): a link's target is replaced and the link kept; a
# device or FIFO is refused before anything runs and left as it was; /dev/null takes what is written.
def kind(p):
    return subprocess.run(["stat", "-c", "%F", p], capture_output=True, text=True).stdout.strip()


def no_temps(d=TMP):
    return [n for n in os.listdir(d) if ".pnet-tmp." in n]


OUT = os.path.join(TMP, "outputs")
os.mkdir(OUT)
probs, plink = os.path.join(OUT, "probs.npy"), os.path.join(OUT, "plink.npy")
with open(probs, "w") as f:
    f.write("old")
os.symlink("probs.npy", plink)
rc, _, err = run(exe, "infer", "--input", x, "--output", "probs=" + plink)
check("infer --output through a link writes its target and keeps the link",
      rc == 0 and os.path.islink(plink) and open(probs, "rb").read(6) == b"\x93NUMPY" and not no_temps(OUT), err)
fifo = os.path.join(OUT, "fifo")
os.mkfifo(fifo)
expect_error("infer --output onto a FIFO", [exe, "infer", "--input", x, "--output", "probs=" + fifo],
             "fifo: not a regular file (a FIFO); refusing to replace it")
check("the FIFO stays a FIFO", kind(fifo) == "fifo", kind(fifo))
devs = []
try:
    os.mknod(os.path.join(OUT, "full"), 0o644 | __import__("stat").S_IFCHR, os.makedev(1, 7))  # /dev/full
    devs.append(os.path.join(OUT, "full"))
except OSError:
    print("NOTE mknod needs root: device checks run on /dev/full only where it exists")
if os.path.exists("/dev/full") and not os.access("/dev", os.W_OK):
    devs.append("/dev/full")
for dev in devs:
    expect_error(f"infer --output onto {dev}", [exe, "infer", "--input", x, "--output", "probs=" + dev],
                 "not a regular file (a character device); refusing to replace it")
    expect_error(f"--trace onto {dev}", [exe, "bench", "--batch", "1", "--seconds", "0.05", "--trace", dev],
                 "cannot write the trace: not a regular file (a character device)")
    expect_error(f"pnetc -o {dev}", [PNETC, os.path.join(SRC, "examples", "digits_mlp.pnet"), "--emit=llvm", "-o", dev],
                 "not a regular file (a character device); refusing to replace it")
    expect_error(f"pnetc -c -o {dev}", [PNETC, os.path.join(SRC, "examples", "digits_mlp.pnet"), "-c", "-o", dev],
                 "refusing to replace it")
    check(f"{dev} stays a character device", kind(dev) == "character special file", kind(dev))
rc, _, err = run(exe, "infer", "--input", x, "--output", "probs=/dev/null")
check("infer --output /dev/null", rc == 0 and not err and kind("/dev/null") == "character special file", err)
tlink, ttarget = os.path.join(OUT, "tlink.json"), os.path.join(OUT, "trace.json")
os.symlink("trace.json", tlink)  # dangling: the trace is written where it points
rc, _, err = run(exe, "bench", "--batch", "1", "--seconds", "0.05", "--trace", tlink)
check("--trace through a dangling link writes its target", rc == 0 and os.path.islink(tlink)
      and json.load(open(ttarget))["traceEvents"] and not no_temps(OUT), err)
src = os.path.join(SRC, "examples", "digits_mlp.pnet")
elink, etarget = os.path.join(OUT, "elink"), os.path.join(OUT, "etarget")
with open(etarget, "w") as f:
    f.write("old")
os.symlink("etarget", elink)
rc, _, err = run(PNETC, src, "-o", elink)
check("pnetc -o through a link links its target and keeps the link", rc == 0 and os.path.islink(elink)
      and os.access(etarget, os.X_OK) and run(elink, "info")[0] == 0 and not no_temps(OUT), err)
null_h = os.stat("/dev/null.h").st_mtime_ns if os.path.exists("/dev/null.h") else None
for args in (["--emit=llvm"], ["--emit=graph"], ["-c"], []):
    rc, _, err = run(PNETC, src, *args, "-o", "/dev/null")
    check(f"pnetc {' '.join(args)} -o /dev/null", rc == 0 and not err and kind("/dev/null") == "character special file"
          and (os.stat("/dev/null.h").st_mtime_ns if os.path.exists("/dev/null.h") else None) == null_h, err)
rc, out, err = run(PNETC, src, "--emit=llvm", "-o", "-")
check("pnetc --emit=llvm -o - prints to standard output", rc == 0 and "ModuleID" in out and not os.path.exists("-"), err)
obj = os.path.join(OUT, "blocked.o")
with open(obj, "w") as f:
    f.write("old")
os.mkdir(os.path.join(OUT, "blocked.h"))  # the header cannot be written: the object is not replaced either
rc, _, err = run(PNETC, src, "-c", "-o", obj)
check("a failed pnetc -c leaves the old object and no temporary file",
      rc == 1 and "blocked.h" in err and open(obj).read() == "old" and not no_temps(OUT), err)

# Weights: a good file loads; a missing tensor, a wrong shape and a corrupt header fail.
w = {"fc1.weight": ([128, 64], [0.01] * 8192), "fc1.bias": ([128], [0.0] * 128),
     "fc2.weight": ([10, 128], [0.02] * 1280), "fc2.bias": ([10], [0.1 * i for i in range(10)])}
full = safetensors(os.path.join(TMP, "w.safetensors"), [(k, s, v) for k, (s, v) in w.items()])
rc, out, err = run(exe, "infer", "--input", x, "--weights", full)
check("weights load", rc == 0 and out.count("\n") == 4, err)
missing = safetensors(os.path.join(TMP, "m.safetensors"), [(k, s, v) for k, (s, v) in w.items() if k != "fc2.bias"])
expect_error("missing tensor", [exe, "infer", "--input", x, "--weights", missing], "fc2.bias")
wrong = safetensors(os.path.join(TMP, "ws.safetensors"), [(k, (s if k != "fc1.bias" else [127]), (v if k != "fc1.bias" else v[:127])) for k, (s, v) in w.items()])
expect_error("wrong tensor shape", [exe, "infer", "--input", x, "--weights", wrong], "fc1.bias")
bad = safetensors(os.path.join(TMP, "c.safetensors"), [(k, s, v) for k, (s, v) in w.items()], corrupt="json")
expect_error("corrupt header", [exe, "infer", "--input", x, "--weights", bad], "c.safetensors")
long = safetensors(os.path.join(TMP, "l.safetensors"), [(k, s, v) for k, (s, v) in w.items()], corrupt="length")
expect_error("header longer than file", [exe, "infer", "--input", x, "--weights", long], "l.safetensors")
gz = os.path.join(TMP, "wz.safetensors")
with open(gz, "wb") as f:
    f.write(gzip.compress(open(full, "rb").read()))
expect_error("gzip-compressed weights", [exe, "infer", "--input", x, "--weights", gz], "wz.safetensors: is gzip-compressed")
expect_error("--output onto the weights", [exe, "infer", "--input", x, "--weights", full, "--output", "probs=" + full],
             "--output probs and --weights name the same file")
expect_error("unreadable weights", [exe, "bench", "--weights", os.path.join(TMP, "none.safetensors")], "none.safetensors")

# Embedded weights: the same numbers as loading them at run time.
emb = os.path.join(TMP, "digits_emb")
rc, _, err = run(PNETC, os.path.join(SRC, "examples", "digits_mlp.pnet"), "--weights", full, "-o", emb)
check("compile with --weights", rc == 0, err)
check("embedded weights match loaded ones", run(emb, "infer", "--input", x)[1] == run(exe, "infer", "--input", x, "--weights", full)[1])
rc, _, err = run(PNETC, os.path.join(SRC, "examples", "digits_mlp.pnet"), "--weights", missing, "-o", emb)
check("pnetc --weights with a missing tensor fails", rc == 1 and "fc2.bias" in err and len(err.strip().splitlines()) == 1, err)

# Ids outside an embedding's vocabulary are rejected before running.
att = os.path.join(TMP, "att")
rc, _, err = run(PNETC, "-I", os.path.join(SRC, "stdlib"), os.path.join(SRC, "examples", "attention.pnet"), "-o", att)
check("compile attention", rc == 0, err)
ids = npy(os.path.join(TMP, "ids.npy"), "i4", [2, 16], [5] * 31 + [1000])
expect_error("id out of vocabulary", [att, "infer", "--input", "ids=" + ids],
             "ids.npy: sample 1: input 'ids' holds 1000, outside the vocabulary [0, 1000)")
ids_neg = npy(os.path.join(TMP, "ids_neg.npy"), "i4", [2, 16], [5] * 17 + [-3] + [5] * 14)
expect_error("negative id", [att, "infer", "--input", "ids=" + ids_neg],
             "ids_neg.npy: sample 1: input 'ids' holds -3, outside the vocabulary [0, 1000)")
rc, want, err = run(att, "infer", "--input", "ids=" + npy(os.path.join(TMP, "ids5.npy"), "i4", [2, 16], [5] * 32))
rc2, out, err2 = run(att, "infer", "--input", "ids=" + npy(os.path.join(TMP, "ids5_8.npy"), "i8", [2, 16], [5] * 32))
rc3, out3, err3 = run(att, "infer", "--input", "ids=" + npy(os.path.join(TMP, "ids5_f.npy"), "f8", [2, 16], [5.0] * 32))
check("int64 and float64 ids convert", rc == rc2 == rc3 == 0 and out == out3 == want, err + err2 + err3)
expect_error("fractional float64 id", [att, "infer", "--input", "ids=" + npy(os.path.join(TMP, "ids_frac.npy"), "f8", [2, 16],
             [5.0] * 20 + [2.5] + [5.0] * 11)], "ids_frac.npy: record 1: value 2.5 is not an int32 integer")
expect_error("int64 id beyond int32", [att, "infer", "--input", "ids=" + npy(os.path.join(TMP, "ids_big.npy"), "i8", [2, 16],
             [5] * 3 + [1 << 40] + [5] * 28)], "ids_big.npy: record 0: value 1099511627776 is outside the int32 range")

# Every schedule, with more stages, replicas and threads than this machine has cores, under a
# timeout: identical outputs, no hang.
pl_src = os.path.join(TMP, "pl.pnet")
with open(pl_src, "w") as f:
    f.write('''network pl {
    input x : f32[batch, 64];
    @partition(0) { a = relu(dense(x, 96)); b = relu(dense(a, 80)); }
    @partition(1) { c = relu(dense(b, 72)); }
    @partition(2) { d = dense(c, 72); e = relu(d + c * 0.5); }
    @partition(3) { output y = softmax(dense(e, 10)); output z = d; }
    @pipeline(microbatches = 4);
}
''')
pl = os.path.join(TMP, "pl")
rc, _, err = run(PNETC, pl_src, "-o", pl)
check("compile a 4-stage pipeline", rc == 0, err)
x37 = npy(os.path.join(TMP, "x37.npy"), "f4", [37, 64])
schedules = [["--schedule", "serial"], ["--threads", "1"], ["--threads", "2"], ["--threads", "4"],
             ["--threads", "5", "--microbatches", "7"], ["--threads", "8", "--schedule", "hybrid", "--replicas", "2"],
             ["--threads", "9", "--schedule", "hybrid", "--replicas", "3", "--microbatches", "16"],
             ["--threads", "3", "--schedule", "batch", "--replicas", "5"], ["--threads", "16", "--microbatches", "40"],
             ["--threads", "6", "--schedule", "pipeline", "--microbatches", "64"],
             ["--threads", "7", "--stage-threads", "1,3,2,1"], ["--threads", "5", "--stage-threads", "9,1,1,1"]]
outs = []
for a in schedules:
    try:
        p = subprocess.run([pl, "infer", "--input", x37, *a], capture_output=True, text=True, timeout=60)
        outs.append(p.stdout if p.returncode == 0 else "rc=%d %s" % (p.returncode, p.stderr))
    except subprocess.TimeoutExpired:
        outs.append("timeout " + " ".join(a))
check("every schedule gives identical outputs without hanging", len(set(outs)) == 1 and outs[0].startswith("y:"),
      str([o[:60] for o in outs]))
trace = os.path.join(TMP, "trace.json")
rc, out, err = run(pl, "bench", "--batch", "64", "--seconds", "0.2", "--threads", "4", "--schedule", "pipeline",
                   "--microbatches", "4", "--trace", trace)
check("bench runs pipelined", rc == 0 and "pipelined" in out, out + err)
check("bench prints the measured and predicted bubble", "bubble: measured" in out and "predicted 42.9%" in out, out)
try:
    events = [e for e in json.load(open(trace))["traceEvents"] if e.get("ph") == "X"]
except (OSError, ValueError) as exc:
    events = []
    print("trace:", exc)
stages = {e["args"]["stage"] for e in events}
threads = {e["tid"] for e in events}
check("the trace has a slice per stage and micro-batch, on one track per thread",
      stages == {0, 1, 2, 3} and len(threads) == 4 and all({"ts", "dur", "tid"} <= e.keys() for e in events)
      and {e["args"]["microbatch"] for e in events} >= {0, 1, 2, 3}, str(len(events)))
env = dict(os.environ, PNET_TRACE=os.path.join(TMP, "env_trace.json"))
p = subprocess.run([pl, "infer", "--input", x37, "--threads", "4"], capture_output=True, text=True, env=env, timeout=60)
check("PNET_TRACE writes a trace", p.returncode == 0 and os.path.getsize(env["PNET_TRACE"]) > 100, p.stderr)
rc, out, err = run(exe, "infer", "--input", x, "--microbatches", "4")
check("--microbatches on a network without stages is a note, not an error", rc == 0 and "note:" in err and "no pipeline stages" in err, err)
rc, out, err = run(exe, "infer", "--input", x, "--stage-threads", "2,1", "--schedule", "hybrid")
check("--stage-threads and --schedule hybrid on a network without stages are notes", rc == 0 and err.count("note:") == 2, err)
rc, out, err = run(exe, "infer", "--input", x, "--schedule", "serial", "--replicas", "3", "--threads", "2")
check("options that --schedule serial overrides get a note", rc == 0 and "--replicas has no effect" in err
      and "--threads has no effect" in err, err)
expect_error("--stage-threads count", [pl, "infer", "--input", x37, "--stage-threads", "1,2"], "4 stages")
expect_error("--stage-threads value", [pl, "infer", "--input", x37, "--stage-threads", "1,0,1,1"], "--stage-threads")
expect_error("unwritable --trace", [pl, "infer", "--input", x37, "--trace", os.path.join(TMP, "no", "t.json")],
             "cannot write the trace")
p = subprocess.run([pl, "infer", "--input", x37], capture_output=True, text=True, timeout=60,
                   env=dict(os.environ, PNET_TRACE=os.path.join(TMP, "no", "t.json")))
check("an unwritable PNET_TRACE is an error naming it", p.returncode == 1 and "PNET_TRACE" in p.stderr
      and len(p.stderr.strip().splitlines()) == 1, p.stderr)
rc, out, err = run(exe, "bench", "--batch", "1", "--seconds", "0.05", "--threads", "2")
check("bench says when the runtime picked the replicas", rc == 0 and "replicas 1 (picked by the runtime)" in out, out + err)

# More inputs and outputs than the 64 the executable's and the runtime's tables once held: infer and
# bench run; 200 inputs read from one file are no output overwriting an input.
wide = {"outs": "network outs {\n  input x : f32[batch, 4];\n  h = relu(x);\n"
                + "".join(f"  output o{k} = h;\n" for k in range(200)) + "}\n",
        "ins": "network ins {\n" + "".join(f"  input x{k} : f32[batch, 4];\n" for k in range(200))
               + "  output y = " + " + ".join(f"x{k}" for k in range(200)) + ";\n}\n"}
x4 = npy(os.path.join(TMP, "x4.npy"), "f4", [2, 4])
for name, src in wide.items():
    path = os.path.join(TMP, name)
    with open(path + ".pnet", "w") as f:
        f.write(src)
    rc, _, err = run(PNETC, path + ".pnet", "-o", path)
    check(f"compile 200 {name}", rc == 0, err)
    ins = ["--input", "x=" + x4] if name == "outs" else [a for k in range(200) for a in ("--input", f"x{k}=" + x4)]
    for cmd in (["infer", *ins], ["infer", *ins, "--output", ("o199=" if name == "outs" else "y=") + os.path.join(TMP, "w.npy")],
                ["bench", "--batch", "2", "--seconds", "0.05"]):
        rc, out, err = run(path, *cmd)
        lines = err.strip().splitlines()
        check(f"{name} {cmd[0]} with 200 {name[:-1]}puts", rc == 0 and not err, f"(rc={rc}, {err.strip()[:200]!r})")
# Past the stated limit (PNETRT_MAX_IO), pnetc refuses the network at the first input or output too many.
for kind, body in (("outputs", "  input x : f32[batch, 4];\n" + "".join(f"  output o{k} = x;\n" for k in range(4097))),
                   ("inputs", "".join(f"  input x{k} : f32[batch, 4];\n" for k in range(4097)) + "  output y = x0;\n")):
    path = os.path.join(TMP, "too_many_" + kind + ".pnet")
    with open(path, "w") as f:
        f.write("network many {\n" + body + "}\n")
    rc, _, err = run(PNETC, "--check", path)
    check(f"4097 {kind} are an error at the 4097th", rc == 1 and f"at most 4096 {kind}" in err
          and (":4099:" in err if kind == "outputs" else ":4098:" in err), err[:300])
# --stage-threads: as many counts as given, checked against the network's stage count.
expect_error("--stage-threads with 100 counts", [pl, "infer", "--input", x37, "--stage-threads", ",".join(["1"] * 100)],
             "100 stage thread counts given")

# A failed link is one line that says why (the linker's own reason), and a missing linker too.
fake_cc = os.path.join(TMP, "fake_cc.sh")
with open(fake_cc, "w") as f:
    f.write("#!/bin/sh\necho '/usr/bin/ld: final link failed: No space left on device' >&2\n"
            "echo 'collect2: error: ld returned 1 exit status' >&2\nexit 1\n")
os.chmod(fake_cc, 0o755)
for cc, why in ((fake_cc, "final link failed: No space left on device"), ("no-such-cc", "cannot run the linker 'no-such-cc'")):
    p = subprocess.run([PNETC, os.path.join(SRC, "examples", "digits_mlp.pnet"), "-o", os.path.join(TMP, "linked")],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PNET_CC": cc})
    check(f"a failed link ({os.path.basename(cc)}) is one line", p.returncode == 1 and p.stderr.count("\n") == 1 and
          f"linking '{os.path.join(TMP, 'linked')}' failed: {why}" in p.stderr and not os.path.exists(os.path.join(TMP, "linked")),
          p.stderr[:300])

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
