#!/usr/bin/env python3
"""Hostile inputs for pnetc: it must never crash, abort, hang or silently accept. Files that are
not regular files (devices, FIFOs) and files over 64 MiB are refused at once with one line.

Each case runs `pnetc --check` under a timeout and requires a clean exit (0 or 1, never a
signal), no internal-error or sanitizer text, and for bad input exit 1 with a first line in the
`file:line:col: error:` or `pnetc: error:` form.
"""
import os
import random
import re
import subprocess
import sys
import tempfile
import time

PNETC = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="pnet-robust-")
FIRST = re.compile(r"^(\S+:\d+:\d+: (fatal )?error: |pnetc: (fatal )?error: )")
passed = failed = 0


def write(name, data):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path


# Seconds per pnetc run: 60, more under the sanitizers (PNET_TEST_TIMEOUT, tests/CMakeLists.txt), where
# the million-node expansion below takes about a minute and a half of a loaded 2-core machine.
LIMIT = float(os.environ.get("PNET_TEST_TIMEOUT", "60"))


def run(name, data, want_error=True, limit=LIMIT):
    global passed, failed
    path = write(name, data)
    start = time.time()
    try:
        p = subprocess.run([PNETC, "--check", path], capture_output=True, timeout=limit)
    except subprocess.TimeoutExpired:
        print(f"FAIL {name}: timed out after {limit} s")
        failed += 1
        return
    took = time.time() - start
    err = p.stderr.decode(errors="replace")
    problems = []
    if p.returncode not in (0, 1):
        problems.append(f"exit code {p.returncode}")
    if "internal error" in err or "Sanitizer" in err or "runtime error" in err:
        problems.append("internal error or sanitizer report")
    if want_error:
        if p.returncode != 1:
            problems.append(f"accepted bad input (exit {p.returncode})")
        elif not FIRST.match(err):
            problems.append(f"first line is not a diagnostic: {err.splitlines()[:1]}")
    elif p.returncode != 0:
        problems.append(f"rejected valid input: {err[:300]}")
    if problems:
        print(f"FAIL {name}: {'; '.join(problems)}")
        failed += 1
    else:
        print(f"ok   {name} ({took:.2f} s)")
        passed += 1


rng = random.Random(1234)
HEAD = "network n {\n    input x : f32[batch, 4];\n"
TAIL = "    output y = relu(x);\n}\n"

# Garbage and degenerate files.
for i in range(5):
    run(f"garbage{i}.pnet", bytes(rng.randrange(256) for _ in range(4096)))
run("empty.pnet", b"")
run("only_comment.pnet", b"# nothing here\n")
run("nul_bytes.pnet", HEAD.encode() + b"\0\0\0" + TAIL.encode())
run("no_newline.pnet", "network n { input x : f32[batch, 4]; output y = relu(x); }", want_error=False)
run("crlf.pnet", (HEAD + TAIL).replace("\n", "\r\n"), want_error=False)
tokens = ["network", "n", "{", "}", "(", ")", "[", "]", ";", "=", "dense", "x", "@partition", "1", ",", "block", "return", ":", "f32", "batch"]
run("token_soup.pnet", " ".join(rng.choice(tokens) for _ in range(20000)))

# 10 MB files: a valid one, garbage-ish text, and one long line.
stmts = []
size, i = 0, 0
while size < 10 * 1024 * 1024:
    s = f"    h{i + 1} = relu(h{i});\n"
    stmts.append(s)
    size += len(s)
    i += 1
