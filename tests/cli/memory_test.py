#!/usr/bin/env python3
"""Memory of `infer` with weights from a safetensors file (docs/performance.md, "Memory").

1. A 48 MiB network of four dense layers in two stages peaks within 1.3x its parameter bytes,
   plus its arenas, plus the resident baseline of a tiny network run the same way: the weights
   go straight from the file into the prepared (packed) buffer, with no raw copy beside it.
   bench prints that peak.
2. Under an address-space limit too small for a network's parameters, infer fails with one line
   that names the bytes it needed, and exit status 1.
3. Training at batch 1024 (32 chunks) holds about parameters x (2 + optimizer state + log2 chunks)
   plus the activations, not one gradient slot per chunk: the issue's two-stage MLP (40 MiB), and
   the same layers with batchnorm, whose step is cut into segments (docs/training.md).

usage: memory_test.py PNETC"""
import json
import os
import re
import resource
import struct
import subprocess
import sys
import tempfile

pnetc = sys.argv[1]
tmp = tempfile.mkdtemp(prefix="pnet-memory-")
failed = 0
MiB = 1024.0 * 1024.0


def check(what, ok, detail=""):
    global failed
    print(("PASS " if ok else "FAIL ") + what)
    if not ok:
        failed += 1
        if detail:
            print("    " + detail.replace("\n", "\n    "))


