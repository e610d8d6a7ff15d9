"""Query strategies: which images each cycle labels.

A strategy is a small object with one method, ``select(ctx) -> (pool indices, info)``.
The loop hands it a :class:`SelectionContext`: the labelled mask, the budget, a seeded
generator, the pretext artifacts, and lazy access to the previous cycle's model. The
rules themselves are the pure functions of :mod:`bal.selection`, so each strategy is a
few lines and every rule is tested without training a network.

All strategies draw from the same per-cycle random stream, so for one seed every
strategy that starts at random (``cycle0 == "random"``) labels the same images in
cycle 0: the comparison starts from a common initial set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bal.errors import BalError
from bal.selection.baselines import badge_select, kcenter_greedy, typiclust_select
from bal.selection.first import select_first
from bal.selection.subpool import build_subpool, subpool_window
from bal.selection.uncertainty import select_uncertain

#: Every strategy ``make_strategy`` knows, in the order tables list them.
STRATEGY_NAMES = (
    "random", "confidence", "margin", "entropy", "coreset", "badge", "typiclust",
    "pt4al", "bal", "bal-released", "bal-fix",
)


@dataclass
class Pretext:
    """Step-1 and step-2 artifacts, in pool order (any may be ``None`` when unused)."""

    features: np.ndarray | None = None  # float (N, D), rotation network, upright images
    losses: np.ndarray | None = None  # float (N,), mean rotation loss
    order: np.ndarray | None = None  # int64 (N,), pool indices by CDD ascending


def default_addendum(budgets) -> int:
    """The sub-pool unit A when none is given: the per-cycle size, as in the authors' reference.

    When cycles label different amounts (the base regime: 10 % then 5 % each), the most
    common size is used, the later one on a tie.
    """
    counts: dict[int, int] = {}
    for k in budgets:
        counts[int(k)] = counts.get(int(k), 0) + 1
    best = max(counts.values())
    return [int(k) for k in budgets if counts[int(k)] == best][-1]


@dataclass
class SelectionContext:
    """What a strategy may look at in one cycle.

    ``outputs(indices)`` returns ``(logits (M, C), features (M, D))`` of the previous
    cycle's task model for those pool indices; it is ``None`` in cycle 0.
    """

    cycle: int
    budgets: Sequence[int]  # new labels per cycle, all cycles
    labeled: np.ndarray  # bool (N,)
    rng: np.random.Generator
    pretext: Pretext = field(default_factory=Pretext)
    outputs: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def k(self) -> int:
        return int(self.budgets[self.cycle])

    @property
    def n_cycles(self) -> int:
        return len(self.budgets)

    @property
    def unlabeled(self) -> np.ndarray:
        return np.flatnonzero(~self.labeled)


class Strategy:
    """Base class. ``cycle0`` says in words what the strategy does before any model exists."""

    name: str = ""
    cycle0: str = "random"
    needs: frozenset[str] = frozenset()  # pretext fields it reads: "features", "losses", "order"

    def select(self, ctx: SelectionContext) -> tuple[np.ndarray, dict]:
        if ctx.outputs is None and self.cycle0 == "random":
            return random_pick(ctx), {"rule": "random (cycle 0)"}
        return self.select_with_model(ctx)

    def select_with_model(self, ctx: SelectionContext) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def settings(self) -> dict:
        return {"name": self.name}


def random_pick(ctx: SelectionContext) -> np.ndarray:
    return np.sort(ctx.rng.choice(ctx.unlabeled, size=ctx.k, replace=False))


class RandomStrategy(Strategy):
    name = "random"

    def select_with_model(self, ctx):
        return random_pick(ctx), {"rule": "random"}


class UncertaintyStrategy(Strategy):
    """The k most uncertain unlabelled images of the whole pool (confidence, margin, entropy)."""

    def __init__(self, rule: str):
        self.name = self.rule = rule

    def select_with_model(self, ctx):
        candidates = ctx.unlabeled
        logits, _ = ctx.outputs(candidates)
        return candidates[select_uncertain(logits, ctx.k, self.rule, ctx.rng)], {"rule": self.rule}


class CoresetStrategy(Strategy):
    """Greedy k-center on the task model's features (Sener and Savarese, ICLR 2018)."""

    name = "coreset"

    def select_with_model(self, ctx):
        _, features = ctx.outputs(np.arange(len(ctx.labeled)))
        return kcenter_greedy(features, ctx.labeled, ctx.unlabeled, ctx.k), {"rule": "k-center greedy"}


class BadgeStrategy(Strategy):
    """k-means++ seeding on last-layer gradient embeddings (Ash et al., ICLR 2020)."""

    name = "badge"

    def select_with_model(self, ctx):
        candidates = ctx.unlabeled
        logits, features = ctx.outputs(candidates)
        return candidates[badge_select(logits, features, ctx.k, ctx.rng)], {"rule": "badge"}


