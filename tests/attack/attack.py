#!/usr/bin/python3
"""The attack: pnet tested the way trusted systems are, as a bounded, rerunnable run.

Run by scripts/attack.sh (which builds pnet first); the standard library only.

    attack.py --pnetc PNETC --src SOURCE_DIR [--build BUILD_DIR] [--seconds N] [--quick]
              [--seed S] [--cases N] [--only CATEGORY,...] [--keep DIR] [--verbose]

Each category runs a fixed list of crafted cases, and the mutation categories then run random
cases drawn from --seed until their share of --seconds is spent (or --cases N each, for a run
that does not depend on the machine's speed). Every process runs under a time limit. A case passes
when pnet keeps its promise for it:

- never a crash: no exit by a signal (other than the one the case sent), no exit status other
  than 0 or 1, no sanitizer or internal-error report;
- never a hang: every process finishes within its limit;
- a failure is exit status 1 with one non-empty line on stderr naming the file (pnetc: the first
  line a clang-style diagnostic or `pnetc: error:`);
- no data lost: an existing checkpoint or output is byte-identical after a failed or interrupted
  write, and no temporary file `.NAME.pnet-tmp.*` is left (after SIGKILL, the next write must
  remove it);
- a run interrupted by a signal resumes to the same checkpoint, byte for byte, as an
  uninterrupted run.

Prints a Markdown table (category | cases | passed | failed), then each failure with a command
that reproduces it (its input kept under --keep, by default a directory printed at the end), and
exits 1 when any case failed.
"""
import argparse
import gzip
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time

SAN = re.compile(r"Sanitizer|runtime error:|internal error|PN_ASSERT|Assertion .* failed|double free|stack smashing")
FIRST = re.compile(r"^(\S+:\d+:\d+: (fatal )?error: |pnetc: (fatal )?error: |\S+: error: )")
WARN = re.compile(r"^\S+(:\d+:\d+)?: (warning|note): ")
TMPNAME = re.compile(r"^\..*\.pnet-tmp\.")


class Result:
    def __init__(self, argv, rc, out, err, took, limit):
        self.argv, self.rc, self.out, self.err, self.took, self.limit = argv, rc, out, err, took, limit

    def cmd(self):
        return shlex.join(str(a) for a in self.argv)


def run(argv, limit=20, stdin=None, cwd=None, env=None):
    """Runs argv in its own process group; on the time limit the whole group is killed (rc None)."""
    t0 = time.time()
    p = subprocess.Popen([str(a) for a in argv], stdin=stdin if stdin is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True)
    try:
        out, err = p.communicate(timeout=limit)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        rc = None
    return Result(argv, rc, out.decode(errors="replace"), err.decode(errors="replace"), time.time() - t0, limit)


def signame(n):
    try:
        return signal.Signals(n).name
    except ValueError:
        return "signal %d" % n


def promise(res, expect="any", names=(), pnetc=False, sent=None, one_line=True):
    """The problems with one finished process: crash, hang, sanitizer text, exit status, error form.
    expect: "ok" (exit 0), "fail" (exit 1) or "any"; names: a failure's line must hold one of them."""
    p = []
    if res.rc is None:
        return ["hung: killed after %d s" % res.limit]
    if SAN.search(res.err):
        p.append("sanitizer or internal error: %r" % SAN.search(res.err).group(0))
    rc = res.rc
    if rc < 0 or rc >= 128:
        n = -rc if rc < 0 else rc - 128
        if sent is None or n != sent:
            p.append("crashed: %s (exit %d)" % (signame(n), rc))
        return p
    if rc not in (0, 1):
        p.append("exit status %d" % rc)
        return p
    lines = [l for l in res.err.splitlines() if l.strip()]
    if rc == 1:
        if not lines:
            p.append("exit 1 with nothing on stderr")
        elif pnetc:
            first = next((l for l in lines if not WARN.match(l)), "")
            if not FIRST.match(first):
                p.append("first line is not a diagnostic: %r" % first[:200])
        else:
            if one_line and len(lines) != 1:
                p.append("%d lines on stderr, not one: %r" % (len(lines), " | ".join(lines)[:300]))
            if names and not any(os.path.basename(str(n)) in lines[0] for n in names):
                p.append("the error does not name %s: %r" % (os.path.basename(str(names[0])), lines[0][:200]))
    if expect == "fail" and rc == 0:
        p.append("accepted (exit 0) where an error was expected")
    if expect == "ok" and rc == 1:
        p.append("refused: %r" % (lines[0][:200] if lines else ""))
    return p


def temps(d):
    return sorted(n for n in os.listdir(d) if TMPNAME.match(n))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path


def st_problem(path):
    """Why a file is not one complete pnet checkpoint (None when it is)."""
    try:
        b = read(path)
    except OSError as e:
        return "cannot read: %s" % e
    if len(b) < 8:
        return "%d bytes, shorter than a safetensors header" % len(b)
    n = struct.unpack("<Q", b[:8])[0]
    if 8 + n > len(b):
        return "header length %d past the end (%d bytes)" % (n, len(b))
    try:
        h = json.loads(b[8:8 + n])
        ends = [v["data_offsets"][1] for k, v in h.items() if k != "__metadata__"]
    except (ValueError, KeyError, TypeError, IndexError) as e:
        return "bad header: %s" % e
    if 8 + n + max(ends) != len(b):
        return "torn: %d bytes, the header describes %d" % (len(b), 8 + n + max(ends))
    if h.get("__metadata__", {}).get("format") != "pnet-checkpoint":
        return "no pnet-checkpoint metadata"
    return None


# ----------------------------------------------------------------------------------------------
# File builders (no numpy: the formats are written by hand).

def npy_bytes(descr="<f4", fortran="False", shape="(3, 64)", data=None, version=1, hlen=None, magic=b"\x93NUMPY",
              header=None, tail=b"", rows=3):
    if header is None:
        header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)
    lenbytes = 2 if version == 1 else 4
    pad = (64 - (len(magic) + 2 + lenbytes + len(header) + 1) % 64) % 64
    h = (header + " " * pad + "\n").encode("latin-1") if isinstance(header, str) else header
    if data is None:
        data = struct.pack("<%df" % (rows * 64), *[((i * 7) % 17) for i in range(rows * 64)])
    n = len(h) if hlen is None else hlen
    lb = struct.pack("<H", n & 0xFFFF) if version == 1 else struct.pack("<I", n & 0xFFFFFFFF)
    return magic + bytes([version & 255, 0]) + lb + h + data + tail


DIGITS_TENSORS = [("fc1.weight", [128, 64]), ("fc1.bias", [128]), ("fc2.weight", [10, 128]), ("fc2.bias", [10])]


def st_bytes(header, data, hlen=None, pad=True):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


def st_digits(rng=None):
    """A plain weights file for digits_mlp: header dict and data."""
    header, data = {}, b""
    for name, shape in DIGITS_TENSORS:
        n = 1
        for d in shape:
            n *= d
        chunk = struct.pack("<%df" % n, *[((i * 13) % 29 - 14) / 100.0 for i in range(n)])
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(chunk)]}
        data += chunk
    return header, data


