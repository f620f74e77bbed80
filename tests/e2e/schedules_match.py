#!/usr/bin/env python3
"""Every schedule gives the serial run's outputs, byte for byte, on one example network.

usage: schedules_match.py PNETC EXAMPLE.pnet WORKDIR [BATCH]

Compiles EXAMPLE.pnet, and its `pnetc --auto-partition 4` rewrite, and runs `infer` on one
deterministic random batch (default 37: not a multiple of any replica count used) under:
serial (the reference); batch with 3 replicas on 2 threads and 5 replicas on 4 threads; when
the network has stages, pipeline on 4 threads with 3 and 7 micro-batches and hybrid with 2
replicas on 5 threads; and the auto-partitioned network as a pipeline on 6 threads with 5
micro-batches and as hybrid with 2 replicas on 8 threads (also with 3 micro-batches when the
network has no @pipeline). Every output file must equal the serial one exactly. Thread counts
exceed the cores on purpose (PNET_ADAPTIVE_THREADS=0 keeps them), and each command has a time
limit (PNET_TEST_TIMEOUT, default 240 s), so a hang fails rather than blocks. Prints one line
per check and `N passed, M failed`; exit status 1 on any failure.
"""
import os
import random
import re
import struct
import subprocess
import sys

if len(sys.argv) not in (4, 5):
    sys.exit("usage: schedules_match.py PNETC EXAMPLE.pnet WORKDIR [BATCH]")
PNETC, SRC, WORK = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
BATCH = int(sys.argv[4]) if len(sys.argv) == 5 else 37
LIMIT = float(os.environ.get("PNET_TEST_TIMEOUT", "240"))  # seconds per command
STDLIB = os.path.join(os.path.dirname(os.path.dirname(SRC)), "stdlib")
INCLUDES = ["-I", os.path.dirname(SRC), "-I", STDLIB]
os.environ["PNET_ADAPTIVE_THREADS"] = "0"  # every requested thread runs, however small the call
os.environ.pop("OMP_NUM_THREADS", None)
os.makedirs(WORK, exist_ok=True)
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {detail}")
    return ok


def finish():
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def start(args, log, stdout=None):
    """Starts args with stderr (and stdout, unless given) going to log."""
    f = open(log, "wb")
    return subprocess.Popen(args, stdout=stdout or f, stderr=f), f, args, log


def wait(job):
    """Waits for a started job under the time limit; returns (ok, one-line reason)."""
    proc, f, args, log = job
    try:
        rc = proc.wait(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False, f"timed out after {LIMIT:g} s: {' '.join(args)}"
    finally:
        f.close()
    if rc == 0:
        return True, ""
    with open(log, errors="replace") as f:
        head = " ".join(f.read().splitlines()[:3])
    return False, f"exit {rc}: {' '.join(args)}: {head}"


def run(args, log):
    return wait(start(args, log))


def npy(path, dtype, shape, values):
    """Writes a version 1.0 .npy file (little-endian f4 or i4, C order)."""
    header = "{'descr': '<%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype, "".join(f"{d}, " for d in shape))
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack(f"<{len(values)}{'f' if dtype == 'f4' else 'i'}", *values))


def graph_of(src, tag):
    """Returns the text of pnetc --emit=graph for src, or None."""
    path = os.path.join(WORK, tag + ".graph")
    ok, why = run([PNETC, *INCLUDES, "--emit=graph", src, "-o", path], path + ".log")
    if not check(f"emit graph of {tag}", ok, why):
        return None
    with open(path) as f:
        return f.read()


def stages_of(graph):
    return int(re.search(r"^network \S+ stages=(\d+)", graph, re.M).group(1))


# The graph names the inputs, outputs, stages and embedding sizes.
graph = graph_of(SRC, "net")
if graph is None:
    finish()
stages = stages_of(graph)
inputs = re.findall(r"^  (\S+) = input\(\) : (f32|i32)\[([^\]]*)\][^\n#]*?(?<! train)$", graph,
                    re.M)
outputs = re.findall(r"^  output (\S+) =", graph, re.M)
vocab = min([int(v) for v in re.findall(r"= embedding\(.*? vocab=(\d+)", graph)] or [1 << 20])
if not check("graph has inputs and outputs", inputs and outputs,
             f"inputs {inputs}, outputs {outputs}"):
    finish()

