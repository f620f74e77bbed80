#!/usr/bin/python3
"""The PyTorch peer of `NET bench --train`: measures training throughput of one standard network.

usage: /usr/bin/python3 bench/train_torch.py MODEL --batch N --threads T --seconds S
Prints 'throughput: X samples/s' (and a step line), like a pnet executable's bench --train, and
'threads: torch T, OpenBLAS B'. --threads sets torch's own threads; the BLAS library's come from
the environment (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS), which train.sh sets per configuration
(bench/peer.py).

The network is bench/nets.py's, which matches bench/models/MODEL.pnet layer for layer, without
its final softmax: the .pnet train { } block takes cross_entropy(logits, label), so the loss sees
the logits, as nn.CrossEntropyLoss does. Optimizer as in the train { } block: SGD, lr 0.01,
momentum 0.9. Random inputs and labels, preallocated and reused every step.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
from torch import nn  # noqa: E402
import nets  # noqa: E402
import peer  # noqa: E402

TRAINABLE = ("mlp_s", "cnn")  # the bench models with a train { } block
CLASSES = 10


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=TRAINABLE)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    model = nets.MODELS[a.model]()
    assert isinstance(model[-1], nn.Softmax)
    model = model[:-1].train()  # logits out; the loss applies log-softmax itself
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x = nets.example_input(a.model, a.batch)
    y = torch.randint(0, CLASSES, (a.batch,), dtype=torch.int64)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    # warm-up: at least 3 steps and about a tenth of the timed period
    t_end = time.perf_counter() + max(0.2, a.seconds / 10)
    n = 0
    while n < 3 or time.perf_counter() < t_end:
        step()
        n += 1
    lat = []
    t0 = time.perf_counter()
    t_end = t0 + a.seconds
    while True:
        s = time.perf_counter()
        step()
        e = time.perf_counter()
        lat.append(e - s)
        if e >= t_end:
            break
    total = e - t0
    print(f"training: {a.model} (pytorch {torch.__version__}), batch {a.batch}, "
          f"threads {a.threads}, {len(lat)} steps")
    print(f"throughput: {len(lat) * a.batch / total:.1f} samples/s")
    print(peer.threads_line(torch))
    print(f"step: median {statistics.median(lat) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
