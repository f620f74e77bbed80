#!/bin/sh
# The schedule report and automatic partitioning: --report on .pnet and .graph files, ./net info
# printing the same report, and --auto-partition output that always checks, with a note that
# agrees with --report of the printed file.
set -u
pnetc=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
check() { # check NAME CONDITION...
    name=$1; shift
    if "$@"; then passes=$((passes + 1)); else echo "FAIL: $name"; fails=$((fails + 1)); fi
}
run() { # run ARGS...: sets rc; stdout in $tmp/out, stderr in $tmp/err
    "$pnetc" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
}

# An unbalanced four-stage network with a feature-sharded layer, replicas and micro-batches.
cat >"$tmp/pipe4.pnet" <<'EOF'
network pipe4 {
    input x : f32[batch, 64];
    @partition(0) { a = relu(dense(x, 128)); }
    @partition(1) { @shard(features, 3) b0 = dense(a, 96); b = relu(b0); }
    @partition(2) { c = relu(dense(b, 800)); }
    @partition(3) { d = dense(c, 10); }
    output y = softmax(d);
    @shard(batch, 2);
    @pipeline(microbatches = 4);
}
EOF
run --report "$tmp/pipe4.pnet"; cp "$tmp/out" "$tmp/report.txt"
check "--report exits 0" [ $rc -eq 0 ]
check "--report has the unbalanced warning in its text" grep -q "^  warning: stages are unbalanced: the slowest costs [0-9.]*x the mean" "$tmp/report.txt"
check "--report still warns on stderr" grep -q "warning: pipeline stages are unbalanced" "$tmp/err"

# .graph files: --report works on the graph IR; --auto-partition needs the source.
run --emit=graph -o "$tmp/pipe4.graph" "$tmp/pipe4.pnet"
mkdir "$tmp/cwd"
(cd "$tmp/cwd" && "$pnetc" --report ../pipe4.graph >../out 2>../err); rc=$?
check "--report FILE.graph exits 0" [ $rc -eq 0 ]
check "--report FILE.graph prints the report of the .pnet" cmp -s "$tmp/out" "$tmp/report.txt"
check "--report FILE.graph writes no other file" [ -z "$(ls "$tmp/cwd")" ]
run --auto-partition 2 "$tmp/pipe4.graph"
check "--auto-partition FILE.graph exits 1" [ $rc -eq 1 ]
check "--auto-partition FILE.graph prints nothing" [ ! -s "$tmp/out" ]
check "--auto-partition FILE.graph says why" grep -q "pipe4.graph: error: --auto-partition prints the source back .* needs the .pnet file" "$tmp/err"
check "--auto-partition FILE.graph: one error line" [ "$(grep -c 'error' "$tmp/err")" -eq 1 ]

# ./net info prints exactly the report, and ends with a newline.
run "$tmp/pipe4.pnet" -o "$tmp/pipe4"
check "pipe4 compiles" [ $rc -eq 0 ]
"$tmp/pipe4" info >"$tmp/info.txt" 2>"$tmp/err"; rc=$?
check "info exits 0" [ $rc -eq 0 ]
sed -n '/^schedule of /,$p' "$tmp/info.txt" >"$tmp/info_report.txt"
check "info prints the report of pnetc --report" cmp -s "$tmp/info_report.txt" "$tmp/report.txt"
check "info ends with a newline" [ "$(tail -c 1 "$tmp/info.txt" | od -An -c | tr -d ' ')" = '\n' ]
check "info keeps its layers table" grep -q "flops/sample" "$tmp/info.txt"
check "info keeps its memory plan" grep -q "^memory plan:" "$tmp/info.txt"

# A block with its own @partition directives: auto-partition removes them, with a note.
cat >"$tmp/blk.pnet" <<'EOF'
block two(x) {
    @partition(0) a = dense(x, 32);
    @partition(1) {
        b = relu(dense(a, 32));
    }
    return b;
}
network blk {
    input x : f32[batch, 16];
    h = two(x);
    g = relu(dense(h, 64));
    output y = dense(g, 4);
}
EOF
for S in 1 2 3; do
    run --auto-partition $S "$tmp/blk.pnet" -o "$tmp/blk$S.pnet"
    check "blk: --auto-partition $S exits 0" [ $rc -eq 0 ]
    check "blk: --auto-partition $S notes the block" grep -q "blk.pnet:1:7: note: removed the @partition directives of block 'two'" "$tmp/err"
    run --check "$tmp/blk$S.pnet"
    check "blk: --auto-partition $S output checks" [ $rc -eq 0 ]
    check "blk: --auto-partition $S has S groups" [ "$(grep -c '@partition(' "$tmp/blk$S.pnet")" -eq $S ]
