#!/bin/sh
# Command-line behaviour of pnetc: --help, --version, --check, --emit, -o, -I, PNET_PATH,
# --network, exit codes, and one-line errors for bad arguments and unreadable files.
set -u
pnetc=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
check() { # check NAME CONDITION...
    name=$1; shift
    if "$@"; then passes=$((passes + 1)); else echo "FAIL: $name"; fails=$((fails + 1)); fi
}
run() { # run ARGS...: sets rc, out, err
    "$pnetc" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
}

run --help;    check "--help exits 0" [ $rc -eq 0 ]; check "--help prints usage" grep -q "usage: pnetc" "$tmp/out"
run --version; check "--version exits 0" [ $rc -eq 0 ]; check "--version prints version" grep -Eq "^pnetc [0-9]+\.[0-9]+" "$tmp/out"
run;           check "no file exits 1" [ $rc -eq 1 ]; check "no file error" grep -q "pnetc: error: no input file" "$tmp/err"
run --bogus x.pnet; check "unknown option exits 1" [ $rc -eq 1 ]; check "unknown option named" grep -q "unknown argument '--bogus'" "$tmp/err"
run --emit=foo "$src/examples/digits_mlp.pnet"; check "bad --emit exits 1" [ $rc -eq 1 ]
# An unknown option names the closest one pnetc takes; every option takes its value after '=' or
# as the next argument, so --emit graph and --cpu=x86-64-v2 work; a flag given a value is an error.
d0="$src/examples/digits_mlp.pnet"
run --chek "$d0"; check "--chek suggests --check" grep -qx "pnetc: error: unknown argument '--chek'; did you mean '--check'?" "$tmp/err"
run --weight w.st "$d0"; check "--weight suggests --weights" grep -q "unknown argument '--weight'; did you mean '--weights'?" "$tmp/err"
run --emmit=graph "$d0"; check "--emmit=graph suggests --emit" grep -q "unknown argument '--emmit=graph'; did you mean '--emit'?" "$tmp/err"
run -check "$d0"; check "-check suggests --check" grep -q "unknown argument '-check'; did you mean '--check'?" "$tmp/err"
run --frobnicate "$d0"; check "no suggestion for a far name" grep -qx "pnetc: error: unknown argument '--frobnicate'; see 'pnetc --help'" "$tmp/err"
run --emit=graph "$d0"; cp "$tmp/out" "$tmp/g_eq"
run --emit graph "$d0"; check "--emit graph exits 0" [ $rc -eq 0 ]; check "--emit graph prints the graph" cmp -s "$tmp/out" "$tmp/g_eq"
run --emit graph; check "--emit graph without a file" grep -q "no input file" "$tmp/err"
run "--network=digits_mlp" "--error-limit" 5 "--ranks=2" --report "$d0"; check "--network= --ranks= --error-limit N" [ $rc -eq 0 ]
check "--ranks=2 reported" grep -q "ranks: 2" "$tmp/out"
run --check=yes "$d0"; check "a flag with a value" grep -qx "pnetc: error: option '--check' takes no value ('--check=yes')" "$tmp/err"
run --weights= "$d0"; check "an empty value" grep -qx "pnetc: error: option '--weights' needs a value, not an empty one" "$tmp/err"
run "$d0" --emit; check "--emit without a value" grep -qx "pnetc: error: option '--emit' needs an argument" "$tmp/err"
run --emit graph=x "$d0"; check "bad --emit kind" grep -q "unknown --emit kind 'graph=x'" "$tmp/err"
run --emit=grpah "$d0"; check "--emit=grpah suggests graph" grep -qx "pnetc: error: unknown --emit kind 'grpah'; did you mean 'graph'?" "$tmp/err"
run --dump-after=prun "$d0"; check "--dump-after=prun suggests prune" grep -qx "pnetc: error: unknown pass 'prun' for --dump-after; did you mean 'prune'?" "$tmp/err"
run --dump-after=nope "$d0"; check "--dump-after=nope lists the passes" grep -q "unknown pass 'nope' for --dump-after; expected prune, fold_batchnorm" "$tmp/err"
run --check "$tmp/missing.pnet"; check "missing file exits 1" [ $rc -eq 1 ]
check "missing file one line" [ "$(wc -l <"$tmp/err")" -eq 1 ]
check "missing file named" grep -q "cannot read '$tmp/missing.pnet'" "$tmp/err"
run --check "$tmp"; check "directory exits 1" [ $rc -eq 1 ]; check "directory error" grep -q "Is a directory" "$tmp/err"

