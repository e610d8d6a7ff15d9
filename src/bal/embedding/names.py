"""The names ``--embedding`` takes, checked without loading anything (a flag's type, a configuration key)."""

from __future__ import annotations

from bal.errors import ParameterError

__all__ = ["EMBEDDING_FORMS", "check_embedding", "embedding_kind"]

#: The forms ``--embedding`` takes, for help texts.
EMBEDDING_FORMS = ("rotation", "efficientnet_lite0", "timm:NAME", "torchvision:resnet18|resnet50|vgg16", "FILE.npy")


def embedding_kind(name: str) -> str:
    """``"rotation"``, ``"file"`` (a .npy of the user's) or ``"pretrained"`` (a network of :mod:`.models`)."""
    if name == "rotation":
        return "rotation"
    if name.endswith(".npy"):
        return "file"
    return "pretrained"


def check_embedding(name: str, param: str = "embedding") -> str:
    """``name`` if it has one of the :data:`EMBEDDING_FORMS` (a flag's type; nothing is loaded)."""
    text = str(name).strip()
    family, sep, arch = text.partition(":")
    ok = (text in ("rotation", "efficientnet_lite0") or text.endswith(".npy")
          or (sep and family in ("timm", "torchvision") and arch))
    if not ok:
        raise ParameterError(param, f"unknown {{name}} {text!r}; use one of {', '.join(EMBEDDING_FORMS)}")
    return text
