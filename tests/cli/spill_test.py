"""The GEMM loops keep their tiles in registers: no innermost loop that broadcasts A and multiply-adds
(a micro-tile, compiler/codegen/gemm.c; or folds the broadcast into the multiply-add, as AVX-512 does) spills a vector to the stack, in any kernel of the examples and the benchmark models, inference and training.

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
import platform
import re
import subprocess
import sys
import tempfile

FMA_MIN = 8  # a GEMM tile's loop: 12 (AVX2) or 24 (AVX-512) multiply-adds a step
BROADCAST = re.compile(r"\tvbroadcastss\s+-?\d*\(%\w+")
# AVX-512 folds the broadcast into the multiply-add: vfmadd231ps (%r13,%r12,4){1to16}, ... (not
# a constant of the pool: .LCPI..(%rip){1to16} in an element-wise polynomial)
FOLDED = re.compile(r"\tvfmadd\w*\s+-?\d*\(%\w+[^)]*\)\{1to")
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


def spills(asm, tiles=None):
    """The spilling tile loops of asm; tiles (a list), when given, gets one entry per tile loop."""
    lines = asm.split("\n")
    bad = []
    for fn, a, b in innermost_loops(lines):
        body = lines[a:b + 1]
        fmas = sum("vfmadd" in l for l in body)
        tile = any(BROADCAST.search(l) or FOLDED.search(l) for l in body)  # a_i[k] from memory: a GEMM tile
        if tile and fmas >= FMA_MIN and tiles is not None:
            tiles.append(fn)
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
    folded = ["h:", ".LBB2_1:", "\tvmovups\t%zmm8, 16(%rsp)"] + ["\tvfmadd231ps\t(%r13,%r12,4){1to16}, %zmm14, %zmm11"] * 8
    assert spills("\n".join(folded + ["\tjne\t.LBB2_1"])), "a spill in a tile with folded broadcasts missed"
    poly = ["k:", ".LBB3_1:", "\tvmovups\t%zmm8, 16(%rsp)"] + ["\tvfmadd213ps\t.LCPI3_1(%rip){1to16}, %zmm1, %zmm2"] * 8
    assert not spills("\n".join(poly + ["\tjne\t.LBB3_1"])), "a polynomial's loop taken for a tile"


def main():
    pnetc, src = sys.argv[1], sys.argv[2]
    self_test()
    nets = sorted(glob.glob(os.path.join(src, "examples", "*.pnet")) + glob.glob(os.path.join(src, "bench", "models", "*.pnet")))
    # (triple or None for the host, cpu): the x86 targets from any host, the host's own on x86-64
    x86 = "x86_64-unknown-linux-gnu"
    targets = [(x86, "x86-64-v4"), (x86, "x86-64-v3")]
    if platform.machine() in ("x86_64", "AMD64"):
        targets.append((None, "native"))
    cpus = [t[1] for t in targets]
    failed, checked, ntiles = [], 0, {}
    with tempfile.TemporaryDirectory() as tmp:
        for net in nets:
            for triple, cpu in targets:
                out = os.path.join(tmp, "k.s")
                cmd = [pnetc, net, "--cpu", cpu, "--emit=asm", "-o", out] + (["--target", triple] if triple else [])
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    failed.append("%s --cpu %s: pnetc failed: %s" % (net, cpu, r.stderr.strip()))
                    continue
                asm = open(out).read()
                checked += asm.count("vfmadd")
                tiles = []
                failed += ["%s --cpu %s: %s" % (os.path.basename(net), cpu, b) for b in spills(asm, tiles)]
                ntiles[cpu] = ntiles.get(cpu, 0) + len(tiles)
    for f in failed:
        print("FAIL", f)
    # A checker whose patterns no longer match the compiler's output would pass on nothing.
    for cpu in cpus:
        if not ntiles.get(cpu):
            failed.append("--cpu %s: no GEMM tile loop recognised in any network" % cpu)
            print("FAIL", failed[-1])
    print("%d networks x %s: %s tile loops, %d multiply-adds checked, %d failures" %
          (len(nets), "+".join(cpus), "+".join(str(ntiles.get(c, 0)) for c in cpus), checked, len(failed)))
    return 1 if failed or not nets else 0


if __name__ == "__main__":
    sys.exit(main())
