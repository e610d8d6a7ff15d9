"""Shapes, determinism, errors and gradients of the registered models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bal.errors import BalError
from bal.models import BalModel, create_model, list_models, register_model

NUM_CLASSES = 7

# (name, image_size): every model at 32, the cheap ones also at the extremes.
SHAPE_CASES = [
    ("vgg16", 32),
    ("vgg16", 16),
    ("vgg16", 8),
    ("resnet18", 32),
    ("resnet18", 8),
    ("resnet18", 64),
    ("cnn", 32),
    ("cnn", 8),
    ("cnn", 64),
    ("cnn", 13),
]


def test_registry_lists_builtin_models() -> None:
    assert {"vgg16", "resnet18", "cnn"} <= set(list_models())
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name,size", SHAPE_CASES)
def test_shapes_and_forward_is_head_of_features(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, image_size=size)
    assert isinstance(model, BalModel)
    assert isinstance(model.head, nn.Linear)
    assert model.head.in_features == model.feature_dim
    assert model.head.out_features == NUM_CLASSES
    model.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert feats.shape == (2, model.feature_dim)
    assert logits.shape == (2, NUM_CLASSES)
    torch.testing.assert_close(logits, model.head(feats))


def test_feature_dims() -> None:
    dims = {n: create_model(n, 10).feature_dim for n in ("vgg16", "resnet18", "cnn")}
    assert dims == {"vgg16": 512, "resnet18": 512, "cnn": 128}


@pytest.mark.parametrize("name", ["vgg16", "resnet18", "cnn"])
def test_seeded_creation_is_identical(name: str) -> None:
    torch.manual_seed(123)
    a = create_model(name, 10).state_dict()
    torch.manual_seed(123)
    b = create_model(name, 10).state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    torch.manual_seed(124)
    c = create_model(name, 10).state_dict()
    assert not torch.equal(a["head.weight"], c["head.weight"])


@pytest.mark.parametrize("name", ["resnet18", "cnn"])
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, NUM_CLASSES, image_size=16).train()
    x = torch.randn(4, 3, 16, 16)
    y = torch.arange(4) % NUM_CLASSES
    F.cross_entropy(model(x), y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert model.head.weight.grad.abs().sum() > 0
    first = next(iter(model.parameters()))
    assert first.grad.abs().sum() > 0


def test_gradients_flow_vgg16() -> None:
    torch.manual_seed(0)
    model = create_model("vgg16", NUM_CLASSES, image_size=8).train()
    F.cross_entropy(model(torch.randn(2, 3, 8, 8)), torch.tensor([0, 1])).backward()
    assert model.features[0].weight.grad.abs().sum() > 0
    assert model.head.weight.grad.abs().sum() > 0


def test_vgg16_skips_pools_below_2x2() -> None:
    def pools(model: nn.Module) -> int:
        return sum(isinstance(layer, nn.MaxPool2d) for layer in model.features)

    assert pools(create_model("vgg16", 10, image_size=32)) == 5
    assert pools(create_model("vgg16", 10, image_size=8)) == 3
    # Indices stay those of the authors' features Sequential either way.
    assert len(create_model("vgg16", 10, image_size=8).features) == len(create_model("vgg16", 10).features)


def test_unknown_name_lists_models() -> None:
    with pytest.raises(BalError) as e:
        create_model("resnet1000", 10)
    msg = str(e.value)
    assert "resnet1000" in msg
    for name in list_models():
        assert name in msg


@pytest.mark.parametrize("kwargs,word", [
    ({"num_classes": 1}, "num_classes"),
    ({"num_classes": 10, "image_size": 7}, "image_size"),
    ({"num_classes": 10, "image_size": 32.0}, "image_size"),
])
def test_bad_arguments(kwargs: dict, word: str) -> None:
    with pytest.raises(BalError, match=word):
        create_model("cnn", **kwargs)


def test_register_model_decorator_and_duplicates() -> None:
    class Tiny(BalModel):
        def __init__(self, num_classes: int) -> None:
            super().__init__()
            self._make_head(3, num_classes)

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    name = "_test_tiny"
    register_model(name)(lambda num_classes, image_size: Tiny(num_classes))
    try:
        assert name in list_models()
        assert create_model(name, 4)(torch.randn(2, 3, 8, 8)).shape == (2, 4)
        with pytest.raises(ValueError, match=name):
            register_model(name)(lambda num_classes, image_size: Tiny(num_classes))
    finally:
        from bal.models import registry

        registry._MODELS.remove(name)


# Reference copies of kuangliu/pytorch-cifar's VGG and ResNet (the nets PT4AL/BAL train),
# to check that our versions hold the same parameters and draw the same initial weights.

class _RefVGG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
        layers: list[nn.Module] = []
        c = 3
        for v in cfg:
            if v == "M":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        layers += [nn.AvgPool2d(kernel_size=1, stride=1)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).view(x.size(0), -1))


class _RefBlock(nn.Module):
    def __init__(self, i: int, o: int, s: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 3, s, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(o)
        self.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(o)
        self.shortcut = nn.Sequential()
        if s != 1 or i != o:
            self.shortcut = nn.Sequential(nn.Conv2d(i, o, 1, s, bias=False), nn.BatchNorm2d(o))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class _RefResNet18(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.in_planes = 64
        for k, (planes, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
            blocks = []
            for s in [stride, 1]:
                blocks.append(_RefBlock(self.in_planes, planes, s))
                self.in_planes = planes
            setattr(self, f"layer{k}", nn.Sequential(*blocks))
        self.linear = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.avg_pool2d(out, 4).view(x.size(0), -1))


@pytest.mark.parametrize("name,ref_cls,old_head",
                         [("vgg16", _RefVGG, "classifier."), ("resnet18", _RefResNet18, "linear.")])
def test_matches_reference_implementation(name: str, ref_cls: type, old_head: str) -> None:
    torch.manual_seed(7)
    ref = ref_cls().eval()
    torch.manual_seed(7)
    ours = create_model(name, 10, image_size=32).eval()
    ref_sd = {k.replace(old_head, "head."): v for k, v in ref.state_dict().items()}
    ours_sd = ours.state_dict()
    assert ref_sd.keys() == ours_sd.keys()
    for k in ref_sd:
        assert torch.equal(ref_sd[k], ours_sd[k]), k
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))
