"""``bal bench``: every strategy, several seeds, identical data, model, training and evaluation.

One pretext (rotation) run and one CDD order are shared by all pairs; each
(strategy, seed) pair is a resumable ``run_cycles`` folder under ``OUT/runs``, so an
interrupted benchmark continues pair by pair. The results (JSON, CSV), the table of
accuracy per budget (mean ± std over seeds) with AUBC and its rank, and the plot of
the paper (accuracy against % labelled, ± one std) land in ``OUT``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from bal.data import REGIMES, budgets_from_percentages, open_dataset, regime_percentages, stratified_subset
from bal.engine.runfolder import bind_config
from bal.engine.runtime import resolve_device
from bal.engine.trainer import TrainConfig
from bal.errors import BalError
from bal.loop.cycles import run_cycles
from bal.pretext import build_pretext
from bal.report import summarise, summary_table, write_results
from bal.selection import Pretext, create_strategy, list_strategies

log = logging.getLogger("bal")


@dataclass
class BenchConfig:
    """Everything a benchmark fixes; loadable from YAML (keys as below, ``-`` or ``_``)."""

    dataset: str = "cifar10"
    datapath: str = "data"
    pool_size: int | None = None  # a class-stratified subset of the training split, fixed by subset_seed
    test_size: int | None = None  # likewise for the test split
    subset_seed: int = 0
    regime: str = "small"
    percentages: list[float] | None = None  # overrides the regime's per-cycle percentages
    strategies: list[str] = field(default_factory=list_strategies)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    net: str = "cnn"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=lambda: [20])
    warm_start: bool = True
    beta: float | None = None  # None: the dataset preset's value for the regime
    window: str | None = None  # None: each strategy's default (strategy_options)
    first: str | None = None
    sampling: str | None = None
    rotation_epochs: int = 15
    rotation_batch_size: int = 128
    rotation_lr: float = 0.1
    rotation_milestones: list[int] = field(default_factory=lambda: [10])
    pretext_seed: int = 0
    clusters: int | None = None
    image_size: int | None = None
    cache_dir: str | None = None
    skip_bad_images: bool = False
    out: str = "runs/bench"
    device: str = "auto"

    @classmethod
    def from_mapping(cls, values: dict, source: str = "configuration") -> "BenchConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        clean = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in names:
                raise BalError(f"{source}: unknown key {key!r}; known keys: {', '.join(sorted(names))}")
            clean[name] = value
        config = cls(**clean)
        config.validate(source)
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> "BenchConfig":
        import yaml

        path = Path(path)
        if not path.exists():
            raise BalError(f"--config {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise BalError(f"--config {path} is not valid YAML: {e}") from None
        if not isinstance(values, dict):
            raise BalError(f"--config {path} must hold a mapping of keys to values")
        return cls.from_mapping(values, source=str(path))

    def validate(self, source: str = "configuration") -> None:
        known = list_strategies()
        unknown = [s for s in self.strategies if s not in known]
        if unknown or not self.strategies:
            raise BalError(f"{source}: strategies must be among {', '.join(known)}; got {unknown or 'none'}")
        if len(set(self.strategies)) != len(self.strategies):
            raise BalError(f"{source}: a strategy is listed twice in {self.strategies}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise BalError(f"{source}: seeds must be a non-empty list of distinct integers, got {self.seeds}")
        if self.regime not in REGIMES:
            raise BalError(f"{source}: regime must be one of {', '.join(REGIMES)}, got {self.regime!r}")
        for name in ("epochs", "batch_size", "rotation_epochs", "rotation_batch_size"):
            if int(getattr(self, name)) < 1:
                raise BalError(f"{source}: {name} must be >= 1, got {getattr(self, name)}")

    @property
    def percentages_used(self) -> list[float]:
        return list(self.percentages) if self.percentages else regime_percentages(self.regime)


def run_bench(config: BenchConfig, *, progress: bool = True) -> list[dict]:
    """Run every (strategy, seed) pair; write results, table and plot into ``config.out``.

    Returns every cycle of every pair as rows (strategy, seed, cycle, labelled,
    labelled_pct, accuracy, seconds).
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    data = open_dataset(config.datapath, config.dataset, image_size=config.image_size,
                        cache_dir=config.cache_dir, skip_bad=config.skip_bad_images, progress=progress,
                        report_dir=out)
    pool = stratified_subset(data.pool, config.pool_size, config.subset_seed, "pool")
    test = stratified_subset(data.test, config.test_size, config.subset_seed, "test")
    preset = data.preset
    augment = data.augment
    percentages = config.percentages_used
    budgets = budgets_from_percentages(percentages, len(pool))
    beta = config.beta if config.beta is not None else preset.beta_for(config.regime)
    # The results of one folder must come from one configuration; only `out` and `device` may change.
    bind_config(out / "bench_config.json",
                {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "device", "cache_dir")},
                "benchmark")
    log.info("bench: %s, pool %d, test %d, %s, budgets %s, %d strategies x %d seeds -> %s",
             config.dataset, len(pool), len(test), config.net, ",".join(map(str, budgets)),
             len(config.strategies), len(config.seeds), out)

    options = {"beta": beta, "window": config.window, "first": config.first, "sampling": config.sampling}
    options = {k: v for k, v in options.items() if v is not None}
    strategies = {name: create_strategy(name, ignore_unknown=True, **options) for name in config.strategies}
    pretext = Pretext()
    if any(s.needs for s in strategies.values()):
        t0 = time.perf_counter()
        rotation = TrainConfig(epochs=config.rotation_epochs, batch_size=config.rotation_batch_size,
                               lr=config.rotation_lr, milestones=tuple(config.rotation_milestones))
        pretext = build_pretext(pool, augment, net=config.net, config=rotation, seed=config.pretext_seed,
                                device=device, save=out / "pretext", n_clusters=config.clusters, progress=progress)
        log.info("bench: pretext and CDD ready (%.0f s)", time.perf_counter() - t0)

    train = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                        momentum=config.momentum, weight_decay=config.weight_decay,
                        milestones=tuple(config.milestones))
    rows: list[dict] = []
    pairs = [(s, seed) for s in config.strategies for seed in config.seeds]
    for i, (name, seed) in enumerate(pairs, start=1):
        t0 = time.perf_counter()
        result_rows = run_cycles(pool, test, strategy=strategies[name], budgets=budgets, pretext=pretext,
                                 train=train, augment=augment, net=config.net, warm_start=config.warm_start,
                                 seed=seed, out_dir=out / "runs" / name / f"seed-{seed}", device=device,
                                 progress=progress)
        for r in result_rows:
            rows.append({"strategy": name, "seed": seed, "cycle": r["cycle"], "labelled": r["labelled"],
                         "labelled_pct": r["labelled_pct"], "accuracy": r["accuracy"], "seconds": r["seconds"]})
        accs = " ".join(f"{r['accuracy']:.1f}" for r in result_rows)
        log.info("bench [%d/%d] %s seed %d: %s (%.0f s)", i, len(pairs), name, seed, accs, time.perf_counter() - t0)

    notes = {name: f"cycle 0: {s.cycle0}" for name, s in strategies.items()}
    summaries = summarise(rows, notes=notes, order=config.strategies)
    title = (f"{config.dataset}: pool {len(pool)}, test {len(test)}, {config.net}, "
             f"{config.epochs} epochs, {len(config.seeds)} seeds")
    write_results(out, rows, summaries, title=title)
    print(summary_table(summaries))
    print(f"\nresults: {out}/results.csv, summary.csv, summary.md, accuracy.png, accuracy.svg")
    return rows

