#!/usr/bin/env python3
"""ONNX import against PyTorch (ctest onnx.torch; docs/onnx.md).

Exports examples/resnet_small's architecture (Conv with the batch norm folded in, residual Add,
GlobalAveragePool), an MLP (Gemm, Relu, Tanh, Mul by a constant, LogSoftmax), a LeNet-5 (examples/lenet's
architecture with a batch norm: Conv, MaxPool, Flatten, Gemm, Softmax), a small CNN (Conv with
stride and padding, BatchNormalization, AveragePool, GlobalAveragePool, Reshape, MatMul + Add,
Sigmoid, LeakyRelu, Dropout, Sub, the zero Pad before AveragePool), 1-d Conv, MaxPool, AveragePool
and GlobalAveragePool, and the bench models mlp_s and cnn (bench/nets.py) with torch.onnx.export at opsets 11 and 13, an embedding (Gather from int64
ids), an attention block (MatMul of computed tensors, Transpose, Div, Concat, GELU and LayerNorm:
as primitives at 11 and 13, LayerNormalization at 17), examples/attention's tiny_transformer and
examples/decoder's tiny_decoder at 11, 13 and 17 (learned positions through Shape, Gather, Cast,
Range; the causal mask as masked_fill's Where, or added; Slice; layer norms PyTorch shares through
Identity), and nanoGPT's model at 11, 13 and 17 (multi-head: view by a shape that Shape, Gather,
Unsqueeze, Div and Concat compute, the batch size unknown; the mask sliced from a buffer and
compared with Equal), and a mobile block (ZeroPad2d, depthwise and grouped Conv, PRelu per
channel, per feature and of one slope, Elu, Softplus) at 11 and 13, batch dimension symbolic; for each:
  - compiles it with pnetc and compares `infer` at batch 1 and 5, given the graph's own input name
    (input.1), with PyTorch (rtol 1e-4, atol 1e-5);
  - writes --emit=pnet and --weights-out, compiles that .pnet with those weights, and checks that its
    outputs are bitwise those of the .onnx compiled directly;
  - compiles it with -c and checks the header names the input and output;
then: PyTorch's default names (onnx::Gemm_0) given to infer and shown by info; --auto-partition 2
of an .onnx file compiled with --weights-out's weights, bitwise the direct outputs, and with
--profile; --check, --report, --emit=dot|llvm|graph on one.
Usage: torch_models.py PNETC WORKDIR. Needs Debian's python3-torch (re-runs under /usr/bin/python3
when this python has no torch); exit 77 (skipped) without it.
"""
import math
import os
import subprocess
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
except ImportError:
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    print("skipped: no torch (Debian's python3-torch)")
    sys.exit(77)

PNETC, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)
failures = []


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(20, 32), nn.Linear(32, 16), nn.Linear(16, 5)

    def forward(self, x):
        return torch.log_softmax(self.fc3(torch.tanh(self.fc2(torch.relu(self.fc1(x)))) * 0.5), dim=1)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.bn = nn.BatchNorm2d(16)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.bn(self.c2(x))), 2)
        x = torch.flatten(x, 1)
        return torch.softmax(self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x))))), dim=1)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.drop = nn.Dropout(0.3)
        self.w = nn.Parameter(torch.randn(8, 6))
        self.b = nn.Parameter(torch.randn(6))

    def forward(self, x):
        y = nn.functional.leaky_relu(self.bn(self.conv(x)), 0.1)
        z = nn.functional.avg_pool2d(torch.sigmoid(self.conv2(y)), 2)
        g = nn.functional.adaptive_avg_pool2d(z - torch.relu(nn.functional.max_pool2d(y, 2)), 1)
        h = self.drop(g.reshape(-1, 8))
        return torch.matmul(h, self.w) + self.b


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.fc, self.ln = nn.Linear(16, 8), nn.LayerNorm(8)

    def forward(self, x):
        att = torch.softmax(torch.matmul(self.q(x), self.k(x).transpose(1, 2)) / 8 ** 0.5, dim=-1)
        h = torch.cat([x, torch.matmul(att, self.v(x))], dim=2)
        return self.ln(nn.functional.gelu(self.fc(h)))


