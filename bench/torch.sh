#!/bin/sh
# Installs Debian's python3-torch, the peer of bench/train.sh and bench/lenet_fashion.sh, when PY
# (default /usr/bin/python3, the interpreter Debian's package serves) cannot import torch. Any
# other PY is the caller's own: left as it is.
# usage: sh bench/torch.sh [PY]
set -eu
py="${1:-/usr/bin/python3}"
[ "$py" = /usr/bin/python3 ] || exit 0
"$py" -c 'import torch' 2>/dev/null && exit 0
echo "bench: installing python3-torch" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends python3-torch >/dev/null
