#!/bin/sh
# The private OpenBLAS that PyTorch runs on in every bench/ script.
#
# usage: dir=$(sh bench/openblas.sh)     (from the repository root)
#
# Debian's python3-torch calls whatever libblas.so.3 the system selects, and by default that is the
# unoptimised reference BLAS: PyTorch would run 10-40x below its users' speed, and every ratio
# against it would flatter pnet. So the benchmarks give it libopenblas0-openmp, extracted (not
# installed, so the system's BLAS alternative stays as it is) into build/bench/openblas/, fetched
# once with apt-get download. Prints the directory holding its libblas.so.3 on stdout; exits 1 with
# a one-line error when it cannot get it (no archive reachable).
set -eu
cd "$(dirname "$0")/.."
blas_dir="build/bench/openblas/usr/lib/x86_64-linux-gnu/openblas-openmp"
if [ ! -f "$blas_dir/libblas.so.3" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    echo "bench: fetching libopenblas0-openmp for PyTorch into build/bench/openblas/" >&2
    mkdir -p build/bench/openblas
    tmp=$(mktemp -d)
    if (cd "$tmp" && apt-get download -q libopenblas0-openmp >/dev/null 2>&1 ||
        { $SUDO apt-get update -q >/dev/null && apt-get download -q libopenblas0-openmp >/dev/null 2>&1; }); then
        dpkg-deb -x "$tmp"/libopenblas0-openmp_*.deb build/bench/openblas
    fi
    rm -rf "$tmp"
fi
if [ ! -f "$blas_dir/libblas.so.3" ]; then
    echo "bench/openblas.sh: error: could not fetch libopenblas0-openmp (apt-get download failed);" \
         "PyTorch would run on the reference BLAS" >&2
    exit 1
fi
echo "$(pwd)/$blas_dir"
