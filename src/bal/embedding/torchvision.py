"""Embedding the pool with a pretrained torchvision backbone whose weights the user already has.

``--backbone resnet18|resnet50|vgg16 --weights FILE`` builds the torchvision network
without weights, loads ``FILE`` into it (a state dict, as ``torch.save(model.state_dict())``
writes, or a checkpoint dict holding one under ``state_dict`` or ``model``) and keeps its
penultimate layer: 512 features for resnet18, 2048 for resnet50, 4096 for vgg16 (the
second fully connected layer, after its ReLU). Nothing is ever downloaded. Images are
resized to ``input_size`` (224, the ImageNet size, by default) with bilinear filtering and
normalised with the ImageNet mean and standard deviation the torchvision weights expect.

Cost: one forward pass per image at ``input_size``; resnet18 at 224 px is 1.8 GFLOPs an
image (about 20 images/s on one CPU core, thousands on a GPU).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bal.engine.runtime import autocast
from bal.errors import BalError, ParameterError
from bal.files import load_torch
from bal.validation import check_choice, check_int

__all__ = ["BACKBONES", "IMAGENET_MEAN", "IMAGENET_STD", "embed_with_backbone", "load_backbone"]

BACKBONES = ("resnet18", "resnet50", "vgg16")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_backbone(name: str, weights: str | os.PathLike) -> nn.Module:
    """The torchvision network ``name`` with the weights of ``weights``, its classifier removed (eval mode)."""
    import torchvision

    check_choice("backbone", name, BACKBONES)
    path = Path(weights)
    if not path.is_file():
        raise ParameterError("weights", f"{{name}} {path}: no such file (bal never downloads weights; "
                                        f"save them once with torch.save(model.state_dict(), FILE))")
    try:
        state = load_torch(path, f"the weights of torchvision's {name}", "save them with "
                           "torch.save(model.state_dict(), FILE)", kind="torch weights file")
    except BalError as e:
        raise ParameterError("weights", "{name} " + str(e).replace("{", "{{").replace("}", "}}")) from None
    if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        state = state.get("state_dict", state.get("model", state))
    if not isinstance(state, dict):
        raise ParameterError("weights", f"{{name}} {path} holds a {type(state).__name__}, not a state dict")
    model = getattr(torchvision.models, name)(weights=None)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes that differ
        first = str(e).split("\n")[1].strip() if "\n" in str(e) else str(e)
        raise ParameterError("weights", f"{{name}} {path} does not fit torchvision's {name}: {first}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ParameterError(
            "weights", f"{{name}} {path} does not fit torchvision's {name}: "
                       f"{len(result.missing_keys)} missing (e.g. {result.missing_keys[:3]}), "
                       f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})")
    if name.startswith("resnet"):
        model.fc = nn.Identity()
    else:
        model.classifier = model.classifier[:-2]  # up to the second fully connected layer and its ReLU
    return model.eval()


@torch.inference_mode()
def embed_with_backbone(
    images: np.ndarray,
    name: str,
    weights: str | os.PathLike,
    *,
    device: torch.device | str = "cpu",
    input_size: int = 224,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """Penultimate features (N, D) float32 of uint8 images (N, S, S, 3) under a pretrained backbone."""
    input_size = check_int("input_size", input_size, 16)
    batch_size = check_int("batch_size", batch_size, 1)
    device = torch.device(device)
    model = load_backbone(name, weights).to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=f"embed ({name})", unit="batch", disable=not progress,
                      leave=False):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-1] != input_size:
            x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False)
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        with autocast(device):
            out.append(model(x).float().cpu())
    dim = out[0].shape[1] if out else 0
    return torch.cat(out).numpy() if out else np.zeros((0, dim), dtype=np.float32)
