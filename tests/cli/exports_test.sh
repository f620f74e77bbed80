#!/bin/sh
# libpnetrt.so exports exactly the functions its installed public header declares with PNETRT_API
# (pnet.h): nothing exported that is not declared, nothing declared that is not exported. The header
# includes only standard headers, and its opening example compiles, links and runs through
# pkg-config; an executable built by the installed pnetc still runs.
set -eu
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
lib=$(find "$tmp/prefix" -name 'libpnetrt.so' | head -1)
hdr="$tmp/prefix/include/pnet.h"
test -n "$lib" || { echo "FAIL: no libpnetrt.so installed"; exit 1; }
test -f "$hdr" || { echo "FAIL: no include/pnet.h installed"; exit 1; }
# Only pnet.h is installed of the runtime's headers, and pnet_mpi.h when libpnetrt was built with MPI
# (it alone includes mpi.h).
extra=$(find "$tmp/prefix/include" -name '*.h' ! -name pnet.h ! -name pnet_mpi.h)
test -z "$extra" || { echo "FAIL: private headers installed: $extra"; exit 1; }
mpihdr="$tmp/prefix/include/pnet_mpi.h"
if [ -f "$mpihdr" ] && grep '^#include' "$mpihdr" | grep -v -e '<mpi.h>' -e '"pnet.h"'; then
    echo "FAIL: pnet_mpi.h includes more than <mpi.h> and pnet.h"; exit 1
fi
if grep '^#include' "$hdr" | grep -v -e '<stddef.h>' -e '<stdint.h>' -e '<stdbool.h>'; then
    echo "FAIL: pnet.h includes more than <stddef.h>, <stdint.h> and <stdbool.h>"; exit 1
fi
# Declared: the name before '(' on each line that starts with PNETRT_API (comments hold none).
cat "$hdr" ${mpihdr:+$(test -f "$mpihdr" && echo "$mpihdr")} | grep '^PNETRT_API ' | sed 's/(.*//; s/.*[ *]//' |
    sort -u >"$tmp/declared"
# Exported: every defined dynamic symbol, functions and data alike.
nm -D --defined-only "$lib" | awk '{print $3}' | sort -u >"$tmp/exported"
test -s "$tmp/declared" || { echo "FAIL: no PNETRT_API declarations in pnet.h"; exit 1; }
fail=0
for s in $(comm -13 "$tmp/declared" "$tmp/exported"); do echo "FAIL: exported but not declared in pnet.h (or pnet_mpi.h): $s"; fail=1; done
for s in $(comm -23 "$tmp/declared" "$tmp/exported"); do echo "FAIL: declared in pnet.h (or pnet_mpi.h) but not exported: $s"; fail=1; done
test $fail -eq 0 || exit 1
echo "$(wc -l <"$tmp/declared") functions declared and exported"
# The header's opening example, as written, against the shared library through pkg-config.
export PKG_CONFIG_PATH="$(dirname "$(find "$tmp/prefix" -name pnetrt.pc | head -1)")"
cd "$tmp"
sed -n '/^ \*   \/\/ pnetc/,/^ \*   \/\/ cc /p' "$hdr" | sed 's/^ \*   //' >app.c
"$tmp/prefix/bin/pnetc" "$src/examples/digits_mlp.pnet" -c -o digits_mlp.o
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror app.c digits_mlp.o $(pkg-config --cflags --libs pnetrt) -o app
./app >out.txt
test -s out.txt || { echo "FAIL: the example printed nothing"; exit 1; }
# An executable from the installed pnetc (linked with the static library) runs.
"$tmp/prefix/bin/pnetc" "$src/examples/digits_mlp.pnet" -o net
./net info >/dev/null
echo "1 passed, 0 failed"
