"""The task models of the cycles (``--task_model``): what each cycle trains, saves, loads and reads.

- :class:`ScratchTask` (``scratch``, the paper's): a network of :mod:`bal.models` trained on
  the images from a random initialisation;
- :class:`HeadTask` (``linear``): a head on a frozen embedding's cached rows
  (:mod:`bal.engine.head`, seconds a cycle on a CPU);
- :class:`FinetuneTask` (``finetune``): a pretrained network trained on the images, its head
  starting from the linear probe of the labelled rows (:mod:`bal.embedding.finetune`).

The cycle loop (:mod:`bal.loop.cycles`) holds one of them and calls the same operations
on each, so it never asks which one it holds. Each operation takes the run (``_Run``)
for what it needs of it: the images and labels, the training settings, the device, the
seed, the run folder. ``scratch`` and ``finetune`` both train a network on the images
and share that part (:class:`_ImagesTask`); they differ in the network and its file.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from bal.embedding.choice import EmbeddingChoice
from bal.embedding.embedder import Embedder
from bal.embedding.finetune import finetune_augment, finetune_net, load_finetuned, save_finetuned
from bal.engine.head import HeadConfig, fit_head, head_outputs
from bal.engine.runtime import derive_seed
from bal.engine.trainer import accuracy_of, evaluate, predict, train_model
from bal.errors import BalError
from bal.files import array_digest
from bal.loop.pool import LabelledPool
from bal.models import create_model, load_model_file, save_model_file
from bal.models.head import Head, head_statistics, load_head, save_head

if TYPE_CHECKING:  # the loop passes itself; imported for the annotations only
    from bal.loop.cycles import _Run

__all__ = ["TASK_MODELS", "FinetuneTask", "HeadTask", "ScratchTask", "TaskModel", "last_linear"]

#: The names of ``--task_model``, in the order the CLI lists them.
TASK_MODELS = ("scratch", "linear", "finetune")


class TaskModel:
    """The operations the cycle loop calls; see the module docstring."""

    def settings(self, base: dict) -> dict:
        """The run's ``config.json`` from ``base`` (every setting but the network): what a resume must match."""
        raise NotImplementedError

    def prepare(self, run: _Run) -> None:
        """Check that this task fits the run's pool and split, and adapt the run to it (once, before any cycle)."""

    def train(self, run: _Run, c: int, labelled: LabelledPool):
        """Cycle ``c``'s model trained on every labelled image (resuming from its per-epoch checkpoint)."""
        raise NotImplementedError

    def save(self, run: _Run, model, path: str | os.PathLike) -> None:
        raise NotImplementedError

    def load(self, run: _Run, path: str | os.PathLike, redo: str):
        """The model saved at ``path``, as data only; ``redo`` says how to recover from a damaged file."""
        raise NotImplementedError

    def outputs(self, run: _Run, model, indices: np.ndarray, desc: str) -> tuple[np.ndarray, np.ndarray]:
        """``(logits, features)`` of ``model`` for the pool images ``indices``."""
        raise NotImplementedError

    def evaluate(self, run: _Run, model) -> tuple[float, np.ndarray]:
        """Accuracy (%) and per-class accuracy of ``model`` on the run's evaluated split."""
        raise NotImplementedError


class _ImagesTask(TaskModel):
    """A network trained on the images each cycle, through :func:`bal.engine.trainer.train_model`."""

    def _train_network(self, run: _Run, c: int, labelled: LabelledPool, model):
        train_model(
            model, run.images, run.labels, labelled.order, run.train, run.augment,
            device=run.device, seed=run.seed, stream=("cycle", c),
            checkpoint=run.out / f"ckpt_{c}.pth", progress=run.progress, desc=f"cycle {c} train",
        )
        return model

    def outputs(self, run: _Run, model, indices: np.ndarray, desc: str) -> tuple[np.ndarray, np.ndarray]:
        return predict(model, run.images, indices, run.augment, device=run.device, features=True,
                       progress=run.progress, desc=desc)

    def evaluate(self, run: _Run, model) -> tuple[float, np.ndarray]:
        return evaluate(model, run.test_images, run.test.labels, run.augment, run.n_classes, device=run.device)


@dataclass
class ScratchTask(_ImagesTask):
    """The task model of ``--task_model scratch`` (the paper's): ``net`` trained on the images from scratch."""

    net: str = "vgg16"

    def settings(self, base: dict) -> dict:
        return {"net": self.net, **base}

    def train(self, run: _Run, c: int, labelled: LabelledPool):
        if c > 0 and run.warm_start:
            model = run.load_model(c - 1)
        else:
            # Each cycle's initialisation is its own random stream, so --reinit runs are
            # reproducible cycle by cycle and resumable.
            torch.manual_seed(derive_seed(run.seed, "init", c if not run.warm_start else 0))
            model = create_model(self.net, num_classes=run.n_classes, image_size=int(run.images.shape[1]))
        return self._train_network(run, c, labelled, model)

    def save(self, run: _Run, model, path: str | os.PathLike) -> None:
        save_model_file(path, model, net=self.net, image_size=int(run.images.shape[1]),
                        normalisation=run.augment.state(), classes=list(run.pool.classes))

    def load(self, run: _Run, path: str | os.PathLike, redo: str):
        return load_model_file(path, redo)[0]