run --check "$src/examples/digits_mlp.pnet"
check "--check valid exits 0" [ $rc -eq 0 ]
check "--check valid prints nothing" [ ! -s "$tmp/out" ] && check "--check valid no stderr" [ ! -s "$tmp/err" ]

run --emit=graph "$src/examples/digits_mlp.pnet"
check "--emit=graph exits 0" [ $rc -eq 0 ]
check "graph has the dense node" grep -q "^  fc1 = dense(fc1.mul.0) units=128 bias=true : f32\[batch,128\] stage=0 shard=1" "$tmp/out"
check "graph names parameters" grep -q "fc1.weight\[128,64\] fc1.bias\[128\]" "$tmp/out"

run --emit=dot "$src/examples/wide_mlp.pnet"
check "--emit=dot exits 0" [ $rc -eq 0 ]
check "dot is a digraph" grep -q '^digraph "wide_mlp"' "$tmp/out"
check "dot has stage clusters" grep -q "subgraph cluster_stage1" "$tmp/out"
if command -v dot >/dev/null 2>&1; then
    dot -Tsvg "$tmp/out" >/dev/null 2>&1; check "graphviz accepts the dot" [ $? -eq 0 ]
fi

run --emit=graph -o "$tmp/g.txt" "$src/examples/lenet.pnet"
check "-o exits 0" [ $rc -eq 0 ]; check "-o writes the file" grep -q "^network lenet" "$tmp/g.txt"
run --emit=graph -o "$tmp/nodir/g.txt" "$src/examples/lenet.pnet"
check "-o unwritable exits 1" [ $rc -eq 1 ]; check "-o unwritable named" grep -q "cannot write '$tmp/nodir/g.txt'" "$tmp/err"

# Imports: -I beats PNET_PATH, which beats the importing file's directory, then the stdlib.
mkdir -p "$tmp/a" "$tmp/b" "$tmp/main"
printf 'block blk(x) { return relu(x); }\n' >"$tmp/a/m.pnet"
printf 'block blk(x) { return sigmoid(x); }\n' >"$tmp/b/m.pnet"
printf 'block blk(x) { return tanh(x); }\n' >"$tmp/main/m.pnet"
printf 'import "m";\nnetwork n { input x : f32[batch, 4]; output y = m.blk(x); }\n' >"$tmp/main/net.pnet"
run --emit=graph "$tmp/main/net.pnet"; check "import from the file's directory" grep -q "y = tanh(x)" "$tmp/out"
PNET_PATH="$tmp/b" run --emit=graph "$tmp/main/net.pnet"; check "PNET_PATH before the file's directory" grep -q "y = sigmoid(x)" "$tmp/out"
PNET_PATH="$tmp/b" run --emit=graph -I "$tmp/a" "$tmp/main/net.pnet"; check "-I before PNET_PATH" grep -q "y = relu(x)" "$tmp/out"
printf 'import "nn";\nnetwork n { input x : f32[batch, 4]; output y = nn.mlp(x, 8); }\n' >"$tmp/std.pnet"
run --check "$tmp/std.pnet"; check "stdlib found without help" [ $rc -eq 0 ]

# --network picks one of several networks.
printf 'network a { input x : f32[batch, 2]; output y = relu(x); }\nnetwork b { input x : f32[batch, 3]; output y = tanh(x); }\n' >"$tmp/two.pnet"
run --check "$tmp/two.pnet"; check "--check checks every network" [ $rc -eq 0 ]
run --emit=graph "$tmp/two.pnet"; check "two networks need --network" [ $rc -eq 1 ]
run --emit=graph --network b "$tmp/two.pnet"; check "--network picks b" grep -q "^network b" "$tmp/out"
run --emit=graph --network c "$tmp/two.pnet"; check "--network unknown exits 1" [ $rc -eq 1 ]