def conv_block(cin, cout, stride=1):  # stdlib nn.conv_block
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Basic(nn.Module):  # examples/resnet_small.pnet's block basic
    def __init__(self, ch):
        super().__init__()
        self.a = conv_block(ch, ch)
        self.conv, self.bn = nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(self.a(x))))


class ResNetSmall(nn.Module):  # examples/resnet_small.pnet
    def __init__(self):
        super().__init__()
        self.stem, self.res1 = conv_block(3, 16), Basic(16)
        self.down, self.res2 = conv_block(16, 32, 2), Basic(32)
        self.up, self.down_fc, self.logits = nn.Linear(32, 64), nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        h = self.res2(self.down(self.res1(self.stem(x))))
        h = torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1)
        return torch.softmax(self.logits(self.down_fc(torch.relu(self.up(h)))), dim=1)


class Embed(nn.Module):  # Gather on an initializer, from int64 token ids
    def __init__(self):
        super().__init__()
        self.tok, self.fc = nn.Embedding(50, 8), nn.Linear(48, 5)

    def forward(self, ids):
        return self.fc(torch.flatten(torch.tanh(self.tok(ids)), 1))


class Mobile(nn.Module):  # the ops of issue 18: Elu, Softplus, PRelu, Pad, grouped and depthwise Conv
    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 2, 0, 1))  # left, right, top, bottom
        self.dw = nn.Conv2d(4, 8, 3, stride=2, groups=4)  # depthwise, multiplier 2
        self.act = nn.PReLU(8)  # slope [8, 1, 1] in the export
        self.pw = nn.Conv2d(8, 6, 1, groups=2)
        self.same = nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False)
        self.one = nn.PReLU()  # one slope: [1]
        self.fc = nn.Linear(6 * 3 * 4, 7)
        self.feat = nn.PReLU(7)  # per feature of [N, 7]: [7]

    def forward(self, x):
        h = self.act(self.dw(self.pad(x)))
        h = nn.functional.elu(self.pw(h), 0.7)
        h = self.one(self.same(h)) + nn.functional.softplus(h)
        return self.feat(self.fc(torch.flatten(h, 1)))


class Conv1d(nn.Module):  # 1-d windows: conv2d and the pools over a unit height
    def __init__(self):
        super().__init__()
        self.c1, self.bn = nn.Conv1d(3, 8, 5, padding=2), nn.BatchNorm1d(8)
        self.c2, self.fc = nn.Conv1d(8, 8, 3, stride=2, bias=False), nn.Linear(8, 4)

    def forward(self, x):
        x = nn.functional.max_pool1d(torch.relu(self.bn(self.c1(x))), 2)
        x = nn.functional.avg_pool1d(torch.tanh(self.c2(x)), 2)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool1d(x, 1), 1))


class Attention(nn.Module):  # stdlib nn.attention: single-head self-attention with an output projection
    def __init__(self, dim):
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.dim = dim

    def forward(self, x):
        scores = torch.matmul(self.q(x), self.k(x).transpose(1, 2))
        return self.out(torch.matmul(torch.softmax(scores / self.dim ** 0.5, dim=-1), self.v(x)))


