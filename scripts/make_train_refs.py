#!/usr/bin/python3
"""Generate the reference data of the training tests (tests/train/refs/CASE/).

Run with Debian's Python, which has torch and numpy:

    /usr/bin/python3 scripts/make_train_refs.py [--pnetc PATH] [CASE ...]

For every tests/train/cases/*.pnet, it prints the checked graph with `pnetc --emit=graph`, builds
the nodes the loss needs with PyTorch functional ops in float32 (the op semantics come from
make_refs.py, the inference reference; batchnorm uses batch statistics and updates its running
statistics, as a model in train mode does), and trains one epoch without shuffling, batch after
batch (the last, partial batch as it is), with the optimizer of the train line (the parameters
of `frozen = true` layers left out of it): torch.optim.SGD,
or torch.optim.AdamW for `adam` (its weight decay is decoupled). It writes into
tests/train/refs/CASE/:

    init.safetensors     deterministic random parameters and buffers (PyTorch state_dict names)
    x.npy                the data: f32, or i32 ids when the network's input is i32
    y.npy                i32 class labels (cross_entropy) or f32 targets (mse)
    after.safetensors    every parameter and buffer after the epoch
    case.txt             `batch B`, `steps N`, `samples S`, `rtol R`, `atol A`

The same training also runs in float64; atol is chosen from how far float32 strays from it
(ATOL_SAFETY times the largest difference, at least ATOL_FLOOR), so the tolerance covers rounding
and nothing more. Everything is seeded from the case name, so re-running reproduces identical files.
"""
import argparse
import contextlib
import math
import os
import re
import subprocess
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_refs  # noqa: E402  (the inference reference: graph parser, parameters, op semantics)

ROOT = make_refs.ROOT
MAX_CASE_BYTES = 200 * 1000
RTOL = 1e-4
ATOL_FLOOR = 1e-5
ATOL_SAFETY = 10.0

TRAIN_RE = re.compile(r"^\s*train loss=(?P<loss>\S+) optimizer=(?P<opt>\w+)\((?P<args>[^)]*)\)"
                      r" batch=(?P<batch>\d+) epochs=(?P<epochs>\d+) seed=(?P<seed>\d+)\s*$")


def fail(msg):
    raise SystemExit("make_train_refs: " + msg)


def parse_train(text):
    for line in text.splitlines():
        m = TRAIN_RE.match(line)
        if m:
            hp = {}
            for kv in m.group("args").split(","):
                k, v = kv.strip().split("=", 1)
                hp[k] = v == "true" if v in ("true", "false") else float(v)
            return m.group("loss"), m.group("opt"), hp, int(m.group("batch"))
    fail("the graph has no train line")


class _Stub:
    """An already computed tensor, posing as an `input` node for make_refs.evaluate."""

    op, inputs, params, attrs = "input", [], [], {}

    def __init__(self, name, value):
        self.name, self.value = name, value

    def shape(self, batch):
        return list(self.value.shape)


class _Torch64:
    """`torch` as make_refs sees it during the float64 run: float32 means float64."""

    float32 = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


@contextlib.contextmanager
def precision(dtype):
    if dtype == torch.float32:
        yield
        return
    saved = make_refs.torch
    make_refs.torch = _Torch64()
    try:
        yield
    finally:
        make_refs.torch = saved


def forward(nodes, state, x, y, batch, dtype):
    """The loss of one batch, in train mode; batchnorm updates its running statistics in state."""
    val = {}
    for n in nodes:
        a = [val[i] for i in n.inputs]
        if n.op == "input":
            out = y if n.train else x
        elif n.op == "batchnorm":
            p = lambda s: state[n.name + "." + s]
            out = F.batch_norm(a[0], p("running_mean"), p("running_var"), p("weight"), p("bias"),
                               training=True, momentum=float(n.attrs["momentum"]), eps=float(n.attrs["eps"]))
        elif n.op == "dropout":
            fail("node %s: dropout cannot be checked (the random numbers differ)" % n.name)
        elif n.op == "cross_entropy":
            out = F.cross_entropy(a[0], a[1].long())
        elif n.op == "mse":
            out = F.mse_loss(a[0], a[1])
        else:
            stubs = {i: _Stub(i, val[i]) for i in n.inputs}
            with precision(dtype):
                out = make_refs.evaluate(list(stubs.values()) + [n], state, {i: val[i] for i in stubs}, batch)[n.name]
        if list(out.shape) != n.shape(batch):
            fail("node %s has shape %s, but the graph says %s" % (n.name, list(out.shape), n.shape(batch)))
        val[n.name] = out
    return val