# The same network split into four stages by the cost model (printed back as source).
AUTO_SRC = os.path.join(WORK, "auto.pnet")
with open(AUTO_SRC, "wb") as out:
    ok, why = wait(start([PNETC, *INCLUDES, "--auto-partition", "4", SRC], AUTO_SRC + ".log", out))
auto_graph = graph_of(AUTO_SRC, "auto") if check("auto-partition 4", ok, why) else None
if auto_graph is not None:
    check("auto-partitioned network has stages", stages_of(auto_graph) > 1,
          f"{stages_of(auto_graph)} stage(s) in {AUTO_SRC}")

# Both compiles at once: they take most of the time.
NET, AUTO = os.path.join(WORK, "net"), os.path.join(WORK, "auto")
jobs = [start([PNETC, *INCLUDES, SRC, "-o", NET], NET + ".log")]
if auto_graph is not None:
    jobs.append(start([PNETC, *INCLUDES, AUTO_SRC, "-o", AUTO], AUTO + ".log"))
net_ok = check("compile", *wait(jobs[0]))
auto_ok = auto_graph is not None and check("compile auto-partitioned", *wait(jobs[1]))

# One deterministic random batch per input: f32 uniform in [-2, 2), i32 ids in [0, vocab).
rng = random.Random(20240537)
in_args = []
for name, dtype, dims in inputs:
    shape = [BATCH if d.strip() == "batch" else int(d) for d in dims.split(",")]
    count = 1
    for d in shape:
        count *= d
    path = os.path.join(WORK, f"in_{name}.npy")
    if dtype == "f32":
        npy(path, "f4", shape, [rng.uniform(-2.0, 2.0) for _ in range(count)])
    else:
        npy(path, "i4", shape, [rng.randrange(vocab) for _ in range(count)])
    in_args += ["--input", f"{name}={path}"]


def infer(exe, tag, options):
    """Runs exe infer with options; returns the list of output files, or None on failure."""
    files = [os.path.join(WORK, f"{tag}_{name}.npy") for name in outputs]
    args = [exe, "infer", *in_args, *options]
    for name, path in zip(outputs, files):
        if os.path.exists(path):
            os.remove(path)
        args += ["--output", f"{name}={path}"]
    ok, why = run(args, os.path.join(WORK, tag + ".log"))
    return files if check(f"infer {tag} ({' '.join(options)})", ok, why) else None


def same(a, b):
    if not (os.path.exists(a) and os.path.exists(b)):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def compare(exe, tag, options):
    files = infer(exe, tag, options)
    if files is None or ref is None:
        return
    for name, got, want in zip(outputs, files, ref):
        check(f"{tag} == serial, output {name}", same(got, want),
              f"{got} differs from {want} (batch {BATCH}: {exe} infer {' '.join(options)})")


ref = None
if net_ok:
    ref = infer(NET, "serial", ["--schedule", "serial"])
    compare(NET, "batch_r3_t2", ["--schedule", "batch", "--replicas", "3", "--threads", "2"])
    compare(NET, "batch_r5_t4", ["--schedule", "batch", "--replicas", "5", "--threads", "4"])
    if stages > 1:
        for m in ("3", "7"):
            compare(NET, f"pipeline_t4_m{m}",
                    ["--schedule", "pipeline", "--threads", "4", "--microbatches", m])
        compare(NET, "hybrid_r2_t5", ["--schedule", "hybrid", "--replicas", "2", "--threads", "5"])
if auto_ok:
    compare(AUTO, "auto_pipeline_t6_m5",
            ["--schedule", "pipeline", "--threads", "6", "--microbatches", "5"])
    hybrid = ["--schedule", "hybrid", "--replicas", "2", "--threads", "8"]
    compare(AUTO, "auto_hybrid_r2_t8", hybrid)
    if int(re.search(r" microbatches=(\d+)", auto_graph).group(1)) == 1:
        compare(AUTO, "auto_hybrid_r2_t8_m3", hybrid + ["--microbatches", "3"])
finish()
