#!/bin/sh
# Installs pnet into a temporary prefix, compiles two examples to objects with headers, and links
# examples/embed/app.c against them through pkg-config, as a user would; then train_app.c and the
# hostile caller tests/cli/embed_hostile.c, and tests/cli/embed_threads.c (threads sharing a handle).
set -eu
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$(dirname "$(find "$tmp/prefix" -name pnetrt.pc | head -1)")"
cd "$tmp"
"$tmp/prefix/bin/pnetc" "$src/examples/digits_mlp.pnet" -c -o digits_mlp.o
"$tmp/prefix/bin/pnetc" "$src/examples/lenet.pnet" -c -o lenet.o
test -f digits_mlp.h && test -f lenet.h
# The header includes only <stddef.h> and <stdint.h>.
if grep '#include' digits_mlp.h | grep -v -e '<stddef.h>' -e '<stdint.h>'; then echo "FAIL: extra includes"; exit 1; fi
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -I. "$src/examples/embed/app.c" digits_mlp.o lenet.o $(pkg-config --cflags --libs pnetrt) -o app
./app >out.txt
cat out.txt
grep -q "rejected batch -1" out.txt
grep -q "rejected schedule: unknown schedule 'zigzag'" out.txt
test "$(grep -c "probabilities sum to 1.0000" out.txt)" -eq 3
# With PNET_TRACE, each of the two networks writes its own trace.
PNET_TRACE="$tmp/t.json" ./app >/dev/null
test -s "$tmp/t.json" && test "$(ls "$tmp"/t.2.*.json | wc -l)" -eq 1
# A missing weights file fails cleanly with a one-line reason.
if ./app /nonexistent.safetensors 2>err.txt; then echo "FAIL: missing weights accepted"; exit 1; fi
grep -q "nonexistent.safetensors" err.txt
# Options that do not apply to a network get a note on stderr, named by the network, not an error.
cat >notes.c <<'EOF2'
#include "digits_mlp.h"
int main(void) {
    digits_mlp *m;
    int shares[2] = {1, 2};
    if (digits_mlp_create(&m, NULL)) return 1;
    int rc = digits_mlp_set_microbatches(m, 4) || digits_mlp_set_schedule(m, "pipeline") ||
             digits_mlp_set_stage_threads(m, shares, 2);
    digits_mlp_destroy(m);
    return rc;
}
EOF2
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -I. notes.c digits_mlp.o $(pkg-config --cflags --libs pnetrt) -o notes
./notes 2>notes.txt
cat notes.txt
test "$(grep -c "^digits_mlp: note: .*no pipeline stages" notes.txt)" -eq 3
# Training through the header: the loss falls, 1 and 2 threads give identical weights, and the
# saved checkpoint loads back.
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -I. "$src/examples/embed/train_app.c" digits_mlp.o $(pkg-config --cflags --libs pnetrt) -o train_app
./train_app
# A careless caller (tests/cli/embed_hostile.c): NULL handles and buffers, bad batches and settings,
# failed creates used anyway, unwritable and truncated files, 100 create/destroy rounds without
# the heap growing. Every call fails with one line and changes nothing.
"$tmp/prefix/bin/pnetc" "$src/tests/e2e/cases/parallel_small.pnet" -w -c -o parallel_small.o
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -I. "$src/tests/cli/embed_hostile.c" digits_mlp.o parallel_small.o $(pkg-config --cflags --libs pnetrt) -o hostile
./hostile 100 >hostile.txt || { cat hostile.txt; exit 1; }
tail -1 hostile.txt
grep -q "rejected infer of batch INT64_MAX: batch size 9223372036854775807 is too large" hostile.txt
grep -q "rejected infer after create with a missing file: the network was not created successfully" hostile.txt
# One handle shared by 8 threads (tests/cli/embed_threads.c): calls take turns, so every result is
# bitwise the serial one, also with 2 threads per call and with a training step running at once.
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -I. "$src/tests/cli/embed_threads.c" digits_mlp.o $(pkg-config --cflags --libs pnetrt) -pthread -o threads
./threads >threads.txt || { cat threads.txt; exit 1; }
cat threads.txt
# A checkpoint's metadata is untrusted: NET_load (in embed_hostile) and ./net train --resume
# (tests/cli/ckpt_resume.py) check every field as the option that sets it.
python3 "$src/tests/cli/ckpt_resume.py" "$tmp/prefix/bin/pnetc" "$src" >ckpt.txt || { cat ckpt.txt; exit 1; }
tail -1 ckpt.txt
echo "6 passed, 0 failed"
