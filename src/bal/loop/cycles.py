"""Step 3: the active-learning cycles (docs/method.md, step 3).

:func:`select_cycle` is one cycle's selection, the same for a run folder, a benchmark,
the API and a labelling project. :func:`run_cycles` runs every cycle of a simulation:
it selects ``k_c`` new images, trains the task model on every labelled image,
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
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from bal.data import BatchAugment, ImageSet
from bal.engine import runtime
from bal.engine.runfolder import bind_config, bind_content
from bal.engine.runtime import derive_seed
from bal.engine.trainer import TrainConfig
from bal.errors import BalError
from bal.files import (
    array_digest,
    atomic_write_json,
    atomic_write_text,
    held_lock,
    read_json,
    read_lines,
    write_csv,
    write_lines,
)
from bal.loop.pool import LabelledPool
from bal.loop.tasks import TASK_MODELS, FinetuneTask, HeadTask, ScratchTask, TaskModel, last_linear
from bal.selection.strategies import Pretext, SelectionContext, Strategy

__all__ = ["METRIC_COLUMNS", "TASK_MODELS", "FinetuneTask", "HeadTask", "Outputs", "ScratchTask", "TaskModel",
           "last_linear", "run_cycles", "select_cycle"]

log = logging.getLogger("bal")

#: outputs(indices) -> (logits (M, C), features (M, D)) of the previous cycle's model
Outputs = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

#: Per-cycle metrics columns: (key, header, format) for tables; the keys for CSV files.
METRIC_COLUMNS = [
    ("cycle", "cycle", "d"),
    ("labelled", "labelled", "d"),
    ("labelled_pct", "% pool", ".1f"),
    ("accuracy", "test acc %", ".2f"),
    ("seconds", "seconds", ".1f"),
]

_PRETEXT_NEEDS = {"order": "the CDD order of the pool (`bal kmeans`)",
                  "losses": "the rotation losses of the pool (`bal rotation`)",
                  "features": "the rotation features of the pool (`bal rotation`)"}


def class_balance(labels: np.ndarray, n_classes: int) -> tuple[list[int], float]:
    """Images per class and the normalised entropy of that distribution (1 = balanced, 0 = one class)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)
    p = counts[counts > 0] / max(1, counts.sum())
    entropy = float(-(p * np.log(p)).sum() / np.log(n_classes)) if n_classes > 1 and counts.sum() else 0.0
    return counts.tolist(), entropy


def check_pretext(pretext: Pretext, strategy: Strategy, n: int) -> Pretext:
    """Refuse a pretext that lacks what ``strategy`` reads, or that is not of this pool of ``n``."""
    for name in sorted(strategy.needs):
        value = getattr(pretext, name)
        if value is None:
            raise BalError(f"strategy {strategy.name!r} needs {_PRETEXT_NEEDS[name]}")
        if len(value) != n:
            raise BalError(f"the pretext {name} has {len(value)} rows, but the pool holds {n} images")
    if "order" in strategy.needs:
        order = np.asarray(pretext.order, dtype=np.int64)
        if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
            raise BalError(f"the sorted pool order must list each of the {n} pool images exactly once")
    return pretext