big = "network big {\n    input h0 : f32[batch, 4];\n" + "".join(stmts) + f"    output y = h{i};\n}}\n"
run("big_valid_10mb.pnet", big, want_error=False, limit=120)
run("big_errors_10mb.pnet", big.replace("relu", "rleu"))
run("long_line_10mb.pnet", HEAD + "    z = " + "x + " * (10 * 1024 * 1024 // 4) + "x;\n" + TAIL)

# 10,000-deep nesting of every bracket and construct.
D = 10000
run("deep_parens.pnet", HEAD + "    z = " + "(" * D + "x" + ")" * D + ";\n" + TAIL)
run("deep_lists.pnet", HEAD + "    z = reshape(x, " + "[" * D + "4" + "]" * D + ");\n" + TAIL)
run("deep_calls.pnet", HEAD + "    z = " + "relu(" * D + "x" + ")" * D + ";\n" + TAIL)
run("deep_braces.pnet", HEAD + "@partition(0) {" * D + "z = relu(x);" + "}" * D + TAIL)
run("deep_directives.pnet", HEAD + "@partition(0) " * D + "z = relu(x);\n" + TAIL)
run("deep_neg.pnet", HEAD + "    z = " + "-" * D + "x;\n" + TAIL)
run("deep_unclosed.pnet", HEAD + "    z = " + "(" * D)
run("long_chain.pnet", HEAD + "    z = x" + " + x" * 100000 + ";\n" + TAIL)

# Huge dimensions and numbers.
run("dims_overflow.pnet", "network n { input x : f32[batch, 4294967296, 4294967296, 4294967296]; output y = relu(x); }")
run("dims_product.pnet", "network n { input x : f32[batch, 2000000000, 2000000000, 2000000000]; output y = relu(x); }")
run("int_too_large.pnet", "network n { input x : f32[batch, 99999999999999999999999]; output y = relu(x); }")
run("units_huge.pnet", HEAD + "    z = dense(x, 9223372036854775807);\n" + TAIL)
run("dense_weight_huge.pnet", "network n { input x : f32[batch, 2000000000]; output y = dense(x, 2000000000); }")
run("reshape_huge.pnet", HEAD + "    z = reshape(x, [9223372036854775807, 9223372036854775807]);\n" + TAIL)
run("float_huge.pnet", HEAD + "    z = x * 1e999;\n" + TAIL)
run("const_overflow.pnet", HEAD + "    z = dense(x, 9223372036854775807 * 9223372036854775807);\n" + TAIL)
run("stage_huge.pnet", HEAD + "    @partition(99999999999) z = relu(x);\n" + TAIL)

# Imports: cycles, self-import, missing, a directory.
write("cyc_a.pnet", 'import "cyc_b";\nblock a(x) { return relu(x); }\n')
write("cyc_b.pnet", 'import "cyc_a";\nblock b(x) { return relu(x); }\n')
run("import_cycle.pnet", 'import "cyc_a";\n' + HEAD + TAIL)
run("import_self.pnet", 'import "import_self";\n' + HEAD + TAIL)
run("import_missing.pnet", 'import "no_such_module";\n' + HEAD + TAIL)
os.makedirs(os.path.join(TMP, "adir.pnet"), exist_ok=True)
run("import_dir.pnet", 'import "adir";\n' + HEAD + TAIL)

# Blocks: recursion, mutual recursion, deep chains, exponential expansion.
run("block_recursion.pnet", "block f(x) { return f(x); }\n" + HEAD + "    z = f(x);\n" + TAIL)
run("block_mutual.pnet", "block f(x) { return g(x); }\nblock g(x) { return f(x); }\n" + HEAD + "    z = f(x);\n" + TAIL)
chain = "".join(f"block b{k}(x) {{ return b{k + 1}(x); }}\n" for k in range(200)) + "block b200(x) { return relu(x); }\n"
run("block_chain_200.pnet", chain + HEAD + "    z = b0(x);\n" + TAIL)
expo = "block e0(x) { return relu(x); }\n" + "".join(
    f"block e{k}(x) {{ a = e{k - 1}(x); b = e{k - 1}(a); return b; }}\n" for k in range(1, 40))
run("block_exponential.pnet", expo + HEAD + "    z = e39(x);\n" + TAIL)

# Files that are not regular files, and too large ones: refused at once with one line naming the
# file, never read without end (/dev/zero) or waited on (a FIFO nothing writes to).
def refused(name, args, want, stdin=subprocess.DEVNULL, one_line=True, limit=10):
    global passed, failed
    start = time.time()
    try:
        p = subprocess.run([PNETC] + args, capture_output=True, timeout=limit, stdin=stdin)
    except subprocess.TimeoutExpired:
        print(f"FAIL {name}: timed out after {limit} s")
        failed += 1
        return
    err = p.stderr.decode(errors="replace")
    lines = err.splitlines()
    problems = []
    if p.returncode != 1:
        problems.append(f"exit code {p.returncode}")
    if not FIRST.match(err) or want not in lines[0]:
        problems.append(f"first line is not the error '{want}': {lines[:1]}")
    if one_line and len(lines) != 1:
        problems.append(f"{len(lines)} lines of errors")
    if problems:
        print(f"FAIL {name}: {'; '.join(problems)}")
        failed += 1
    else:
        print(f"ok   {name} ({time.time() - start:.2f} s)")
        passed += 1


fifo = os.path.join(TMP, "fifo.pnet")
os.mkfifo(fifo)
refused("dev_zero", ["--check", "/dev/zero"], "cannot read '/dev/zero': not a regular file (a character device)")
refused("fifo", ["--check", fifo], f"cannot read '{fifo}': not a regular file (a FIFO)")
refused("directory", ["--check", TMP], f"cannot read '{TMP}': Is a directory")
huge = os.path.join(TMP, "huge.pnet")
with open(huge, "wb") as f:
    f.truncate(65 * 1024 * 1024)
refused("file_65mib", ["--check", huge], f"cannot read '{huge}': file is larger than 64 MiB")
at_limit = (HEAD + TAIL).encode() + b"# "
run("file_64mib.pnet", at_limit + b"x" * (64 * 1024 * 1024 - len(at_limit) - 1) + b"\n", want_error=False, limit=60)
with open("/dev/zero", "rb") as zero:
    refused("stdin_dev_zero", ["--check", "-"], "cannot read '<stdin>': file is larger than 64 MiB", stdin=zero)
with open(write("stdin.pnet", HEAD + TAIL), "rb") as f:
    p = subprocess.run([PNETC, "--check", "-"], stdin=f, capture_output=True, timeout=10)
    ok = p.returncode == 0 and not p.stderr
    print(f"{'ok  ' if ok else 'FAIL'} stdin_valid{'' if ok else ': ' + p.stderr.decode(errors='replace')[:300]}")
    passed, failed = passed + ok, failed + (not ok)
with open(write("stdin_bad.pnet", HEAD + "    z = rleu(x);\n" + TAIL), "rb") as f:
    refused("stdin_diagnostic", ["--check", "-"], "<stdin>:3:9: error: unknown op or block 'rleu'", stdin=f, one_line=False)
os.mkfifo(os.path.join(TMP, "fifo_mod.pnet"))
imp = write("import_fifo.pnet", 'import "fifo_mod";\n' + HEAD + TAIL)
refused("import_fifo", ["--check", imp], "cannot read module '" + os.path.join(TMP, "fifo_mod.pnet") + "': not a regular file (a FIFO)",
        one_line=False)
gfifo = os.path.join(TMP, "fifo.graph")
os.mkfifo(gfifo)
refused("graph_fifo", ["--check", gfifo], f"cannot read '{gfifo}': not a regular file (a FIFO)")
valid = write("weights_net.pnet", "network n { input x : f32[batch, 4]; output y = dense(x, 3); }\n")
refused("weights_dev_zero", ["--weights", "/dev/zero", "-c", valid, "-o", os.path.join(TMP, "w.o")], "/dev/zero: not a regular file")

# Random mutations of a valid example.
base = open(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "wide_mlp.pnet"), "rb").read()
for i in range(30):
    b = bytearray(base)
    for _ in range(rng.randrange(1, 8)):
        op = rng.randrange(3)
        pos = rng.randrange(len(b))
        if op == 0:
            del b[pos:pos + rng.randrange(1, 20)]
        elif op == 1:
            b[pos:pos] = bytes(rng.choice(b"(){}[];,=@.+-*/:\"#0123456789abcxyz \n\t\xff\x00"))
        else:
            b[pos] = rng.randrange(256)
    path = write(f"mutant{i}.pnet", bytes(b))
    try:
        p = subprocess.run([PNETC, "--check", "-I", os.path.dirname(path), path], capture_output=True, timeout=30)
        bad = p.returncode not in (0, 1) or b"Sanitizer" in p.stderr or b"internal error" in p.stderr
        if p.returncode == 1 and not FIRST.match(p.stderr.decode(errors="replace")):
            bad = True
    except subprocess.TimeoutExpired:
        bad = True
    if bad:
        print(f"FAIL mutant{i}: exit {p.returncode}: {p.stderr[:300]!r}")
        failed += 1
    else:
        passed += 1

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
