#!/usr/bin/python3
"""Exports the standard benchmark networks (bench/nets.py) to ONNX with a dynamic batch axis.

usage: /usr/bin/python3 bench/export.py OUTDIR [MODEL ...]
Writes OUTDIR/MODEL.onnx (input 'x', output 'y', opset 13); skips files newer than this script
and nets.py.
Weights are random (seeded): only speed is measured.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import nets  # noqa: E402


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip())
    outdir = sys.argv[1]
    names = sys.argv[2:] or list(nets.MODELS)
    os.makedirs(outdir, exist_ok=True)
    for name in names:
        path = os.path.join(outdir, name + ".onnx")
        if os.path.exists(path) and all(os.path.getmtime(path) > os.path.getmtime(src)
                                        for src in (__file__, nets.__file__)):
            continue  # up to date
        model = nets.build(name)
        tmp = path + ".tmp"
        with torch.no_grad():
            torch.onnx.export(model, nets.example_input(name, 2), tmp,
                              input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                              opset_version=13, do_constant_folding=True)
        os.replace(tmp, path)
        print(f"export: {path} ({os.path.getsize(path) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