class Encoder(nn.Module):  # stdlib nn.encoder: post-norm attention and MLP, each with a residual
    def __init__(self, dim, mult=4):
        super().__init__()
        self.a, self.n1, self.n2 = Attention(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.up, self.down = nn.Linear(dim, dim * mult), nn.Linear(dim * mult, dim)

    def forward(self, x):
        n1 = self.n1(x + self.a(x))
        return self.n2(n1 + self.down(torch.relu(self.up(n1))))


class Transformer(nn.Module):  # examples/attention.pnet (tiny_transformer)
    def __init__(self):
        super().__init__()
        self.tok, self.enc, self.ln = nn.Embedding(1000, 32), Encoder(32), nn.LayerNorm(32)
        self.att, self.drop, self.logits = Attention(32), nn.Dropout(0.1), nn.Linear(512, 4)

    def forward(self, ids):
        h = self.att(self.ln(self.enc(self.tok(ids) * 32 ** 0.5)))
        return torch.softmax(self.logits(self.drop(torch.flatten(h, 1))), dim=1)


class Decoder(nn.Module):  # examples/decoder.pnet (tiny_decoder)
    """Learned positions `pos(arange(T))` and the causal mask, as masked_fill of a boolean buffer
    (Where) or, with additive=True, an added buffer of 0 and -inf; the last position by slicing."""
    def __init__(self, additive=False):
        super().__init__()
        self.additive = additive
        self.tok, self.pos = nn.Embedding(64, 24), nn.Embedding(12, 24)
        self.ln0, self.ln1, self.ln2 = nn.LayerNorm(24), nn.LayerNorm(24), nn.LayerNorm(24)
        self.q, self.k, self.v, self.o = (nn.Linear(24, 24) for _ in range(4))
        self.up, self.down, self.head = nn.Linear(24, 48), nn.Linear(48, 24), nn.Linear(24, 64)
        if additive:
            self.register_buffer("mask", torch.triu(torch.full((12, 12), float("-inf")), 1))
        else:
            self.register_buffer("mask", torch.triu(torch.ones(12, 12, dtype=torch.bool), 1))

    def forward(self, ids):
        h0 = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        x = self.ln0(h0)
        s = torch.matmul(self.q(x), self.k(x).transpose(1, 2)) / 24 ** 0.5
        s = s + self.mask if self.additive else s.masked_fill(self.mask, float("-inf"))
        h1 = h0 + self.o(torch.matmul(torch.softmax(s, dim=-1), self.v(x)))
        h2 = h1 + self.down(nn.functional.silu(self.up(self.ln1(h1))))
        return torch.softmax(self.head(self.ln2(torch.flatten(h2[:, -1:, :], 1))), dim=1)


class GPT(nn.Module):  # nanoGPT's model: multi-head causal self-attention, its mask sliced from a buffer
    def __init__(self, vocab=50, block=16, dim=24, heads=3):
        super().__init__()
        self.heads = heads
        self.wte, self.wpe = nn.Embedding(vocab, dim), nn.Embedding(block, dim)
        self.ln1, self.ln2, self.ln_f = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v, self.c_proj = (nn.Linear(dim, dim) for _ in range(4))
        self.fc, self.proj = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.register_buffer("bias", torch.tril(torch.ones(block, block)).view(1, 1, block, block))

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(0, idx.size(1), dtype=torch.long))
        B, T, C = x.size()  # Shape, Gather, Unsqueeze, Concat: the view's shape, the batch unknown
        h = self.ln1(x)
        q, k, v = (lin(h).view(B, T, self.heads, C // self.heads).transpose(1, 2) for lin in (self.q, self.k, self.v))
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        y = torch.matmul(torch.softmax(att, dim=-1), v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        x = x + self.proj(nn.functional.gelu(self.fc(self.ln2(x))))
        return self.lm_head(self.ln_f(x))


def run(args, what):
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        failures.append(f"{what}: exit {p.returncode}: {(p.stderr or p.stdout).strip()[:300]}")
        return False
    return True


def infer(exe, x_path, out_path, tag, inp="input.1", out="out"):
    """Runs exe's infer; a network compiled from the .onnx takes the graph's own names (input.1),
    one compiled from its .pnet source their identifiers (input_1)."""
    return run([exe, "infer", "--input", f"{inp}={x_path}", "--output", f"{out}={out_path}"], f"{tag} infer")


def default_names():
    """PyTorch's own names ("onnx::Gemm_0", "7"): the executable takes them and their identifiers
    alike, and info shows both."""
    import onnx
    tag = "mlp_names"
    path = os.path.join(WORK, tag + ".onnx")
    model = MLP().eval()
    torch.onnx.export(model, torch.randn(2, 20), path, opset_version=13, dynamic_axes={"onnx::Gemm_0": {0: "n"}})
    g = onnx.load(path).graph
    inp, out = g.input[0].name, g.output[0].name
    exe = os.path.join(WORK, tag)
    if not run([PNETC, path, "-o", exe], f"{tag} compile"):
        return
    p = subprocess.run([exe, "info"], capture_output=True, text=True)
    lines = [l.split() for l in p.stdout.splitlines()]
    ids = {}
    for name in (inp, out):
        row = [l for l in lines if len(l) == 6 and l[2:] == ["(\"" + name + "\"", "in", "the", "model)"]]
        if p.returncode != 0 or len(row) != 1:
            failures.append(f"{tag}: info does not show '{name}' beside its identifier: {p.stdout[:300]}")
            return
        ids[name] = row[0][0]
    x = torch.randn(3, 20)
    x_path = os.path.join(WORK, tag + "_x.npy")
    np.save(x_path, x.numpy())
    y1, y2 = os.path.join(WORK, tag + "_y1.npy"), os.path.join(WORK, tag + "_y2.npy")
    if infer(exe, x_path, y1, tag, inp, out) and infer(exe, x_path, y2, tag, ids[inp], ids[out]):
        with torch.no_grad():
            want = model(x).numpy()
        a, b = np.load(y1), np.load(y2)
        if a.tobytes() != b.tobytes() or not np.allclose(a, want, rtol=1e-4, atol=1e-5):
            failures.append(f"{tag}: --input {inp} and --input {ids[inp]} differ, or differ from PyTorch")
        else:
            print(f"PASS {tag}: infer takes the graph's own names ({inp}, {out}) and their identifiers")
    p = subprocess.run([exe, "infer", "--input", f"{inp}x={x_path}"], capture_output=True, text=True)
    if p.returncode != 1 or len(p.stderr.splitlines()) != 1 or f"no input named '{inp}x'" not in p.stderr:
        failures.append(f"{tag}: an unknown input name: exit {p.returncode}: {p.stderr.strip()[:200]}")


def auto_partition(tag):
    """--auto-partition 2 on an .onnx file prints its .pnet source with @partition and @pipeline; with
    --weights-out's weights it gives bitwise the outputs of the .onnx compiled directly; --profile too."""
    onnx_path = os.path.join(WORK, tag + ".onnx")
    src, st = os.path.join(WORK, tag + "_ap.pnet"), os.path.join(WORK, tag + "_ap.safetensors")
    p = subprocess.run([PNETC, "--auto-partition", "2", onnx_path, "--weights-out", st], capture_output=True, text=True)
    if p.returncode != 0 or "@partition(1)" not in p.stdout or "@pipeline(microbatches = " not in p.stdout \
            or "2 stages" not in p.stderr:
        failures.append(f"--auto-partition 2 {tag}.onnx: exit {p.returncode}: {p.stderr.strip()[:300]}")
        return
    open(src, "w").write(p.stdout)
    exe = os.path.join(WORK, tag + "_ap")
    x_path, out = os.path.join(WORK, f"{tag}_x5.npy"), os.path.join(WORK, f"{tag}_y5_ap.npy")
    if run([PNETC, src, "--weights", st, "-o", exe], f"{tag} compile the partitioned .pnet") \
            and infer(exe, x_path, out, tag + " partitioned", "input_1"):
        if np.load(out).tobytes() != np.load(os.path.join(WORK, f"{tag}_y5.npy")).tobytes():
            failures.append(f"{tag}: the partitioned .pnet's outputs are not bitwise the .onnx's")
        else:
            print(f"PASS {tag}: --auto-partition 2 of the .onnx compiles to bitwise its outputs")
    copy = os.path.join(WORK, tag + "_copy.onnx")  # -o the model itself: refused, the model intact
    model = open(onnx_path, "rb").read()
    open(copy, "wb").write(model)
    p = subprocess.run([PNETC, "--auto-partition", "2", copy, "-o", copy], capture_output=True, text=True)
    if p.returncode != 1 or len(p.stderr.splitlines()) != 1 or open(copy, "rb").read() != model:
        failures.append(f"--auto-partition 2 {tag}.onnx -o the model: exit {p.returncode}: {p.stderr.strip()[:200]}")
    prof = os.path.join(WORK, tag + "_profile.json")
    if run([os.path.join(WORK, tag), "bench", "--profile", prof, "--batch", "4", "--seconds", "0.2", "--threads", "1"],
           f"{tag} bench --profile"):
        p = subprocess.run([PNETC, "--auto-partition", "2", "--profile", prof, onnx_path], capture_output=True, text=True)
        if p.returncode != 0 or "@partition(1)" not in p.stdout or "measured slowest stage" not in p.stderr:
            failures.append(f"--auto-partition 2 --profile on {tag}.onnx: exit {p.returncode}: {p.stderr.strip()[:300]}")
        else:
            print(f"PASS {tag}: --auto-partition --profile on the .onnx uses the measured costs")


def main():
    torch.manual_seed(0)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
    import nets  # the bench models, as bench/export.py exports them
    vocab = {"embed": 50, "transformer": 1000, "decoder": 64, "decoder_add": 64, "gpt": 50}
    for name, model, shape, opsets in [("mlp", MLP(), (20,), (11, 13)), ("lenet", LeNet(), (1, 28, 28), (11, 13)),
                                       ("cnn", CNN(), (3, 12, 12), (11, 13)), ("block", Block(), (4, 8), (11, 13, 17)),
                                       ("resnet_small", ResNetSmall(), (3, 32, 32), (11, 13)),
                                       ("embed", Embed(), (6,), (11, 13)), ("mobile", Mobile(), (4, 7, 6), (11, 13)),
                                       ("conv1d", Conv1d(), (3, 40), (11, 13)),
                                       ("transformer", Transformer(), (16,), (11, 13, 17)),
                                       ("decoder", Decoder(), (12,), (11, 13, 17)),
                                       ("decoder_add", Decoder(additive=True), (12,), (13,)),
                                       ("gpt", GPT(), (12,), (11, 13, 17)),
                                       ("bench_mlp_s", nets.build("mlp_s"), (784,), (11, 13)),
                                       ("bench_cnn", nets.build("cnn"), (1, 28, 28), (11, 13))]:
        sample = (lambda *s, v=vocab.get(name): torch.randint(0, v, s)) if name in vocab else torch.randn
        model.eval()
        if name == "transformer":  # layer norms that are not the identity
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, nn.LayerNorm):
                        m.weight.uniform_(0.5, 1.5)
                        m.bias.uniform_(-0.5, 0.5)
        with torch.no_grad():  # running statistics that are not the identity
            for m in model.modules():
                if isinstance(m, nn.PReLU):  # slopes of both signs, not PyTorch's 0.25
                    m.weight.uniform_(-0.5, 0.5)
                if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
        for opset in opsets:
            tag = f"{name}_{opset}"
            onnx_path = os.path.join(WORK, tag + ".onnx")
            torch.onnx.export(model, sample(2, *shape), onnx_path, opset_version=opset,
                              input_names=["input.1"], output_names=["out"],
                              dynamic_axes={"input.1": {0: "batch_size"}, "out": {0: "batch_size"}})
            exe = os.path.join(WORK, tag)
            if not run([PNETC, onnx_path, "-o", exe], f"{tag} compile"):
                continue
            for batch in (1, 5):
                x = sample(batch, *shape)
                x_path = os.path.join(WORK, f"{tag}_x{batch}.npy")
                np.save(x_path, x.numpy())
                out = os.path.join(WORK, f"{tag}_y{batch}.npy")
                if not infer(exe, x_path, out, tag):
                    continue
                with torch.no_grad():
                    want = model(x).numpy()
                got = np.load(out)
                if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5):
                    err = np.abs(got - want).max() if got.shape == want.shape else f"shape {got.shape} != {want.shape}"
                    failures.append(f"{tag} batch {batch}: differs from PyTorch (max abs error {err})")
                else:
                    print(f"PASS {tag} batch {batch} matches PyTorch")
            # Round trip: --emit=pnet with --weights-out, compiled with those weights, bitwise the same.
            src, st = os.path.join(WORK, tag + ".pnet"), os.path.join(WORK, tag + ".safetensors")
            exe2 = exe + "_pnet"
            if (run([PNETC, "--emit=pnet", onnx_path, "-o", src, "--weights-out", st], f"{tag} --emit=pnet")
                    and run([PNETC, src, "--weights", st, "-o", exe2], f"{tag} compile .pnet")):
                x_path = os.path.join(WORK, f"{tag}_x5.npy")
                out2 = os.path.join(WORK, f"{tag}_y5_pnet.npy")
                if infer(exe2, x_path, out2, tag + " .pnet", "input_1"):
                    a, b = np.load(os.path.join(WORK, f"{tag}_y5.npy")), np.load(out2)
                    if a.tobytes() != b.tobytes():
                        failures.append(f"{tag}: the emitted .pnet's outputs are not bitwise the .onnx's")
                    else:
                        print(f"PASS {tag} round trip through .pnet is bitwise")
            # -c: an object and a header that name the input and output.
            obj = os.path.join(WORK, tag + ".o")
            if run([PNETC, "-c", onnx_path, "-o", obj], f"{tag} -c"):
                hdr = open(os.path.join(WORK, tag + ".h")).read()
                if "input_1" not in hdr.lower() or "out" not in hdr.lower():
                    failures.append(f"{tag}: the header does not name input_1 and out")
                else:
                    print(f"PASS {tag} -c writes an object and its header")
    default_names()
    for tag in ("lenet_13", "block_17"):
        auto_partition(tag)
    # The other outputs of pnetc on an ONNX file.
    lenet = os.path.join(WORK, "lenet_13.onnx")
    for args, want in [(["--check"], ""), (["--report"], "FLOP per sample"), (["--emit=dot"], "digraph"),
                       (["--emit=llvm", "-o", "-"], "define"), (["--emit=graph"], "conv2d(")]:
        p = subprocess.run([PNETC, *args, lenet], capture_output=True, text=True)
        if p.returncode != 0 or want not in p.stdout:
            failures.append(f"pnetc {' '.join(args)} lenet_13.onnx: exit {p.returncode}: {p.stderr.strip()[:200]}")
        else:
            print(f"PASS pnetc {' '.join(args)} on an ONNX file")
    # --weights-out never replaces the model or the output.
    model = open(lenet, "rb").read()
    for extra in ([], ["-o", os.path.join(WORK, "same")]):
        wout = lenet if not extra else extra[1]
        p = subprocess.run([PNETC, lenet, "--weights-out", wout, *extra], capture_output=True, text=True)
        if p.returncode != 1 or len(p.stderr.splitlines()) != 1 or open(lenet, "rb").read() != model:
            failures.append(f"--weights-out {wout}: exit {p.returncode}: {p.stderr.strip()[:200]}")
        else:
            print(f"PASS --weights-out refuses to replace the {'output' if extra else 'model'}")
    for f in failures:
        print("FAIL", f)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


sys.exit(main())