def st_split(blob):
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def idx_bytes(kind, dims, payload):
    return bytes([0, 0, kind, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


# ----------------------------------------------------------------------------------------------

class Attack:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)
        self.pnetc = os.path.abspath(args.pnetc)
        self.src = os.path.abspath(args.src)
        self.work = tempfile.mkdtemp(prefix="pnet-attack-")
        self.keep = os.path.abspath(args.keep) if args.keep else os.path.join(self.work, "failures")
        os.makedirs(self.keep, exist_ok=True)
        self.cats = []  # [name, cases, passed, failures]
        self.notes = []
        self.mounts = []
        self.start = time.time()

    # --- bookkeeping
    def cat(self, name):
        self.cur = [name, 0, 0, []]
        self.cats.append(self.cur)

    def case(self, name, problems, res=None, inputs=(), repro=None):
        self.cur[1] += 1
        if not problems:
            self.cur[2] += 1
            if self.a.verbose:
                print("ok   [%s] %s" % (self.cur[0], name), flush=True)
            return True
        kept = []
        cmd = repro or (res.cmd() if res else "")
        for path in inputs:
            if os.path.isfile(path):
                dst = os.path.join(self.keep, "%s-%d-%s" % (re.sub(r"\W", "", self.cur[0].split()[0]), self.cur[1],
                                                           os.path.basename(path)))
                shutil.copyfile(path, dst)
                kept.append(dst)
                cmd = cmd.replace(path, dst)
        self.cur[3].append("%s: %s%s%s" % (name, "; ".join(problems), ("\n    reproduce: " + cmd) if cmd else "",
                                              ("\n    input kept: " + " ".join(kept)) if kept else ""))
        print("FAIL [%s] %s: %s" % (self.cur[0], name, "; ".join(problems)), flush=True)
        return False

    def note(self, text):
        self.notes.append("%s: %s" % (self.cur[0], text))
        print("NOTE [%s] %s" % (self.cur[0], text), flush=True)

    def p(self, *parts):
        return os.path.join(self.work, *parts)

    def budget(self, share):
        return self.a.seconds * share

    def loop(self, share, fn, at_least=0):
        """Runs fn(i) until the category's time share is spent (or --cases N), at least at_least times."""
        t0, i = time.time(), 0
        while True:
            if i < at_least:
                pass
            elif self.a.cases is not None:
                if i >= self.a.cases:
                    break
            elif time.time() - t0 >= self.budget(share):
                break
            fn(i)
            i += 1

    def exe(self, *args, limit=30, **kw):
        return run([self.net] + list(args), limit=limit, **kw)

    # --- setup: compile the networks, the small data sets and their checkpoints
    def setup(self):
        os.makedirs(self.p("in"))
        self.net = self.p("digits_mlp")
        r = run([self.pnetc, os.path.join(self.src, "examples", "digits_mlp.pnet"), "-o", self.net], limit=300)
        if r.rc != 0:
            sys.exit("attack: cannot compile digits_mlp: " + r.err)
        self.pipe = self.p("pipe")
        r = run([self.pnetc, "-w", os.path.join(self.src, "tests", "train", "cases", "pipe.pnet"), "-o", self.pipe],
                limit=300)
        if r.rc != 0:
            sys.exit("attack: cannot compile pipe: " + r.err)
        rows = gzip.decompress(read(os.path.join(self.src, "examples", "data", "digits_train.csv.gz"))).decode().splitlines()
        self.rows = rows
        self.small = write(self.p("small.csv"), "\n".join(rows[:96]) + "\n")
        self.mid = write(self.p("mid.csv"), "\n".join(rows[:480]) + "\n")
        self.x = write(self.p("x.npy"), npy_bytes())
        self.ck1 = self.p("ck1.st")
        r = self.exe("train", "--data", self.small, "--epochs", "1", "--save", self.ck1)
        if r.rc != 0:
            sys.exit("attack: cannot train digits_mlp: " + r.err)
        self.ck1_bytes = read(self.ck1)
        h, d = st_digits()
        self.weights = write(self.p("w.st"), st_bytes(h, d))

    # ------------------------------------------------------------------------------------------
    # 1. .pnet sources through pnetc --check and pnetc -o
    def cat_pnet(self):
        self.cat("`.pnet` sources")
        valid, diag = [], []  # valid networks, and the golden diagnostics' sources (errors by design)
        for d in ("examples", "stdlib", "tests/diag", "tests/e2e/cases", "tests/train/cases"):
            full = os.path.join(self.src, d)
            for n in sorted(os.listdir(full)):
                if n.endswith(".pnet"):
                    (diag if d == "tests/diag" else valid).append((full, read(os.path.join(full, n))))
        tok = re.compile(rb'[A-Za-z_][A-Za-z_0-9]*|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|"[^"\n]*"|#[^\n]*|\S')
        words = [b"network", b"block", b"return", b"input", b"output", b"train", b"import", b"@partition", b"@shard",
                 b"@pipeline", b"dense", b"conv2d", b"reshape", b"f32", b"i32", b"batch", b"{", b"}", b"(", b")",
                 b"[", b"]", b";", b",", b"=", b":", b"+", b"*", b"/", b"-", b'"nn"', b"\xff", b"\x00"]
        numbers = [b"1", b"2", b"3", b"7", b"33", b"100", b"1000", b"65536", b"99999999999999999999999", b"9223372036854775807", b"9223372036854775808", b"18446744073709551616",
                   b"4294967296", b"-1", b"0", b"1e999", b"1e-400", b"0x10", b"nan", b"2147483648", b"1.5"]
        out = self.p("out-prev")
        prev = b"previous output\n"

        def mutate(b):
            did = []
            for _ in range(1 if self.rng.random() < 0.5 else self.rng.randint(2, 4)):
                op = self.rng.choice(["flip", "delete", "insert", "truncate", "swap", "dup", "replace", "number",
                                      "nest", "nest", "number"])
                toks = [m.span() for m in tok.finditer(b)]
                if not b or not toks:
                    b = bytearray(self.rng.choice(words))
                    continue
                pos = self.rng.randrange(len(b))
                s, e = toks[self.rng.randrange(len(toks))]
                if op == "flip":
                    b[pos] = self.rng.randrange(256)
                elif op == "delete":
                    del b[pos:pos + self.rng.randint(1, 40)]
                elif op == "insert":
                    b[pos:pos] = self.rng.choice(words)
                elif op == "truncate":
                    del b[pos:]
                elif op == "swap":
                    s2, e2 = toks[self.rng.randrange(len(toks))]
                    if e <= s2:
                        b[s2:e2], b[s:e] = b[s:e], b[s2:e2]
                elif op == "dup":
                    b[e:e] = b" " + b[s:e]
                elif op == "replace":
                    s2, e2 = toks[self.rng.randrange(len(toks))]
                    b[s:e] = bytes(b[s2:e2])
                elif op == "number":
                    nums = [m.span() for m in re.finditer(rb"(?<![A-Za-z_])\d+(?:\.\d+)?", bytes(b))]
                    if nums:
                        s, e = self.rng.choice(nums)
                    b[s:e] = self.rng.choice(numbers)
                else:
                    d = self.rng.choice([100, 3000, 30000])
                    kind = self.rng.randrange(3)
                    if kind == 0:
                        b[s:e] = b"(" * d + bytes(b[s:e]) + b")" * d
                    elif kind == 1:
                        b[s:e] = b"[" * d + bytes(b[s:e]) + b"]" * d
                    else:
                        b[s:s] = b"@partition(0) {" * d
                        b[e + 15 * d:e + 15 * d] = b"}" * d
                did.append(op)
            return bytes(b), did

        def one(i):
            d, base = self.rng.choice(diag if self.rng.random() < 0.25 else valid)
            data, ops = mutate(bytearray(base))
            path = write(self.p("in", "m%d.pnet" % i), data)
            r = run([self.pnetc, "--check", "-I", d, path], limit=60)
            self.case("mutant %d (%s) --check, exit %s" % (i, "+".join(ops), r.rc), promise(r, names=[path], pnetc=True),
                      r, [path])
            if (r.rc == 0 and self.rng.random() < 0.5) or i % 8 == 0:  # compiled: half the accepted ones
                write(out, prev)
                args = ["-c"] if i % 16 == 0 else []
                r = run([self.pnetc, "-I", d, path] + args + ["-o", out], limit=120)
                probs = promise(r, names=[path], pnetc=True)
                if r.rc == 1 and read(out) != prev:
                    probs.append("a failed compile changed the existing -o file")
                if r.rc == 0 and read(out)[:4] != b"\x7fELF":
                    probs.append("-o wrote something that is not ELF")
                if temps(self.work):
                    probs.append("temporary files left: %s" % temps(self.work))
                self.case("mutant %d (%s) -o, exit %s" % (i, "+".join(ops), r.rc), probs, r, [path])
                for t in temps(self.work):
                    os.unlink(self.p(t))
            os.unlink(path)

        self.loop(0.22, one)

    # ------------------------------------------------------------------------------------------
    # 2. .npy files through infer --input
    def cat_npy(self):
        self.cat("`.npy` inputs")
        out = self.p("probs.npy")
        prev = b"previous probs\n"
        f4 = struct.pack("<192f", *[float(i % 17) for i in range(192)])
        crafted = [
            ("valid", npy_bytes(), "ok"),
            ("float64", npy_bytes("<f8", data=struct.pack("<192d", *[1.0] * 192)), "ok"),
            ("int32", npy_bytes("<i4", data=struct.pack("<192i", *[1] * 192)), "ok"),
            ("int64", npy_bytes("<i8", data=struct.pack("<192q", *[1] * 192)), "ok"),
            ("uint8", npy_bytes("|u1", data=bytes(192)), "ok"),
            ("nan and inf values", npy_bytes(data=struct.pack("<192f", *([float("nan"), float("inf")] * 96))), "ok"),
            ("version 2", npy_bytes(version=2), "ok"),
            ("gzip", gzip.compress(npy_bytes()), "ok"),
            ("batch 0", npy_bytes(shape="(0, 64)", data=b""), "any"),
            ("big-endian f4", npy_bytes(">f4"), "any"),
            ("version 3", npy_bytes(version=3), "any"),
            ("fortran order", npy_bytes(fortran="True"), "any"),
            ("trailing bytes", npy_bytes(tail=b"\0" * 100), "any"),
            ("float16", npy_bytes("<f2", data=bytes(384)), "fail"),
            ("int16", npy_bytes("<i2", data=bytes(384)), "fail"),
            ("int8", npy_bytes("|i1", data=bytes(192)), "fail"),
            ("bool", npy_bytes("|b1", data=bytes(192)), "fail"),
            ("complex", npy_bytes("<c8", data=bytes(1536)), "fail"),
            ("object", npy_bytes("|O", data=bytes(1536)), "fail"),
            ("string", npy_bytes("|S4"), "fail"),
            ("unicode", npy_bytes("<U1"), "fail"),
            ("descr empty", npy_bytes(""), "fail"),
            ("descr number", npy_bytes(header="{'descr': 4, 'fortran_order': False, 'shape': (3, 64), }"), "fail"),
            ("shape (3, 63)", npy_bytes(shape="(3, 63)", data=f4[:756]), "fail"),
            ("shape (3, 65)", npy_bytes(shape="(3, 65)", data=f4 + bytes(12)), "fail"),
            ("shape (192,)", npy_bytes(shape="(192,)"), "fail"),
            ("shape ()", npy_bytes(shape="()", data=f4[:4]), "fail"),
            ("shape (3, 8, 8)", npy_bytes(shape="(3, 8, 8)"), "any"),
            ("shape (-1, 64)", npy_bytes(shape="(-1, 64)"), "fail"),
            ("shape (2**62, 64)", npy_bytes(shape="(%d, 64)" % 2 ** 62), "fail"),
            ("shape (2**63, 64)", npy_bytes(shape="(%d, 64)" % 2 ** 63), "fail"),
            ("shape (2**64+3, 64)", npy_bytes(shape="(%d, 64)" % (2 ** 64 + 3)), "fail"),
            ("shape 23 digits", npy_bytes(shape="(99999999999999999999999, 64)"), "fail"),
            ("shape product overflow", npy_bytes(shape="(4294967296, 4294967296, 4294967296, 64)"), "fail"),
            ("shape 40 dims", npy_bytes(shape="(" + "1, " * 40 + "3, 64)"), "fail"),
            ("shape float", npy_bytes(shape="(3.0, 64)"), "fail"),
            ("shape string", npy_bytes(shape="('3', 64)"), "fail"),
            ("shape unclosed", npy_bytes(shape="(3, 64"), "fail"),
            ("shape no comma", npy_bytes(shape="(3 64)"), "fail"),
            ("shape list", npy_bytes(shape="[3, 64]"), "any"),
            ("no shape", npy_bytes(header="{'descr': '<f4', 'fortran_order': False, }"), "fail"),
            ("no descr", npy_bytes(header="{'fortran_order': False, 'shape': (3, 64), }"), "fail"),
            ("duplicate shape", npy_bytes(header="{'descr': '<f4', 'fortran_order': False, 'shape': (9, 64), 'shape': (3, 64), }"), "any"),
            ("header not a dict", npy_bytes(header="[1, 2, 3]"), "fail"),
            ("NUL in descr", npy_bytes(header="{'descr': '<f4\0', 'fortran_order': False, 'shape': (3, 64), }"), "fail"),
            ("NUL in a key", npy_bytes(header="{'descr\0': '<f4', 'fortran_order': False, 'shape': (3, 64), }"), "fail"),
            ("NUL in the shape", npy_bytes(header="{'descr': '<f4', 'fortran_order': False, 'shape': (3,\0 64), }"), "fail"),
            ("header no newline", npy_bytes(header=b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 64), }" + b" " * 54), "any"),
            ("header 1 MB (v2)", npy_bytes(version=2, header="{'descr': '<f4', 'fortran_order': False, 'shape': (3, 64), }" + " " * 1000000), "any"),
            ("header length 0", npy_bytes(hlen=0), "fail"),
            ("header length 1", npy_bytes(hlen=1), "fail"),
            ("header length 65535", npy_bytes(hlen=65535), "fail"),
            ("header length 2**32-1 (v2)", npy_bytes(version=2, hlen=2 ** 32 - 1), "fail"),
            ("header length -1", npy_bytes(hlen=118 - 1), "fail"),
            ("magic", npy_bytes(magic=b"\x93NUMPZ"), "fail"),
            ("version 0", npy_bytes(version=0), "fail"),
            ("version 255", npy_bytes(version=255), "fail"),
            ("empty file", b"", "fail"),
            ("magic only", b"\x93NUMPY", "fail"),
            ("gzip truncated", gzip.compress(npy_bytes())[:-20], "fail"),
            ("gzip bad crc", gzip.compress(npy_bytes())[:-8] + b"\0\0\0\0" + gzip.compress(npy_bytes())[-4:], "fail"),
            ("gzip of garbage", gzip.compress(b"garbage" * 100), "fail"),
            ("gzip header only", gzip.compress(npy_bytes())[:10], "fail"),
        ]
        base = npy_bytes()
        for n in sorted({0, 1, 5, 6, 8, 9, 10, 50, 127, 128, 129, 400, len(base) - 4, len(base) - 1}):
            crafted.append(("truncated at %d" % n, base[:n], "fail"))

        def check(name, data, expect):
            path = write(self.p("in", "x.npy"), data)
            write(out, prev)
            r = self.exe("infer", "--input", "x=" + path, "--output", "probs=" + out)
            probs = promise(r, expect, [path])
            if r.rc == 1 and read(out) != prev:
                probs.append("a failed infer changed the existing --output file")
            if r.rc == 0 and read(out)[:6] != b"\x93NUMPY":
                probs.append("--output is not a .npy file")
            if temps(self.work):
                probs.append("temporary files left: %s" % temps(self.work))
            self.case(name, probs, r, [path])

        for name, data, expect in crafted:
            check(name, data, expect)
        gz = gzip.compress(base)

        def one(i):
            b = bytearray(self.rng.choice([base, base, gz]))
            ops = []
            for _ in range(self.rng.randint(1, 3)):
                op = self.rng.choice(["flip", "flip", "header", "truncate", "shape", "descr"])
                if len(b) < 16:
                    b = bytearray(base)
                hend = min(len(b), 128)
                if op == "flip":
                    b[self.rng.randrange(hend)] = self.rng.randrange(256)
                elif op == "header":
                    pos = self.rng.randrange(10, hend)
                    b[pos:pos] = bytes([self.rng.choice(b"(){}[]',:0123456789- \n\0")])
                elif op == "truncate":
                    del b[self.rng.randrange(len(b)):]
                elif op == "shape":
                    s = self.rng.choice(["(3, 64)", "(0, 64)", "(%d, 64)" % self.rng.randrange(2 ** 63),
                                         "(3, %d)" % self.rng.randrange(1000), "(%d,)" % self.rng.randrange(10 ** 6),
                                         "(1, 3, 64)", "(3, -64)", "(,)", "((3), 64)"])
                    b = bytearray(npy_bytes(shape=s))
                else:
                    b = bytearray(npy_bytes(self.rng.choice(["<f4", ">f8", "<i4", "|u1", "<f", "f4", "<f16", "<i9"])))
                ops.append(op)
            check("mutant %d (%s)" % (i, "+".join(ops)), bytes(b), "any")

        self.loop(0.10, one)

    # ------------------------------------------------------------------------------------------
    # 3. safetensors through --weights
    def cat_safetensors(self):
        self.cat("safetensors `--weights`")
        h, d = st_digits()

        def hdr(**edit):
            hh = json.loads(json.dumps(h))
            for k, v in edit.items():
                name, field = k.split("__")
                name = name.replace("_", ".")
                if v is None:
                    del hh[name][field]
                else:
                    hh[name][field] = v
            return hh

        crafted = [
            ("valid", st_bytes(h, d), "ok"),
            ("checkpoint", self.ck1_bytes, "ok"),
            ("metadata", st_bytes(dict(h, __metadata__={"a": "b"}), d), "ok"),
            ("nan weights", st_bytes(h, struct.pack("<f", float("nan")) * (len(d) // 4)), "ok"),
            ("extra tensor", st_bytes(dict(h, extra={"dtype": "F32", "shape": [1], "data_offsets": [len(d), len(d) + 4]}), d + bytes(4)), "any"),
            ("F64", st_bytes({k: dict(v, dtype="F64", data_offsets=[2 * v["data_offsets"][0], 2 * v["data_offsets"][1]]) for k, v in h.items()}, d + d), "any"),
            ("F16", st_bytes({k: dict(v, dtype="F16", data_offsets=[v["data_offsets"][0] // 2, v["data_offsets"][1] // 2]) for k, v in h.items()}, d[:len(d) // 2]), "any"),
            ("BF16", st_bytes({k: dict(v, dtype="BF16", data_offsets=[v["data_offsets"][0] // 2, v["data_offsets"][1] // 2]) for k, v in h.items()}, d[:len(d) // 2]), "any"),
            ("duplicate key", st_bytes(json.dumps(h)[:-1].encode() + b', "fc2.bias": {"dtype": "F32", "shape": [10], "data_offsets": [0, 40]}}', d), "any"),
            ("missing tensor", st_bytes({k: v for k, v in h.items() if k != "fc2.bias"}, d[:-40]), "fail"),
            ("dtype I32", st_bytes(hdr(fc1_bias__dtype="I32"), d), "fail"),
            ("dtype U8", st_bytes(hdr(fc2_bias__dtype="U8"), d), "fail"),
            ("dtype bogus", st_bytes(hdr(fc1_weight__dtype="F33"), d), "fail"),
            ("dtype number", st_bytes(hdr(fc1_weight__dtype=5), d), "fail"),
            ("no dtype", st_bytes(hdr(fc1_weight__dtype=None), d), "fail"),
            ("shape wrong", st_bytes(hdr(fc1_weight__shape=[64, 128]), d), "fail"),
            ("shape short", st_bytes(hdr(fc1_weight__shape=[128, 63]), d), "fail"),
            ("shape empty", st_bytes(hdr(fc2_bias__shape=[]), d), "fail"),
            ("shape negative", st_bytes(hdr(fc2_bias__shape=[-10]), d), "fail"),
            ("shape huge", st_bytes(hdr(fc2_bias__shape=[2 ** 62, 2 ** 62]), d), "fail"),
            ("shape 2**64", st_bytes(hdr(fc2_bias__shape=[2 ** 64 + 10]), d), "fail"),
            ("shape strings", st_bytes(hdr(fc2_bias__shape=["10"]), d), "fail"),
            ("shape float", st_bytes(hdr(fc2_bias__shape=[10.0]), d), "any"),
            ("no shape", st_bytes(hdr(fc2_bias__shape=None), d), "fail"),
            ("offsets overlap", st_bytes(hdr(fc1_bias__data_offsets=[32000, 32512]), d), "fail"),
            ("offsets alias", st_bytes(hdr(fc2_bias__data_offsets=[0, 40]), d), "fail"),
            ("offsets past the end", st_bytes(hdr(fc2_bias__data_offsets=[38400, 38480]), d), "fail"),
            ("offsets far past the end", st_bytes(hdr(fc2_bias__data_offsets=[2 ** 63, 2 ** 63 + 40]), d), "fail"),
            ("offsets wrap", st_bytes(hdr(fc2_bias__data_offsets=[2 ** 64 - 8, 32]), d), "fail"),
            ("offsets reversed", st_bytes(hdr(fc2_bias__data_offsets=[38440, 38400]), d), "fail"),
            ("offsets negative", st_bytes(hdr(fc2_bias__data_offsets=[-40, 0]), d), "fail"),
            ("offsets float", st_bytes(hdr(fc2_bias__data_offsets=[38400.5, 38440]), d), "fail"),
            ("offsets three", st_bytes(hdr(fc2_bias__data_offsets=[38400, 38440, 38480]), d), "fail"),
            ("offsets size mismatch", st_bytes(hdr(fc2_bias__data_offsets=[38400, 38436]), d[:-4]), "fail"),
            ("no offsets", st_bytes(hdr(fc2_bias__data_offsets=None), d), "fail"),
            ("gap between tensors", st_bytes(hdr(fc2_bias__data_offsets=[38404, 38444]), d + bytes(4)), "fail"),
            ("trailing bytes", st_bytes(h, d + bytes(16)), "fail"),
            ("NUL in a name", st_bytes(dict(h, **{"fc2.bias\u0000x": {"dtype": "F32", "shape": [1], "data_offsets": [len(d), len(d) + 4]}}), d + bytes(4)), "fail"),
            ("NUL ending a name", st_bytes({(k + "\u0000" if k == "fc1.bias" else k): v for k, v in h.items()}, d), "fail"),
            ("control character in a name", st_bytes({(k + "\u0007" if k == "fc1.bias" else k): v for k, v in h.items()}, d), "fail"),
            ("newline in a name", st_bytes(dict(h, **{"a\nb": {"dtype": "F32", "shape": [1], "data_offsets": [len(d), len(d) + 4]}}), d + bytes(4)), "fail"),
            ("metadata not an object", st_bytes(dict(h, __metadata__=[1, 2]), d), "any"),
            ("metadata value a number", st_bytes(dict(h, __metadata__={"format": 5}), d), "any"),
            ("tensor not an object", st_bytes(dict(h, **{"fc2.bias": [1, 2]}), d), "fail"),
            ("header an array", st_bytes(b"[1, 2, 3]", d), "fail"),
            ("header a string", st_bytes(b'"abc"', d), "fail"),
            ("header null", st_bytes(b"null", d), "fail"),
            ("header empty", st_bytes(b"", d, pad=False), "fail"),
            ("header truncated JSON", st_bytes(json.dumps(h).encode()[:100], d), "fail"),
            ("header not UTF-8", st_bytes(json.dumps(h).encode().replace(b"fc1.bias", b"fc1.\xff\xfeas"), d), "fail"),
            ("header 100000-deep JSON", st_bytes(b"[" * 100000 + b"]" * 100000, d), "fail"),
            ("header 1 MB of spaces", st_bytes(json.dumps(h).encode() + b" " * 1000000, d), "any"),
            ("header length 0", st_bytes(h, d, hlen=0), "fail"),
            ("header length 7", st_bytes(h, d, hlen=7), "fail"),
            ("header length +1", st_bytes(h, d, hlen=len(st_bytes(h, b"")) - 8 + 1), "fail"),
            ("header length -1", st_bytes(h, d, hlen=len(st_bytes(h, b"")) - 8 - 1), "fail"),
            ("header length past the file", st_bytes(h, d, hlen=10 ** 7), "fail"),
            ("header length 2**63", st_bytes(h, d, hlen=2 ** 63), "fail"),
            ("header length 2**64-1", st_bytes(h, d, hlen=2 ** 64 - 1), "fail"),
            ("empty file", b"", "fail"),
            ("7 bytes", b"\x10\0\0\0\0\0\0", "fail"),
            ("gzip", gzip.compress(st_bytes(h, d)), "fail"),
        ]
        base = st_bytes(h, d)
        for n in (8, 9, 100, 200, 8 + len(json.dumps(h)) // 2, len(base) - 40 - 1, len(base) - 1):
            crafted.append(("truncated at %d" % n, base[:n], "fail"))

        def check(name, data, expect, also_eval=False, also_pnetc=False):
            path = write(self.p("in", "w.safetensors"), data)
            r = self.exe("infer", "--weights", path, "--input", "x=" + self.x)
            probs = promise(r, expect, [path])
            if also_eval:
                r2 = self.exe("eval", "--data", self.small, "--weights", path)
                probs += ["eval: " + q for q in promise(r2, expect, [path])]
                if r.rc is not None and r2.rc is not None and r.rc != r2.rc:
                    probs.append("infer and eval disagree (exit %d and %d)" % (r.rc, r2.rc))
            if also_pnetc:
                r3 = run([self.pnetc, "--weights", path, os.path.join(self.src, "examples", "digits_mlp.pnet"), "-c",
                          "-o", self.p("wo.o")], limit=120)
                probs += ["pnetc: " + q for q in promise(r3, expect, [path], pnetc=True)]
            self.case(name, probs, r, [path])

        for name, data, expect in crafted:
            check(name, data, expect, also_eval=True, also_pnetc=(expect == "fail"))
        keys = ["dtype", "shape", "data_offsets"]
        values = [0, -1, 1, 2 ** 31, 2 ** 32, 2 ** 63, 2 ** 64, 1e300, None, "", "F32", "I64", [], [0], [1, 2], [0, 0],
                  {}, [2 ** 63, 0], [38400, 38440], [128, 64], [10], "x" * 1000]

        def one(i):
            kind = self.rng.randrange(4)
            if kind == 0:  # one field of one tensor
                hh = json.loads(json.dumps(h))
                t = self.rng.choice(list(hh))
                k = self.rng.choice(keys)
                v = self.rng.choice(values)
                hh[t][k] = v
                name, data = "%s.%s = %r" % (t, k, v), st_bytes(hh, d)
            elif kind == 1:  # bytes of the header
                b = bytearray(base)
                end = 8 + len(json.dumps(h))
                for _ in range(self.rng.randint(1, 4)):
                    b[self.rng.randrange(end)] = self.rng.choice(b'{}[]",:0123456789-. \0\xff')
                name, data = "header bytes", bytes(b)
            elif kind == 2:  # a digit of an offset or shape
                s = bytearray(json.dumps(h).encode())
                digits = [m.start() for m in re.finditer(rb"\d", bytes(s))]
                for _ in range(self.rng.randint(1, 3)):
                    s[self.rng.choice(digits)] = self.rng.choice(b"0123456789")
                name, data = "digits", st_bytes(bytes(s), d)
            else:
                b = base[:self.rng.randrange(len(base))] if self.rng.random() < 0.5 else base + bytes(self.rng.randrange(1, 64))
                name, data = "length %d" % len(b), b
            check("mutant %d (%s)" % (i, name[:60]), data, "any", also_eval=(i % 4 == 0))

        self.loop(0.10, one)

    # ------------------------------------------------------------------------------------------
    # 4. checkpoints through train --resume and eval --weights
    def cat_ckpt(self):
        self.cat("checkpoints `--resume`")
        meta, data = st_split(self.ck1_bytes)

        def edited(meta_edit=None, drop=(), tensor_edit=None):
            hh = json.loads(json.dumps(meta))
            if meta_edit is not None:
                for k, v in meta_edit.items():
                    if v is None:
                        hh["__metadata__"].pop(k, None)
                    else:
                        hh["__metadata__"][k] = v
            for t in drop:
                hh.pop(t, None)
            if tensor_edit:
                hh[tensor_edit[0]][tensor_edit[1]] = tensor_edit[2]
            # keep the data block tiled: rebuild from the surviving tensors
            out, blob = {}, b""
            for k, v in hh.items():
                if k == "__metadata__":
                    out[k] = v
                    continue
                o0, o1 = meta[k]["data_offsets"]
                chunk = data[o0:o1]
                out[k] = dict(v, data_offsets=[len(blob), len(blob) + len(chunk)])
                blob += chunk
            return st_bytes(out, blob)

        bad = []
        for k, vals in [
                ("lr", ["nan", "-1", "0", "inf", "-inf", "1e400", "1e-400", "", "0.1x", "-0", "0.1 0.2"]),
                ("epoch", ["-3", "99999999999999999999", "1e3", "+1", " 1", "", "1000001", "0x1", "1.0", "1 "]),
                ("batch", ["-1", "abc", "9007199254740993", ""]),
                ("step", ["-5", "9223372036854775808", "9007199254740993", "1.5"]),
                ("seed", ["-1", "9223372036854775808", "1 ", "seed"]),
                ("batch_size", ["0x20", "-1", "16777217", "3e1"]),
                ("shuffle", ["2", "yes", "-2", ""]),
                ("optimizer", ["lbfgs", "", "SGD", "sgd "])]:
            for v in vals:
                bad.append(("%s = %r" % (k, v), edited({k: v}), "fail", k))
        # --lr reads its number with strtod, and the checkpoint's lr is read as --lr is
        bad += [("lr = %r" % v, edited({"lr": v}), "any", None) for v in ("0x1p-3", " 0.1")]
        bad.append(("optimizer = 'adam'", edited({"optimizer": "adam"}), "fail", None))
        # runtime/ckpt.h: epoch, batch, step and seed are required; lr, batch_size, shuffle and
        # optimizer are checked when present
        for k in ("epoch", "batch", "step", "seed"):
            bad.append(("%s missing" % k, edited({k: None}), "fail", k))
        for k in ("lr", "batch_size", "shuffle", "optimizer", "format", "network"):
            bad.append(("%s missing" % k, edited({k: None}), "any", None))
        bad += [
            ("format bogus", edited({"format": "bogus"}), "any", None),
            ("network lenet", edited({"network": "lenet"}), "any", None),
            ("no metadata", edited(drop=["__metadata__"]), "any", None),
            ("fc1.weight missing", edited(drop=["fc1.weight"]), "fail", None),
            ("momentum buffer missing", edited(drop=["optimizer.fc1.weight.momentum_buffer"]), "any", None),
            ("every momentum buffer missing", edited(drop=[k for k in meta if k.startswith("optimizer.")]), "any", None),
            ("fc2.bias shape [5, 2]", edited(tensor_edit=("fc2.bias", "shape", [5, 2])), "fail", None),
            ("momentum shape [10, 1]", edited(tensor_edit=("optimizer.fc2.bias.momentum_buffer", "shape", [10, 1])), "fail", None),
            ("epoch 0", edited({"epoch": "0"}), "ok", None),
            ("lr 1e-30", edited({"lr": "1e-30"}), "ok", None),
            ("seed 2**63-1", edited({"seed": str(2 ** 63 - 1)}), "ok", None),
            ("valid", self.ck1_bytes, "ok", None),
        ]

        def check(name, blob, expect, field=None, also_eval=True):
            path = write(self.p("in", "ck.safetensors"), blob)
            r = self.exe("train", "--data", self.small, "--epochs", "2", "--resume", path, "--save", path)
            probs = promise(r, expect, [path])
            if r.rc == 1 and field and ("'%s'" % field) not in r.err:
                probs.append("the error does not name the field '%s': %r" % (field, r.err.strip()[:200]))
            if r.rc == 1 and read(path) != blob:
                probs.append("a refused --resume changed the checkpoint given to --save")
            if r.rc == 0 and st_problem(path):
                probs.append("the checkpoint written is not complete: " + st_problem(path))
            if temps(self.p("in")):
                probs.append("temporary files left: %s" % temps(self.p("in")))
            if also_eval:
                write(path, blob)
                r2 = self.exe("eval", "--data", self.small, "--weights", path)
                probs += ["eval: " + q for q in promise(r2, "any", [path])]
            self.case(name, probs, r, [path] if r.rc != 0 else [])

        for name, blob, expect, field in bad:
            check(name, blob, expect, field)
        pool = ["", "0", "1", "-1", "2", "nan", "inf", "1e308", "1e-308", "0.5", "99999999999999999999999", "sgd",
                "adam", "x", "\u00e9", "1\u0000", " ", "9007199254740992", "18446744073709551615", "-0", "+3"]

        def one(i):
            k = self.rng.choice(["lr", "epoch", "batch", "step", "seed", "batch_size", "shuffle", "optimizer",
                                 "network", "format"])
            v = self.rng.choice(pool) if self.rng.random() < 0.7 else str(self.rng.randrange(-10, 10 ** self.rng.randrange(1, 22)))
            blob = edited({k: v})
            if self.rng.random() < 0.3:
                b = bytearray(blob)
                hl = struct.unpack("<Q", blob[:8])[0]
                for _ in range(self.rng.randint(1, 8)):
                    b[8 + hl + self.rng.randrange(len(blob) - 8 - hl)] = self.rng.randrange(256)
                blob = bytes(b)
            check("mutant %d (%s = %r)" % (i, k, v), blob, "any", also_eval=(i % 3 == 0))

        self.loop(0.10, one)

    # ------------------------------------------------------------------------------------------
    # 5. CSV and IDX data through train --data and eval --data
    def cat_data(self):
        self.cat("CSV and IDX data")
        ck = self.p("data-ck.st")
        rows = self.rows[:40]
        csv = "\n".join(rows) + "\n"

        def rowsub(i, col, val):
            r = [l.split(",") for l in rows]
            r[i][col] = val
            return "\n".join(",".join(x) for x in r) + "\n"

        n = 40
        imgs = bytes(int(v) for l in rows for v in l.split(",")[:64])
        labs = bytes(int(l.split(",")[64]) for l in rows)
        idx_i, idx_l = idx_bytes(8, [n, 8, 8], imgs), idx_bytes(8, [n], labs)
        crafted = [
            ("csv valid", csv, None, "ok"),
            ("csv CRLF", csv.replace("\n", "\r\n"), None, "ok"),
            ("csv gzip", gzip.compress(csv.encode()), None, "ok"),
            ("csv blank lines", csv.replace("\n", "\n\n", 3), None, "any"),
            ("csv spaces", csv.replace(",", ", ", 5), None, "any"),
            ("csv BOM", "\ufeff" + csv, None, "any"),
            ("csv no final newline", csv[:-1], None, "ok"),
            ("csv hex label", rowsub(3, 64, "0x3"), None, "fail"),
            ("csv hex feature", rowsub(3, 5, "0x10"), None, "fail"),
            ("csv hex float", rowsub(3, 5, "0x1p3"), None, "fail"),
            ("csv missing column", "\n".join(rows[:5] + [",".join(rows[5].split(",")[:-1])] + rows[6:]) + "\n", None, "fail"),
            ("csv extra column", rowsub(2, 64, "1,2"), None, "fail"),
            ("csv empty field", rowsub(2, 10, ""), None, "fail"),
            ("csv nan feature", rowsub(2, 10, "nan"), None, "fail"),
            ("csv NaN feature", rowsub(2, 10, "NaN"), None, "fail"),
            ("csv inf feature", rowsub(2, 10, "inf"), None, "fail"),
            ("csv 1e400 feature", rowsub(2, 10, "1e400"), None, "fail"),
            ("csv nan label", rowsub(2, 64, "nan"), None, "fail"),
            ("csv label 10", rowsub(2, 64, "10"), None, "fail"),
            ("csv label -1", rowsub(2, 64, "-1"), None, "fail"),
            ("csv label 2.5", rowsub(2, 64, "2.5"), None, "fail"),
            ("csv label 1e10", rowsub(2, 64, "1e10"), None, "fail"),
            ("csv label 2**32+1", rowsub(2, 64, str(2 ** 32 + 1)), None, "fail"),
            ("csv label 30 digits", rowsub(2, 64, "9" * 30), None, "fail"),
            ("csv text header", "a,b,c\n" + csv, None, "fail"),
            ("csv trailing comma", rowsub(2, 64, "3,"), None, "fail"),
            ("csv NUL", csv[:100] + "\0" + csv[100:], None, "fail"),
            ("csv control byte line 3", rowsub(2, 3, "\x01"), None, "fail"),
            ("csv not UTF-8", b"\xff\xfe" + csv.encode(), None, "fail"),
            ("csv 1 MB line", "1," * 500000 + "1\n", None, "fail"),
            ("csv empty", "", None, "fail"),
            ("csv newline only", "\n", None, "fail"),
            ("gzip truncated", gzip.compress(csv.encode())[:-30], None, "fail"),
            ("gzip bad crc", gzip.compress(csv.encode())[:-8] + b"\1\2\3\4" + gzip.compress(csv.encode())[-4:], None, "fail"),
            ("gzip flipped deflate byte", (lambda g: g[:40] + bytes([g[40] ^ 0x55]) + g[41:])(gzip.compress(csv.encode())), None, "fail"),
            ("gzip header only", gzip.compress(csv.encode())[:10], None, "fail"),
            ("gzip two members", gzip.compress(csv[:len(csv) // 2].encode()) + gzip.compress(csv[len(csv) // 2:].encode()), None, "any"),
            ("gzip trailing garbage", gzip.compress(csv.encode()) + b"garbage", None, "any"),
            ("gzip of gzip", gzip.compress(gzip.compress(csv.encode())), None, "fail"),
            ("idx valid", idx_i, idx_l, "ok"),
            ("idx gzip", gzip.compress(idx_i), gzip.compress(idx_l), "ok"),
            ("idx bad magic", b"\1" + idx_i[1:], idx_l, "fail"),
            ("idx dtype float", idx_bytes(0x0D, [n, 8, 8], imgs * 4), idx_l, "any"),
            ("idx dtype bogus", idx_bytes(0x42, [n, 8, 8], imgs), idx_l, "fail"),
            ("idx 0 dims", idx_bytes(8, [], b""), idx_l, "fail"),
            ("idx 255 dims", bytes([0, 0, 8, 255]) + imgs, idx_l, "fail"),
            ("idx 8x7", idx_bytes(8, [n, 8, 7], imgs[:n * 56]), idx_l, "fail"),
            ("idx count mismatch", idx_bytes(8, [n - 1, 8, 8], imgs[:-64]), idx_l, "fail"),
            ("idx truncated data", idx_i[:-10], idx_l, "fail"),
            ("idx trailing data", idx_i + bytes(64), idx_l, "any"),
            ("idx huge count", idx_bytes(8, [2 ** 31, 8, 8], imgs), idx_l, "fail"),
            ("idx count 2**32-1", idx_bytes(8, [2 ** 32 - 1, 2 ** 32 - 1, 2 ** 32 - 1], imgs), idx_l, "fail"),
            ("idx label 10", idx_i, idx_bytes(8, [n], labs[:-1] + b"\x0a"), "fail"),
            ("idx label 255", idx_i, idx_bytes(8, [n], b"\xff" + labs[1:]), "fail"),
            ("idx labels 2-D", idx_i, idx_bytes(8, [n, 1], labs), "any"),
            ("idx labels missing", idx_i, None, "fail"),
        ]
        for k in range(0, 16, 3):
            crafted.append(("idx header cut at %d" % k, idx_i[:k], idx_l, "fail"))
            crafted.append(("idx labels header cut at %d" % k, idx_i, idx_l[:k], "fail"))

        def check(name, d, lab, expect, also_eval=True):
            dp = write(self.p("in", "data.bin"), d)
            lp = write(self.p("in", "labels.bin"), lab) if lab is not None else None
            files = [dp] + ([lp] if lp else [])
            extra = ["--labels", lp] if lp else []
            write(ck, self.ck1_bytes)
            r = self.exe("train", "--data", dp, *extra, "--epochs", "1", "--save", ck)
            probs = promise(r, expect, files)
            if r.rc == 1 and read(ck) != self.ck1_bytes:
                probs.append("a failed train changed the existing --save checkpoint")
            if r.rc == 0 and st_problem(ck):
                probs.append("the checkpoint is not complete: " + st_problem(ck))
            if temps(self.work):
                probs.append("temporary files left: %s" % temps(self.work))
            if also_eval:
                r2 = self.exe("eval", "--data", dp, *extra, "--weights", self.ck1)
                probs += ["eval: " + q for q in promise(r2, expect, files)]
                if lab is None:
                    r3 = self.exe("train", "--data", self.small, "--val", dp, "--epochs", "1")
                    probs += ["--val: " + q for q in promise(r3, expect, files)]
            self.case(name, probs, r, files)

        for name, d, lab, expect in crafted:
            check(name, d, lab, expect)

        pool = ["0x3", "nan", "-1", "1e999", "", "1e-999", "3.", ".5", "+1", "1_000", "10", "16", "9" * 25, "-0", " 1",
                "1 2", "\t", "\x7f", "\u00e9", "\"1\""]

        def one(i):
            kind = self.rng.randrange(5)
            if kind == 0:
                r = [l.split(",") for l in rows]
                for _ in range(self.rng.randint(1, 3)):
                    rr = self.rng.randrange(len(r))
                    r[rr][self.rng.randrange(len(r[rr]))] = self.rng.choice(pool)
                check("csv mutant %d (fields)" % i, "\n".join(",".join(x) for x in r) + "\n", None, "any", i % 3 == 0)
            elif kind == 1:
                b = bytearray(csv.encode())
                for _ in range(self.rng.randint(1, 4)):
                    b[self.rng.randrange(len(b))] = self.rng.choice(b",\n\r\0.-e0123456789 \xff")
                check("csv mutant %d (bytes)" % i, bytes(b), None, "any", i % 3 == 0)
            elif kind == 2:
                g = bytearray(gzip.compress(csv.encode()))
                for _ in range(self.rng.randint(1, 3)):
                    g[self.rng.randrange(len(g))] = self.rng.randrange(256)
                check("gzip mutant %d" % i, bytes(g), None, "any", i % 3 == 0)
            else:
                a, b = bytearray(idx_i), bytearray(idx_l)
                t = a if kind == 3 else b
                for _ in range(self.rng.randint(1, 3)):
                    pos = self.rng.randrange(min(len(t), 16)) if self.rng.random() < 0.7 else self.rng.randrange(len(t))
                    t[pos] = self.rng.randrange(256)
                if self.rng.random() < 0.2 and len(t) > 1:
                    del t[self.rng.randrange(len(t)):]
                check("idx mutant %d" % i, bytes(a), bytes(b), "any", i % 3 == 0)

        self.loop(0.12, one)

    # ------------------------------------------------------------------------------------------
    # 6. Special files for every input and output option
    def specials(self, d):
        os.makedirs(d, exist_ok=True)
        s = {}
        s["/dev/zero"] = "/dev/zero"
        s["/dev/urandom"] = "/dev/urandom"
        s["/dev/null"] = "/dev/null"
        s["/proc/self/mem"] = "/proc/self/mem"
        s["FIFO"] = os.path.join(d, "fifo")
        os.mkfifo(s["FIFO"])
        s["directory"] = os.path.join(d, "dir")
        os.mkdir(s["directory"])
        s["socket"] = os.path.join(d, "sock")
        sk = socket.socket(socket.AF_UNIX)
        sk.bind(s["socket"])
        self.sockets = getattr(self, "sockets", []) + [sk]
        s["link to FIFO"] = os.path.join(d, "lfifo")
        os.symlink(s["FIFO"], s["link to FIFO"])
        s["link loop"] = os.path.join(d, "loop1")
        os.symlink(os.path.join(d, "loop2"), s["link loop"])
        os.symlink(s["link loop"], os.path.join(d, "loop2"))
        s["dangling link"] = os.path.join(d, "dangle")
        os.symlink(os.path.join(d, "nowhere"), s["dangling link"])
        s["missing"] = os.path.join(d, "missing")
        s["empty file"] = write(os.path.join(d, "empty"), b"")
        return s

    def cat_special(self):
        self.cat("special files")
        d = self.p("special")
        s = self.specials(d)
        digits = os.path.join(self.src, "examples", "digits_mlp.pnet")
        npx = self.x
        ylab = write(self.p("y.npy"), npy_bytes("<i4", shape="(3,)", data=struct.pack("<3i", 1, 2, 3)))
        modsrc = write(self.p("in", "imp.pnet"), 'import "mod";\nnetwork n { input x : f32[batch, 4]; output y = relu(x); }\n')
        inputs = [
            ("pnetc SOURCE", lambda f: [self.pnetc, "--check", f], True),
            ("pnetc import", None, True),
            ("pnetc --weights", lambda f: [self.pnetc, "--weights", f, digits, "-c", "-o", self.p("special.o")], True),
            ("infer --input", lambda f: [self.net, "infer", "--input", "x=" + f], False),
            ("infer --weights", lambda f: [self.net, "infer", "--input", "x=" + npx, "--weights", f], False),
            ("bench --weights", lambda f: [self.net, "bench", "--seconds", "0.05", "--weights", f], False),
            ("train --data", lambda f: [self.net, "train", "--data", f, "--epochs", "1"], False),
            ("train --labels", lambda f: [self.net, "train", "--data", npx, "--labels", f, "--epochs", "1"], False),
            ("train --val", lambda f: [self.net, "train", "--data", self.small, "--val", f, "--epochs", "1"], False),
            ("train --val-labels", lambda f: [self.net, "train", "--data", npx, "--labels", ylab, "--val", npx,
                                              "--val-labels", f, "--epochs", "1"], False),
            ("train --resume", lambda f: [self.net, "train", "--data", self.small, "--resume", f, "--epochs", "2"], False),
            ("train --weights", lambda f: [self.net, "train", "--data", self.small, "--weights", f, "--epochs", "1"], False),
            ("eval --data", lambda f: [self.net, "eval", "--data", f, "--weights", self.ck1], False),
            ("eval --labels", lambda f: [self.net, "eval", "--data", npx, "--labels", f, "--weights", self.ck1], False),
            ("eval --weights", lambda f: [self.net, "eval", "--data", self.small, "--weights", f], False),
        ]
        for opt, mk, is_pnetc in inputs:
            for kind, f in s.items():
                if opt == "pnetc import":
                    mod = self.p("in", "mod.pnet")
                    if os.path.lexists(mod):
                        os.unlink(mod)
                    os.symlink(f, mod)
                    argv = [self.pnetc, "--check", modsrc]
                else:
                    argv = mk(f)
                r = run(argv, limit=3)  # refused at once: a FIFO is never waited on
                expect = "any" if (opt == "pnetc import" and kind == "empty file") else "fail"
                probs = promise(r, expect, [f], pnetc=is_pnetc, one_line=(opt != "pnetc import"))
                self.case("%s %s" % (opt, kind), probs, r)
                for t in temps(d):
                    os.unlink(os.path.join(d, t))
        # Outputs: each option onto each kind of file. Devices are nodes made here (null, full,
        # zero), never the system's own, so a defect cannot damage the machine.
        o = self.p("special-out")
        os.makedirs(o)
        nodes = {}
        for name, minor in (("null", 3), ("zero", 5), ("full", 7)):
            nodes[name] = os.path.join(o, "my" + name)
            try:
                os.mknod(nodes[name], 0o666 | stat.S_IFCHR, os.makedev(1, minor))
            except OSError as e:
                self.note("cannot make device nodes (%s): the device outputs are skipped" % e)
                nodes = {}
                break
        fifo = os.path.join(o, "fifo")
        os.mkfifo(fifo)
        dr = os.path.join(o, "dir")
        os.mkdir(dr)
        sock = os.path.join(o, "sock")
        sk = socket.socket(socket.AF_UNIX)
        sk.bind(sock)
        self.sockets.append(sk)
        lf = os.path.join(o, "lfifo")
        os.symlink(fifo, lf)
        targets = [("char device (null)", nodes.get("null"), "ok"), ("char device (zero)", nodes.get("zero"), "fail"),
                   ("char device (full)", nodes.get("full"), "fail"), ("FIFO", fifo, "fail"), ("directory", dr, "fail"),
                   ("socket", sock, "fail"), ("link to FIFO", lf, "fail"), ("dangling link", None, "ok"),
                   ("link to a file", None, "ok")]
        outputs = [
            ("pnetc -o", lambda f: [self.pnetc, digits, "-o", f], True),
            ("pnetc -c -o", lambda f: [self.pnetc, digits, "-c", "-o", f], True),
            ("pnetc --emit=graph -o", lambda f: [self.pnetc, "--emit=graph", digits, "-o", f], True),
            ("pnetc --report -o", lambda f: [self.pnetc, "--report", digits, "-o", f], True),
            ("infer --output", lambda f: [self.net, "infer", "--input", "x=" + npx, "--output", "probs=" + f], False),
            ("infer --trace", lambda f: [self.net, "infer", "--input", "x=" + npx, "--trace", f], False),
            ("bench --trace", lambda f: [self.net, "bench", "--seconds", "0.05", "--trace", f], False),
            ("train --save", lambda f: [self.net, "train", "--data", self.small, "--epochs", "1", "--save", f], False),
        ]
        for opt, mk, is_pnetc in outputs:
            for kind, f, expect in targets:
                if kind == "dangling link":
                    tgt = os.path.join(o, "dtarget")
                    f = os.path.join(o, "dlink")
                    for q in (tgt, f):
                        if os.path.lexists(q):
                            os.unlink(q)
                    os.symlink(tgt, f)
                elif kind == "link to a file":
                    tgt = write(os.path.join(o, "ftarget"), b"old")
                    f = os.path.join(o, "flink")
                    if not os.path.lexists(f):
                        os.symlink(tgt, f)
                if f is None:
                    continue
                before = os.lstat(f).st_mode
                r = run(mk(f), limit=60)
                probs = promise(r, expect, [f], pnetc=is_pnetc)
                if os.lstat(f).st_mode != before:
                    probs.append("the %s was replaced (mode %o, now %o)" % (kind, before, os.lstat(f).st_mode))
                if kind in ("dangling link", "link to a file") and r.rc == 0 and not (
                        os.path.islink(f) and os.path.getsize(tgt) > 3):
                    probs.append("the link's target was not written through the link")
                if temps(o):
                    probs.append("temporary files left: %s" % temps(o))
                self.case("%s onto %s" % (opt, kind), probs, r)
                for q in os.listdir(o):
                    if q.endswith(".h") or TMPNAME.match(q):
                        os.unlink(os.path.join(o, q))

    # ------------------------------------------------------------------------------------------
    # 7. Signals during train --save
    def cat_signals(self):
        self.cat("signals during `train --save`")
        d = self.p("sig")
        os.makedirs(d)
        px = os.path.join(self.src, "tests", "train", "refs", "pipe", "x.npy")
        py = os.path.join(self.src, "tests", "train", "refs", "pipe", "y.npy")
        nets = {
            "digits_mlp": (self.net, ["--data", self.mid], 40),
            "pipe (2 stages)": (self.pipe, ["--data", px, "--labels", py, "--threads", "2"], 20),
        }
        refs = {}
        for name, (exe, data, ep) in nets.items():
            first, final = os.path.join(d, name.split()[0] + ".e1"), os.path.join(d, name.split()[0] + ".ref")
            t0 = time.time()
            one_thread = ["--threads", "1"] if name == "digits_mlp" else []
            r1 = run([exe, "train"] + data + one_thread + ["--epochs", str(ep), "--save", final], limit=300)
            took = time.time() - t0
            r2 = run([exe, "train"] + data + ["--epochs", "1", "--save", first], limit=300)
            if r1.rc != 0 or r2.rc != 0:
                self.case("reference run of %s" % name, ["exit %s/%s: %s" % (r1.rc, r2.rc, (r1.err + r2.err)[:200])], r1)
                return
            refs[name] = (read(first), read(final), took)
        sigs = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL]

        def one(i):
            name = list(nets)[(i // 4 + i) % 2]  # i = 0..3: each signal once; 4..7: on the other network
            exe, data, ep = nets[name]
            first, final, took = refs[name]
            sig = sigs[i % 4]
            # the reference trains digits_mlp on 1 thread (2 spin against each other on a busy machine)
            threads = (["--threads", "2" if self.rng.random() < 0.3 else "1"]) if name == "digits_mlp" else []
            ck = os.path.join(d, "ck.st")
            write(ck, first)
            delay = self.rng.uniform(0, took * 0.6)  # 1 thread trains digits_mlp faster than the reference
            argv = [exe, "train"] + data + threads + ["--epochs", str(ep), "--save", ck]
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 start_new_session=True)
            time.sleep(delay)
            p.send_signal(sig)
            try:
                _, err = p.communicate(timeout=60)
                rc = p.returncode
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                _, err = p.communicate()
                rc = None
            res = Result(argv, rc, "", err.decode(errors="replace"), 0, 60)
            probs = []
            if rc is None:
                probs.append("hung after %s" % sig.name)
            elif rc not in (0, 128 + sig, -sig):
                probs.append("exit %d after %s (wanted 0, %d or killed by it)" % (rc, sig.name, 128 + sig))
            if SAN.search(res.err):
                probs.append("sanitizer or internal error")
            lines = [l for l in res.err.splitlines() if l.strip()]
            if rc == 128 + sig and len(lines) != 1:
                probs.append("%d lines on stderr, not one: %r" % (len(lines), res.err[:200]))
            now = read(ck)
            if now != first and st_problem(ck):
                probs.append("the checkpoint is neither the previous one nor complete: " + st_problem(ck))
            left = temps(d)
            if left and sig != signal.SIGKILL:
                probs.append("temporary files left after %s: %s" % (sig.name, left))
            if sig == signal.SIGKILL:  # and a stale one planted, of a process that no longer exists
                dead = subprocess.Popen(["true"])
                dead.wait()
                write(os.path.join(d, ".ck.st.pnet-tmp.%d.0" % dead.pid), first[:1000])
            # Resume: must remove a SIGKILL's stale temporary files and end byte-identical.
            rr = run([exe, "train"] + data + ["--epochs", str(ep), "--resume", ck, "--save", ck], limit=120)
            probs += ["resume: " + q for q in promise(rr, "ok", [ck])]
            if rr.rc == 0 and read(ck) != final:
                probs.append("--resume after %s (at %.2f s) differs from the uninterrupted run" % (sig.name, delay))
            if temps(d):
                probs.append("temporary files left after the resume: %s" % temps(d))
                for t in temps(d):
                    os.unlink(os.path.join(d, t))
            self.case("%s %s at %.2f s%s (exit %s)" % (name, sig.name, delay, "".join(" " + t for t in threads), rc), probs,
                      res, repro="%s; sleep %.2f; kill -%s $!" % (shlex.join(argv), delay, sig.name[3:]))

        self.loop(0.15, one, at_least=4 if self.a.quick else 8)  # each signal (on each network)

    # ------------------------------------------------------------------------------------------
    # 8. A full disk (a 1 MiB tmpfs) and 9. a read-only mount
    def mount(self, d, opts):
        os.makedirs(d, exist_ok=True)
        r = run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", d], limit=10)
        if r.rc != 0:
            return r.err.strip() or "mount failed"
        self.mounts.append(d)
        return None

    def fill(self, d, free):
        """Fills the tmpfs at d until about `free` bytes are left."""
        filler = os.path.join(d, "filler")
        with open(filler, "ab", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        size = os.path.getsize(filler)
        os.truncate(filler, max(0, size - free))

    def cat_full(self):
        self.cat("full disk")
        # /dev/full itself: refused as a device before anything runs (a node made here).
        o = self.p("fullnode")
        os.makedirs(o)
        full = os.path.join(o, "myfull")
        try:
            os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
            for opt, argv in [("--save", [self.net, "train", "--data", self.small, "--epochs", "1", "--save", full]),
                              ("--output", [self.net, "infer", "--input", "x=" + self.x, "--output", "probs=" + full]),
                              ("--trace", [self.net, "infer", "--input", "x=" + self.x, "--trace", full]),
                              ("pnetc -o", [self.pnetc, os.path.join(self.src, "examples", "digits_mlp.pnet"), "-o", full])]:
                r = run(argv, limit=60)
                probs = promise(r, "fail", [full], pnetc=opt.startswith("pnetc"))
                if r.rc == 1 and "not a regular file" not in r.err:
                    probs.append("not refused as a device: %r" % r.err[:200])
                self.case("%s /dev/full (a node c 1 7)" % opt, probs, r)
        except OSError as e:
            self.note("cannot make a device node: %s" % e)
        d = self.p("full")
        err = self.mount(d, "size=1m")
        if err:
            self.note("cannot mount a 1 MiB tmpfs (%s): the full-disk cases are skipped" % err)
            return
        digits = os.path.join(self.src, "examples", "digits_mlp.pnet")
        prev_exe = read(self.net)
        frees = [0, 4096, 16384, 40960, 73728] if not self.a.quick else [0, 40960]
        for free in frees:
            for what in ("--save", "--output", "--trace", "pnetc -o", "pnetc --emit=graph -o"):
                for q in os.listdir(d):
                    os.unlink(os.path.join(d, q))
                if what == "--save":
                    tgt, prev = os.path.join(d, "ck.st"), self.ck1_bytes
                    argv = [self.net, "train", "--data", self.small, "--epochs", "2", "--save", tgt]
                elif what == "--output":
                    tgt, prev = os.path.join(d, "p.npy"), b"previous probs\n"
                    big = write(self.p("big.npy"), npy_bytes(shape="(3000, 64)", rows=3000))
                    argv = [self.net, "infer", "--input", "x=" + big, "--output", "probs=" + tgt]
                elif what == "--trace":
                    tgt, prev = os.path.join(d, "t.json"), b"{}\n"
                    argv = [self.net, "bench", "--seconds", "0.3", "--trace", tgt]
                elif what == "pnetc -o":
                    tgt, prev = os.path.join(d, "net"), prev_exe[:200000]
                    argv = [self.pnetc, digits, "-o", tgt]
                else:
                    tgt, prev = os.path.join(d, "g.txt"), b"old graph\n"
                    argv = [self.pnetc, "--emit=graph", os.path.join(self.src, "examples", "resnet_small.pnet"), "-o", tgt]
                write(tgt, prev)
                self.fill(d, free)
                r = run(argv, limit=120)
                probs = promise(r, "any" if free and what in ("--output", "--trace", "pnetc --emit=graph -o") else "fail",
                                [tgt], pnetc=what.startswith("pnetc"))
                if r.rc == 1 and read(tgt) != prev:
                    probs.append("the previous file changed after the failed write")
                if r.rc == 0 and what == "--save" and st_problem(tgt):
                    probs.append("the checkpoint is not complete: " + st_problem(tgt))
                if temps(d):
                    probs.append("temporary files left: %s" % temps(d))
                self.case("%s into a full tmpfs (%d bytes free, exit %s)" % (what, free, r.rc), probs, r)

    def cat_readonly(self):
        self.cat("read-only mount")
        d = self.p("ro")
        err = self.mount(d, "size=4m")
        if err:
            self.note("cannot mount a tmpfs (%s): the read-only cases are skipped" % err)
            return
        ck = write(os.path.join(d, "ck.st"), self.ck1_bytes)
        exe = write(os.path.join(d, "net"), b"old executable")
        os.symlink(os.path.join(d, "via-link.st"), self.p("ro-link.st"))
        r = run(["mount", "-o", "remount,ro", d], limit=10)
        if r.rc != 0:
            self.note("cannot remount read-only (%s): the read-only cases are skipped" % r.err.strip())
            return
        digits = os.path.join(self.src, "examples", "digits_mlp.pnet")
        rw = self.p("ro-out.st")
        cases = [
            ("train --save onto a checkpoint", [self.net, "train", "--data", self.small, "--epochs", "1", "--save", ck], "fail", ck),
            ("train --save a new file", [self.net, "train", "--data", self.small, "--epochs", "1", "--save", os.path.join(d, "new.st")], "fail", None),
            ("train --resume CK --save CK", [self.net, "train", "--data", self.small, "--epochs", "2", "--resume", ck, "--save", ck], "fail", ck),
            ("train --resume from it, --save elsewhere", [self.net, "train", "--data", self.small, "--epochs", "2", "--resume", ck, "--save", rw], "ok", None),
            ("train --save through a link into it", [self.net, "train", "--data", self.small, "--epochs", "1", "--save", self.p("ro-link.st")], "fail", None),
            ("infer --output", [self.net, "infer", "--input", "x=" + self.x, "--output", "probs=" + os.path.join(d, "p.npy")], "fail", None),
            ("infer --trace", [self.net, "infer", "--input", "x=" + self.x, "--trace", os.path.join(d, "t.json")], "fail", None),
            ("eval --weights from it", [self.net, "eval", "--data", self.small, "--weights", ck], "ok", None),
            ("pnetc -o onto a file", [self.pnetc, digits, "-o", exe], "fail", exe),
            ("pnetc -c -o", [self.pnetc, digits, "-c", "-o", os.path.join(d, "n.o")], "fail", None),
            ("pnetc --emit=graph -o", [self.pnetc, "--emit=graph", digits, "-o", os.path.join(d, "g")], "fail", None),
        ]
        for name, argv, expect, keep in cases:
            before = read(keep) if keep else None
            r = run(argv, limit=60)
            tgt = keep or argv[-1].split("=")[-1]
            probs = promise(r, expect, [tgt, os.path.dirname(tgt)], pnetc=argv[0] == self.pnetc)
            if keep and read(keep) != before:
                probs.append("the file changed")
            self.case(name, probs, r)

    # ------------------------------------------------------------------------------------------
    # 10. Concurrent writers
    def cat_concurrent(self):
        self.cat("concurrent writers")
        d = self.p("conc")
        os.makedirs(d)
        refs = {}
        for seed in ("1", "2"):
            ref = os.path.join(d, "ref%s.st" % seed)
            r = self.exe("train", "--data", self.mid, "--epochs", "6", "--seed", seed, "--save", ref)
            if r.rc != 0:
                self.case("reference run", ["exit %s: %s" % (r.rc, r.err[:200])], r)
                return
            refs[seed] = read(ref)
        outs = {}
        for k in ("a", "b"):
            xs = write(os.path.join(d, "x%s.npy" % k), npy_bytes(data=struct.pack("<192f", *[float((i * (3 if k == "a" else 5)) % 17) for i in range(192)])))
            o = os.path.join(d, "o%s.npy" % k)
            self.exe("infer", "--input", "x=" + xs, "--output", "probs=" + o)
            outs[k] = (xs, read(o))
        n = 10 if self.a.quick else 30

        def procs(argvs, stagger):
            ps = []
            for a in argvs:
                ps.append(subprocess.Popen(a, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                           start_new_session=True))
                time.sleep(self.rng.uniform(0, stagger))
            res = []
            for p, a in zip(ps, argvs):
                try:
                    _, err = p.communicate(timeout=120)
                    res.append(Result(a, p.returncode, "", err.decode(errors="replace"), 0, 120))
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.communicate()
                    res.append(Result(a, None, "", "", 0, 120))
            return res

        ck = os.path.join(d, "ck.st")
        for i in range(n):
            seeds = ["1", "2"] if i % 3 else ["1", "2", "1"]
            if os.path.exists(ck):
                os.unlink(ck)
            argvs = [[self.net, "train", "--data", self.mid, "--epochs", "6", "--seed", s, "--save", ck,
                      "--threads", "1"] for s in seeds]
            res = procs(argvs, 0.1)
            probs = []
            for r in res:
                probs += promise(r, "ok", [ck])
            if read(ck) not in refs.values():
                probs.append("the checkpoint is neither writer's final one: %s" % (st_problem(ck) or "complete but different"))
            if temps(d):
                probs.append("temporary files left: %s" % temps(d))
            self.case("%d x train --save to one file, round %d" % (len(seeds), i), probs, res[0])
        # A reader while a writer writes: every eval --weights sees a whole checkpoint.
        write(ck, refs["1"])
        w = subprocess.Popen([self.net, "train", "--data", self.mid, "--epochs", "20", "--save", ck, "--threads", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        k = 0
        while w.poll() is None and k < (20 if self.a.quick else 60):
            r = self.exe("eval", "--data", self.small, "--weights", ck, "--threads", "1")
            self.case("eval --weights while train --save rewrites it, %d" % k, promise(r, "ok", [ck]), r)
            k += 1
        w.wait()
        # Two infer --output to one file.
        o = os.path.join(d, "probs.npy")
        for i in range(n):
            res = procs([[self.net, "infer", "--input", "x=" + outs[k][0], "--output", "probs=" + o] for k in ("a", "b")], 0.01)
            probs = []
            for r in res:
                probs += promise(r, "ok", [o])
            if read(o) not in (outs["a"][1], outs["b"][1]):
                probs.append("--output is neither writer's result")
            if temps(d):
                probs.append("temporary files left: %s" % temps(d))
            self.case("2 x infer --output to one file, round %d" % i, probs, res[0])
        # Two pnetc -o to one executable.
        exe = os.path.join(d, "net")
        for i in range(1 if self.a.quick else 3):
            res = procs([[self.pnetc, os.path.join(self.src, "examples", n_), "-o", exe]
                         for n_ in ("digits_mlp.pnet", "digits_mlp.pnet")], 0.3)
            probs = []
            for r in res:
                probs += promise(r, "ok", [exe], pnetc=True)
            ri = run([exe, "info"], limit=20)
            probs += ["the executable: " + q for q in promise(ri, "ok")]
            if temps(d):
                probs.append("temporary files left: %s" % temps(d))
            self.case("2 x pnetc -o to one file, round %d" % i, probs, res[0])

    # ------------------------------------------------------------------------------------------
    # 11. The embedding API: tests/cli/embed_hostile.c and embed_threads.c
    def cat_embed(self):
        self.cat("embedding API")
        if not self.a.build or not os.path.exists(os.path.join(self.a.build, "cmake_install.cmake")):
            self.note("no build directory (--build) to install from: skipped")
            return
        pre = self.p("prefix")
        r = run(["cmake", "--install", self.a.build, "--prefix", pre], limit=120)
        if r.rc != 0:
            self.case("cmake --install", ["exit %s: %s" % (r.rc, r.err[:300])], r)
            return
        pcs = [os.path.join(a, f) for a, _, fs in os.walk(pre) for f in fs if f == "pnetrt.pc"]
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]))
        flags = run(["pkg-config", "--cflags", "--libs", "pnetrt"], env=env).out.split()
        e = self.p("embed")
        os.makedirs(e)
        pn = os.path.join(pre, "bin", "pnetc")
        for src in ("examples/digits_mlp.pnet", "tests/e2e/cases/parallel_small.pnet"):
            r = run([pn, "-w", os.path.join(self.src, src), "-c", "-o", os.path.basename(src)[:-5] + ".o"], limit=300, cwd=e)
            if r.rc != 0:
                self.case("compile " + src, ["exit %s: %s" % (r.rc, r.err[:300])], r)
                return
        rounds = "30" if self.a.quick else "100"
        for prog, objs, extra, args in (("embed_hostile", ["digits_mlp.o", "parallel_small.o"], [], [rounds]),
                                        ("embed_threads", ["digits_mlp.o"], ["-pthread"], [])):
            r = run(["cc", "-std=c11", "-Wall", "-Werror", "-I.", os.path.join(self.src, "tests", "cli", prog + ".c")]
                    + objs + flags + extra + ["-o", prog], limit=120, cwd=e)
            if r.rc != 0:
                self.case("build " + prog, ["exit %s: %s" % (r.rc, r.err[:300])], r)
                continue
            r = run(["./" + prog] + args, limit=300, cwd=e)
            lines = r.out.splitlines()
            fails = [l for l in lines if l.startswith("FAIL")]
            if prog == "embed_hostile":
                m = re.search(r"(\d+) checks, (\d+) failed", r.out)
                total = int(m.group(1)) if m else 1
            else:
                total = max(1, len([l for l in lines if " wrong, " in l or l in ("ok", "FAIL")]))
            probs = promise(r, "ok")
            for k in range(total):
                if k < len(fails):
                    self.case("%s: %s" % (prog, fails[k][:200]), ["failed"], r)
                elif k == 0 and probs:
                    self.case(prog, probs, r)
                else:
                    self.case("%s check %d" % (prog, k), [])

    # ------------------------------------------------------------------------------------------
    def report(self):
        took = time.time() - self.start
        print()
        print("| category | cases | passed | failed |")
        print("|---|---:|---:|---:|")
        tc = tp = tf = 0
        for name, c, p, f in self.cats:
            print("| %s | %d | %d | %d |" % (name, c, p, len(f)))
            tc, tp, tf = tc + c, tp + p, tf + len(f)
        print("| **total** | **%d** | **%d** | **%d** |" % (tc, tp, tf))
        print()
        print("seed %d, %.0f s%s, %s" % (self.a.seed, took, " (--quick)" if self.a.quick else "",
                                          "%d cases per mutation category" % self.a.cases if self.a.cases is not None
                                          else "budget %g s" % self.a.seconds))
        for n in self.notes:
            print("note: " + n)
        if tf:
            print()
            print("Failures:")
            for name, c, p, f in self.cats:
                for x in f:
                    print("- [%s] %s" % (name, x))
            print()
            print("work directory (executables, data; failing inputs in %s): %s" % (self.keep, self.work))
        return tf

    def cleanup(self, failed):
        for m in reversed(self.mounts):
            run(["umount", "-l", m], limit=20)
        for sk in getattr(self, "sockets", []):
            sk.close()
        # On failure the work directory stays: the executables and data the reproduce lines name.
        if not failed:
            shutil.rmtree(self.work, ignore_errors=True)


CATEGORIES = ["pnet", "npy", "safetensors", "ckpt", "data", "special", "signals", "full", "readonly", "concurrent", "embed"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pnetc", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--build")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--cases", type=int)
    ap.add_argument("--only", default=",".join(CATEGORIES))
    ap.add_argument("--keep")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every case that passes, too")
    a = ap.parse_args()
    if a.seconds is None:
        a.seconds = 30 if a.quick else 270
    if a.build:
        a.build = os.path.abspath(a.build)
    os.environ["PNET_ADAPTIVE_THREADS"] = "0"
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    att = Attack(a)
    failed = 1
    try:
        att.setup()
        for c in a.only.split(","):
            if c not in CATEGORIES:
                sys.exit("attack: unknown category %s (one of %s)" % (c, ", ".join(CATEGORIES)))
            t0 = time.time()
            getattr(att, "cat_" + c)()
            print("[%s] %d cases in %.0f s" % (att.cur[0] if att.cats else c, att.cur[1] if att.cats else 0,
                                              time.time() - t0), flush=True)
        failed = att.report()
    finally:
        att.cleanup(failed)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
