#!/usr/bin/python3
"""The PyTorch side of bench/lenet_fashion.sh: examples/lenet.pnet's network and train { } block
(adam lr 0.001, batch 64, cross-entropy) trained on Fashion-MNIST.

usage: /usr/bin/python3 bench/lenet_torch.py --dir DIR --threads T [--epochs E] [--seed S] [--probe N]
Prints one line per epoch, 'epoch K: loss L, accuracy A, X samples/s, T s' (training only: the
epoch's steps, not the evaluation), then 'test_accuracy: A' on the 10,000 test images, and
'threads: torch T, OpenBLAS B'. With --probe N it times N training steps after a warm-up and prints
'throughput: X samples/s' instead (how lenet_fashion.sh picks the fastest thread configuration).
--threads sets torch's own threads; the BLAS library's come from the environment
(OPENBLAS_NUM_THREADS, OMP_NUM_THREADS; bench/peer.py).

The images are divided by 255, as pnet does with uint8 IDX data; each epoch visits the samples in
a new random order, and the last batch of an epoch may be short, as in pnet's train.
"""
import argparse
import gzip
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
import peer  # noqa: E402


def idx(path):
    """An IDX file (gzip) as a numpy array of its dtype (uint8 here) and shape."""
    with gzip.open(path, "rb") as f:
        b = f.read()
    assert b[0] == 0 and b[1] == 0 and b[2] == 8, f"{path}: not a uint8 IDX file"
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def lenet():
    """examples/lenet.pnet, layer for layer (logits out: the loss applies log-softmax)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe", type=int, default=0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)
    x = torch.from_numpy(idx(os.path.join(a.dir, "train-images-idx3-ubyte.gz")).astype(np.float32) / 255)
    x = x.reshape(-1, 1, 28, 28)
    y = torch.from_numpy(idx(os.path.join(a.dir, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    model = lenet().train()
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    loss_fn = nn.CrossEntropyLoss()

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        out = model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        opt.step()
        return loss, out

    n = x.shape[0]
    if a.probe:
        xb, yb = x[:a.batch].contiguous(), y[:a.batch].contiguous()
        for _ in range(max(3, a.probe // 10)):
            step(xb, yb)
        t0 = time.perf_counter()
        for _ in range(a.probe):
            step(xb, yb)
        print(f"throughput: {a.probe * a.batch / (time.perf_counter() - t0):.1f} samples/s")
        print(peer.threads_line(torch))
        return

    for e in range(a.epochs):
        order = torch.randperm(n)
        loss_sum, correct = 0.0, 0
        t0 = time.perf_counter()
        for i in range(0, n, a.batch):
            sel = order[i:i + a.batch]
            loss, out = step(x[sel], y[sel])
            loss_sum += loss.item() * len(sel)
            correct += (out.argmax(1) == y[sel]).sum().item()
        t = time.perf_counter() - t0
        print(f"epoch {e + 1}: loss {loss_sum / n:.4f}, accuracy {correct / n:.4f}, "
              f"{n / t:.1f} samples/s, {t:.2f} s", flush=True)

    xt = torch.from_numpy(idx(os.path.join(a.dir, "t10k-images-idx3-ubyte.gz")).astype(np.float32) / 255)
    yt = torch.from_numpy(idx(os.path.join(a.dir, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(xt[i:i + 1000].reshape(-1, 1, 28, 28)).argmax(1) for i in range(0, len(xt), 1000)])
    print(f"test_accuracy: {(pred == yt).float().mean().item():.4f}")
    print(peer.threads_line(torch))


if __name__ == "__main__":
    main()