done
check "blk: the block keeps its statements, indented" grep -q "^    b = relu(dense(a, 32));$" "$tmp/blk2.pnet"
mkdir "$tmp/imp"
printf 'block two(x) {\n    @partition(0) a = dense(x, 8);\n    @partition(1) b = relu(a);\n    return b;\n}\n' >"$tmp/imp/lib.pnet"
printf 'import "lib";\nnetwork n {\n    input x : f32[batch, 4];\n    h = lib.two(x);\n    output y = dense(h, 2);\n}\n' >"$tmp/imp/n.pnet"
run --auto-partition 2 "$tmp/imp/n.pnet"
check "imported block with @partition: exits 1" [ $rc -eq 1 ]
check "imported block with @partition: prints nothing" [ ! -s "$tmp/out" ]
check "imported block with @partition: says why" grep -q "error: block 'lib.two' (.*lib.pnet:1:7) has @partition directives" "$tmp/err"

# The note gives the slowest stage that --report finds in the printed file; formatting is kept.
for S in 1 2 3 4; do
    run --auto-partition $S "$src/examples/lenet.pnet" -o "$tmp/lenet$S.pnet"
    note=$(sed -n 's/^pnetc: note: .* slowest stage \([0-9.e+-]*\) us per sample.*/\1/p' "$tmp/err")
    run --report "$tmp/lenet$S.pnet"
    worst=$(sed -n 's/.*modelled \([0-9.e+-]*\) us per sample (.*/\1/p' "$tmp/out" | sort -g | tail -n 1)
    check "lenet S=$S: the note's slowest stage ($note) is --report's ($worst)" [ "${note:-none}" = "$worst" ]
    [ $S -eq 4 ] && check "one layer is singular" grep -q "stage [0-9]: 1 layer, " "$tmp/out"
done
run --auto-partition 1 "$src/examples/lenet.pnet"
check "one stage is singular" grep -q "^pnetc: note: 1 stage, " "$tmp/err"
check "lenet: trailing comments stay on their statement's line" grep -q "^        p1 = maxpool2d(relu(c1), 2);  *# 6 x 14 x 14$" "$tmp/lenet3.pnet"
check "lenet: no comment after a closing brace" [ "$(grep -c '^ *} *#' "$tmp/lenet3.pnet")" -eq 0 ]
check "lenet: groups (and train) close at the body's indentation" [ "$(grep -c '^    }$' "$tmp/lenet3.pnet")" -eq 4 ]

# Micro-batches: --auto-partition writes the count its costs find fastest, replacing the old one.
run --auto-partition 2 "$src/examples/lenet.pnet" -o "$tmp/l2.pnet"
check "auto-partition writes one @pipeline" [ "$(grep -c '^    @pipeline(microbatches = [0-9]*);$' "$tmp/l2.pnet")" -eq 1 ]
check "the note gives the micro-batches and the bubble" grep -q "; [0-9]* micro-batches per chunk of 64 samples, predicted bubble [0-9.]*% for a batch of 64$" "$tmp/err"
# c1's kernel also runs its relu and max-pool (pass_fuse, pass_fuse_pool): a cut between them would
# run them apart, which the partitioner prices, so c1 and p1 share a stage.
check "lenet: c1 and its pool share a stage" [ "$(sed -n '/@partition(0)/,/}/p' "$tmp/l2.pnet" | grep -c '^ *\(c1\|p1\) = ')" -eq 2 ]
run --auto-partition 2 -I "$src/stdlib" "$src/examples/wide_mlp.pnet" -o "$tmp/w2.pnet"
check "wide_mlp: the old @pipeline goes" [ "$(grep -c '@pipeline' "$tmp/w2.pnet")" -eq 1 ]
# Every micro-batch reads wide_mlp's 232 MiB of weights again: many small ones would be slow (25
# of them ran 4.4 times slower than 1 or 2 on a 2-core Xeon).
Mw=$(sed -n 's/^ *@pipeline(microbatches = \([0-9]*\));$/\1/p' "$tmp/w2.pnet")
check "wide_mlp: few micro-batches, for weights read again by each" [ "${Mw:-99}" -le 4 ]
run --auto-partition 1 "$src/examples/lenet.pnet" -o "$tmp/l1.pnet"
check "one stage: no @pipeline" [ "$(grep -c '@pipeline' "$tmp/l1.pnet")" -eq 0 ]

