"""Step 3: the active-learning cycles (METHOD.md, step 3).

Each cycle selects ``k_c`` new images, trains the task model on every labelled image,
evaluates it on the test split after the last epoch, and records the result. The run
folder holds, per cycle ``c``:

- ``window_{c}.json``: the sub-pool window and how the selection was made;
- ``labeled_{c}.txt``: every labelled image path so far (the selection's commit point);
- ``model_{c}.pth``: the task model after the last epoch;
- ``state.json``: the metrics of every finished cycle (the cycle's commit point),
  from which ``metrics.jsonl`` and ``metrics.csv`` are rewritten.

A killed run started again picks up at the first unfinished cycle, re-using a
committed selection and the last epoch checkpoint (``ckpt_{c}.pth``), and ends with
the same selections and metrics as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from bal import distributed
from bal.data import BatchAugment, ImageSet
from bal.errors import BalError
from bal.loop.state import bind_config, read_json
from bal.loop.trainer import TrainConfig, evaluate, predict, train_model
from bal.models import create_model, load_model_file, save_model_file
from bal.report import format_table, write_csv
from bal.selection.strategies import STRATEGY_NAMES, Pretext, SelectionContext, Strategy, make_strategy
from bal.utils import atomic_write_json, atomic_write_text, derive_seed, read_lines, write_lines

log = logging.getLogger("bal")

STRATEGIES = STRATEGY_NAMES

METRIC_COLUMNS = [
    ("cycle", "cycle", "d"),
    ("labeled", "labelled", "d"),
    ("labeled_pct", "% pool", ".1f"),
    ("accuracy", "test acc %", ".2f"),
    ("seconds", "seconds", ".1f"),
]


@dataclass(frozen=True)
class CycleConfig:
    """How the cycles select images.

    budgets : new labels per cycle, ``k_c`` (see :func:`bal.presets.budgets_from_percentages`).
    strategy : a name of :data:`bal.selection.strategies.STRATEGY_NAMES`: ``"bal"``
        (sliding sub-pools over the CDD order), ``"random"``, ``"pt4al"``, the baselines...
    addendum : the sub-pool unit A in images; ``None`` means the per-cycle size (the most
        common one when cycles differ), as the authors' reference does.
    beta : sub-pool width factor β (window width β·A).
    window : ``"centred"`` (intended) or ``"released"`` (the authors' code).
    first, sampling : the cycle-0 rule and the uncertainty rule of later cycles.
    warm_start : start each cycle from the previous cycle's weights (fresh optimizer),
        or from a new random initialisation.
    """

    budgets: Sequence[int]
    strategy: str = "bal"
    addendum: int | None = None
    beta: float = 1.0
    window: str = "centred"
    first: str = "high1st"
    sampling: str = "confidence"
    warm_start: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise BalError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if not self.budgets:
            raise BalError("no cycles to run: the budget list is empty")

    def make_strategy(self) -> Strategy:
        return make_strategy(self.strategy, beta=self.beta, window=self.window, first=self.first,
                             sampling=self.sampling, addendum=self.addendum)


def run_cycles(
    pool: ImageSet,
    test: ImageSet,
    *,
    order: np.ndarray | None = None,
    pretext: Pretext | None = None,
    cycle: CycleConfig,
    train: TrainConfig,
    augment: BatchAugment,
    net: str = "vgg16",
    out_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    on_cycle: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run every cycle and return one metrics dict per cycle.

    Parameters
    ----------
    pool, test : the unlabelled pool (its labels play the oracle) and the test split.
    order : int64 (N,), pool indices sorted by CDD ascending (``bal kmeans``): a shorthand
        for ``pretext=Pretext(order=order)``.
    pretext : the step-1/2 artifacts the strategy reads (BAL: ``order``; PT4AL:
        ``losses``; TypiClust: ``features``).
    out_dir : run folder (see the module docstring); ``None`` keeps everything in a
        temporary folder that is removed afterwards (no resume).
    on_cycle : called with each cycle's metrics as soon as it is finished.
    """
    if out_dir is None:
        if distributed.info().enabled:
            raise BalError("under torchrun the cycles need an output folder (--save) that every rank sees")
        with tempfile.TemporaryDirectory(prefix="bal-") as tmp:
            return run_cycles(
                pool, test, order=order, pretext=pretext, cycle=cycle, train=train, augment=augment, net=net,
                out_dir=tmp, device=device, progress=progress, on_cycle=on_cycle,
            )
    if pretext is None:
        pretext = Pretext(order=order)
    return _Run(pool, test, pretext, cycle, train, augment, net, Path(out_dir), torch.device(device),
                progress, on_cycle).run()


class _Run:
    def __init__(self, pool, test, pretext, cycle, train, augment, net, out, device, progress, on_cycle):
        self.pool, self.test, self.cycle, self.train = pool, test, cycle, train
        self.augment, self.net, self.out, self.device = augment, net, out, device
        self.progress, self.on_cycle = progress, on_cycle
        n = len(pool)
        self.n = n
        self.n_cycles = len(cycle.budgets)
        if sum(cycle.budgets) > n:
            raise BalError(f"the cycles ask for {sum(cycle.budgets)} labels, more than the pool of {n} images")
        if list(test.classes) != list(pool.classes):
            raise BalError(f"the test split's classes {test.classes} differ from the pool's {pool.classes}")
        self.strategy = cycle.make_strategy()
        self.pretext = _checked_pretext(pretext, self.strategy, n)
        self.index_of = {p: i for i, p in enumerate(pool.paths)}
        self.images = torch.from_numpy(pool.images)
        self.labels = torch.from_numpy(np.asarray(pool.labels, dtype=np.int64))
        self.test_images = torch.from_numpy(test.images)
        self.n_classes = len(pool.classes)

    # -- files -----------------------------------------------------------------------
    def settings(self) -> dict:
        return {
            "net": self.net,
            "cycle": {**asdict(self.cycle), "budgets": list(self.cycle.budgets)},
            "strategy": self.strategy.settings(),
            "train": asdict(self.train),
            "pool_size": self.n,
            "test_size": len(self.test),
            "classes": list(self.pool.classes),
            "pretext": {name: _digest(getattr(self.pretext, name)) for name in sorted(self.strategy.needs)},
        }

    def labeled_from_file(self, c: int) -> list[int]:
        path = self.out / f"labeled_{c}.txt"
        paths = read_lines(path)
        try:
            return [self.index_of[p] for p in paths]
        except KeyError as e:
            raise BalError(f"{path} names {e.args[0]!r}, which is not in the pool") from None

    def model_path(self, c: int) -> Path:
        return self.out / f"model_{c}.pth"

    def save_model(self, model, c: int) -> None:
        save_model_file(self.model_path(c), model, net=self.net, image_size=int(self.images.shape[1]),
                        classes=list(self.pool.classes))

    def load_model(self, c: int):
        return load_model_file(self.model_path(c))[0]

    def new_model(self, c: int):
        # Each cycle's initialisation is its own random stream, so --reinit runs are
        # reproducible cycle by cycle and resumable.
        torch.manual_seed(derive_seed(self.cycle.seed, "init", c if not self.cycle.warm_start else 0))
        return create_model(self.net, num_classes=self.n_classes, image_size=int(self.images.shape[1]))

    def write_reports(self, rows: list[dict]) -> None:
        atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        write_csv(self.out / "metrics.csv", rows, [k for k, _, _ in METRIC_COLUMNS] + ["strategy"])

    # -- one cycle ---------------------------------------------------------------------
    def select(self, c: int, labeled: np.ndarray) -> tuple[np.ndarray, dict]:
        outputs = None
        if c > 0:
            model = self.load_model(c - 1)

            def outputs(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                return predict(model, self.images, indices, self.augment, device=self.device, features=True,
                               progress=self.progress, desc=f"cycle {c} score")

        ctx = SelectionContext(
            cycle=c, budgets=list(self.cycle.budgets), labeled=labeled,
            rng=np.random.default_rng(derive_seed(self.cycle.seed, "select", c)),
            pretext=self.pretext, outputs=outputs,
        )
        picked, info = self.strategy.select(ctx)
        picked = np.asarray(picked, dtype=np.int64)
        if len(picked) != ctx.k or labeled[picked].any() or len(np.unique(picked)) != len(picked):
            # a strategy bug, never bad input: refuse to write a wrong selection
            raise AssertionError(f"cycle {c}: {self.strategy.name} returned an invalid selection")
        if info.get("n_topped_up"):
            log.warning(
                "cycle %d: the window [%d, %d) holds %d unlabelled images, fewer than the %d asked for; "
                "topped up with the %d nearest unlabelled images of the sorted list",
                c, *info["window"], info["n_in_window"], ctx.k, info["n_topped_up"],
            )
        return picked, {"cycle": c, "strategy": self.strategy.name, "k": ctx.k, **info}

    def run(self) -> list[dict]:
        self.out.mkdir(parents=True, exist_ok=True)
        bind_config(self.out / "config.json", self.settings(), "active-learning run")
        state_path = self.out / "state.json"
        rows: list[dict] = read_json(state_path)["cycles"] if state_path.exists() else []
        labeled_order: list[int] = self.labeled_from_file(len(rows) - 1) if rows else []
        if rows:
            log.info("resuming %s after cycle %d of %d", self.out, len(rows) - 1, self.n_cycles)
        main = distributed.is_main()
        for c in range(len(rows), self.n_cycles):
            t0 = time.perf_counter()
            if main:  # rank 0 selects (or re-reads a committed selection); the others are told
                labeled_file = self.out / f"labeled_{c}.txt"
                if labeled_file.exists():
                    labeled_order = self.labeled_from_file(c)
                    info = read_json(self.out / f"window_{c}.json")
                else:
                    mask = np.zeros(self.n, dtype=bool)
                    mask[labeled_order] = True
                    picked, info = self.select(c, mask)
                    labeled_order = labeled_order + [int(i) for i in picked]
                    atomic_write_json(self.out / f"window_{c}.json", info)
                    write_lines(labeled_file, [self.pool.paths[i] for i in labeled_order])
            labeled_order, info = distributed.broadcast((labeled_order, info) if main else None)
            model = self.load_model(c - 1) if c > 0 and self.cycle.warm_start else self.new_model(c)
            train_model(
                model, self.images, self.labels, np.asarray(labeled_order), self.train, self.augment,
                device=self.device, seed=self.cycle.seed, stream=("cycle", c),
                checkpoint=self.out / f"ckpt_{c}.pth", progress=self.progress, desc=f"cycle {c} train",
            )
            row = self.finish_cycle(c, model, labeled_order, info, t0, rows) if main else None
            row = distributed.broadcast(row)  # also: model_{c}.pth is on disk before any rank reads it
            if not main:
                rows.append(row)
            elif self.on_cycle is not None:
                self.on_cycle(row)
        if main:
            self.write_reports(rows)
        return rows

    def finish_cycle(self, c: int, model, labeled_order: list[int], info: dict, t0: float, rows: list[dict]) -> dict:
        """Evaluate, save the model, and commit the cycle (rank 0 only)."""
        accuracy, per_class = evaluate(
            model, self.test_images, self.test.labels, self.augment, self.n_classes, device=self.device
        )
        self.save_model(model, c)
        row = {
            "cycle": c,
            "strategy": self.cycle.strategy,
            "labeled": len(labeled_order),
            "labeled_pct": 100.0 * len(labeled_order) / self.n,
            "accuracy": accuracy,
            "per_class_accuracy": {
                name: (None if np.isnan(v) else float(v)) for name, v in zip(self.pool.classes, per_class)
            },
            "selection": info,
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        atomic_write_json(self.out / "state.json", {"cycles": rows})  # the cycle's commit point
        (self.out / f"ckpt_{c}.pth").unlink(missing_ok=True)
        self.write_reports(rows)
        log.info(
            "cycle %d/%d: %d labelled (%.1f%%) -> test accuracy %.2f%% (%.0f s)",
            c, self.n_cycles - 1, row["labeled"], row["labeled_pct"], accuracy, row["seconds"],
        )
        return row



def _checked_pretext(pretext: Pretext, strategy: Strategy, n: int) -> Pretext:
    what = {"order": "the CDD order of the pool (`bal kmeans`)",
            "losses": "the rotation losses of the pool (`bal rotation`)",
            "features": "the rotation features of the pool (`bal rotation`)"}
    for name in sorted(strategy.needs):
        value = getattr(pretext, name)
        if value is None:
            raise BalError(f"strategy {strategy.name!r} needs {what[name]}")
        if len(value) != n:
            raise BalError(f"the pretext {name} has {len(value)} rows, but the pool holds {n} images")
    if "order" in strategy.needs:
        order = np.asarray(pretext.order, dtype=np.int64)
        if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
            raise BalError(f"the sorted pool order must list each of the {n} pool images exactly once")
    return pretext


def _digest(array: np.ndarray | None) -> str | None:
    if array is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def metrics_table(rows: list[dict]) -> str:
    """The per-cycle table printed at the end of ``bal train``."""
    return format_table(rows, METRIC_COLUMNS)
