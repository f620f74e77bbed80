"""The three standard benchmark networks in PyTorch, layer for layer as in bench/models/*.pnet.

Imported by export.py (ONNX export) and torch_bench.py (the PyTorch peer).
"""
import torch
from torch import nn


def mlp_s():
    # bench/models/mlp_s.pnet: 784 -> 512 -> 512 -> 10, softmax output.
    return nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(),
        nn.Linear(512, 512), nn.ReLU(),
        nn.Linear(512, 10), nn.Softmax(dim=1))


def mlp_l():
    # bench/models/mlp_l.pnet: 1024 -> 4096 -> 4096 -> 4096 -> 1024, no output activation.
    return nn.Sequential(
        nn.Linear(1024, 4096), nn.ReLU(),
        nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 1024))


def cnn():
    # bench/models/cnn.pnet: input 1x28x28; conv 3x3 (no padding, stride 1), maxpool 2.
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),    # 32 x 13 x 13
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),   # 64 x 5 x 5
        nn.Flatten(),
        nn.Linear(1600, 128), nn.ReLU(),
        nn.Linear(128, 10), nn.Softmax(dim=1))


MODELS = {"mlp_s": mlp_s, "mlp_l": mlp_l, "cnn": cnn}
INPUT_SHAPES = {"mlp_s": (784,), "mlp_l": (1024,), "cnn": (1, 28, 28)}


def build(name):
    torch.manual_seed(0)
    return MODELS[name]().eval()


def example_input(name, batch):
    return torch.randn((batch,) + INPUT_SHAPES[name], dtype=torch.float32)