def mlp(name, dims):
    """Dense layers dims[0] -> dims[1] -> ..., the first half in stage 0, the rest in stage 1."""
    n = len(dims) - 1
    layers = []
    for i in range(n):
        src = "x" if i == 0 else "h%d" % i
        act = "" if i == n - 1 else "  h%d = relu(fc%d);" % (i + 1, i + 1)
        layers.append("        fc%d = dense(%s, %d);%s" % (i + 1, src, dims[i + 1], act))
    half = (n + 1) // 2
    src = ("network %s {\n    input x : f32[batch, %d];\n    @partition(0) {\n%s\n    }\n"
           "    @partition(1) {\n%s\n    }\n    output y = fc%d;\n}\n"
           % (name, dims[0], "\n".join(layers[:half]), "\n".join(layers[half:]), n))
    path = os.path.join(tmp, name + ".pnet")
    with open(path, "w") as f:
        f.write(src)
    exe = os.path.join(tmp, name)
    r = subprocess.run([pnetc, path, "-o", exe], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("pnetc failed on %s:\n%s" % (name, r.stderr))
    tensors = []
    for i in range(n):
        tensors += [("fc%d.weight" % (i + 1), [dims[i + 1], dims[i]]), ("fc%d.bias" % (i + 1), [dims[i + 1]])]
    return exe, tensors


def write_safetensors(path, tensors, sparse=False):
    """F32 tensors of small values; sparse: all zero, as a sparse file (nothing written)."""
    hdr, off = {}, 0
    for name, shape in tensors:
        n = 4
        for s in shape:
            n *= s
        hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    block = struct.pack("<1024f", *[((k * 7919) % 1000 - 500) * 2e-5 for k in range(1024)])
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        if sparse:
            f.truncate(8 + len(h) + off)
            return off
        for name, shape in tensors:
            n = 4
            for s in shape:
                n *= s
            while n > 0:
                f.write(block[:min(n, len(block))])
                n -= len(block)
    return off


def write_npy(path, rows, cols):
    h = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    h += " " * (-(10 + len(h) + 1) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode())
        f.write(struct.pack("<%df" % (rows * cols), *[(k % 17) * 0.05 for k in range(rows * cols)]))


def infer(exe, weights, dim, limit=None):
    """Runs infer on 8 samples with 2 threads under an address-space limit; returns (status, stderr)."""
    x = os.path.join(tmp, "x%d.npy" % dim)
    write_npy(x, 8, dim)
    env = dict(os.environ, OMP_NUM_THREADS="2")

    def cap():
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    p = subprocess.Popen([exe, "infer", "--weights", weights, "--input", "x=" + x, "--output",
                          "y=" + os.path.join(tmp, "y.npy")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, preexec_fn=cap)
    _, err = p.communicate()
    return p.returncode, err.decode()


def peak_rss(exe, weights, dim):
    """Runs infer as a child of a fresh interpreter, which reports only that child's ru_maxrss."""
    x = os.path.join(tmp, "x%d.npy" % dim)
    write_npy(x, 8, dim)
    code = ("import os,resource,sys\n"
            "pid=os.fork()\n"
            "if pid==0:\n"
            "    os.execv(sys.argv[1],sys.argv[1:])\n"
            "_,st,ru=os.wait4(pid,0)\n"
            "print(ru.ru_maxrss*1024, os.waitstatus_to_exitcode(st))\n")
    r = subprocess.run([sys.executable, "-c", code, exe, "infer", "--weights", weights, "--input", "x=" + x,
                        "--output", "y=" + os.path.join(tmp, "y.npy")], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="2"))
    rss, rc = r.stdout.split()
    return int(rss), int(rc), r.stderr


def arena_bytes(exe):
    """The full-chunk arena of `info`'s memory plan, in bytes."""
    out = subprocess.run([exe, "info"], capture_output=True, text=True).stdout
    m = re.search(r"arena: .* = ([0-9.]+) (B|KiB|MiB|GiB)", out)
    scale = {"B": 1, "KiB": 1024, "MiB": MiB, "GiB": 1024 * MiB}[m.group(2)]
    return float(m.group(1)) * scale


# 1. Peak resident memory of infer.
tiny, tiny_t = mlp("tiny", [16, 16, 16, 16, 16])
tiny_w = os.path.join(tmp, "tiny.safetensors")
write_safetensors(tiny_w, tiny_t)
base, rc, err = peak_rss(tiny, tiny_w, 16)
check("the tiny network runs", rc == 0, err)

mid, mid_t = mlp("mid", [1024, 2048, 2048, 2048, 1024])
mid_w = os.path.join(tmp, "mid.safetensors")
params = write_safetensors(mid_w, mid_t)
rss, rc, err = peak_rss(mid, mid_w, 1024)
check("the 48 MiB network runs", rc == 0, err)
# Arenas: the replica groups' full-chunk arenas (one per thread) and the pipeline's micro-batch
# slots, which together hold at most one more chunk: three full arenas at two threads.
arenas = 3 * arena_bytes(mid)
slack = 4 * MiB  # page rounding, the loader's slice buffer (4 MiB at most), stdio
limit = 1.3 * params + arenas + base + slack
check("peak resident %.1f MiB <= 1.3 x %.1f MiB parameters + %.1f MiB arenas + %.1f MiB baseline + %.0f MiB"
      % (rss / MiB, params / MiB, arenas / MiB, base / MiB, slack / MiB), rss <= limit,
      "over the bound by %.1f MiB" % ((rss - limit) / MiB))

# bench prints the process's peak resident memory beside the parameters.
out = subprocess.run([mid, "bench", "--weights", mid_w, "--batch", "8", "--seconds", "0.2"], capture_output=True,
                     text=True, env=dict(os.environ, OMP_NUM_THREADS="2")).stdout
m = re.search(r"^memory: peak resident ([0-9.]+) MiB, parameters ([0-9.]+) MiB$", out, re.M)
check("bench prints its peak resident memory, within the same bound", m is not None
      and float(m.group(2)) == round(params / MiB, 1) and params < float(m.group(1)) * MiB <= limit, out)

# 2. A failed allocation: one line naming the bytes. The limit is the least power of two (from
# 256 MiB) under which the tiny network runs; the big network's 2 GiB of parameters cannot fit.
big, big_t = mlp("big", [16384, 32768, 16])
big_w = os.path.join(tmp, "big.safetensors")
big_bytes = write_safetensors(big_w, big_t, sparse=True)
limit = 256 * 1024 * 1024
while limit < 2 * 1024 * 1024 * 1024 and infer(tiny, tiny_w, 16, limit)[0] != 0:
    limit *= 2
check("the tiny network runs under an address-space limit (%d MiB)" % (limit >> 20), infer(tiny, tiny_w, 16, limit)[0] == 0)
rc, err = infer(big, big_w, 16384, limit)
print("    " + err.strip())
lines = err.strip().split("\n")
m = re.search(r"cannot allocate (\d+) bytes", err)
check("a network that cannot get its memory fails with status 1", rc == 1, "status %d: %s" % (rc, err))
check("with one line naming the bytes it needed", len(lines) == 1 and m is not None and int(m.group(1)) >= big_bytes,
      err)

# 3. Training memory: the folded gradient tree, with and without batchnorm's segments.
def human_bytes(text):
    m = re.match(r"([0-9.]+) (B|KiB|MiB|GiB)", text)
    return float(m.group(1)) * {"B": 1, "KiB": 1024, "MiB": MiB, "GiB": 1024 * MiB}[m.group(2)]


TRAIN_NETS = {
    "trmlp": """network trmlp {
    input x : f32[batch, 1024];
    @partition(0) { h1 = relu(dense(x, 2048)); h2 = relu(dense(h1, 2048)); }
    @partition(1) { h3 = relu(dense(h2, 2048)); output y = dense(h3, 10); }
    train { label : i32[batch]; loss = cross_entropy(y, label); optimizer = sgd(lr = 0.01, momentum = 0.9); batch = 1024; }
}
""",
    "trbn": """network trbn {
    input x : f32[batch, 1024];
    h1 = relu(batchnorm(dense(x, 2048)));
    h2 = relu(batchnorm(dense(h1, 2048)));
    h3 = relu(dense(h2, 2048));
    output y = dense(h3, 10);
    train { label : i32[batch]; loss = cross_entropy(y, label); optimizer = sgd(lr = 0.01, momentum = 0.9); batch = 1024; }
}
""",
}
for name, src in TRAIN_NETS.items():
    path = os.path.join(tmp, name + ".pnet")
    with open(path, "w") as f:
        f.write(src)
    exe = os.path.join(tmp, name)
    r = subprocess.run([pnetc, path, "-o", exe], capture_output=True, text=True)
    check("%s compiles" % name, r.returncode == 0, r.stderr)
    if r.returncode != 0:
        continue
    info = subprocess.run([exe, "info"], capture_output=True, text=True).stdout
    m = re.search(r"kept for backward, and gradients: ([0-9.]+ [KMG]?i?B) per sample", info)
    act = human_bytes(m.group(1)) * 1024 if m else 0
    out = subprocess.run([exe, "bench", "--train", "--batch", "1024", "--seconds", "0.2", "--threads", "1"],
                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    m2 = re.search(r"^memory: peak resident ([0-9.]+) MiB, parameters ([0-9.]+) MiB$", out.stdout, re.M)
    if not (m and m2 and out.returncode == 0):
        check("%s trains at batch 1024" % name, False, out.stdout + out.stderr)
        continue
    rss, params_mib = float(m2.group(1)) * MiB, float(m2.group(2))
    # Raw and prepared parameters, transposed weights, W in the panels dx reads (all but the first
    # layer's), momentum, and the stack of a 32-chunk tree (6 partial sums at most: log2 32 + 1),
    # and 1 more of slack: 12 copies. One gradient slot per chunk would be 36.
    limit = params_mib * MiB * 12 + act + base + 16 * MiB
    check("%s at batch 1024: peak resident %.1f MiB <= %.1f MiB parameters x 12 + %.1f MiB activations + %.1f MiB "
          "baseline + 16 MiB" % (name, rss / MiB, params_mib, act / MiB, base / MiB), rss <= limit,
          "over the bound by %.1f MiB" % ((rss - limit) / MiB))
    check("%s's info says its gradients are folded" % name, "folded into at most" in info, info)

sys.exit(1 if failed else 0)
