"""A small CNN for quick CPU runs (smoke tests, demos, laptops)."""

from __future__ import annotations

from torch import Tensor, nn

from bal.models.registry import BalModel, register_model


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    # No conv bias: BatchNorm's shift makes it redundant.
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(BalModel):
    """Three conv stages of widths 32, 64, 128, a 2x2 max-pool between stages, global average pool.

    The first stage has one conv and the other two have two: the full-resolution
    stage is the costly one, and a second conv there made a 32x32 batch of 128
    about 30% slower to train on a 2-core CPU for little gain.

    Shapes: ``(B, 3, S, S)`` -> features ``(B, 128)`` -> logits ``(B, num_classes)``;
    any ``S >= 4`` works (``S // 4`` after the two pools, then a global pool).
    """

    def __init__(self, num_classes: int, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            *_conv_bn_relu(3, w1),
            nn.MaxPool2d(2),
            *_conv_bn_relu(w1, w2),
            *_conv_bn_relu(w2, w2),
            nn.MaxPool2d(2),
            *_conv_bn_relu(w2, w3),
            *_conv_bn_relu(w3, w3),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self._make_head(w3, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 3, S, S)`` -> ``(B, 128)``."""
        return self.pool(self.features(x)).flatten(1)


@register_model("cnn")
def cnn(num_classes: int, image_size: int = 32) -> SmallCNN:
    """Small fast CNN, 128 features. ``image_size`` is not needed: the pool is global."""
    return SmallCNN(num_classes)