def select_cycle(
    strategy: Strategy,
    pool: LabelledPool,
    cycle: int,
    budgets: Sequence[int],
    *,
    pretext: Pretext,
    outputs: Outputs | None,
    seed: int,
    n_classes: int | None = None,
    classifier: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, dict]:
    """One cycle's selection: ``budgets[cycle]`` unlabelled pool indices, and how they were chosen.

    The strategy draws from the stream ``derive_seed(seed, "select", cycle)``, shared by
    every strategy, so for one seed every strategy that starts at random starts from
    the same images. ``outputs`` is the previous cycle's model (None before any model).
    The selection is checked (size, no repeats, nothing labelled twice) before it is
    returned: a wrong one is a bug, never recorded.
    """
    ctx = SelectionContext(
        cycle=cycle, budgets=list(budgets), labelled=pool.labelled.copy(),
        rng=np.random.default_rng(derive_seed(seed, "select", cycle)), pretext=pretext, outputs=outputs,
        n_classes=n_classes, classifier=classifier,
    )
    picked, info = strategy.select(ctx)
    picked = np.asarray(picked, dtype=np.int64)
    if len(picked) != ctx.k or ctx.labelled[picked].any() or len(np.unique(picked)) != len(picked):
        # a strategy bug, never bad input: refuse to write a wrong selection
        raise AssertionError(f"cycle {cycle}: {strategy.name} returned an invalid selection")
    if info.get("n_topped_up"):
        log.warning(
            "cycle %d: the window [%d, %d) holds %d unlabelled images, fewer than the %d asked for; "
            "topped up with the %d nearest unlabelled images of the sorted list",
            cycle, *info["window"], info["n_in_window"], ctx.k, info["n_topped_up"],
        )
    return picked, {"cycle": cycle, "strategy": strategy.name, "k": ctx.k, **info}


def run_cycles(
    pool: ImageSet,
    test: ImageSet,
    *,
    strategy: Strategy,
    budgets: Sequence[int],
    pretext: Pretext | None = None,
    train: TrainConfig,
    augment: BatchAugment,
    net: str = "vgg16",
    warm_start: bool = True,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    on_cycle: Callable[[dict], None] | None = None,
    split_name: str = "test",
    task: TaskModel | None = None,
) -> list[dict]:
    """Run every cycle and return one metrics dict per cycle.

    Parameters
    ----------
    pool, test : the unlabelled pool (its labels play the oracle) and the test split.
    strategy : from :func:`bal.selection.create_strategy`.
    budgets : new labels per cycle, ``k_c`` (see :func:`bal.data.budgets_from_percentages`).
    pretext : the step-1/2 artifacts the strategy reads (BAL: ``order``; PT4AL:
        ``losses``; TypiClust: ``features``).
    warm_start : start each cycle from the previous cycle's weights (fresh optimizer),
        or from a new random initialisation.
    out_dir : run folder (see the module docstring); ``None`` keeps everything in a
        temporary folder that is removed afterwards (no resume).
    on_cycle : called with each cycle's metrics as soon as it is finished.
    split_name : what ``test`` is, for the log (``bal bench`` evaluates on a validation split).
    task : what each cycle trains (:mod:`bal.loop.tasks`); ``None`` is the paper's, ``ScratchTask(net)``.
        A :class:`HeadTask` (``--task_model linear``) is fitted on an embedding's rows (``train``,
        ``augment``, ``warm_start`` then unused); a :class:`FinetuneTask` trains a pretrained network
        with ``train`` and ``warm_start``, with ``augment``'s crop and flip and the network's own
        normalisation.
    """
    if not len(budgets):
        raise BalError("no cycles to run: the budget list is empty")
    run = _Run(pool, test, strategy, list(budgets), pretext or Pretext(), train, augment,
               task if task is not None else ScratchTask(net), warm_start, seed, torch.device(device), progress,
               on_cycle, split_name)
    if out_dir is not None:
        return run.run(Path(out_dir))
    if runtime.info().enabled:
        raise BalError("under torchrun the cycles need an output folder (--save) that every rank sees")
    with tempfile.TemporaryDirectory(prefix="bal-") as tmp:
        return run.run(Path(tmp))