def loss_nodes(nodes, loss):
    """The nodes the loss needs, in graph order; every parameter must be among them."""
    by_name = {n.name: n for n in nodes}
    need, stack = set(), [loss]
    while stack:
        name = stack.pop()
        if name not in need:
            need.add(name)
            stack.extend(by_name[name].inputs)
    for n in nodes:
        if n.params and n.name not in need:
            fail("node %s has parameters but the loss does not need it" % n.name)
    return [n for n in nodes if n.name in need]


def make_optimizer(opt, hp, params):
    if opt == "sgd":
        return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"],
                               nesterov=bool(hp["nesterov"]))
    if opt == "adam":
        return torch.optim.AdamW(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                                 weight_decay=hp["weight_decay"])
    fail("unknown optimizer '%s'" % opt)


def train(nodes, init, buffers, x, y, batch, opt, hp, dtype):
    """One epoch in order; returns the state after it and the loss of every step."""
    state = {}
    for k, v in init.items():
        t = v.to(dtype).clone()
        state[k] = t if k in buffers else t.requires_grad_(True)
    xs = x if x.dtype == torch.int32 else x.to(dtype)
    ys = y if y.dtype == torch.int32 else y.to(dtype)
    optim = make_optimizer(opt, hp, [state[k] for k in sorted(state) if k not in buffers])
    losses = []
    for start in range(0, x.shape[0], batch):
        xb, yb = xs[start:start + batch], ys[start:start + batch]
        optim.zero_grad()
        loss = forward(nodes, state, xb, yb, xb.shape[0], dtype)[nodes[-1].name]
        loss.backward()
        optim.step()
        losses.append(float(loss))
    return {k: v.detach() for k, v in state.items()}, losses


def make_data(nodes, loss_node, samples, gen):
    data = [n for n in nodes if n.op == "input" and not n.train]
    labels = [n for n in nodes if n.op == "input" and n.train]
    if len(data) != 1 or len(labels) != 1:
        fail("a training case needs exactly one data input and one train input")
    # make_inputs takes the vocabulary of i32 ids from the embeddings that read them
    readers = [n for n in nodes if n.op == "embedding" and n.inputs[0] == data[0].name]
    x = make_refs.make_inputs(data + readers, samples, gen)[data[0].name]
    lab = labels[0]
    if loss_node.op == "cross_entropy":
        classes = int(next(n for n in nodes if n.name == loss_node.inputs[0]).dims[-1])
        y = torch.randint(0, classes, lab.shape(samples), generator=gen, dtype=torch.int32)
    else:
        y = make_refs.uniform(gen, lab.shape(samples), -1.0, 1.0)
    return x, y


def tolerance(ref, exact):
    worst = 0.0
    for k in ref:
        d = (ref[k].double() - exact[k]).abs() - RTOL * exact[k].abs()
        worst = max(worst, float(d.max()) if d.numel() else 0.0)
    atol = max(ATOL_FLOOR, ATOL_SAFETY * worst)
    e = math.floor(math.log10(atol))
    return math.ceil(atol / 10 ** e) * 10 ** e, worst  # round up to one significant digit


