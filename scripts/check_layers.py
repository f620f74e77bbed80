#!/usr/bin/env python3
"""Checks the layering of compiler/ and runtime/ from their `#include "..."` lines (ctest cli.layers).

Fails on
  (a) an include circle: modules (a .c with the .h of the same name in the same folder) that include
      each other, directly or through a chain;
  (b) an arrow up: a file that includes a file of a higher layer (LAYERS below), or runtime/ including
      compiler/, or compiler/ including runtime/ above io (the ABI header aside).

Usage: scripts/check_layers.py [ROOT]    (ROOT: the repository, by default this script's parent's parent)
"""
import os
import re
import sys

# Layers, lowest first: a file may include files of its own layer or lower ones. A path's layer is the
# longest prefix below that matches it.
LAYERS = {
    "compiler": ["support", "parse", "ir", "check", "onnx", "passes", "codegen", "tools", "main.c"],
    "runtime": ["abi", "io", "core", "cli"],
}
PREFIXES = [
    # (path prefix, tree, layer)
    ("compiler/support/", "compiler", "support"),
    ("compiler/parse/", "compiler", "parse"),
    ("compiler/ops.def", "compiler", "ir"),  # the op table (STYLE 3), indexed by ir and the stages above it
    ("compiler/ir/", "compiler", "ir"),
    ("compiler/check/", "compiler", "check"),
    ("compiler/onnx/", "compiler", "onnx"),  # the ONNX front end: builds graph IR as check does
    ("compiler/passes/", "compiler", "passes"),
    ("compiler/codegen/", "compiler", "codegen"),
    ("compiler/tools/", "compiler", "tools"),
    ("compiler/main.c", "compiler", "main.c"),
    ("runtime/pnetrt_abi.h", "runtime", "abi"),  # the contract between generated code and libpnetrt
    ("runtime/pnet.h", "runtime", "abi"),  # the public API, with the functions generated code calls
    ("runtime/pnet_mpi.h", "runtime", "abi"),  # the optional public API of distributed runs
    ("runtime/pnetrt_ranks.h", "runtime", "abi"),  # the rank report and the tree's chunk blocks, shared with pnetc
    ("runtime/io/", "runtime", "io"),
    ("runtime/rt.h", "runtime", "core"),  # the public API of core
    ("runtime/core/", "runtime", "core"),
    ("runtime/cli/", "runtime", "cli"),
]
# What compiler/ may include of runtime/: the ABI header and the io layer (pnetc links pnet_io).
COMPILER_MAY_USE = {"abi", "io"}
# Where a bare name is looked for after the including file's folder (the build's include directories).
INCLUDE_DIRS = {
    "compiler": ["compiler", "compiler/parse", "runtime", "runtime/io"],
    "runtime": ["runtime", "runtime/io", "runtime/core", "runtime/cli", "compiler"],
}
# Known problems, reported but not failed on: to be removed by issue 13's codegen/IR work. Each entry is a
# problem as printed, up to " ("; an entry that no longer matches a problem fails, so the list only shrinks.
ALLOWLIST = set([
])

SOURCE = re.compile(r"\.(c|h|y|l|def)$")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(path):
    best = None
    for prefix, tree, layer in PREFIXES:
        if path.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, tree, layer)
    return (best[1], best[2]) if best else (None, None)


def rank(tree, layer):
    return LAYERS[tree].index(layer)


def resolve(root, path, name):
    """The repository path that `#include "name"` in `path` opens, or None (a generated or system file)."""
    tree = path.split("/")[0]
    for d in [os.path.dirname(path)] + INCLUDE_DIRS[tree]:
        p = os.path.normpath(os.path.join(d, name))
        if os.path.isfile(os.path.join(root, p)):
            return p
    return None


def module_of(path):
    """A .c and the .h of the same name in the same folder are one module."""
    return re.sub(r"\.(c|h|y|l)$", "", path)


def circles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = []
    for tree in LAYERS:
        for d, _, names in os.walk(os.path.join(root, tree)):
            for n in names:
                if SOURCE.search(n):
                    files.append(os.path.relpath(os.path.join(d, n), root))
    problems = []
    edges = {}
    for f in sorted(files):
        tree, layer = layer_of(f)
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for name in INCLUDE.findall(text):
            g = resolve(root, f, name)
            if g is None:
                continue
            if module_of(g) != module_of(f):
                edges.setdefault(module_of(f), set()).add(module_of(g))
            gtree, glayer = layer_of(g)
            if tree is None or gtree is None:
                problems.append(f"unlayered: {f} -> {g} (give its path a layer in PREFIXES)")
            elif tree != gtree:
                if tree == "runtime" or glayer not in COMPILER_MAY_USE:
                    problems.append(f"up: {f} -> {g} ({tree}/{layer} may not use {gtree}/{glayer})")
            elif rank(gtree, glayer) > rank(tree, layer):
                problems.append(f"up: {f} -> {g} ({layer} is below {glayer})")
    for comp in circles(edges):
        problems.append("circle: " + " <-> ".join(comp))
    failed = 0
    for p in problems:
        key = p.split(" (")[0]
        if key in ALLOWLIST:
            print(f"known: {p}")
        else:
            print(f"error: {p}")
            failed += 1
    stale = ALLOWLIST - {p.split(" (")[0] for p in problems}
    for s in sorted(stale):
        print(f"error: allowlisted but fixed, remove it from ALLOWLIST: {s}")
        failed += 1
    print(f"{len(files)} files, {sum(len(v) for v in edges.values())} module arrows, {failed} problem(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
