#!/usr/bin/python3
"""The PyTorch peer: measures inference throughput of one standard network.

usage: /usr/bin/python3 bench/torch_bench.py MODEL --batch N --threads T --seconds S
Prints 'throughput: X samples/s' (and a latency line), like a pnet executable's bench command, and
'threads: torch T, OpenBLAS B'. --threads sets torch's own threads; the BLAS library's come from
the environment, which compare.py sets per configuration (bench/peer.py).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import nets  # noqa: E402
import peer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(nets.MODELS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    model = nets.build(a.model)
    x = nets.example_input(a.model, a.batch)  # preallocated, reused every run
    with torch.inference_mode():
        # warm-up: at least 3 runs and about a tenth of the timed period
        t_end = time.perf_counter() + max(0.2, a.seconds / 10)
        n = 0
        while n < 3 or time.perf_counter() < t_end:
            model(x)
            n += 1
        lat = []
        t0 = time.perf_counter()
        t_end = t0 + a.seconds
        while True:
            s = time.perf_counter()
            model(x)
            e = time.perf_counter()
            lat.append(e - s)
            if e >= t_end:
                break
        total = e - t0
    lat.sort()
    print(f"network: {a.model} (pytorch {torch.__version__}), batch {a.batch}, "
          f"threads {a.threads}, {len(lat)} runs")
    print(f"throughput: {len(lat) * a.batch / total:.1f} samples/s")
    print(peer.threads_line(torch))
    print(f"latency: median {statistics.median(lat) * 1e3:.3f} ms, "
          f"p90 {lat[int(0.9 * (len(lat) - 1))] * 1e3:.3f} ms, min {lat[0] * 1e3:.3f} ms per batch")


if __name__ == "__main__":
    main()
