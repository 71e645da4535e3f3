"""The face-expression architectures compared in models/README.md.

Three follow the seed project (a plain CNN, a VGG-style net, a ResNet-style net); ``edge`` is ours:
a VGG-style stack that does its expensive work at 24x24 and below, so that it costs about 55 M
multiply-adds per 48x48 face (about 1 ms on one core) while keeping a spatial fully connected head,
which matters on FER faces where *where* a feature sits (brow, mouth corner) carries the expression.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def fc_head(features: int, hidden: int, classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, classes),
    )


class EdgeNet(nn.Module):
    """Ours: 1 conv at 48x48, then three stages of two 3x3 convs at 24, 12 and 6 pixels."""

    def __init__(self, classes: int = 7, width: int = 24, deep: bool = False) -> None:
        super().__init__()
        w = width
        extra = 1 if deep else 0  # a third conv in the 12x12 and 6x6 stages
        self.features = nn.Sequential(
            conv_bn_relu(1, w), nn.MaxPool2d(2),                              # 24x24
            conv_bn_relu(w, 2 * w), conv_bn_relu(2 * w, 2 * w), nn.MaxPool2d(2),  # 12x12
            conv_bn_relu(2 * w, 4 * w), *[conv_bn_relu(4 * w, 4 * w) for _ in range(1 + extra)], nn.MaxPool2d(2),
            conv_bn_relu(4 * w, 8 * w), *[conv_bn_relu(8 * w, 8 * w) for _ in range(1 + extra)], nn.MaxPool2d(2),
        )
        self.head = fc_head(8 * w * 9, 256, classes, 0.4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SeedCNN(nn.Module):
    """The seed's plain CNN: three conv-BN-ReLU-pool blocks and a fully connected head."""

    def __init__(self, classes: int = 7) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(1, 32), nn.MaxPool2d(2),
            conv_bn_relu(32, 64), nn.MaxPool2d(2),
            conv_bn_relu(64, 128), nn.MaxPool2d(2),
        )
        self.head = fc_head(128 * 36, 512, classes, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SeedVGG(nn.Module):
    """VGG-style: four stages of two 3x3 convs (64-128-256-512), as in the FER VGG literature."""

    def __init__(self, classes: int = 7) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in (64, 128, 256, 512):
            layers += [conv_bn_relu(c_in, c), conv_bn_relu(c, c), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = fc_head(512 * 9, 1024, classes, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(c_in, c_out, stride),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.skip(x))


class SeedResNet(nn.Module):
    """ResNet-18-style: four stages of two basic blocks (64-128-256-512) on a 48x48 input."""

    def __init__(self, classes: int = 7) -> None:
        super().__init__()
        blocks: list[nn.Module] = [conv_bn_relu(1, 64)]
        c_in = 64
        for c, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(c_in, c, stride), BasicBlock(c, c, 1)]
            c_in = c
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(512, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def EdgeNet32() -> EdgeNet:
    """Ours, a third wider (about 1.8x the multiply-adds): the next candidate once `edge` stops gaining."""
    return EdgeNet(width=32)


def EdgeNet28() -> EdgeNet:
    """Ours, a sixth wider (about 1.36x the multiply-adds)."""
    return EdgeNet(width=28)


def EdgeNetDeep() -> EdgeNet:
    """Ours at width 24 with a third conv at 12x12 and 6x6 (about 1.33x the multiply-adds)."""
    return EdgeNet(deep=True)


ARCHITECTURES = {"edge": EdgeNet, "edge28": EdgeNet28, "edge_deep": EdgeNetDeep, "edge32": EdgeNet32, "cnn": SeedCNN, "vgg": SeedVGG, "resnet": SeedResNet}


def build(arch: str) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise SystemExit(f"unknown --arch {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch]()


def count_macs(model: nn.Module, size: int = 48) -> int:
    """Multiply-accumulates of one forward pass on a 1x1xsize x size input (conv and linear layers)."""
    macs = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            macs += output.numel() * k
        elif isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size, device=next(model.parameters()).device))
    model.train(was_training)
    for h in handles:
        h.remove()
    return macs