# Measured costs: bench --profile times every layer; --report and --auto-partition use them.
run "$src/examples/lenet.pnet" -o "$tmp/lenet"
"$tmp/lenet" bench --batch 32 --threads 1 --profile "$tmp/prof.json" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "bench --profile exits 0" [ $rc -eq 0 ]
check "bench --profile says where" grep -q "^profile: 14 layers of lenet, .* on 1 thread, .* written to $tmp/prof.json$" "$tmp/out"
check "the profile names the machine" grep -q '"machine": {"cpu": ".*", "cpus": [0-9]*' "$tmp/prof.json"
check "the profile times the conv" grep -q '"name": "c1", "op": "conv2d", .*"kernel": true, "forward_s": [0-9]' "$tmp/prof.json"
check "a fused relu has no kernel" grep -q '"name": "p1.relu.0", .*"kernel": false, "forward_s": 0, "call_s": 0}' "$tmp/prof.json"
check "the profile times a hand-off" grep -q "^  \"handoff_s\": [0-9]" "$tmp/prof.json"
check "the profile times a read of another core's writes" grep -q "^  \"xfer_byte_s\": [0-9]" "$tmp/prof.json"
check "the profile times training steps" grep -q '^  "training": {"threads": 1, "batch": 32, "steps": [0-9]*, "pipelined": false, "step_s": [0-9]' "$tmp/prof.json"
# A step cut at batch statistics runs each chunk once per segment: its samples count once, so a
# step (forward and backward) costs more than the forward alone (it read 1/12 of it before).
run "$src/examples/resnet_small.pnet" -o "$tmp/resnet"
"$tmp/resnet" bench --batch 32 --threads 1 --profile "$tmp/profr.json" >"$tmp/out" 2>"$tmp/err"
fwd=$(sed -n 's/^  "forward_s": \([0-9.e+-]*\),$/\1/p' "$tmp/profr.json")
step=$(sed -n 's/^  "training": .*"step_s": \([0-9.e+-]*\),.*/\1/p' "$tmp/profr.json")
check "a segmented step costs more than its forward ($step > $fwd s per sample)" awk -v s="$step" -v f="$fwd" 'BEGIN { exit !(f > 0 && s > f) }'
# Each layer's forward and backward in the steps: together the step (the same steps, timed by layer).
lsum=$(sed -n 's/^    {"name": ".*", "stage": [0-9]*, "forward_s": \([0-9.e+-]*\), "backward_s": \([0-9.e+-]*\)}.*/\1 \2/p' "$tmp/profr.json" | awk '{ t += $1 + $2 } END { print t + 0 }')
check "resnet_small's layers add up to its step ($lsum against $step s per sample)" awk -v l="$lsum" -v s="$step" 'BEGIN { exit !(l > 0.5 * s && l < 1.5 * s) }'
# On two threads each layer's time is its team's (the segment's last step waits for the team too).
"$tmp/resnet" bench --batch 32 --threads 2 --profile "$tmp/profr2.json" >"$tmp/out" 2>"$tmp/err"
step2=$(sed -n 's/^  "training": .*"step_s": \([0-9.e+-]*\),.*/\1/p' "$tmp/profr2.json")
lsum2=$(sed -n 's/^    {"name": ".*", "stage": [0-9]*, "forward_s": \([0-9.e+-]*\), "backward_s": \([0-9.e+-]*\)}.*/\1 \2/p' "$tmp/profr2.json" | awk '{ t += $1 + $2 } END { print t + 0 }')
check "on two threads too ($lsum2 against $step2 s per sample)" awk -v l="$lsum2" -v s="$step2" 'BEGIN { exit !(l > 0.8 * s && l < 1.2 * s) }'
check "a conv's backward in the steps" grep -q '^    {"name": "res1.a.conv", "stage": 0, "forward_s": [0-9.e-]*[1-9][0-9.e-]*, "backward_s": [0-9.e-]*[1-9]' "$tmp/profr.json"

