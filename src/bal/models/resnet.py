"""CIFAR-style ResNet-18 as in kuangliu/pytorch-cifar (used by PT4AL and BAL).

3x3 stride-1 stem without max-pool, BasicBlocks [2, 2, 2, 2] with widths 64..512.
Module names match that code except ``linear`` -> ``head``, and modules are built
in the same order, so the same seed gives the same weights.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from bal.models.registry import BalModel, register_model


class BasicBlock(nn.Module):
    """Two conv3x3-BN with an identity (or 1x1 conv-BN projection) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(BalModel):
    """CIFAR ResNet body + global average pool + head.

    The authors pool with ``avg_pool2d(out, 4)``, which is global at 32x32 only;
    an adaptive global pool gives the same numbers there and works for any size
    (at 8x8 the three stride-2 stages leave a 1x1 map).

    Shapes: ``(B, 3, S, S)`` -> features ``(B, 512)`` -> logits ``(B, num_classes)``.
    """

    def __init__(self, num_blocks: list[int], num_classes: int) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(512, num_blocks[3], stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self._make_head(512 * BasicBlock.expansion, num_classes)

    def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (num_blocks - 1):
            blocks.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes * BasicBlock.expansion
        return nn.Sequential(*blocks)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 3, S, S)`` -> ``(B, 512)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.pool(out).flatten(1)


@register_model("resnet18")
def resnet18(num_classes: int, image_size: int = 32) -> ResNet:
    """CIFAR ResNet-18, 512 features. ``image_size`` is not needed: the pool is global."""
    return ResNet([2, 2, 2, 2], num_classes)
