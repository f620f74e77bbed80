"""The GEMM loops keep their tiles in registers: no innermost loop that broadcasts A and multiply-adds
(a micro-tile, compiler/codegen/gemm.c) spills a vector to the stack, in any kernel of the examples and the benchmark models, inference and training.

A spilled accumulator is stored and reloaded at every step of the loop; where the process's stack
slot shares its low 12 address bits with a stream the loop reads (4K aliasing) every reload waits
on the store. resnet_small's down.conv spilled one of 24 accumulators and ran 1.9 times as slow in
about one process in fifty (docs/performance.md), for the whole life of that process.

Checked for x86-64-v4 (AVX-512, 32 vector registers and mask registers; what bench/device.sh
builds for), x86-64-v3 (AVX2: 16 registers, and masks take some of them) and the machine at hand.

    python3 tests/cli/spill_test.py PNETC SOURCE_DIR
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

FMA_MIN = 8  # a GEMM tile's loop: 12 (AVX2) or 24 (AVX-512) multiply-adds a step
BROADCAST = re.compile(r"\tvbroadcastss\s+-?\d*\(%\w+")
STORE = re.compile(r"\tv?mov\w*\s+%[xyz]mm\d+, -?\d*\(%rsp\)")
FUNC = re.compile(r"^([A-Za-z_][\w.$]*):")
LABEL = re.compile(r"^(\.LBB\w+):")
JUMP = re.compile(r"^\s+j\w+\s+(\.LBB\w+)")


def innermost_loops(lines):
    """(function, first line, last line) of each loop with no loop inside it: a label and a jump
    back to it from further down the same function."""
    loops, labels, fn = [], {}, None
    for i, line in enumerate(lines):
        m = FUNC.match(line)
        if m:
            fn, labels = m.group(1), {}
            continue
        m = LABEL.match(line)
        if m:
            labels[m.group(1)] = i
            continue
        m = JUMP.match(line)
        if m and m.group(1) in labels:
            loops.append((fn, labels[m.group(1)], i))
    return [lp for lp in loops
            if not any(o is not lp and o[0] == lp[0] and lp[1] <= o[1] and o[2] <= lp[2] and o[1:] != lp[1:]
                       for o in loops)]


def spills(asm):
    lines = asm.split("\n")
    bad = []
    for fn, a, b in innermost_loops(lines):
        body = lines[a:b + 1]
        fmas = sum("vfmadd" in l for l in body)
        tile = any(BROADCAST.search(l) for l in body)  # a_i[k] broadcast from memory: a GEMM tile
        stores = [l.strip() for l in body if STORE.search(l)]
        if tile and fmas >= FMA_MIN and stores:
            bad.append("%s (%s): %d multiply-adds, spills: %s" % (fn, lines[a].rstrip(":"), fmas, "; ".join(stores)))
    return bad


def self_test():
    """The checker itself finds a spill in a loop and none in a clean one."""
    loop = ["f:", ".LBB0_1:", "\tvbroadcastss\t-3456(%rax,%r14), %zmm11"] + ["\tvfmadd231ps\t%zmm1, %zmm2, %zmm3"] * 8
    clean = loop + ["\tjne\t.LBB0_1", "\tretq"]
    spilled = loop[:2] + ["\tvmovups\t%zmm8, 272(%rsp)"] + loop[2:] + ["\tjne\t.LBB0_1"]
    assert not spills("\n".join(clean)), "a clean loop reported"
    assert spills("\n".join(spilled)), "a spill missed"
    outer = ["g:", ".LBB1_1:", "\tvmovups\t%zmm8, 16(%rsp)", ".LBB1_2:"] + loop[2:] + ["\tjne\t.LBB1_2", "\tjne\t.LBB1_1"]
    assert not spills("\n".join(outer)), "a store in an outer loop reported"


def main():
    pnetc, src = sys.argv[1], sys.argv[2]
    self_test()
    nets = sorted(glob.glob(os.path.join(src, "examples", "*.pnet")) + glob.glob(os.path.join(src, "bench", "models", "*.pnet")))
    cpus = ["x86-64-v4", "x86-64-v3", "native"]
    failed, checked = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for net in nets:
            for cpu in cpus:
                out = os.path.join(tmp, "k.s")
                r = subprocess.run([pnetc, net, "--cpu", cpu, "--emit=asm", "-o", out], capture_output=True, text=True)
                if r.returncode != 0:
                    failed.append("%s --cpu %s: pnetc failed: %s" % (net, cpu, r.stderr.strip()))
                    continue
                asm = open(out).read()
                checked += asm.count("vfmadd")
                failed += ["%s --cpu %s: %s" % (os.path.basename(net), cpu, b) for b in spills(asm)]
    for f in failed:
        print("FAIL", f)
    print("%d networks x %s: %d multiply-adds checked, %d loops spill" % (len(nets), "+".join(cpus), checked, len(failed)))
    return 1 if failed or not nets else 0


if __name__ == "__main__":
    sys.exit(main())