check "without stages the second size is an eighth" grep -q '^  "small_samples": 4,$' "$tmp/prof.json"
check "lenet's parameters fit the cache: warm calls" grep -q '^  "cold_calls": false,$' "$tmp/prof.json"
check "the profile gives the last-level cache" grep -q '"machine": {.*"llc_bytes": [0-9]*, ' "$tmp/prof.json"
run "$tmp/l2.pnet" -o "$tmp/l2"
"$tmp/l2" bench --batch 32 --threads 1 --profile "$tmp/prof2.json" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "bench --profile of two stages exits 0" [ $rc -eq 0 ]
M2=$(sed -n 's/^ *@pipeline(microbatches = \([0-9]*\));$/\1/p' "$tmp/l2.pnet")
small=4
[ "${M2:-1}" -gt 1 ] && small=$(((32 + M2 / 2) / M2)) && [ $small -ge 32 ] && small=31
[ $small -lt 1 ] && small=1
check "two stages: the second size is a micro-batch (M = $M2: $small samples)" grep -q "^  \"small_samples\": $small,\$" "$tmp/prof2.json"
# The two sizes a pipeline slices its chunks into (32 / M and one more), each layer timed at both,
# and how its single calls spread about their mean (32 factors, sorted).
if [ "${M2:-1}" -gt 1 ] && [ $((32 / M2 + 1)) -lt 32 ]; then
    sizes="$((32 / M2)), $((32 / M2 + 1))"
    check "two stages: the micro-batch sizes ($sizes)" grep -q "^  \"micro_samples\": \[$sizes\],\$" "$tmp/prof2.json"
    check "c2 timed at both" grep -q '"name": "c2", .*"micro_s": \[[0-9.e-]*, [0-9.e-]*\]' "$tmp/prof2.json"
fi
spread=$(sed -n 's/.*"name": "c1", .*"spread": \[\([^]]*\)\].*/\1/p' "$tmp/prof2.json")
check "c1's spread: 32 rising factors about 1 ($spread)" awk -v s="$spread" 'BEGIN { n = split(s, f, ", "); m = 0
    for (i = 1; i <= n; i++) { m += f[i] / n; if (f[i] <= 0 || (i > 1 && f[i] < f[i - 1])) exit 1 }
    exit !(n == 32 && m > 0.99 && m < 1.01) }'
# Each stage's spread, timed while the stage beside it runs at once on another core (two CPUs, and
# two slots a stage).
if [ "$(nproc)" -ge 2 ] && [ "${M2:-1}" -ge 4 ]; then
    rows=$(sed -n '/^  "stage_spread": \[$/,/^  \],$/p' "$tmp/prof2.json" | grep -c '^    \[')
    check "two stages: two stage spreads ($rows)" [ "$rows" -eq 2 ]
    for s in 1 2; do
        row=$(sed -n '/^  "stage_spread": \[$/,/^  \],$/p' "$tmp/prof2.json" | grep '^    \[' | sed -n "${s}p" |
            sed 's/^ *\[\([^]]*\)\].*/\1/')
        check "stage $((s - 1))'s spread: 32 rising factors about 1" awk -v s="$row" 'BEGIN { n = split(s, f, ", "); m = 0
            for (i = 1; i <= n; i++) { m += f[i] / n; if (f[i] <= 0 || (i > 1 && f[i] < f[i - 1])) exit 1 }
            exit !(n == 32 && m > 0.99 && m < 1.01) }'
    done
else
    echo "skip: stage spreads (M = ${M2:-1}, $(nproc) CPUs)"
