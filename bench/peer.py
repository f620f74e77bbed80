"""How the PyTorch peer is run: as its users would tune it (bench/README.md, "The peer's threads").

PyTorch has two thread counts: its own intra-op threads (torch.set_num_threads, the script's
--threads) and its BLAS library's (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS in the
environment of its process). On T threads the peer is measured in every configuration of
torch {1, T} x BLAS {1, T}, and the fastest one stands in the table, with its name.
Imported by compare.py (no torch needed) and by the torch scripts (threads_line).
"""
import ctypes
import os

BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def configs(threads):
    """The (torch threads, BLAS threads) pairs tried on `threads` threads."""
    counts = sorted({1, threads})
    return [(t, b) for t in counts for b in counts]


def label(config):
    """'torch T × BLAS B', as the tables print it."""
    return f"{config[0]} × {config[1]}"


def env(base, blas_threads):
    """`base` with the BLAS library's thread count set to blas_threads."""
    return dict(base, **{v: str(blas_threads) for v in BLAS_VARS})


def best(results):
    """(config, samples/s) of the fastest of {config: samples/s or None}; (None, None) when any
    configuration failed, since the fastest may then be the one missing."""
    if not results or any(v is None for v in results.values()):
        return None, None
    c = max(results, key=results.get)
    return c, results[c]


def threads_line(torch):
    """The threads the torch process runs with, as it reports them: 'threads: torch T, BLAS B'.
    B is OpenBLAS's own count when the libblas.so.3 torch loaded is OpenBLAS, else the environment's
    (RTLD_NOLOAD: a library torch did not load is not loaded here)."""
    blas = None
    try:
        blas = ctypes.CDLL("libblas.so.3", mode=os.RTLD_NOLOAD).openblas_get_num_threads()
        kind = "OpenBLAS"
    except (OSError, AttributeError):
        kind = "BLAS"
    if blas is None:
        blas = next((os.environ[v] for v in BLAS_VARS if v in os.environ), "default")
    return f"threads: torch {torch.get_num_threads()}, {kind} {blas}"
