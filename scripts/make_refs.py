#!/usr/bin/python3
"""Generate the reference data of the end-to-end tests (tests/e2e/refs/CASE/).

Run with Debian's Python, which has torch and numpy:

    /usr/bin/python3 scripts/make_refs.py [--pnetc PATH] [CASE ...]

For every tests/e2e/cases/*.pnet and examples/*.pnet, it prints the checked graph with
`pnetc --emit=graph`, evaluates the inference part of it (the nodes the outputs need, none
marked `train`) with PyTorch functional ops in float32, and writes into tests/e2e/refs/CASE/:

    weights.safetensors      deterministic random parameters (PyTorch state_dict names)
    in_B_NAME.npy            random inputs, for batch sizes B = 1 and 7
    out_B_NAME.npy           the expected outputs
    case.txt                 `inputs NAME ...` and `outputs NAME ...`

Everything is seeded from the case name, so re-running reproduces identical files. Cases whose
reference files would exceed MAX_CASE_BYTES are skipped (with a message) to keep the repository small.
"""
import argparse
import json
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCHES = (1, 7)
MAX_CASE_BYTES = 1 << 20  # at most 1 MiB of reference files per case

NODE_RE = re.compile(
    r"^\s*(?P<name>\S+) = (?P<op>\w+)\((?P<ins>[^)]*)\)(?P<attrs>.*?) : (?P<dtype>\w+)\[(?P<dims>[^\]]*)\]"
    r" stage=\d+ shard=\d+(?P<flags>[^#]*?)\s*(?:#\s*(?P<params>.*))?$")
OUT_RE = re.compile(r"^\s*output (\S+) = (\S+)\s*$")
PARAM_RE = re.compile(r"^(\S+)\[([0-9,]*)\]$")


class Node:
    def __init__(self, m):
        self.name = m.group("name")
        self.op = m.group("op")
        self.inputs = [s.strip() for s in m.group("ins").split(",") if s.strip()]
        self.attrs = {}
        for kv in m.group("attrs").split():
            k, v = kv.split("=", 1)
            self.attrs[k] = json.loads(v) if v.startswith("[") else v
        self.dtype = m.group("dtype")
        self.dims = [d for d in m.group("dims").split(",") if d]
        flags = m.group("flags").split()
        self.train = "train" in flags
        self.params = []
        for p in (m.group("params") or "").split():
            pm = PARAM_RE.match(p)
            if not pm:
                raise SystemExit("make_refs: cannot parse parameter '%s' of node %s" % (p, self.name))
            self.params.append((pm.group(1), [int(d) for d in pm.group(2).split(",") if d]))

    def shape(self, batch):
        return [batch if d == "batch" else int(d) for d in self.dims]


def parse_graph(text):
    nodes, outputs = [], []
    for line in text.splitlines():
        if not line.strip() or line.startswith("network ") or line.strip().startswith("train "):
            continue
        m = OUT_RE.match(line)
        if m:
            outputs.append((m.group(1), m.group(2)))
            continue
        m = NODE_RE.match(line)
        if not m:
            raise SystemExit("make_refs: cannot parse graph line: %r" % line)
        nodes.append(Node(m))
    return nodes, outputs


def needed_nodes(nodes, outputs):
    by_name = {n.name: n for n in nodes}
    need, stack = set(), [node for _, node in outputs]
    while stack:
        name = stack.pop()
        if name in need:
            continue
        need.add(name)
        stack.extend(by_name[name].inputs)
    for name in need:
        if by_name[name].train:
            raise SystemExit("make_refs: an output depends on the train-only node '%s'" % name)
    return [n for n in nodes if n.name in need]


def uniform(gen, shape, lo, hi):
    return torch.rand(shape, generator=gen, dtype=torch.float32) * (hi - lo) + lo


def make_params(nodes, gen):
    params = {}
    for n in nodes:
        for pname, shape in n.params:
            suffix = pname[len(n.name) + 1:]
            if n.op == "embedding":
                t = torch.randn(shape, generator=gen, dtype=torch.float32)
            elif n.op in ("batchnorm", "layernorm"):
                lo, hi = (0.5, 1.5) if suffix in ("weight", "running_var") else (-0.5, 0.5)
                t = uniform(gen, shape, lo, hi)
            elif suffix == "weight":  # dense, conv2d: PyTorch's default bound 1/sqrt(fan_in)
                fan_in = 1
                for d in shape[1:]:
                    fan_in *= d
                b = 1.0 / fan_in ** 0.5
                t = uniform(gen, shape, -b, b)
            elif suffix == "bias":
                t = uniform(gen, shape, -0.5, 0.5)
            else:
                raise SystemExit("make_refs: unknown parameter '%s' of op %s" % (pname, n.op))
            params[pname] = t.contiguous()
    return params