fi
check "no stage spreads without stages" [ "$(grep -c stage_spread "$tmp/prof.json")" -eq 0 ]
# One sample: a single size (no line to fit, no micro-batch sizes).
"$tmp/l2" bench --batch 1 --threads 1 --profile "$tmp/prof1.json" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "bench --profile of one sample exits 0" [ $rc -eq 0 ]
check "one sample: one size" grep -q '^  "samples": 1,$' "$tmp/prof1.json"
check "one sample: no micro-batch sizes" [ "$(grep -c micro "$tmp/prof1.json")" -eq 0 ]
check "two stages train pipelined, a thread each" grep -q '^  "training": {"threads": 2, "batch": 32, .*"pipelined": true' "$tmp/prof2.json"
check "each stage's backward" [ "$(grep -c '^    {"stage": [01], "forward_s": [0-9.e-]*, "backward_s": [0-9.e-]*}' "$tmp/prof2.json")" -eq 2 ]
bsum=$(sed -n 's/^    {"name": ".*", "stage": 1, "forward_s": [0-9.e+-]*, "backward_s": \([0-9.e+-]*\)}.*/\1/p' "$tmp/prof2.json" | awk '{ t += $1 } END { print t + 0 }')
b1=$(sed -n 's/^    {"stage": 1, "forward_s": [0-9.e+-]*, "backward_s": \([0-9.e+-]*\)}.*/\1/p' "$tmp/prof2.json")
check "stage 1's layers' backward add up to its backward ($bsum against $b1)" awk -v l="$bsum" -v s="$b1" 'BEGIN { exit !(s > 0 && l > 0.5 * s && l < 1.5 * s) }'
check "c2's backward in the steps" grep -q '^    {"name": "c2", "stage": 1, "forward_s": [0-9.e-]*, "backward_s": [0-9.e-]*[1-9]' "$tmp/prof2.json"
check "bench --profile prints the training" grep -q "^profile: training on 2 threads, [0-9]* steps: stage 0 forward .* + backward .*, stage 1 forward" "$tmp/out"
run --report --profile "$tmp/prof2.json" "$tmp/l2.pnet"
check "--report --profile: measured training" grep -q "^  training, measured (2 threads, batch 32): stage 0 forward .* backward .* the slowest stage [0-9]*% of the stages' time; update" "$tmp/out"
check "--report --profile: training by layer" grep -q "^  training by layer, measured: stage 0 forward .* + backward .* us, stage 1 forward .* the slowest stage [0-9]*% of the stages' time\$" "$tmp/out"
run --report --profile "$tmp/prof.json" "$tmp/l2.pnet"
check "--report --profile exits 0" [ $rc -eq 0 ]
check "--report --profile says so" grep -q "^  costs: measured by bench --profile ($tmp/prof.json: .*, 1 thread, 32 samples per call)$" "$tmp/out"
check "--report --profile: measured stages" [ "$(grep -c '^  stage [01]: .* measured [0-9.e+-]* us per sample ([0-9]*%)$' "$tmp/out")" -eq 2 ]
check "--report --profile predicts at the profile's batch" grep -q "predicted with these costs for a batch of 32 in chunks of 32: slowest stage [0-9]*% " "$tmp/out"
run --auto-partition 2 --profile "$tmp/prof.json" "$src/examples/lenet.pnet" -o "$tmp/lp.pnet"
check "--auto-partition --profile exits 0" [ $rc -eq 0 ]
check "--auto-partition --profile: a measured note" grep -q "^pnetc: note: 2 stages, measured slowest stage .*micro-batches per chunk of 32 samples" "$tmp/err"
note=$(sed -n 's/^pnetc: note: .* slowest stage \([0-9.e+-]*\) us per sample.*/\1/p' "$tmp/err")
run --report --profile "$tmp/prof.json" "$tmp/lp.pnet"
worst=$(sed -n 's/.*measured \([0-9.e+-]*\) us per sample (.*/\1/p' "$tmp/out" | sort -g | tail -n 1)
check "the measured note is --report --profile's ($note, $worst)" [ "${note:-none}" = "$worst" ]
# Parameters that outgrow the last-level cache: each layer's call is timed again with the cache
# evicted first (a run's other layers evict its weights), where the cache is small enough to
# outgrow in a test (dense layers of 16 MiB).
llc=$(getconf LEVEL3_CACHE_SIZE 2>/dev/null || echo 0)
if [ "${llc:-0}" -gt 0 ] 2>/dev/null && [ "$llc" -le $((64 << 20)) ]; then
    nl=$((llc / (16 << 20) + 2))
    {
        printf 'network big {\n    input x : f32[batch, 2048];\n    h0 = x;\n'
        i=1
        while [ $i -le $nl ]; do printf '    h%d = dense(h%d, 2048);\n' $i $((i - 1)); i=$((i + 1)); done
        printf '    output y = h%d;\n}\n' $nl
    } >"$tmp/big.pnet"
    run "$tmp/big.pnet" -o "$tmp/big"
    "$tmp/big" bench --batch 8 --threads 1 --profile "$tmp/big.json" >"$tmp/out" 2>"$tmp/err"; rc=$?
    check "a profile of $nl layers of 16 MiB: exit 0" [ $rc -eq 0 ]
    check "they outgrow the cache: cold calls" grep -q '^  "cold_calls": true,$' "$tmp/big.json"
    check "the cache's size is the system's" grep -q "\"llc_bytes\": $llc, " "$tmp/big.json"
    check "bench --profile says the calls were timed cold" grep -q "(the parameters outgrow the last-level cache: calls timed cold too); written to" "$tmp/out"
    check "a cold call costs something per call" grep -q '"name": "h2", .*"call_s": [0-9.e-]*[1-9][0-9.e-]*}' "$tmp/big.json"