# Error limit and warnings.
i=0; : >"$tmp/many.pnet"; echo "network n { input x : f32[batch, 2];" >>"$tmp/many.pnet"
while [ $i -lt 30 ]; do echo "  a$i = relu(nope$i);" >>"$tmp/many.pnet"; i=$((i + 1)); done
echo "  output y = relu(x); }" >>"$tmp/many.pnet"
run --check "$tmp/many.pnet"; check "error limit stops at 20" [ "$(grep -c ': error:' "$tmp/err")" -eq 20 ]
check "error limit says so" grep -q "too many errors emitted" "$tmp/err"
run --check --error-limit=0 "$tmp/many.pnet"; check "--error-limit=0 shows all" [ "$(grep -c ': error:' "$tmp/err")" -eq 30 ]
printf 'network n { input x : f32[batch, 2]; h = relu(x); output y = tanh(x); }\n' >"$tmp/warn.pnet"
run --check "$tmp/warn.pnet"; check "warning exits 0" [ $rc -eq 0 ]; check "warning printed" grep -q "warning: 'h' is never used" "$tmp/err"
run --check -w "$tmp/warn.pnet"; check "-w silences warnings" [ ! -s "$tmp/err" ]

# The schedule report, and automatic partitioning printed back as source that checks.
run --report "$src/examples/wide_mlp.pnet"
check "--report exits 0" [ $rc -eq 0 ]
check "--report lists stages" grep -q "stage 1: 5 layers" "$tmp/out"
check "--report balance" grep -q "balance: 1.24 (slowest stage over mean)" "$tmp/out"
check "--report bubble" grep -q "predicted bubble: 11.1% = (S-1)/(M+S-1) with S = 2, M = 8" "$tmp/out"
check "--report per-replica batch" grep -q "per-replica batch: B/2" "$tmp/out"
printf 'network un { input x : f32[batch, 64]; @partition(0) a = relu(x); @partition(1) { b = dense(a, 512); c = dense(b, 512); } output y = c; }\n' >"$tmp/un.pnet"
run --report "$tmp/un.pnet"
check "unbalanced stages warn" grep -q "warning: pipeline stages are unbalanced" "$tmp/err"
check "unbalanced stages still exit 0" [ $rc -eq 0 ]
run -w --report "$tmp/un.pnet"
check "-w silences the unbalanced-stages warning" [ ! -s "$tmp/err" ]
run --auto-partition 3 "$src/bench/models/mlp_l.pnet" -o "$tmp/p3.pnet"
check "--auto-partition exits 0" [ $rc -eq 0 ]
check "--auto-partition writes 3 groups" [ "$(grep -c '@partition(' "$tmp/p3.pnet")" -eq 3 ]
run --report "$tmp/p3.pnet"
check "auto-partitioned file checks" [ $rc -eq 0 ]
# h1 and h2 (42 MFLOP per sample), h3 (34), y (8): no other cut of four into three is as balanced.
check "auto-partition picks the best contiguous split" grep -q "stage 1: 2 layers, 33.6 MFLOP" "$tmp/out"
check "auto-partition: the last stage is y" grep -q "stage 2: 1 layer, 8.4 MFLOP" "$tmp/out"
run --auto-partition 2 -I "$src/stdlib" "$src/examples/wide_mlp.pnet" -o "$tmp/w2.pnet"
run --check -I "$src/stdlib" "$tmp/w2.pnet"
check "re-partitioned wide_mlp checks" [ $rc -eq 0 ]
run --auto-partition 9 "$src/examples/digits_mlp.pnet"
check "too many stages is an error" [ $rc -eq 1 ]
check "too many stages says why" grep -q "fewer than 9 stages" "$tmp/err"

# A network the training code cannot differentiate: a clang-style error at the node, exit 1.
cat >"$tmp/mm.pnet" <<'EOF2'
network mm {
    input x : f32[batch, 4, 6];
    a = dense(x, 6);
    b = dense(x, 12);
    m = matmul(reshape(a, [batch, 1, 4, 6]), reshape(b, [batch, 2, 6, 4]));
    output o = flatten(m);
    train { label : i32[batch]; loss = cross_entropy(flatten(m), label); optimizer = sgd(lr = 0.1); }
}
EOF2
run "$tmp/mm.pnet" -o "$tmp/mm"
check "untrainable matmul exits 1" [ $rc -eq 1 ]
check "untrainable matmul at its node" grep -q "mm.pnet:5:9: error: training: the gradient of matmul 'm'" "$tmp/err"
run --train-chunk 0 "$src/examples/digits_mlp.pnet"
check "bad --train-chunk exits 1" [ $rc -eq 1 ]

