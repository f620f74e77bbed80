#!/usr/bin/env python3
"""Runs the ONNX backend test suite (Debian's libonnx-testdata) through pnetc (docs/onnx.md).

Each test is a folder with model.onnx and test_data_set_*/input_*.pb, output_*.pb. For each:
  - pnetc --emit=graph model.onnx: an import error is "unsupported" (the op, attribute or value is
    not supported; the message says which); pnetc killed by a signal is a failure;
  - pnetc model.onnx -o net, then `net infer` on every data set; the outputs must match
    (float32, rtol 1e-4, atol 1e-5, the same shape): "passed", else "failed".
Prints per folder passed / failed / unsupported and the list of failures.

Usage: onnx_conformance.py PNETC [--data DIR] [--work DIR] [--only LIST] [--write-passing LIST]
                           [--jobs N] [--verbose] [FILTER...]
  --only LIST           run only the tests named in LIST (one "folder/test" a line); every one must pass
  --write-passing LIST  write the tests that passed to LIST (the list ctest runs: onnx.conformance)
  FILTER                run only tests whose "folder/test" contains one of these strings
Needs numpy and onnx (Debian's python3-onnx; re-runs under /usr/bin/python3 when this python lacks
them); exit 77 (skipped) without them or without the test data. Exit 1 when a test failed.
"""
import argparse
import concurrent.futures
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnx
    from onnx import numpy_helper
except ImportError:
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    print("skipped: no numpy and onnx (Debian's python3-onnx)")
    sys.exit(77)

FOLDERS = ["node", "pytorch-converted", "pytorch-operator", "simple"]
RTOL, ATOL = 1e-4, 1e-5
TIMEOUT = 120


def read_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def io_names(graph_text):
    """The graph's input node names and output names, in order, from --emit=graph."""
    ins = re.findall(r"^  (\S+) = input\(\)", graph_text, re.M)
    outs = re.findall(r"^  output (\S+) = ", graph_text, re.M)
    return ins, outs


def one_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[0][:300] if lines else "(no message)"


