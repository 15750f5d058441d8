"""CIFAR ResNets from section 4.2 of the paper: 6n+2 layers, 16/32/64 filters.

Shortcut option ``"A"`` (the paper's choice) pads the identity with zero
channels and subsamples it, adding no parameters; option ``"B"`` uses a 1x1
projection with BatchNorm where the shape changes.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeres.models.resnet import BasicBlock, _init_weights, conv1x1, conv3x3

Shortcut = Literal["A", "B"]


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and zero-pad the new channels (no parameters)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_channels = out_planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # F.pad pads from the last dim backwards: (W, W, H, H, C_before, C_after).
        return F.pad(x, (0, 0, 0, 0, 0, self.pad_channels))


class CifarResNet(nn.Module):
    """3x3 stem, three stages of ``n`` BasicBlocks each, global pool, classifier."""

    def __init__(
        self,
        n: int,
        num_classes: int = 10,
        in_channels: int = 3,
        shortcut: Shortcut = "A",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', received {shortcut!r}")
        self.inplanes = 16
        self.shortcut = shortcut
        self.conv1 = conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, n)
        self.layer2 = self._make_layer(32, n, stride=2)
        self.layer3 = self._make_layer(64, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        _init_weights(self, zero_init_residual)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != planes:
            if self.shortcut == "A":
                downsample = ZeroPadShortcut(self.inplanes, planes, stride)
            else:
                downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def _cifar_resnet(depth: int, **kwargs: object) -> CifarResNet:
    return CifarResNet((depth - 2) // 6, **kwargs)  # type: ignore[arg-type]


def resnet20(**kwargs: object) -> CifarResNet:
    """CIFAR ResNet-20 (n=3)."""
    return _cifar_resnet(20, **kwargs)


def resnet32(**kwargs: object) -> CifarResNet:
    """CIFAR ResNet-32 (n=5)."""
    return _cifar_resnet(32, **kwargs)


def resnet44(**kwargs: object) -> CifarResNet:
    """CIFAR ResNet-44 (n=7)."""
    return _cifar_resnet(44, **kwargs)


def resnet56(**kwargs: object) -> CifarResNet:
    """CIFAR ResNet-56 (n=9)."""
    return _cifar_resnet(56, **kwargs)


def resnet110(**kwargs: object) -> CifarResNet:
    """CIFAR ResNet-110 (n=18)."""
    return _cifar_resnet(110, **kwargs)
