#!/bin/sh
# The CMake package and pnetrt.pc as a C project uses them: installs pnet into a temporary prefix,
# then configures and builds tests/cmake_consumer against it with Ninja (find_package(pnet) and
# pnet_add_model, with and without WEIGHTS and CPU; pkg_check_modules(IMPORTED_TARGET pnetrt)).
# Each program's output must equal, bit for bit, that of pnetc's executable on the same input.
# Editing the imported module or the weights must rerun pnetc (its -MD dependency file).
set -eu
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
pnetc=$tmp/prefix/bin/pnetc
cp -r "$src/tests/cmake_consumer" "$tmp/src"
cd "$tmp"
fail() { echo "FAIL: $*"; exit 1; }

# The input main.c uses (x[i] = ((i * 7) % 13 - 6) / 8, batch 2) and weights for tinynet, as files.
python3 - <<'PY'
import json, math, struct
def npy(path, shape, vals):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % "".join("%d, " % d for d in shape)
    hdr += " " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + "\n"
    open(path, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + struct.pack("<%df" % len(vals), *vals))
npy("x.npy", (2, 6), [((i * 7) % 13 - 6) / 8 for i in range(12)])
tensors = [("h.fc.weight", [8, 6]), ("h.fc.bias", [8]), ("logits.weight", [3, 8]), ("logits.bias", [3])]
meta, data = {}, b""
for k, (name, shape) in enumerate(tensors):
    n = math.prod(shape)
    blob = struct.pack("<%df" % n, *[math.sin(0.7 * i + k) * 0.5 for i in range(n)])
    meta[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
    data += blob
head = json.dumps(meta).encode()
open("w.safetensors", "wb").write(struct.pack("<Q", len(head)) + head + data)
PY

# pkg-config finds pnetrt.pc through CMAKE_PREFIX_PATH alone.
env -u PKG_CONFIG_PATH cmake -S src -B bld -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" \
    -DPNET_TEST_WEIGHTS="$tmp/w.safetensors" >configure.txt 2>&1 || { cat configure.txt; fail "configure"; }
cmake --build bld >build.txt 2>&1 || { cat build.txt; fail "build"; }
grep -q "Compiling network tinynet from" build.txt || fail "pnetc did not run"
test -f bld/pnet/tinynet/tinynet.h || fail "no tinynet.h"

# The reference: pnetc's executable, with the same options, on the same input.
reference() { # NAME OUT.npy [pnetc options...] -- [infer options...]
    name=$1 out=$2
    shift 2
    opts=""
    while [ "$1" != -- ]; do opts="$opts $1"; shift; done
    shift
    # shellcheck disable=SC2086
    "$pnetc" src/tinynet.pnet -I src/modules $opts -o "$name" || fail "pnetc $opts"
    "./$name" infer --input x=x.npy --output "probs=$out" "$@" || fail "$name infer"
}
# Every line of PROGRAM's output is the float32 in REF.npy at that place, bit for bit.
same() { # PROGRAM REF.npy
    "bld/$1" >"$1.txt" || fail "$1 failed"
    python3 - "$1.txt" "$2" "$1" <<'PY' || exit 1
import struct, sys
got = [struct.pack("<f", float(s)) for s in open(sys.argv[1]).read().split()]
raw = open(sys.argv[2], "rb").read()
off = 10 + struct.unpack("<H", raw[8:10])[0]
want = [raw[i:i + 4] for i in range(off, len(raw), 4)]
if got != want or len(got) != 6:
    sys.exit("FAIL: %s printed %s; the executable gives %s" % (sys.argv[3], [struct.unpack("<f", g)[0] for g in got],
                                                             [struct.unpack("<f", w)[0] for w in want]))
PY
}
reference ref ref.npy --
reference refw refw.npy --cpu x86-64-v2 -O2 -- --weights w.safetensors
same app ref.npy
same app_pc ref.npy
same app_w refw.npy
cmp -s app.txt app_w.txt && fail "the embedded weights changed nothing"
sum=$(python3 -c "import sys; v = [float(s) for s in open('app.txt').read().split()]; print('%.4f %.4f' % (sum(v[:3]), sum(v[3:])))")
test "$sum" = "1.0000 1.0000" || fail "probabilities sum to $sum"

# The dependency file names the source, its import and the weights; nothing is left to do.
grep -q "modules/layers.pnet" bld/pnet/tinynet/tinynet.d || { cat bld/pnet/tinynet/tinynet.d; fail "no import in the depfile"; }
grep -q "w.safetensors" bld/pnet/tinynet_w/tinynet_w.d || fail "no weights in the depfile"
ninja -C bld -n | grep -q "no work to do" || { ninja -C bld -n; fail "a second build has work to do"; }

# Editing the imported module reruns pnetc for both models and changes what they compute.
cp app.txt app_before.txt
sed 's/relu(fc)/tanh(fc)/' src/modules/layers.pnet >layers.tmp && mv layers.tmp src/modules/layers.pnet
cmake --build bld >rebuild.txt 2>&1 || { cat rebuild.txt; fail "rebuild"; }
grep -q "Compiling network tinynet from" rebuild.txt || { cat rebuild.txt; fail "editing the import did not rerun pnetc"; }
grep -q "Compiling network tinynet_w from" rebuild.txt || fail "editing the import did not rerun pnetc for tinynet_w"
reference ref2 ref2.npy --
same app ref2.npy
same app_pc ref2.npy
cmp -s app.txt app_before.txt && fail "the edited module changed nothing"
# New weights recompile only the model that embeds them.
touch w.safetensors
ninja -C bld -n >plan.txt
grep -q "Compiling network tinynet_w" plan.txt || { cat plan.txt; fail "new weights do not rerun pnetc"; }
grep -q "Compiling network tinynet from" plan.txt && fail "new weights rerun pnetc for tinynet"

# pnetc -MD on its own: the default name, -MT, -MF, and a path that needs escaping.
cp src/tinynet.pnet "t n.pnet"
"$pnetc" -I src/modules "t n.pnet" -c -o "a b.o" -MD
test "$(head -1 "a b.d")" = 'a\ b.o: \' || { cat "a b.d"; fail "-MD"; }
"$pnetc" -I src/modules "t n.pnet" --check -MF c.d -MT 'x$y'
test "$(cat c.d)" = "$(printf 'x$$y: \\\n  t\\ n.pnet \\\n  src/modules/layers.pnet')" || { cat c.d; fail "-MF -MT"; }
if "$pnetc" -I src/modules "t n.pnet" --emit=graph -MD 2>err.txt; then fail "-MD without a target"; fi
grep -q "name the target with -MT" err.txt || { cat err.txt; fail "-MD without a target"; }
echo "1 passed, 0 failed"