else
    echo "skip: cold calls (the last-level cache is ${llc:-unknown} bytes)"
fi
run --report --profile "$tmp/prof.json" "$src/bench/models/deep_mlp.pnet"
check "another network's profile: exit 1" [ $rc -eq 1 ]
check "another network's profile: says so" grep -q "^$tmp/prof.json: error: the profile is of network 'lenet', not 'deep_mlp'$" "$tmp/err"
printf '{"pnet_profile": 1, "network": "lenet", "layers": [{"name": "c1"}]}' >"$tmp/bad.json"
run --report --profile "$tmp/bad.json" "$src/examples/lenet.pnet"
check "a bad profile: exit 1, one line" [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]
check "a bad profile: says why" grep -q "^$tmp/bad.json: error: not a bench --profile file: a layer without" "$tmp/err"
run --profile "$tmp/prof.json" "$src/examples/lenet.pnet" -o "$tmp/x"
check "--profile without --report: exit 1" [ $rc -eq 1 ]
check "--profile without --report: says why" grep -q "profile goes with --report or --auto-partition" "$tmp/err"
run --report --profile
check "--profile without a file: exit 1" [ $rc -eq 1 ]
"$tmp/lenet" bench --profile "$tmp/nodir/p.json" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "bench --profile unwritable: exit 1, named" [ $rc -eq 1 ] && grep -q "nodir/p.json: cannot write the profile" "$tmp/err"

# The CPUs the prediction runs the stages on: --cores, else the profiled machine's, else this
# machine's when compiling for it (stages beyond its CPUs take turns), else a core per stage.
turns="stages will take turns on the cores, as the prediction assumes"
run --report --cores 1 "$tmp/l2.pnet"
check "--cores 1: two stages take turns" grep -q "^  note: --cores gives 1 CPU for 2 stages: $turns (at most 1 micro-batch at once" "$tmp/out"
bubble1=$(sed -n 's/.*time, bubble \([0-9.]*\)%.*/\1/p' "$tmp/out")
run --report --cores 2 "$tmp/l2.pnet"
check "--cores 2 for two stages: no note" [ "$(grep -c "$turns" "$tmp/out")" -eq 0 ]
bubble2=$(sed -n 's/.*time, bubble \([0-9.]*\)%.*/\1/p' "$tmp/out")
check "one CPU for two stages: the larger bubble ($bubble1% against $bubble2%)" awk -v a="${bubble1:-0}" -v b="${bubble2:-100}" 'BEGIN { exit !(a > b) }'
run --report --cores 1 --profile "$tmp/prof.json" "$tmp/l2.pnet"
check "--cores overrides the profile's machine" grep -q "^  note: --cores gives 1 CPU for 2 stages" "$tmp/out"
cpus=$(nproc)
run --report "$tmp/pipe4.pnet"
if [ "$cpus" -lt 4 ]; then
    check "four stages on this machine's $cpus CPUs take turns" grep -q "^  note: this machine has $cpus CPUs* for 4 stages: $turns" "$tmp/out"
else
    check "four stages on this machine's $cpus CPUs: a core each" [ "$(grep -c "$turns" "$tmp/out")" -eq 0 ]
fi
run --report --cpu x86-64-v3 "$tmp/pipe4.pnet"
check "for another CPU: a core per stage" [ "$(grep -c "$turns" "$tmp/out")" -eq 0 ]
run --auto-partition 4 --cores 1 -I "$src/stdlib" "$src/bench/models/deep_mlp.pnet" -o "$tmp/d4.pnet"
check "--auto-partition --cores 1: exit 0" [ $rc -eq 0 ]
M1=$(sed -n 's/^ *@pipeline(microbatches = \([0-9]*\));$/\1/p' "$tmp/d4.pnet")
run --report --cores 1 "$tmp/d4.pnet"
check "--auto-partition --cores 1 chose the report's best count (M = $M1)" [ "$(grep -c "(M = [0-9]*: " "$tmp/out")" -eq 0 ]
run --cores 0 --report "$tmp/l2.pnet"
check "--cores 0: exit 1, says why" [ $rc -eq 1 ] && grep -q "^pnetc: error: --cores needs a CPU count from 1 to 4096$" "$tmp/err"
run --cores 2 "$tmp/l2.pnet" -o "$tmp/x"
check "--cores without --report: exit 1, says why" [ $rc -eq 1 ] && grep -q "cores goes with --report or --auto-partition" "$tmp/err"

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