class _Run:
    def __init__(self, pool, test, strategy, budgets, pretext, train, augment, task, warm_start, seed, device,
                 progress, on_cycle, split_name):
        self.pool, self.test, self.strategy, self.budgets = pool, test, strategy, budgets
        self.train, self.augment, self.task, self.warm_start, self.seed = train, augment, task, warm_start, seed
        self.device, self.progress, self.on_cycle, self.split_name = device, progress, on_cycle, split_name
        n = len(pool)
        self.n = n
        self.n_cycles = len(budgets)
        if sum(budgets) > n:
            raise BalError(f"the cycles ask for {sum(budgets)} labels, more than the pool of {n} images")
        if list(test.classes) != list(pool.classes):
            raise BalError(f"the test split's classes {test.classes} differ from the pool's {pool.classes}")
        self.pretext = check_pretext(pretext, strategy, n)
        self.index_of = {p: i for i, p in enumerate(pool.paths)}
        self.images = pool.images  # memory-mapped or in memory: batches are gathered from it
        self.labels = torch.from_numpy(np.asarray(pool.labels, dtype=np.int64))
        self.test_images = test.images
        self.n_classes = len(pool.classes)
        self.out = Path()
        task.prepare(self)

    # -- files -----------------------------------------------------------------------
    def settings(self) -> dict:
        """What ``config.json`` records, and a resume must match: the task model's settings and the run's."""
        return self.task.settings({
            "budgets": list(self.budgets),
            "warm_start": self.warm_start,
            "seed": self.seed,
            "strategy": self.strategy.settings(),
            "train": asdict(self.train),
            "pool_size": self.n,
            "test_size": len(self.test),
            "classes": list(self.pool.classes),
            "pretext": {name: array_digest(getattr(self.pretext, name)) for name in sorted(self.strategy.needs)},
        })

    def labelled_from_file(self, c: int) -> list[int]:
        path = self.out / f"labeled_{c}.txt"
        paths = read_lines(path)
        try:
            return [self.index_of[p] for p in paths]
        except KeyError as e:
            raise BalError(f"{path} names {e.args[0]!r}, which is not in the pool") from None

    def pool_after(self, c: int) -> LabelledPool:
        """The labelled pool after cycle ``c``'s selection, from the run folder's files."""
        labelled = LabelledPool(self.n)
        previous = 0
        for cycle in range(c + 1):
            order = self.labelled_from_file(cycle)
            labelled.label(order[previous:], cycle)
            previous = len(order)
        return labelled

    def model_path(self, c: int) -> Path:
        return self.out / f"model_{c}.pth"

    def save_model(self, model, c: int) -> None:
        self.task.save(self, model, self.model_path(c))

    def load_model(self, c: int):
        """Cycle ``c``'s model; one that is missing is trained again from the committed ``labeled_c.txt``.

        Training is seeded by cycle, so the model trained again has the weights of the
        one that was lost (on the same machine): deleting a damaged ``model_C.pth`` and
        running the same command again is a recovery that works.
        """
        path = self.model_path(c)
        redo = (f"delete it and run the same command again: bal then trains cycle {c}'s model again from "
                f"labeled_{c}.txt, with the same seed")
        if not path.exists() and (self.out / f"labeled_{c}.txt").exists():
            if runtime.info().enabled:
                raise BalError(f"{path} is missing; run the same command once without torchrun to train it again")
            log.warning("%s is missing: training cycle %d's model again from labeled_%d.txt", path, c, c)
            model = self.train_cycle(c, self.pool_after(c))
            self.save_model(model, c)
            (self.out / f"ckpt_{c}.pth").unlink(missing_ok=True)
            return model
        return self.task.load(self, path, redo)

    def train_cycle(self, c: int, labelled: LabelledPool):
        """Train cycle ``c``'s model on ``labelled`` (resuming from its per-epoch checkpoint)."""
        return self.task.train(self, c, labelled)

    def write_reports(self, rows: list[dict]) -> None:
        atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        write_csv(self.out / "metrics.csv", rows, [k for k, _, _ in METRIC_COLUMNS] + ["strategy"])

    # -- one cycle ---------------------------------------------------------------------
    def select(self, c: int, labelled: LabelledPool) -> tuple[np.ndarray, dict]:
        outputs = classifier = None
        if c > 0:
            model = self.load_model(c - 1)
            classifier = last_linear(model)

            def outputs(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                return self.task.outputs(self, model, indices, desc=f"cycle {c} score")

        picked, info = select_cycle(self.strategy, labelled, c, self.budgets, pretext=self.pretext,
                                    outputs=outputs, seed=self.seed, n_classes=self.n_classes, classifier=classifier)
        if outputs is not None:
            # diagnostic, simulation only: how many of the new picks the previous model got wrong
            predicted = outputs(picked)[0].argmax(1)
            info["previous_model_wrong"] = float(np.mean(predicted != self.pool.labels[picked]))
        return picked, info

    def commit_selection(self, c: int, labelled: LabelledPool) -> tuple[LabelledPool, dict]:
        """Cycle ``c``'s selection: the committed one if there is one, else a new one, committed (rank 0)."""
        if (self.out / f"labeled_{c}.txt").exists():
            return self.pool_after(c), read_json(self.out / f"window_{c}.json")
        picked, info = self.select(c, labelled)
        labelled.label(picked, c)
        atomic_write_json(self.out / f"window_{c}.json", info)
        write_lines(self.out / f"labeled_{c}.txt", [self.pool.paths[i] for i in labelled.order])
        return labelled, info

    def run(self, out: Path) -> list[dict]:
        """Run (or resume) every cycle in ``out``; a second process on the same folder is refused, not raced."""
        out.mkdir(parents=True, exist_ok=True)
        if not runtime.is_main() or runtime.info().enabled:  # under torchrun the ranks of one run share it
            return self._run(out)
        with held_lock(out / "train.lock", wait=False) as free:
            if not free:
                raise BalError(f"another bal process is running the cycles in {out} (it holds {out / 'train.lock'}); "
                               f"wait for it to finish, or use another --save folder")
            return self._run(out)

    def _run(self, out: Path) -> list[dict]:
        self.out = out
        bind_config(out / "config.json", self.settings(), "active-learning run")
        bind_content(out, {"pool": (self.pool.paths, self.images), "test": (self.test.paths, self.test_images)})
        state_path = out / "state.json"
        rows: list[dict] = read_json(state_path)["cycles"] if state_path.exists() else []
        labelled = self.pool_after(len(rows) - 1) if rows else LabelledPool(self.n)
        if rows:
            log.info("resuming %s after cycle %d of %d", out, len(rows) - 1, self.n_cycles)
        for c in range(len(rows), self.n_cycles):
            t0 = time.perf_counter()
            # rank 0 selects (or re-reads a committed selection); the others are told
            labelled, info = runtime.on_main(self.commit_selection, c, labelled)
            model = self.train_cycle(c, labelled)
            # also: model_{c}.pth is on disk before any rank reads it
            row = runtime.on_main(self.finish_cycle, c, model, labelled, info, t0, rows)
            if not runtime.is_main():
                rows.append(row)
            elif self.on_cycle is not None:
                self.on_cycle(row)
        if runtime.is_main():
            self.write_reports(rows)
        return rows

    def finish_cycle(self, c: int, model, labelled: LabelledPool, info: dict, t0: float, rows: list[dict]) -> dict:
        """Evaluate, save the model, and commit the cycle (rank 0 only)."""
        accuracy, per_class = self.task.evaluate(self, model)
        self.save_model(model, c)
        counts, entropy = class_balance(self.pool.labels[labelled.order], self.n_classes)
        row = {
            "cycle": c,
            "strategy": self.strategy.name,
            "labelled": labelled.n_labelled,
            "labelled_pct": 100.0 * labelled.n_labelled / self.n,
            "accuracy": accuracy,
            "class_counts": dict(zip(self.pool.classes, counts)),
            "class_entropy": entropy,
            "previous_model_wrong": info.get("previous_model_wrong"),
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
            "cycle %d/%d: %d labelled (%.1f%%) -> %s accuracy %.2f%% (%.0f s)",
            c, self.n_cycles - 1, row["labelled"], row["labelled_pct"], self.split_name, accuracy, row["seconds"],
        )
        return row