def make_case(pnetc, src, outroot):
    case = os.path.splitext(os.path.basename(src))[0]
    r = subprocess.run([pnetc, "--emit=graph", src], capture_output=True, text=True)
    if r.returncode != 0:
        fail("pnetc --emit=graph %s failed:\n%s" % (src, r.stderr))
    nodes, _ = make_refs.parse_graph(r.stdout)
    loss, opt, hp, batch = parse_train(r.stdout)
    nodes = loss_nodes(nodes, loss)
    loss_node = nodes[-1]
    if loss_node.name != loss or loss_node.op not in ("cross_entropy", "mse"):
        fail("the loss node %s is not last or not a loss" % loss)

    gen = torch.Generator().manual_seed(zlib.crc32(case.encode()))
    init = make_refs.make_params(nodes, gen)
    buffers = {k for k in init if k.endswith(".running_mean") or k.endswith(".running_var")}
    # The parameters of a `frozen = true` layer are not trained: no gradient, no optimizer step
    # (PyTorch's requires_grad_(False)); they must come out as they went in.
    frozen = {p for n in nodes if n.attrs.get("frozen") == "true" for p, _ in n.params}
    buffers |= frozen
    samples = (5 * batch + 1) // 2  # 2.5 batches: 3 steps, the last one partial
    x, y = make_data(nodes, loss_node, samples, gen)

    after, losses = train(nodes, init, buffers, x, y, batch, opt, hp, torch.float32)
    exact, losses64 = train(nodes, init, buffers, x, y, batch, opt, hp, torch.float64)
    for k, v in after.items():
        if not torch.all(torch.isfinite(v)):
            fail("%s: %s is not finite after training" % (case, k))
    atol, worst = tolerance(after, exact)
    for k in frozen:
        if not torch.equal(after[k], init[k]):
            fail("%s: the frozen %s changed in training" % (case, k))
    moved = min(float((after[k] - init[k]).abs().max()) for k in init if k not in frozen)
    if moved <= 10 * atol:
        fail("%s: some tensor moves by only %g in training, within the tolerance %g" % (case, moved, atol))

    steps = len(losses)
    files = {
        "init.safetensors": make_refs.safetensors_bytes(init),
        "x.npy": make_refs.npy_bytes(x.numpy().astype("<i4" if x.dtype == torch.int32 else "<f4")),
        "y.npy": make_refs.npy_bytes(y.numpy().astype("<i4" if y.dtype == torch.int32 else "<f4")),
        "after.safetensors": make_refs.safetensors_bytes(after),
        "case.txt": ("batch %d\nsteps %d\nsamples %d\nrtol 1e-4\natol %g\n"
                     % (batch, steps, samples, atol)).encode(),
    }
    total = sum(len(v) for v in files.values())
    if total > MAX_CASE_BYTES:
        fail("%s: its references would take %d bytes (limit %d)" % (case, total, MAX_CASE_BYTES))
    d = os.path.join(outroot, case)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        if old not in files:
            os.remove(os.path.join(d, old))
    for fname, data in sorted(files.items()):
        make_refs.write_if_changed(os.path.join(d, fname), data)
    print("make_train_refs: %-9s %s, %d steps, loss %.4f -> %.4f, f32 vs f64 %.1e, atol %g, %6d bytes"
          % (case, opt, steps, losses[0], losses[-1], worst, atol, total))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pnetc", default=None, help="pnetc to run (default: build*/pnetc, newest)")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "train", "refs"))
    ap.add_argument("cases", nargs="*", help="case names (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    pnetc = args.pnetc or make_refs.newest_pnetc("make_train_refs")
    casedir = os.path.join(ROOT, "tests", "train", "cases")
    srcs = [os.path.join(casedir, f) for f in sorted(os.listdir(casedir)) if f.endswith(".pnet")]
    if args.cases:
        names = {os.path.splitext(os.path.basename(s))[0] for s in srcs}
        unknown = set(args.cases) - names
        if unknown:
            fail("unknown case(s): %s" % " ".join(sorted(unknown)))
        srcs = [s for s in srcs if os.path.splitext(os.path.basename(s))[0] in args.cases]
    for src in srcs:
        make_case(pnetc, src, args.out)


if __name__ == "__main__":
    main()
