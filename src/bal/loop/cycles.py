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

from bal.data import BatchAugment, ImageSet
from bal.errors import BalError
from bal.loop.state import bind_config, read_json
from bal.loop.trainer import TrainConfig, evaluate, predict, train_model
from bal.models import create_model
from bal.report import format_table, write_csv
from bal.selection import build_subpool, select_first, select_uncertain, subpool_window
from bal.utils import atomic_torch_save, atomic_write_json, atomic_write_text, derive_seed, read_lines, write_lines

log = logging.getLogger("bal")

STRATEGIES = ("bal", "random")

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
    strategy : ``"bal"`` (sliding sub-pools over the CDD order) or ``"random"``
        (uniform over all unlabelled images; the baseline).
    addendum : the sub-pool unit A in images; ``None`` means ``N // len(budgets)`` so that
        the windows of β = 1 tile the sorted list.
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


def run_cycles(
    pool: ImageSet,
    test: ImageSet,
    *,
    order: np.ndarray | None,
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
    order : int64 (N,), pool indices sorted by CDD ascending (``bal kmeans``); needed by
        ``strategy="bal"``, ignored by ``"random"``.
    out_dir : run folder (see the module docstring); ``None`` keeps everything in a
        temporary folder that is removed afterwards (no resume).
    on_cycle : called with each cycle's metrics as soon as it is finished.
    """
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="bal-") as tmp:
            return run_cycles(
                pool, test, order=order, cycle=cycle, train=train, augment=augment, net=net,
                out_dir=tmp, device=device, progress=progress, on_cycle=on_cycle,
            )
    return _Run(pool, test, order, cycle, train, augment, net, Path(out_dir), torch.device(device),
                progress, on_cycle).run()


class _Run:
    def __init__(self, pool, test, order, cycle, train, augment, net, out, device, progress, on_cycle):
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
        self.addendum = cycle.addendum if cycle.addendum is not None else max(1, n // self.n_cycles)
        if cycle.strategy == "bal":
            if order is None:
                raise BalError("strategy 'bal' needs the CDD order of the pool (run `bal kmeans` first)")
            order = np.asarray(order, dtype=np.int64)
            if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
                raise BalError(f"the sorted pool order must list each of the {n} pool images exactly once")
        self.order = order
        self.index_of = {p: i for i, p in enumerate(pool.paths)}
        self.images = torch.from_numpy(pool.images)
        self.labels = torch.from_numpy(np.asarray(pool.labels, dtype=np.int64))
        self.test_images = torch.from_numpy(test.images)
        self.n_classes = len(pool.classes)

    # -- files -----------------------------------------------------------------------
    def settings(self) -> dict:
        return {
            "net": self.net,
            "cycle": {**asdict(self.cycle), "budgets": list(self.cycle.budgets), "addendum": self.addendum},
            "train": asdict(self.train),
            "pool_size": self.n,
            "test_size": len(self.test),
            "classes": list(self.pool.classes),
            "order_head": None if self.order is None else [int(i) for i in self.order[:32]],
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
        atomic_torch_save(
            self.model_path(c),
            {"net": self.net, "num_classes": self.n_classes, "image_size": int(self.images.shape[1]),
             "classes": list(self.pool.classes), "model": model.state_dict()},
        )

    def load_model(self, c: int):
        state = torch.load(self.model_path(c), map_location="cpu", weights_only=False)
        model = create_model(self.net, num_classes=self.n_classes, image_size=int(self.images.shape[1]))
        model.load_state_dict(state["model"])
        return model

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
        k = int(self.cycle.budgets[c])
        cfg = self.cycle
        if cfg.strategy == "random":
            rng = np.random.default_rng(derive_seed(cfg.seed, "random", c))
            unlabeled = np.flatnonzero(~labeled)
            picked = np.sort(rng.choice(unlabeled, size=k, replace=False))
            return picked, {"cycle": c, "strategy": "random", "k": k}
        window = subpool_window(c, self.n_cycles, self.n, self.addendum, cfg.beta, cfg.window)
        sub = build_subpool(self.order, window, labeled, k)
        if sub.n_topped_up:
            log.warning(
                "cycle %d: the window [%d, %d) holds %d unlabelled images, fewer than the %d asked for; "
                "topped up with the %d nearest unlabelled images of the sorted list",
                c, window[0], window[1], sub.n_in_window, k, sub.n_topped_up,
            )
        if c == 0:
            rng = np.random.default_rng(derive_seed(cfg.seed, "first"))
            positions = select_first(len(sub.candidates), k, cfg.first, rng)
            rule = cfg.first
        else:
            model = self.load_model(c - 1)
            logits = predict(model, self.images, sub.candidates, self.augment, device=self.device,
                             progress=self.progress, desc=f"cycle {c} score")
            rng = np.random.default_rng(derive_seed(cfg.seed, "sampling", c))
            positions = select_uncertain(logits, k, cfg.sampling, rng)
            rule = cfg.sampling
        info = {
            "cycle": c, "strategy": "bal", "k": k, "window": [int(window[0]), int(window[1])],
            "mode": cfg.window, "beta": cfg.beta, "addendum": self.addendum, "rule": rule,
            "n_in_window": int(sub.n_in_window), "n_topped_up": int(sub.n_topped_up),
        }
        return sub.candidates[positions], info

    def run(self) -> list[dict]:
        self.out.mkdir(parents=True, exist_ok=True)
        bind_config(self.out / "config.json", self.settings(), "active-learning run")
        state_path = self.out / "state.json"
        rows: list[dict] = read_json(state_path)["cycles"] if state_path.exists() else []
        labeled_order: list[int] = self.labeled_from_file(len(rows) - 1) if rows else []
        if rows:
            log.info("resuming %s after cycle %d of %d", self.out, len(rows) - 1, self.n_cycles)
        for c in range(len(rows), self.n_cycles):
            t0 = time.perf_counter()
            labeled_file = self.out / f"labeled_{c}.txt"
            if labeled_file.exists():
                labeled_order = self.labeled_from_file(c)
                info = read_json(self.out / f"window_{c}.json")
            else:
                mask = np.zeros(self.n, dtype=bool)
                mask[labeled_order] = True
                picked, info = self.select(c, mask)
                if mask[picked].any() or len(np.unique(picked)) != len(picked):
                    raise AssertionError(f"cycle {c}: selection repeats a labelled image")  # a bug, not input
                labeled_order = labeled_order + [int(i) for i in picked]
                atomic_write_json(self.out / f"window_{c}.json", info)
                write_lines(labeled_file, [self.pool.paths[i] for i in labeled_order])
            model = self.load_model(c - 1) if c > 0 and self.cycle.warm_start else self.new_model(c)
            train_model(
                model, self.images, self.labels, np.asarray(labeled_order), self.train, self.augment,
                device=self.device, seed=self.cycle.seed, stream=("cycle", c),
                checkpoint=self.out / f"ckpt_{c}.pth", progress=self.progress, desc=f"cycle {c} train",
            )
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
            atomic_write_json(state_path, {"cycles": rows})  # the cycle's commit point
            (self.out / f"ckpt_{c}.pth").unlink(missing_ok=True)
            self.write_reports(rows)
            log.info(
                "cycle %d/%d: %d labelled (%.1f%%) -> test accuracy %.2f%% (%.0f s)",
                c, self.n_cycles - 1, row["labeled"], row["labeled_pct"], accuracy, row["seconds"],
            )
            if self.on_cycle is not None:
                self.on_cycle(row)
        self.write_reports(rows)
        return rows


def metrics_table(rows: list[dict]) -> str:
    """The per-cycle table printed at the end of ``bal train``."""
    return format_table(rows, METRIC_COLUMNS)