def run_test(pnetc, test_dir, work):
    """Returns (status, message): status passed, failed or unsupported."""
    model = os.path.join(test_dir, "model.onnx")
    try:
        p = subprocess.run([pnetc, "--emit=graph", model], capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return "failed", "pnetc --emit=graph timed out"
    if p.returncode < 0:
        return "failed", f"pnetc crashed (signal {-p.returncode})"
    if p.returncode != 0:
        msg = one_line(p.stderr)
        if len(p.stderr.strip().splitlines()) != 1:
            return "failed", f"the error is not one line: {msg}"
        return "unsupported", msg.split(": error: ", 1)[-1]
    ins, outs = io_names(p.stdout)
    os.makedirs(work, exist_ok=True)
    exe = os.path.join(work, "net")
    p = subprocess.run([pnetc, model, "-o", exe], capture_output=True, text=True, timeout=TIMEOUT)
    if p.returncode != 0:
        if p.returncode < 0:
            return "failed", f"pnetc crashed (signal {-p.returncode}) compiling"
        return "failed", "compile: " + one_line(p.stderr)
    sets = sorted(glob.glob(os.path.join(test_dir, "test_data_set_*")))
    if not sets:
        return "failed", "no test data sets"
    for ds in sets:
        in_pbs = sorted(glob.glob(os.path.join(ds, "input_*.pb")), key=lambda s: int(re.findall(r"\d+", os.path.basename(s))[0]))
        out_pbs = sorted(glob.glob(os.path.join(ds, "output_*.pb")), key=lambda s: int(re.findall(r"\d+", os.path.basename(s))[0]))
        if len(in_pbs) != len(ins) or len(out_pbs) != len(outs):
            return "failed", f"{os.path.basename(ds)}: {len(in_pbs)} inputs and {len(out_pbs)} outputs for a network of {len(ins)} and {len(outs)}"
        args = [exe, "infer"]
        for name, pb in zip(ins, in_pbs):
            x = read_pb(pb)
            if x.dtype not in (np.float32, np.int64, np.int32):
                return "unsupported", f"input {name} is {x.dtype}"
            path = os.path.join(work, f"in_{name}.npy")
            np.save(path, np.ascontiguousarray(x))
            args += ["--input", f"{name}={path}"]
        for name in outs:
            args += ["--output", f"{name}={os.path.join(work, 'out_' + name + '.npy')}"]
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return "failed", f"{os.path.basename(ds)}: infer timed out"
        if p.returncode != 0:
            why = f"signal {-p.returncode}" if p.returncode < 0 else one_line(p.stderr)
            return "failed", f"{os.path.basename(ds)}: infer: {why}"
        for name, pb in zip(outs, out_pbs):
            want = read_pb(pb)
            got = np.load(os.path.join(work, f"out_{name}.npy"))
            if got.shape != want.shape:
                return "failed", f"{os.path.basename(ds)}: output {name} has shape {got.shape}, expected {want.shape}"
            if not np.allclose(got, want.astype(np.float32), rtol=RTOL, atol=ATOL, equal_nan=True):
                err = float(np.max(np.abs(got.astype(np.float64) - want)))
                return "failed", f"{os.path.basename(ds)}: output {name} differs (max abs error {err:.3g})"
    return "passed", ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pnetc")
    ap.add_argument("--data", default="/usr/share/libonnx-testdata/data")
    ap.add_argument("--work", default=None)
    ap.add_argument("--only", default=None)
    ap.add_argument("--write-passing", default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("filters", nargs="*")
    a = ap.parse_intermixed_args()
    if not os.path.isdir(a.data):
        print(f"skipped: no ONNX test data in {a.data} (Debian's libonnx-testdata)")
        return 77
    tests = []
    for folder in FOLDERS:
        for model in sorted(glob.glob(os.path.join(a.data, folder, "*", "model.onnx"))):
            tests.append(f"{folder}/{os.path.basename(os.path.dirname(model))}")
    if a.only:
        wanted = [l.strip() for l in open(a.only) if l.strip() and not l.startswith("#")]
        missing = [t for t in wanted if t not in tests]
        if missing:
            print("FAIL not in the test data:", " ".join(missing))
            return 1
        tests = wanted
    if a.filters:
        tests = [t for t in tests if any(f in t for f in a.filters)]
    work = a.work or tempfile.mkdtemp(prefix="pnet-onnx-")
    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        futs = {pool.submit(run_test, a.pnetc, os.path.join(a.data, t), os.path.join(work, t)): t for t in tests}
        for f in concurrent.futures.as_completed(futs):
            t = futs[f]
            try:
                results[t] = f.result()
            except Exception as e:  # a broken data file, a missing output: the test fails, the run goes on
                results[t] = ("failed", f"{type(e).__name__}: {e}")
            if a.verbose:
                print(t, *results[t])
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'folder':20} {'passed':>7} {'failed':>7} {'unsupported':>12}")
    total = {"passed": 0, "failed": 0, "unsupported": 0}
    for folder in FOLDERS:
        c = {"passed": 0, "failed": 0, "unsupported": 0}
        for t, (st, _) in results.items():
            if t.startswith(folder + "/"):
                c[st] += 1
        if sum(c.values()):
            print(f"{folder:20} {c['passed']:7} {c['failed']:7} {c['unsupported']:12}")
        for k in c:
            total[k] += c[k]
    print(f"{'total':20} {total['passed']:7} {total['failed']:7} {total['unsupported']:12}")
    failures = sorted(t for t, (st, _) in results.items() if st == "failed")
    for t in failures:
        print(f"FAIL {t}: {results[t][1]}")
    if a.write_passing:
        with open(a.write_passing, "w") as f:
            f.write("# The ONNX backend tests that pnetc passes (scripts/onnx_conformance.py --write-passing).\n")
            for t in sorted(t for t, (st, _) in results.items() if st == "passed"):
                f.write(t + "\n")
    if a.only:
        not_passed = [t for t in tests if results[t][0] != "passed"]
        for t in not_passed:
            if results[t][0] == "unsupported":
                print(f"FAIL {t}: unsupported: {results[t][1]}")
        return 1 if not_passed else 0
    return 1 if failures else 0


sys.exit(main())
