#!/bin/sh
# Checks that `pnetc --emit=graph EXAMPLE` prints exactly the committed golden graph, and that
# the text form reads back (FILE.graph) and prints the same text again.
# Regenerate after a deliberate change: PNET_REGEN=1 sh golden_graph.sh PNETC EXAMPLE GOLDEN
set -u
pnetc=$1 src=$2 golden=$3
out=$(mktemp)
back=$(mktemp -d)
trap 'rm -rf "$out" "$back"' EXIT
"$pnetc" --emit=graph "$src" >"$out" || { echo "FAIL: pnetc --emit=graph $src exited $?"; exit 1; }
if [ "${PNET_REGEN:-}" = 1 ]; then cp "$out" "$golden"; fi
diff -u "$golden" "$out" || { echo "FAIL: graph of $src differs from $golden"; exit 1; }
cp "$out" "$back/in.graph"
"$pnetc" --emit=graph "$back/in.graph" >"$back/out.graph" || { echo "FAIL: the graph text of $src does not read back"; exit 1; }
diff -u "$out" "$back/out.graph" || { echo "FAIL: the graph text of $src changes when read back"; exit 1; }
