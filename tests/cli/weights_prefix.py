#!/usr/bin/env python3
"""Weights files whose names do not match the network's exactly: a file with extra tensors loads with
one warning that lists them (not for a pnet checkpoint's optimizer state); a file whose names carry a
prefix ('model.fc1.weight') fails with one line that suggests the prefix, and loads with
--weights-prefix model. in infer, bench, train, eval and bench --train, and in pnetc --weights.

usage: weights_prefix.py PNETC SOURCE_DIR
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

PNETC, SRC = sys.argv[1], sys.argv[2]
os.environ["PNET_ADAPTIVE_THREADS"] = "0"
TMP = tempfile.mkdtemp(prefix="pnet-wprefix-")
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    ok = bool(ok)
    passed += ok
    failed += not ok
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else " " + str(detail)))


def path(name):
    return os.path.join(TMP, name)


def run(*args):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def safetensors(name, tensors, meta=None):
    header, blob = {}, b""
    if meta:
        header["__metadata__"] = meta
    for key, shape, values in tensors:
        data = struct.pack("<%df" % len(values), *values)
        header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path(name), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + blob)
    return path(name)


def npy(name, dtype, shape, values):
    header = "{'descr': '<%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype, "".join(f"{d}, " for d in shape) if len(shape) != 1 else f"{shape[0]},")
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    data = struct.pack("<%d%s" % (len(values), "f" if dtype == "f4" else "i"), *values)
    with open(path(name), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data)
    return path(name)


def one_line(err, *needles):
    lines = [l for l in err.splitlines() if l.strip()]
    return len(lines) == 1 and all(n in err for n in needles)


exe = path("digits")
rc, _, err = run(PNETC, os.path.join(SRC, "examples", "digits_mlp.pnet"), "-o", exe)
check("compile digits_mlp", rc == 0, err)
W = [("fc1.weight", [128, 64], [((i * 7) % 13 - 6) / 100.0 for i in range(8192)]), ("fc1.bias", [128], [0.01] * 128),
     ("fc2.weight", [10, 128], [((i * 5) % 11 - 5) / 50.0 for i in range(1280)]),
     ("fc2.bias", [10], [0.1 * i for i in range(10)])]
plain = safetensors("plain.safetensors", W)
prefixed = safetensors("prefixed.safetensors", [("model." + k, s, v) for k, s, v in W])
deep = safetensors("deep.safetensors", [("_orig_mod.net." + k, s, v) for k, s, v in W])
extra = safetensors("extra.safetensors", W + [("extra.a", [2], [1.0, 2.0]), ("bn.num_batches_tracked", [], [3.0])])
many = safetensors("many.safetensors", W + [("x%02d" % i, [1], [0.0]) for i in range(12)])
x = npy("x.npy", "f4", [3, 64], [((i * 3) % 17) for i in range(192)])
labels = npy("y.npy", "i4", [3], [1, 4, 7])

rc, want, err = run(exe, "infer", "--input", x, "--weights", plain)
check("plain weights load without a warning", rc == 0 and not err, err)

# A prefix: the error suggests it; --weights-prefix loads the same numbers.
rc, out, err = run(exe, "infer", "--input", x, "--weights", prefixed)
check("prefixed names: one line suggesting --weights-prefix model.",
      rc == 1 and one_line(err, "prefixed.safetensors: missing tensor 'fc1.weight'; the file has 'model.fc1.weight'",
                           "--weights-prefix model.") and not out, (rc, err))
rc, out, err = run(exe, "infer", "--input", x, "--weights", deep)
check("a deeper prefix is suggested whole", rc == 1 and one_line(err, "--weights-prefix _orig_mod.net."), err)
rc, out, err = run(exe, "infer", "--input", x, "--weights", prefixed, "--weights-prefix", "model.")
check("infer --weights-prefix model.: the plain file's outputs", rc == 0 and out == want and not err, (rc, err))
rc, out, err = run(exe, "infer", "--input", x, "--weights", deep, "--weights-prefix", "_orig_mod.net.")
check("infer --weights-prefix _orig_mod.net.", rc == 0 and out == want and not err, (rc, err))
rc, out, err = run(exe, "infer", "--input", x, "--weights", prefixed, "--weights-prefix", "net.")
check("a wrong prefix: the error names the key looked for and the right prefix",
      rc == 1 and one_line(err, "missing tensor 'net.fc1.weight'", "--weights-prefix model."), err)
rc, out, err = run(exe, "infer", "--input", x, "--weights", plain, "--weights-prefix", "model.")
check("a prefix the file does not have: says the file has the name without it",
      rc == 1 and one_line(err, "missing tensor 'model.fc1.weight'; the file has 'fc1.weight', without the prefix 'model.'"), err)
rc, out, err = run(exe, "infer", "--input", x, "--weights-prefix", "model.")
check("--weights-prefix without --weights", rc == 1 and one_line(err, "--weights-prefix model. needs --weights"), err)
rc, out, err = run(exe, "infer", "--input", x, "--weights", prefixed, "--weights-prefix", "model.", "--weights-prefix", "m.")
check("--weights-prefix given twice", rc == 1 and one_line(err, "--weights-prefix given twice"), err)
rc, out, err = run(exe, "bench", "--weights", prefixed, "--weights-prefix", "model.", "--seconds", "0.05", "--batch", "4")
check("bench --weights-prefix", rc == 0 and "throughput" in out and not err, (rc, out, err))
rc, eval_want, err = run(exe, "eval", "--data", x, "--labels", labels, "--weights", plain)
rc2, out, err2 = run(exe, "eval", "--data", x, "--labels", labels, "--weights", prefixed, "--weights-prefix", "model.")
check("eval --weights-prefix: the plain file's accuracy and loss", rc == rc2 == 0 and out == eval_want and not err2, (err, err2))
rc, out, err = run(exe, "eval", "--data", x, "--labels", labels, "--weights", prefixed)
check("eval: the error suggests the prefix", rc == 1 and one_line(err, "--weights-prefix model."), err)
rc, out, err = run(exe, "train", "--data", x, "--labels", labels, "--weights", prefixed, "--weights-prefix", "model.",
                   "--epochs", "1", "--save", path("t1.st"))
rc2, out2, err2 = run(exe, "train", "--data", x, "--labels", labels, "--weights", plain, "--epochs", "1",
                      "--save", path("t2.st"))
check("train --weights-prefix: the plain file's training", rc == rc2 == 0 and not err
      and open(path("t1.st"), "rb").read() == open(path("t2.st"), "rb").read(), (err, err2))
rc, out, err = run(exe, "train", "--data", x, "--labels", labels, "--weights-prefix", "model.", "--epochs", "1")
check("train --weights-prefix without --weights", rc == 1 and one_line(err, "needs --weights"), err)
rc, out, err = run(exe, "bench", "--train", "--weights", prefixed, "--weights-prefix", "model.", "--seconds", "0.05",
                   "--batch", "4")
check("bench --train --weights-prefix", rc == 0 and "throughput" in out and not err, (rc, out, err))

# Extra tensors: loaded without them, and one warning that lists them.
rc, out, err = run(exe, "infer", "--input", x, "--weights", extra)
check("extra tensors: the same outputs", rc == 0 and out == want, err)
check("extra tensors: one warning listing them",
      one_line(err, "warning: ", "extra.safetensors: 2 tensors are not parameters of network 'digits_mlp' and were not "
               "loaded: 'extra.a', 'bn.num_batches_tracked'"), err)
rc, out, err = run(exe, "infer", "--input", x, "--weights", many)
check("many extra tensors: the first 8 and a count",
      rc == 0 and one_line(err, "12 tensors are not parameters", "'x07' and 4 more") and "'x08'" not in err, err)
rc, out, err = run(exe, "eval", "--data", x, "--labels", labels, "--weights", extra)
check("eval warns of extra tensors too", rc == 0 and out == eval_want and one_line(err, "'extra.a'"), (rc, err))
rc, out, err = run(exe, "train", "--data", x, "--labels", labels, "--weights", extra, "--epochs", "1")
check("train --weights warns of extra tensors too", rc == 0 and one_line(err, "warning: ", "'extra.a'"), (rc, err))
rc, out, err = run(exe, "infer", "--input", x, "--weights", path("t1.st"))
check("a pnet checkpoint's optimizer state is no surprise: no warning", rc == 0 and not err, err)
pre_extra = safetensors("pre_extra.safetensors", [("model." + k, s, v) for k, s, v in W] + [("head.w", [1], [0.0])])
rc, out, err = run(exe, "infer", "--input", x, "--weights", pre_extra, "--weights-prefix", "model.")
check("with a prefix, the tensors outside it are the extra ones", rc == 0 and out == want and one_line(err, "1 tensor is",
      "'head.w'"), err)

# pnetc --weights: the same suggestion and option.
emb = path("emb")
rc, _, err = run(PNETC, os.path.join(SRC, "examples", "digits_mlp.pnet"), "--weights", prefixed, "-o", emb)
check("pnetc --weights: the error suggests --weights-prefix", rc == 1 and one_line(err, "--weights-prefix model."), err)
rc, _, err = run(PNETC, os.path.join(SRC, "examples", "digits_mlp.pnet"), "--weights", prefixed, "--weights-prefix",
                 "model.", "-o", emb)
check("pnetc --weights-prefix model.: embeds the same weights", rc == 0 and not err
      and run(emb, "infer", "--input", x)[1] == want, err)
rc, _, err = run(PNETC, os.path.join(SRC, "examples", "digits_mlp.pnet"), "--weights", extra, "-o", emb)
check("pnetc --weights warns of extra tensors", rc == 0 and one_line(err, "warning: ", "'extra.a'"), err)
rc, _, err = run(PNETC, os.path.join(SRC, "examples", "digits_mlp.pnet"), "--weights-prefix", "model.", "-o", emb)
check("pnetc --weights-prefix without --weights", rc == 1 and one_line(err, "--weights-prefix", "--weights"), err)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