@dataclass
class FinetuneTask(_ImagesTask):
    """The task model of ``--task_model finetune`` (:mod:`bal.embedding.finetune`): the pretrained network of
    ``choice`` trained on the images each cycle with the run's training settings, its head starting from
    the linear probe (``config``) fitted on ``pool``, the embedding's rows of the pool, at the labelled
    images. Every cycle starts again from the pretrained weights (the run's ``warm_start`` is not read).
    Each cycle's model file carries ``choice.settings()``, so it says which network it is."""

    choice: EmbeddingChoice
    pool: np.ndarray
    config: HeadConfig = field(default_factory=HeadConfig)
    # the pool rows' mean and spread, which the probe and the network standardise with (set by prepare)
    _statistics: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def embedder(self) -> Embedder:
        return self.choice.embedder()  # built once, memoised by the choice

    def settings(self, base: dict) -> dict:
        return {"task_model": {"finetune": self.embedder.identity(), "probe": asdict(self.config),
                               "pool": array_digest(self.pool)},
                **{k: v for k, v in base.items() if k != "warm_start"}}

    def prepare(self, run: _Run) -> None:
        if self.config.hidden:
            raise BalError(f"task_model finetune starts from a linear probe; a head with a hidden layer "
                           f"({self.config.hidden}) is for task_model linear")
        if len(self.pool) != run.n:
            raise BalError(f"the embedding {self.choice.name} has {len(self.pool)} pool rows, for {run.n} images")
        self._statistics = head_statistics(self.pool)
        run.augment = finetune_augment(run.augment, self.embedder)  # the network's own mean and std

    def train(self, run: _Run, c: int, labelled: LabelledPool):
        probe = _head_on_rows(run, c, labelled, self.pool, self.config, self._statistics)  # linear's head of cycle c
        return self._train_network(run, c, labelled, finetune_net(self.embedder, run.n_classes, probe))

    def save(self, run: _Run, model, path: str | os.PathLike) -> None:
        save_finetuned(path, model, classes=list(run.pool.classes), embedding=self.choice.settings(),
                       normalisation=run.augment.state(), image_size=int(run.images.shape[1]))

    def load(self, run: _Run, path: str | os.PathLike, redo: str):
        return load_finetuned(path, redo, self.embedder)[0]


@dataclass
class HeadTask(TaskModel):
    """The task model of ``--task_model linear``: a head on a frozen embedding (:mod:`bal.engine.head`).

    ``pool`` and ``test`` are the embedding's rows for the pool and the evaluated split, in
    their image order; ``name`` identifies the embedding (recorded with the run's settings).
    """

    pool: np.ndarray
    test: np.ndarray
    name: str
    config: HeadConfig = field(default_factory=HeadConfig)
    # the pool rows' mean and spread, which every cycle's head standardises with (set by prepare)
    _statistics: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    def settings(self, base: dict) -> dict:
        # no network, no epochs, no warm start: a head is fitted afresh on the rows each cycle
        return {"task_model": {"head": asdict(self.config), "embedding": self.name, "pool": array_digest(self.pool)},
                **{k: v for k, v in base.items() if k not in ("warm_start", "train")}}

    def prepare(self, run: _Run) -> None:
        if len(self.pool) != run.n or len(self.test) != len(run.test):
            raise BalError(f"the embedding {self.name} has {len(self.pool)} pool and {len(self.test)} "
                           f"{run.split_name} rows, for {run.n} and {len(run.test)} images")
        self._statistics = head_statistics(self.pool)

    def train(self, run: _Run, c: int, labelled: LabelledPool):
        return _head_on_rows(run, c, labelled, self.pool, self.config, self._statistics)

    def save(self, run: _Run, model, path: str | os.PathLike) -> None:
        save_head(path, model, classes=list(run.pool.classes), embedding={"embedding": self.name})

    def load(self, run: _Run, path: str | os.PathLike, redo: str):
        return load_head(path, redo)[0]

    def outputs(self, run: _Run, model, indices: np.ndarray, desc: str) -> tuple[np.ndarray, np.ndarray]:
        return head_outputs(model, self.pool, indices)

    def evaluate(self, run: _Run, model) -> tuple[float, np.ndarray]:
        logits, _ = head_outputs(model, self.test, np.arange(len(self.test)))
        return accuracy_of(logits, run.test.labels, run.n_classes)


def _head_on_rows(run: _Run, c: int, labelled: LabelledPool, rows: np.ndarray, config: HeadConfig,
                  statistics: tuple[np.ndarray, np.ndarray] | None) -> Head:
    """Cycle ``c``'s head on the embedding ``rows`` of the labelled images, drawn from the cycle's stream: the
    model of ``linear``, and the probe ``finetune`` starts from (the same head, for the same run)."""
    return fit_head(rows, run.pool.labels, labelled.order, classes=run.n_classes, config=config, seed=run.seed,
                    stream=("cycle", c), statistics=statistics)


def last_linear(model) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` of a task model's last linear layer, the one applied to the features its outputs give."""
    layer = model.last if isinstance(model, Head) else model.head
    return (layer.weight.detach().float().cpu().numpy(), layer.bias.detach().float().cpu().numpy())
