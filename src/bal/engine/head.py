"""Fitting a head on a frozen embedding (``--task_model linear``): seconds per cycle on a CPU.

The objective is multinomial logistic regression as scikit-learn states it, ``C`` times
the summed cross-entropy of the labelled rows plus half the squared norm of the
weights (biases free), minimised to convergence by full-batch L-BFGS in float64. It is
convex for a linear head, so the result does not depend on where it starts, on the
order of the rows, or on how many labels came before: no epochs, no learning rate, no
batch whose size could leave a short tail. With ``hidden`` > 0 the same objective
trains a one-hidden-layer MLP from a seeded start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bal.engine.runtime import derive_seed
from bal.models.head import Head, head_statistics
from bal.validation import check_int, check_real

__all__ = ["HeadConfig", "fit_head", "head_outputs"]


@dataclass(frozen=True)
class HeadConfig:
    """``C``: inverse regularisation strength (scikit-learn's); ``hidden``: 0 for a linear head."""

    C: float = 1.0
    hidden: int = 0
    max_iter: int = 500

    def __post_init__(self) -> None:
        check_real("C", self.C, low=0, low_open=True)
        check_int("hidden", self.hidden, 0)
        check_int("max_iter", self.max_iter, 1)


def fit_head(features: np.ndarray, labels: np.ndarray, indices: np.ndarray, *, classes: int,
             config: HeadConfig = HeadConfig(), seed: int = 0, stream: tuple = (),
             statistics: tuple[np.ndarray, np.ndarray] | None = None) -> Head:
    """A :class:`Head` fitted on rows ``indices`` of ``features`` (N, D) with ``labels[indices]``.

    ``statistics`` are the pool's (:func:`head_statistics`); computed from ``features``
    when not given. ``seed`` and ``stream`` fix an MLP's starting weights.
    """
    mean, std = statistics if statistics is not None else head_statistics(features)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "head", *stream))
        head = Head(features.shape[1], classes, config.hidden, mean, std).double()
    if not config.hidden:  # convex: start at zero, so the seed plays no part
        torch.nn.init.zeros_(head.last.weight)
        torch.nn.init.zeros_(head.last.bias)
    idx = np.asarray(indices, dtype=np.int64)
    x = head.inputs(torch.from_numpy(np.asarray(features[np.sort(idx)], dtype=np.float64))).detach()
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64)[np.sort(idx)])
    weights = [p for name, p in head.named_parameters() if name.endswith("weight")]
    optimiser = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=config.max_iter,
                                  tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = config.C * F.cross_entropy(head.last(head.body(x)), y, reduction="sum")
        loss = loss + 0.5 * sum((w**2).sum() for w in weights)
        loss.backward()
        return loss

    if len(idx):
        optimiser.step(closure)
    with torch.no_grad():  # softmax ignores a shift shared by every logit: fix the free bias to sum 0
        head.last.bias -= head.last.bias.mean()
    return head.float().eval()


@torch.inference_mode()
def head_outputs(head: Head, features: np.ndarray, indices: np.ndarray, rows: int = 8192
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(logits (M, C), features (M, D))`` of the head for rows ``indices``: what uncertainty rules, BADGE
    and core-set read of a task model. The features are those its last linear layer reads: the
    standardised embedding for a linear head, the hidden activations for an MLP."""
    logits, inputs = [], []
    idx = np.asarray(indices, dtype=np.int64)
    for start in range(0, len(idx), rows):
        x = head.features(torch.from_numpy(np.asarray(features[idx[start : start + rows]], dtype=np.float32)))
        inputs.append(x.numpy())
        logits.append(head.last(x).numpy())
    if not logits:
        return (np.zeros((0, head.last.out_features), np.float32),
                np.zeros((0, head.last.in_features), np.float32))
    return np.concatenate(logits), np.concatenate(inputs)
