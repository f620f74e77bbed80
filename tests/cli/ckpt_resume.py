#!/usr/bin/env python3
"""`./net train --resume` of a checkpoint whose metadata was edited: every field is checked as the
option that sets it, so a bad one fails with exit status 1 and one line naming the file and the field,
before any training, and the checkpoint given to --save is left as it was. Good edits still resume.
Run by tests/cli/embed_test.sh.

usage: ckpt_resume.py PNETC SOURCE_DIR
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

PNETC, SRC = sys.argv[1], sys.argv[2]
TMP = tempfile.mkdtemp(prefix="pnet-ckpt-")
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    passed += ok
    failed += not ok
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else " " + detail))


def path(name):
    return os.path.join(TMP, name)


def run(*args):
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def edit_meta(src, dst, **meta):
    blob = open(src, "rb").read()
    hlen = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + hlen])
    header["__metadata__"].update(meta)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + blob[8 + hlen:])
    return dst


net = path("net")
rc, _, err = run(PNETC, os.path.join(SRC, "tests", "train", "cases", "mlp_sgd.pnet"), "-o", net)
check("compile mlp_sgd", rc == 0, err)
data = path("d.csv")
with open(data, "w") as f:
    for i in range(12):
        f.write(",".join("%.3f" % (((i * 7 + k) % 11) / 11.0) for k in range(20)) + ",%d\n" % (i % 5))
ckpt = path("ck.safetensors")
rc, _, err = run(net, "train", "--data", data, "--epochs", "1", "--batch", "4", "--save", ckpt)
check("train one epoch", rc == 0, err)

for key, value, expected in [
        ("lr", "nan", "a finite number > 0"), ("lr", "-1", "a finite number > 0"), ("lr", "0", "a finite number > 0"),
        ("lr", "inf", "a finite number > 0"),
        ("epoch", "-3", "a decimal integer from 0 to 1000000"),
        ("epoch", "99999999999999999999", "a decimal integer from 0 to 1000000"),
        ("epoch", "2.0", "a decimal integer"), ("batch", "-1", "a decimal integer"), ("step", "-5", "a decimal integer"),
        ("step", "9223372036854775808", "a decimal integer"), ("seed", "-1", "a decimal integer"),
        ("batch_size", "0x20", "a decimal integer"), ("shuffle", "yes", "a decimal integer from -1 to 1"),
        ("optimizer", "lbfgs", '"sgd" or "adam"')]:
    bad = edit_meta(ckpt, path("bad.safetensors"), **{key: value})
    before = open(bad, "rb").read()
    rc, out, err = run(net, "train", "--data", data, "--epochs", "3", "--batch", "4", "--resume", bad, "--save", bad)
    lines = [l for l in err.splitlines() if l.strip()]
    want = "bad.safetensors: metadata field '%s' is \"%s\"; expected %s" % (key, value, expected)
    check("--resume with %s %r" % (key, value),
          rc == 1 and len(lines) == 1 and want in err and "epoch" not in out and open(bad, "rb").read() == before,
          "(rc=%d, stdout=%r, stderr=%r)" % (rc, out, err.strip()))

# Good values resume: a checkpoint after epoch 1 of 2 trains epoch 2 only.
good = edit_meta(ckpt, path("good.safetensors"), lr="0.05")
rc, out, err = run(net, "train", "--data", data, "--epochs", "2", "--resume", good)
check("--resume of an edited but valid checkpoint", rc == 0 and out.removeprefix(out.split("\n", 1)[0] + "\n" if out.startswith("schedule: ") else "").startswith("epoch 2/2") and out.count("epoch") == 1,
      "(rc=%d, stdout=%r, stderr=%r)" % (rc, out, err.strip()))
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