def make_inputs(nodes, batch, gen):
    vocab = {}
    for n in nodes:
        if n.op == "embedding":
            v = int(n.attrs["vocab"])
            vocab[n.inputs[0]] = min(vocab.get(n.inputs[0], v), v)
    xs = {}
    for n in nodes:
        if n.op != "input":
            continue
        shape = n.shape(batch)
        if n.dtype == "i32":
            if n.name not in vocab:
                raise SystemExit("make_refs: i32 input '%s' feeds no embedding" % n.name)
            xs[n.name] = torch.randint(0, vocab[n.name], shape, generator=gen, dtype=torch.int32)
        else:
            xs[n.name] = uniform(gen, shape, -1.0, 1.0) * 2
    return xs


def pair(v):
    return tuple(int(x) for x in v)


def evaluate(nodes, params, xs, batch):
    val = {}
    for n in nodes:
        a = [val[i] for i in n.inputs]
        p = lambda s: params[n.name + "." + s]
        has = lambda s: (n.name + "." + s) in params
        op, at = n.op, n.attrs
        if op == "input":
            y = xs[n.name]
        elif op == "const" and "values" in at:  # a tensor constant: its values inline
            y = torch.tensor(at["values"], dtype=torch.float32).reshape(n.shape(batch))
        elif op == "const":
            y = torch.tensor(float(at["value"]), dtype=torch.float32)
        elif op == "add":
            y = a[0] + a[1]
        elif op == "sub":
            y = a[0] - a[1]
        elif op == "mul":
            y = a[0] * a[1]
        elif op == "div":
            y = a[0] / a[1]
        elif op == "dense":
            y = F.linear(a[0], p("weight"), p("bias") if has("bias") else None)
        elif op == "conv2d":
            y = F.conv2d(a[0], p("weight"), p("bias") if has("bias") else None,
                         stride=pair(at["stride"]), padding=pair(at["padding"]), groups=int(at.get("groups", 1)))
        elif op == "batchnorm":
            y = F.batch_norm(a[0], p("running_mean"), p("running_var"), p("weight"), p("bias"),
                             training=False, eps=float(at["eps"]))
        elif op == "layernorm":
            y = F.layer_norm(a[0], (a[0].shape[-1],), p("weight"), p("bias"), eps=float(at["eps"]))
        elif op == "embedding":
            y = F.embedding(a[0].long(), p("weight"))
        elif op == "maxpool2d":
            y = F.max_pool2d(a[0], pair(at["size"]), pair(at["stride"]), pair(at["padding"]))
        elif op == "avgpool2d":
            y = F.avg_pool2d(a[0], pair(at["size"]), pair(at["stride"]), pair(at["padding"]))
        elif op == "global_avgpool":
            y = F.adaptive_avg_pool2d(a[0], 1)
        elif op == "relu":
            y = F.relu(a[0])
        elif op == "leaky_relu":
            y = F.leaky_relu(a[0], float(at["slope"]))
        elif op == "sigmoid":
            y = torch.sigmoid(a[0])
        elif op == "tanh":
            y = torch.tanh(a[0])
        elif op == "gelu":
            y = F.gelu(a[0])
        elif op == "silu":
            y = F.silu(a[0])
        elif op == "elu":
            y = F.elu(a[0], float(at["alpha"]))
        elif op == "softplus":
            y = F.softplus(a[0])  # beta 1, threshold 20
        elif op == "prelu":
            y = F.prelu(a[0], p("weight"))
        elif op == "softmax":
            y = F.softmax(a[0], dim=int(at["axis"]))
        elif op == "log_softmax":
            y = F.log_softmax(a[0], dim=int(at["axis"]))
        elif op == "causal_softmax":
            t, s = a[0].shape[-2], a[0].shape[-1]
            masked = torch.ones(t, s, dtype=torch.bool).triu(1)  # column j > row i
            y = F.softmax(a[0].masked_fill(masked, float("-inf")), dim=-1)
        elif op == "flatten":
            y = a[0].flatten(1)
        elif op == "reshape":
            y = a[0].reshape(n.shape(batch))
        elif op == "concat":
            y = torch.cat(a, dim=int(at["axis"]))
        elif op == "transpose":
            y = a[0].permute(*[int(i) for i in at["perm"]])
        elif op == "slice":
            ax, start = int(at["axis"]), int(at["start"])
            y = a[0].narrow(ax, start, int(at["end"]) - start)
        elif op == "pad":
            y = F.pad(a[0], (int(at["left"]), int(at["right"]), int(at["top"]), int(at["bottom"])))
        elif op == "positions":
            ax = int(at["axis"])
            y = torch.arange(a[0].shape[ax], dtype=torch.int32).expand(list(a[0].shape[:ax + 1]))
        elif op == "matmul":
            y = torch.matmul(a[0], a[1])
        elif op == "dropout":
            y = a[0]
        else:
            raise SystemExit("make_refs: op '%s' (node %s) is not supported" % (op, n.name))
        if list(y.shape) != n.shape(batch):
            raise SystemExit("make_refs: node %s has shape %s, but the graph says %s"
                             % (n.name, list(y.shape), n.shape(batch)))
        if op != "input" and y.dtype != (torch.int32 if n.dtype == "i32" else torch.float32):
            raise SystemExit("make_refs: node %s computed %s" % (n.name, y.dtype))
        val[n.name] = y.contiguous()
    return val


