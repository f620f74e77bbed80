#!/bin/sh
# Installs the Debian 12 packages pnet needs. Idempotent: quick when all are present.
# Usage: scripts/setup.sh [--fuzz | --test]   (--fuzz also installs clang-19 for the libFuzzer
# targets; --test the Fashion-MNIST data set that the example.fashion test trains on, and numpy and
# onnx for Python, which onnx.conformance reads the ONNX test data with). The ONNX
# importer needs protobuf-c and onnx.proto; libonnx-testdata is the ONNX conformance suite (docs/onnx.md).
set -eu
pkgs="flex bison llvm-19-dev libcmocka-dev libcjson-dev gcc cmake ninja-build pkg-config zlib1g-dev python3 libopenmpi-dev openmpi-bin libprotobuf-c-dev protobuf-c-compiler libonnx-dev libonnx-testdata"
if [ "${1:-}" = "--fuzz" ]; then pkgs="$pkgs clang-19 libclang-rt-19-dev"; fi
if [ "${1:-}" = "--test" ]; then pkgs="$pkgs dataset-fashion-mnist python3-numpy python3-onnx time"; fi
missing=""
for p in $pkgs; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
if [ -n "$missing" ]; then
    echo "setup: installing:$missing"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
