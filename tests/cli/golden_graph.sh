#!/bin/sh
# Checks that `pnetc --emit=graph EXAMPLE` prints exactly the committed golden graph.
# Regenerate after a deliberate change: PNET_REGEN=1 sh golden_graph.sh PNETC EXAMPLE GOLDEN
set -u
pnetc=$1 src=$2 golden=$3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$pnetc" --emit=graph "$src" >"$out" || { echo "FAIL: pnetc --emit=graph $src exited $?"; exit 1; }
if [ "${PNET_REGEN:-}" = 1 ]; then cp "$out" "$golden"; fi
diff -u "$golden" "$out" || { echo "FAIL: graph of $src differs from $golden"; exit 1; }
