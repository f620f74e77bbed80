#!/bin/sh
# `cmake --install` puts pnetc and the stdlib under a prefix; the installed pnetc finds its stdlib.
set -eu
build=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -x "$tmp/prefix/bin/pnetc" || { echo "FAIL: no bin/pnetc"; exit 1; }
test -f "$tmp/prefix/share/pnet/stdlib/nn.pnet" || { echo "FAIL: no stdlib"; exit 1; }
printf 'import "nn";\nnetwork n { input x : f32[batch, 4]; output y = nn.mlp(x, 8); }\n' >"$tmp/net.pnet"
# Run from elsewhere, with the source tree's stdlib out of reach of PNET_PATH.
cd "$tmp"
env -u PNET_PATH "$tmp/prefix/bin/pnetc" --check net.pnet || { echo "FAIL: installed pnetc cannot import nn"; exit 1; }
# The installed copy is the one used: break it and the import must fail.
echo "garbage ]" >"$tmp/prefix/share/pnet/stdlib/nn.pnet"
if env -u PNET_PATH "$tmp/prefix/bin/pnetc" --check net.pnet 2>/dev/null; then
    echo "FAIL: installed pnetc did not read the installed stdlib"; exit 1
fi
echo "1 passed, 0 failed"
