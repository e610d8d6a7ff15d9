"""CIFAR-style VGG16 with BatchNorm, as in kuangliu/pytorch-cifar (used by PT4AL and BAL).

Layer order and module names follow that code (``features`` is the same
``nn.Sequential`` with the same indices), so an authors' checkpoint loads after
renaming ``classifier.*`` to ``head.*``, and the same seed gives the same weights.
"""

from __future__ import annotations

from torch import Tensor, nn

from bal.models.registry import BalModel, register_model

VGG16_CONFIG: list[int | str] = [
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
]


class VGG(BalModel):
    """VGG body (conv3x3-BN-ReLU stacks and 2x2 max-pools) + global average pool + head.

    At 32x32 the five pools leave a 1x1 map, so the average pool equals the
    authors' plain flatten. For smaller images a pool that would act on a map
    smaller than 2x2 is replaced by ``nn.Identity`` (decided from ``image_size`` at
    construction, keeping the ``features`` indices unchanged); larger images end
    in a bigger map that the adaptive pool averages.

    Shapes: ``(B, 3, S, S)`` -> features ``(B, 512)`` -> logits ``(B, num_classes)``.
    """

    def __init__(self, config: list[int | str], num_classes: int, image_size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        size = image_size
        for v in config:
            if v == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                    size //= 2
                else:
                    layers.append(nn.Identity())
            else:
                layers += [
                    nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1),
                    nn.BatchNorm2d(int(v)),
                    nn.ReLU(inplace=True),
                ]
                in_channels = int(v)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self._make_head(in_channels, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 3, S, S)`` -> ``(B, 512)``."""
        return self.pool(self.features(x)).flatten(1)


@register_model("vgg16")
def vgg16(num_classes: int, image_size: int = 32) -> VGG:
    """CIFAR VGG16-BN, 512 features."""
    return VGG(VGG16_CONFIG, num_classes, image_size)