# --cpu: an unknown name is a one-line error with a suggestion, not LLVM's abort; help lists them.
d="$src/examples/digits_mlp.pnet"
run --cpu znver -c "$d" -o "$tmp/cpu.o"
check "unknown --cpu exits 1" [ $rc -eq 1 ]
check "unknown --cpu one line" [ "$(wc -l <"$tmp/err")" -eq 1 ]
check "unknown --cpu suggests" grep -q "unknown CPU 'znver' for target 'x86_64.*'; did you mean 'znver1'?" "$tmp/err"
check "unknown --cpu writes nothing" [ ! -e "$tmp/cpu.o" ]
run --target aarch64-linux-gnu --cpu znver4 -c "$d" -o "$tmp/cpu.o"
check "--cpu of another target exits 1" [ $rc -eq 1 ]
check "--cpu of another target named" grep -q "unknown CPU 'znver4' for target 'aarch64" "$tmp/err"
run --cpu help
check "--cpu help exits 0" [ $rc -eq 0 ]
check "--cpu help lists x86-64-v4" grep -qx "  x86-64-v4" "$tmp/out"
check "--cpu help lists each CPU once" [ -z "$(sort "$tmp/out" | uniq -d)" ]
run --cpu native -c "$d" -o "$tmp/native.o"
check "--cpu native exits 0" [ $rc -eq 0 ]
run --target aarch64-linux-gnu --cpu native -c "$d" -o "$tmp/native2.o"
check "--cpu native for another target exits 1" [ $rc -eq 1 ]
# The default CPU is the host's, as --cpu native (language.md, --help); a named baseline is the
# portable build the docs recommend.
run "$d" -o "$tmp/dflt"; run --cpu native "$d" -o "$tmp/nat"; run --cpu=x86-64-v2 "$d" -o "$tmp/v2"
check "the default CPU is the host's" [ "$("$tmp/dflt" info | head -1)" = "$("$tmp/nat" info | head -1)" ]
"$tmp/v2" info >"$tmp/v2.info"
check "--cpu x86-64-v2 builds for the baseline" grep -q "^network digits_mlp (target x86_64.* x86-64-v2)" "$tmp/v2.info"
check "the portable build runs" sh -c '"$0" bench --batch 4 --seconds 0.01 >/dev/null' "$tmp/v2"
"$pnetc" --help >"$tmp/help"
check "--help says how to build a portable binary" grep -q -- "--cpu x86-64-v3" "$tmp/help"

# An output that would replace an input is refused: the source and the weights stay.
cp "$d" "$tmp/self.pnet"; cp "$d" "$tmp/keep.pnet"
for args in "-o $tmp/self.pnet" "-c -o $tmp/self.pnet" "--emit=llvm -o $tmp/self.pnet" "--emit=graph -o $tmp/./self.pnet"; do
    # shellcheck disable=SC2086
    run $args "$tmp/self.pnet"
    check "output = input refused ($args)" [ $rc -eq 1 ]
    check "output = input: source kept ($args)" cmp -s "$tmp/self.pnet" "$tmp/keep.pnet"
done
check "output = input error" grep -q "the output '.*self.pnet' is the input '.*self.pnet'" "$tmp/err"
ln -s self.pnet "$tmp/link.pnet"
run -o "$tmp/link.pnet" "$tmp/self.pnet"
check "output through a link to the input refused" [ $rc -eq 1 ]
check "source kept through a link" cmp -s "$tmp/self.pnet" "$tmp/keep.pnet"
run -c -o "$tmp/hdr.h" "$d"
check "-c -o X.h refused" [ $rc -eq 1 ]
check "-c -o X.h explains" grep -q "writes the header beside the object, as '$tmp/hdr.h'" "$tmp/err"
run --auto-partition 2 -o "$tmp/self.pnet" "$tmp/self.pnet"
check "--auto-partition may rewrite its input" [ $rc -eq 0 ]
check "--auto-partition rewrote it" grep -q "@partition" "$tmp/self.pnet"