class TypiclustStrategy(Strategy):
    """Most typical image of the least-covered cluster of the pretext features (Hacohen et al., ICML 2022).

    Needs no task model, so it runs the same rule in cycle 0 (its point: low budgets).
    """

    name = "typiclust"
    cycle0 = "typiclust (no model needed)"
    needs = frozenset({"features"})

    def select(self, ctx):
        picked = typiclust_select(ctx.pretext.features, ctx.labeled, ctx.k, ctx.rng)
        return np.asarray(picked, dtype=np.int64), {"rule": "typiclust"}


class SubPoolStrategy(Strategy):
    """BAL and PT4AL: a window slides along a fixed order of the pool (METHOD.md, step 3).

    ``order_by="cdd"`` is BAL (CDD ascending); ``order_by="rotation_loss"`` is PT4AL
    (rotation loss descending, β = 1, cycle 0 evenly spaced over the first batch).
    ``addendum=None`` means :func:`default_addendum` for BAL and ``N // cycles`` for
    PT4AL, whose C batches split the whole sorted pool.
    """

    def __init__(self, name: str, *, order_by: str = "cdd", beta: float = 1.0, window: str = "centred",
                 first: str = "high1st", sampling: str = "confidence", addendum: int | None = None):
        self.name, self.order_by, self.beta, self.window = name, order_by, beta, window
        self.first, self.sampling, self.addendum = first, sampling, addendum
        self.cycle0 = f"{first} over the first window"
        self.needs = frozenset({"order"} if order_by == "cdd" else {"losses"})

    def settings(self) -> dict:
        return {"name": self.name, "order_by": self.order_by, "beta": self.beta, "window": self.window,
                "first": self.first, "sampling": self.sampling, "addendum": self.addendum}

    def order(self, pretext: Pretext) -> np.ndarray:
        if self.order_by == "cdd":
            return pretext.order
        return np.argsort(-np.asarray(pretext.losses, dtype=np.float64), kind="stable")

    def select(self, ctx):
        n = len(ctx.labeled)
        addendum = self.addendum
        if addendum is None:
            addendum = max(1, n // ctx.n_cycles) if self.order_by == "rotation_loss" else default_addendum(ctx.budgets)
        window = subpool_window(ctx.cycle, ctx.n_cycles, n, addendum, self.beta, self.window)
        sub = build_subpool(self.order(ctx.pretext), window, ctx.labeled, ctx.k)
        if ctx.outputs is None:
            positions = select_first(len(sub.candidates), ctx.k, self.first, ctx.rng)
            rule = self.first
        else:
            logits, _ = ctx.outputs(sub.candidates)
            positions = select_uncertain(logits, ctx.k, self.sampling, ctx.rng)
            rule = self.sampling
        info = {
            "rule": rule, "window": [int(window[0]), int(window[1])], "mode": self.window, "beta": self.beta,
            "addendum": addendum, "n_in_window": int(sub.n_in_window), "n_topped_up": int(sub.n_topped_up),
        }
        return sub.candidates[positions], info


def make_strategy(
    name: str,
    *,
    beta: float = 1.0,
    window: str = "centred",
    first: str = "high1st",
    sampling: str = "confidence",
    addendum: int | None = None,
) -> Strategy:
    """The strategy called ``name`` (see :data:`STRATEGY_NAMES`).

    ``beta``, ``window``, ``first``, ``sampling`` and ``addendum`` configure ``bal``;
    ``bal-released`` is ``bal`` with the released code's windows, ``bal-fix`` is ``bal``
    with fixed consecutive sub-pools (β = 1), and ``pt4al`` follows METHOD.md's PT4AL.
    """
    if name == "random":
        return RandomStrategy()
    if name in ("confidence", "margin", "entropy"):
        return UncertaintyStrategy(name)
    if name == "coreset":
        return CoresetStrategy()
    if name == "badge":
        return BadgeStrategy()
    if name == "typiclust":
        return TypiclustStrategy()
    if name == "pt4al":
        return SubPoolStrategy("pt4al", order_by="rotation_loss", beta=1.0, first="uni", sampling="confidence",
                               addendum=addendum)
    if name == "bal":
        return SubPoolStrategy("bal", beta=beta, window=window, first=first, sampling=sampling, addendum=addendum)
    if name == "bal-released":
        return SubPoolStrategy("bal-released", beta=beta, window="released", first=first, sampling=sampling,
                               addendum=addendum)
    if name == "bal-fix":
        return SubPoolStrategy("bal-fix", beta=1.0, window="centred", first=first, sampling=sampling,
                               addendum=addendum)
    raise BalError(f"--strategy must be one of {', '.join(STRATEGY_NAMES)}, got {name!r}")
