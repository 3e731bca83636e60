"""The worker's built-in `mlp` written as a PyTorch module and saved with
TorchScript: a job with `model { name: "torchscript" torchscript: "mlp.pt" }`
trains it on Fashion-MNIST like `model { name: "mlp" }` (docs/models.md).

    /usr/bin/python3 examples/fashion_mnist_mlp/mlp.py --out mlp.pt

The layers and their names (fc1, fc2, fc3) are the built-in network's; the
initial values are PyTorch's own nn.Linear initialization, the same
distribution the built-in network's initializer specs draw from.
"""
import argparse

import torch
from torch import nn


class Mlp(nn.Module):
    def __init__(self, hidden=(256, 128), inputs=784, classes=10):
        super().__init__()
        widths = [inputs, *hidden, classes]
        self.layers = len(widths) - 1
        for i in range(self.layers):
            setattr(self, "fc%d" % (i + 1), nn.Linear(widths[i], widths[i + 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="mlp.pt")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.jit.script(Mlp()).save(args.out)


if __name__ == "__main__":
    main()