# Names of any length: a 300-character network, input and layer name make an object whose header
# a C program compiles and links against, an executable, and graph text that reads back.
build=$(dirname "$pnetc")
N=n$(printf '%0299d' 0 | tr 0 x) I=in_$(printf '%0297d' 0 | tr 0 z) L=layer_$(printf '%0294d' 0 | tr 0 y)
printf 'network %s {\n    input %s : f32[batch, 4];\n    %s = dense(%s, units=3);\n    output probs = softmax(%s);\n}\n' \
    "$N" "$I" "$L" "$I" "$L" >"$tmp/long.pnet"
U=$(echo "$N" | tr a-z A-Z)
cat >"$tmp/long_app.c" <<EOF
#include <math.h>
#include <stdio.h>
#include "long.h"
int main(void) {
    $N *net;
    if (${N}_create(&net, NULL) != 0) return 1;
    float x[2 * ${U}_$(echo "$I" | tr a-z A-Z)_SIZE] = {1, 2, 3, 4, -1, 0, 1, 2}, p[2 * ${U}_PROBS_SIZE];
    int rc = ${N}_infer(net, 2, x, p);
    ${N}_destroy(net);
    printf("%s\\n", rc == 0 && fabs(p[3] + p[4] + p[5] - 1) < 1e-5 ? "ok" : "bad");
    return 0;
}
EOF
run -c "$tmp/long.pnet" -o "$tmp/long.o"
check "300-character name: -c exits 0" [ $rc -eq 0 ]
check "300-character name: whole symbols" sh -c "nm '$tmp/long.o' | grep -q ' T ${N}_set_stage_threads\$'"
check "300-character name: whole guard macro" grep -q "^#define ${U}_H$" "$tmp/long.h"
# A sanitizer build's libpnetrt needs the sanitizers in the program too (its pnetrt.pc names them).
libs="-L$build -Wl,-rpath,$build -lpnetrt -fopenmp -lm $(grep -o -e '-fsanitize=[a-z,]*' "$build/pnetrt.pc" | head -n 1)"
# shellcheck disable=SC2086
cc -std=c11 -Wall -Werror -I"$tmp" "$tmp/long_app.c" "$tmp/long.o" $libs -o "$tmp/long_app" 2>"$tmp/err" ||
    cc -std=c11 -fsanitize=address,undefined -I"$tmp" "$tmp/long_app.c" "$tmp/long.o" $libs -o "$tmp/long_app" 2>"$tmp/err"
check "300-character name: the header compiles and links" [ -x "$tmp/long_app" ]
check "300-character name: create, infer, destroy" sh -c "'$tmp/long_app' | grep -qx ok"
run -o "$tmp/long_net" "$tmp/long.pnet"
check "300-character name: executable" [ $rc -eq 0 ]
check "300-character name: ./net info" sh -c "'$tmp/long_net' info | grep -q '^network $N (target '"
run --emit=graph -o "$tmp/long.graph" "$tmp/long.pnet"
run --check "$tmp/long.graph"
check "300-character name: the graph text reads back" [ $rc -eq 0 ]

# An elementwise op over rows of 16 floats (a residual add at 32 x 16 x 16): the row loop carries
# llvm.loop.vectorize.enable false, since vectorizing it as well turned the rows into gathers and
# scatters, 8x slower per element (docs/codegen.md, "Loops").
printf 'network rows16 {\n    input a : f32[batch, 32, 16, 16];\n    input b : f32[batch, 32, 16, 16];\n    output y = relu(a + b);\n}\n' >"$tmp/rows16.pnet"
run -O3 --emit=llvm -o "$tmp/rows16.ll" "$tmp/rows16.pnet"
check "rows of 16: the IR" [ $rc -eq 0 ]
awk '/^define.*_add\(/{p=1} p{print} p&&/^}/{exit}' "$tmp/rows16.ll" >"$tmp/add.ll"
check "rows of 16: the add kernel is there" grep -q "fadd <16 x float>" "$tmp/add.ll"
check "rows of 16: no gathers or scatters" sh -c "! grep -q 'llvm.masked.gather\|llvm.masked.scatter' '$tmp/add.ll'"
check "rows of 16: the row loop is not vectorized" grep -q '!"llvm.loop.vectorize.enable", i1 false' "$tmp/rows16.ll"

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
