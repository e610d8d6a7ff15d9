"""The task model of ``--task_model finetune``: a pretrained network trained with a linear head on the images.

Where ``linear`` keeps the embedding frozen and fits a head on its cached rows (seconds
on a CPU), ``finetune`` trains the whole network each cycle, starting from its
pretrained weights, through the same training loop as the paper's ``scratch`` networks
(:func:`bal.engine.trainer.train_model`: seeded epochs, per-epoch checkpoints, mixed
precision on a GPU). It is a :class:`~bal.models.BalModel`, so scoring, evaluation,
BADGE and core-set read it as they read any network of bal.

It is trained the way Kumar et al. (ICLR 2022, "Fine-tuning can distort pretrained features")
recommend, linear probe then fine-tune: the network reads the embedding rows as the linear head
does (L2-normalised, standardised with the pool's statistics) and its head starts from the linear
probe fitted on the labelled rows (:func:`bal.engine.head.fit_head`), not from random weights. A
random head's large early gradients wreck the pretrained features before the head is any good;
measured here (CIFAR-10, 60 labels, EfficientNet-Lite0 at 128 px, validation split,
``benchmarks/finetune_probe_check.py``): from a random head 11 % at lr 0.01 and 37 % at 0.001, from
the probe 10 % at 0.01 and 58 % at 0.001, the probe alone 56 %. Every cycle starts again from the
pretrained weights and a new probe: warm-started from the previous cycle, 0.3.0's network drifted
further each cycle (10 % after six).

Two more choices, and why:

- Images enter at the size bal decoded them (32 px for CIFAR) and are resized to the
  network's input side inside :meth:`FinetuneNet.forward_features`, so the images of
  a run stay as they are in memory (the resize is linear, so it commutes with the
  per-channel normalisation :class:`~bal.data.BatchAugment` applies first, with the
  network's own mean and standard deviation).
- The body's batch-norm layers keep the statistics they were pretrained with (their
  affine weights still learn): with 10 to 80 labels a batch holds a few images, whose
  mean and variance would overwrite ImageNet's with noise.

A fine-tuned model is saved with the embedding's settings (name, weights file, size);
loading one builds that network again and puts the saved weights in it, as data only.
"""

from __future__ import annotations

import copy
import os

import torch
import torch.nn.functional as F
from torch import nn

from bal.data import BatchAugment
from bal.embedding.embedder import Embedder
from bal.errors import BalError
from bal.files import atomic_torch_save, load_torch
from bal.models import BalModel
from bal.models.head import Head, standardise

__all__ = ["FORMAT", "FinetuneNet", "finetune_augment", "finetune_net", "finetuned_from_file_content",
           "is_finetuned_file", "load_finetuned", "save_finetuned"]

#: The ``format`` entry of a fine-tuned model's file.
FORMAT = "bal-finetuned"


class FinetuneNet(BalModel):
    """Logits (B, classes) of images (B, 3, S, S) normalised with the body's mean and std, any side S.

    Its features are the body's pooled rows as a head reads them (:func:`bal.models.head.standardise`
    with the buffers ``row_mean`` and ``row_std``), so the linear layer on them can start as a probe.
    """

    def __init__(self, body: nn.Module, dim: int, num_classes: int, input_size: int, interpolation: str = "bilinear"):
        super().__init__()
        self.body = body
        self.input_size = int(input_size)
        self.interpolation = interpolation
        self.register_buffer("row_mean", torch.zeros(int(dim)))
        self.register_buffer("row_std", torch.ones(int(dim)))
        self._make_head(int(dim), int(num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode=self.interpolation,
                              align_corners=False, antialias=x.shape[-1] > self.input_size)
        return standardise(self.body(x), self.row_mean, self.row_std)

    def train(self, mode: bool = True) -> "FinetuneNet":
        super().train(mode)
        for module in self.body.modules():  # keep the pretrained statistics (module docstring)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self


def finetune_net(embedder: Embedder, num_classes: int, probe: Head | None = None) -> FinetuneNet:
    """A new :class:`FinetuneNet`: a copy of ``embedder``'s pretrained network, and the linear ``probe``
    fitted on its embedding (:func:`bal.engine.head.fit_head`) as its standardisation and head; without
    one, a head drawn from torch's global generator (what a saved model's weights are loaded into)."""
    net = FinetuneNet(copy.deepcopy(embedder.model), embedder.dim, num_classes, embedder.input_size,
                      embedder.interpolation)
    if probe is not None:
        if probe.hidden or probe.last.out_features != num_classes or probe.mean.shape != net.row_mean.shape:
            raise BalError(f"a fine-tuned network starts from a linear probe of {embedder.dim} features and "
                           f"{num_classes} classes; this head has {probe.mean.shape[0]} features, "
                           f"{probe.last.out_features} classes" + (" and a hidden layer" if probe.hidden else ""))
        with torch.no_grad():
            net.row_mean.copy_(probe.mean)
            net.row_std.copy_(probe.std)
            net.head.weight.copy_(probe.last.weight)
            net.head.bias.copy_(probe.last.bias)
    return net


def finetune_augment(augment: BatchAugment, embedder: Embedder) -> BatchAugment:
    """``augment``'s crop and flip with the network's own normalisation: it sees what it was pretrained on."""
    return BatchAugment(embedder.mean, embedder.std, crop_padding=augment.crop_padding, hflip=augment.hflip)


def save_finetuned(path: str | os.PathLike, net: FinetuneNet, *, classes: list[str], embedding: dict,
                   normalisation: dict, image_size: int) -> None:
    """A fine-tuned model and what it needs to be built and fed again: the embedding's settings (as
    :meth:`bal.embedding.EmbeddingChoice.from_settings` reads them), the normalisation and image side."""
    atomic_torch_save(path, {"format": FORMAT, "classes": list(classes), "embedding": dict(embedding),
                             "normalisation": dict(normalisation), "image_size": int(image_size),
                             "model": {k: v.detach().cpu() for k, v in net.state_dict().items()}})


def is_finetuned_file(saved: object) -> bool:
    return isinstance(saved, dict) and saved.get("format") == FORMAT


def finetuned_from_file_content(saved: object, path: str | os.PathLike, redo: str,
                                embedder: Embedder) -> tuple[FinetuneNet, dict]:
    """The model of a file :func:`save_finetuned` wrote (already loaded, as data), built on ``embedder``'s
    network; and the file's other entries."""
    if not is_finetuned_file(saved):
        raise BalError(f"{path} is not a fine-tuned model saved by bal; {redo}")
    try:
        net = finetune_net(embedder, len(saved["classes"]))
        net.load_state_dict(saved["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise BalError(f"{path} does not fit the network {embedder.name} ({type(e).__name__}); {redo}") from None
    return net.eval(), {k: v for k, v in saved.items() if k != "model"}


def load_finetuned(path: str | os.PathLike, redo: str, embedder: Embedder) -> tuple[FinetuneNet, dict]:
    """:func:`finetuned_from_file_content` of the file at ``path``."""
    saved = load_torch(path, "a fine-tuned model of bal (--task_model finetune)", redo, kind="model file")
    return finetuned_from_file_content(saved, path, redo, embedder)
