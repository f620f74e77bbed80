#!/usr/bin/env python3
"""Writes generated seeds of a fuzz target into DIR.
  data: the repository's .npy pairs and digits CSV, plus small IDX pairs, plain and gzip-compressed (the input
        layout is in fuzz_data.c);
  safetensors: small files of every float dtype, with metadata, an empty tensor and a scalar;
  ckpt: small pnet checkpoints (the metadata pnetrt_save writes), good ones and ones at or past each limit.
Usage: tests/fuzz/seeds.py data|safetensors|ckpt DIR"""
import ast, glob, gzip, json, os, struct, sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
target, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
n = 0


def safetensors(tensors, meta=None):
    """tensors: (name, dtype, shape, raw bytes) in file order."""
    global n
    head, off, data = {}, 0, b""
    if meta is not None:
        head["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        head[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    js = json.dumps(head, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    n += 1
    with open(os.path.join(out, "seed-%03d" % n), "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + data)


if target == "safetensors":
    safetensors([("w", "F32", [2, 3], struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7)),
                 ("b", "F32", [3], struct.pack("<3f", 0, 1, 2))], {"format": "pt"})
    safetensors([("h", "F16", [4], struct.pack("<4H", 0x3c00, 0x8001, 0x7c00, 0x7e00)),
                 ("bf", "BF16", [2, 2], struct.pack("<4H", 0x3f80, 0x0001, 0xff80, 0x7fc0)),
                 ("d", "F64", [2], struct.pack("<2d", 1e300, -2.5))])
    safetensors([("e", "F32", [0, 5], b""), ("s", "F32", [], struct.pack("<f", 4)),
                 ("i", "I64", [1], struct.pack("<q", 9))], {})
    sys.exit(0)

if target == "ckpt":
    w = [("fc.weight", "F32", [2], struct.pack("<2f", 0.5, -1)),
         ("optimizer.fc.weight.momentum_buffer", "F32", [2], struct.pack("<2f", 0, 0))]
    good = {"format": "pnet-checkpoint", "network": "net", "epoch": "3", "batch": "0", "step": "96",
            "seed": "42", "lr": "0.10000000000000001", "batch_size": "32", "shuffle": "1", "optimizer": "sgd"}
    safetensors(w, good)
    safetensors(w, dict(good, batch="7", shuffle="0", optimizer="adam", lr="1e-3"))
    safetensors(w, {k: v for k, v in good.items() if k not in ("lr", "batch_size", "shuffle", "optimizer")})
    for key, value in [("epoch", "1000000"), ("epoch", "1000001"), ("epoch", "-3"), ("epoch", "99999999999999999999"),
                       ("step", "9007199254740992"), ("step", "9007199254740993"), ("seed", "9223372036854775807"),
                       ("seed", "9223372036854775808"), ("seed", "-9223372036854775808"), ("lr", "nan"), ("lr", "-1"),
                       ("lr", "1e-320"), ("lr", "0x1p-3"), ("lr", "inf"), ("batch_size", "16777216"),
                       ("shuffle", "-1"), ("optimizer", "rmsprop"), ("batch", "007"), ("epoch", "")]:
        safetensors(w, dict(good, **{key: value}))
    safetensors(w, dict(good, format="pnet-weights"))
    sys.exit(0)


def seed(kind, features, count, x, y=None):
    global n
    head = bytes([kind, features & 0xFF, features >> 8 & 0xFF, count])
    body = head + x + (b"PNETFUZZ" + y if y is not None else b"")
    n += 1
    with open(os.path.join(out, "seed-%03d" % n), "wb") as f:
        f.write(body)


def npy_header(b):
    hlen = struct.unpack("<H", b[8:10])[0] if b[6] == 1 else struct.unpack("<I", b[8:12])[0]
    start = 10 if b[6] == 1 else 12
    return ast.literal_eval(b[start:start + hlen].decode("latin-1"))


def prod(dims):
    p = 1
    for d in dims:
        p *= d
    return p


gz = lambda b: gzip.compress(b, mtime=0)
for xp in sorted(glob.glob(os.path.join(root, "tests/train/refs/*/x.npy")) +
                 glob.glob(os.path.join(root, "tests/train/data/*_x.npy"))):
    yp = xp[:-5] + "y.npy" if xp.endswith("/x.npy") else xp.replace("_x.npy", "_y.npy")
    x, y = open(xp, "rb").read(), open(yp, "rb").read()
    if len(x) > 20000:
        continue
    hx, hy = npy_header(x), npy_header(y)
    features = prod(hx["shape"][1:])
    if hy["descr"][1] == "f":
        seed(1, features, prod(hy["shape"][1:]), x, y)
    else:
        seed(0, features, 10, x, y)
        seed(0, features, 10, gz(x), y)

# IDX: 3 samples of 2x2 bytes with uint8 and float32 labels/targets
imgs = b"\x00\x00\x08\x03" + struct.pack(">III", 3, 2, 2) + bytes(range(0, 240, 20))
labels = b"\x00\x00\x08\x01" + struct.pack(">I", 3) + bytes([1, 0, 2])
targets = b"\x00\x00\x0d\x02" + struct.pack(">II", 3, 2) + struct.pack(">6f", 0.5, -1, 2, 3, 4e-3, 1e3)
fimgs = b"\x00\x00\x0d\x02" + struct.pack(">II", 3, 4) + struct.pack(">12f", *range(12))
seed(0, 4, 3, imgs, labels)
seed(0, 4, 3, gz(imgs), gz(labels))
seed(0, 4, 3, gz(imgs) + gz(b""), labels)
seed(1, 4, 2, fimgs, targets)
seed(1, 4, 2, imgs, gz(targets))

# CSV: the first rows of the digits set (64 features, 10 classes), plain, gzip, CRLF, BOM; and float targets
rows = gzip.open(os.path.join(root, "examples/data/digits_train.csv.gz"), "rb").read().split(b"\n")[:6]
csv = b"\n".join(rows) + b"\n"
seed(0, 64, 10, csv)
seed(0, 64, 10, gz(csv))
seed(0, 64, 10, b"\xef\xbb\xbf" + csv.replace(b"\n", b"\r\n"))
seed(1, 3, 2, b"1.5, 2e-3, -4, 0.25, 1\n\n7,8,9,nan,1\n  1 ,\t2,3,4,5")
seed(1, 2, 1, b"1,2,3.0\n4,5,6\n")