def safetensors_bytes(params):
    header, offset, blobs = {}, 0, []
    for name in sorted(params):
        data = params[name].numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(params[name].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def npy_bytes(arr):
    import io
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def write_if_changed(path, data):
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def make_case(pnetc, src, outroot):
    case = os.path.splitext(os.path.basename(src))[0]
    r = subprocess.run([pnetc, "--emit=graph", src], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("make_refs: pnetc --emit=graph %s failed:\n%s" % (src, r.stderr))
    nodes, outputs = parse_graph(r.stdout)
    if not outputs:
        raise SystemExit("make_refs: %s has no outputs" % src)
    nodes = needed_nodes(nodes, outputs)
    inputs = [n for n in nodes if n.op == "input"]
    gen = torch.Generator().manual_seed(zlib.crc32(case.encode()))
    params = make_params(nodes, gen)
    files = {"weights.safetensors": safetensors_bytes(params)}
    dtypes = {n.name: n.dtype for n in nodes}
    for b in BATCHES:
        xs = make_inputs(nodes, b, gen)
        with torch.no_grad():
            val = evaluate(nodes, params, xs, b)
        for n in inputs:
            arr = xs[n.name].numpy().astype("<i4" if n.dtype == "i32" else "<f4")
            files["in_%d_%s.npy" % (b, n.name)] = npy_bytes(arr)
        for oname, node in outputs:
            arr = val[node].numpy().astype("<i4" if dtypes[node] == "i32" else "<f4")
            if not np.all(np.isfinite(arr)):
                raise SystemExit("make_refs: output %s of %s is not finite" % (oname, case))
            files["out_%d_%s.npy" % (b, oname)] = npy_bytes(arr)
    files["case.txt"] = ("inputs %s\noutputs %s\n" % (" ".join(n.name for n in inputs),
                                                       " ".join(o for o, _ in outputs))).encode()
    total = sum(len(v) for v in files.values())
    if total > MAX_CASE_BYTES:
        print("make_refs: skipping %s: its references would take %d bytes (limit %d)" % (case, total, MAX_CASE_BYTES))
        return
    d = os.path.join(outroot, case)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        if old not in files:
            os.remove(os.path.join(d, old))
    for fname, data in sorted(files.items()):
        write_if_changed(os.path.join(d, fname), data)
    print("make_refs: %-16s %2d nodes, %d params, %7d bytes" % (case, len(nodes), len(params), total))


def newest_pnetc(tool):
    """The most recently built build*/pnetc of the checkout."""
    cands = [os.path.join(ROOT, d, "pnetc") for d in sorted(os.listdir(ROOT)) if d.startswith("build")]
    cands = [c for c in cands if os.access(c, os.X_OK)]
    if not cands:
        raise SystemExit("%s: no build*/pnetc found; pass --pnetc PATH" % tool)
    return max(cands, key=os.path.getmtime)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pnetc", default=None, help="pnetc to run (default: build*/pnetc, newest)")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "e2e", "refs"))
    ap.add_argument("cases", nargs="*", help="case names (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    pnetc = args.pnetc or newest_pnetc("make_refs")
    srcs = []
    for d in (os.path.join(ROOT, "tests", "e2e", "cases"), os.path.join(ROOT, "examples")):
        srcs += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".pnet")]
    names = [os.path.splitext(os.path.basename(s))[0] for s in srcs]
    if len(set(names)) != len(names):
        raise SystemExit("make_refs: a case and an example share a name")
    if args.cases:
        unknown = set(args.cases) - set(names)
        if unknown:
            raise SystemExit("make_refs: unknown case(s): %s" % " ".join(sorted(unknown)))
        srcs = [s for s, n in zip(srcs, names) if n in args.cases]
    for src in srcs:
        make_case(pnetc, src, args.out)


if __name__ == "__main__":
    main()
