#!/bin/sh
# Golden diagnostic test: runs `pnetc --check NAME.pnet` here and compares stderr byte for byte
# with NAME.stderr. The exit code must be 1 when an error is expected, else 0.
# Regenerate one after a deliberate change: PNET_REGEN=1 sh run_one.sh PNETC NAME
set -u
pnetc=$1 name=$2
args=""
[ -f "$name.args" ] && args=$(cat "$name.args")
# shellcheck disable=SC2086
"$pnetc" --check $args "$name.pnet" 2>"$name.actual" >/dev/null
rc=$?
# Paths into the checkout (the stdlib's) read <root>, wherever it is.
root=$(cd ../.. && pwd)
sed "s|$root/|<root>/|g" "$name.actual" >"$name.actual.tmp" && mv "$name.actual.tmp" "$name.actual"
if [ "${PNET_REGEN:-}" = 1 ]; then cp "$name.actual" "$name.stderr"; fi
want=0
grep -q "error:" "$name.stderr" && want=1
status=0
if ! cmp -s "$name.actual" "$name.stderr"; then
    echo "FAIL: stderr of $name.pnet differs from $name.stderr:"
    diff -u "$name.stderr" "$name.actual"
    status=1
fi
if [ "$rc" -ne "$want" ]; then
    echo "FAIL: $name.pnet exited $rc, expected $want"
    status=1
fi
rm -f "$name.actual"
exit $status
