"""``bal bench``: every strategy, several seeds, identical data, model, training and evaluation.

The protocol, so that a benchmark cannot fool itself:

* **Splits.** The pool is a class-stratified subset of the training split; the
  validation split (``val_size`` images) is carved, stratified, from the training
  images *outside* the pool; the test split is a stratified subset of the test images.
  Every choice (defaults, options, the recommended strategy) is made with
  ``eval: validation``; ``eval: test`` (the default) is for the final table, once.
* **Seeds.** Seed ``s`` fixes everything of a pair, its pretext included: each seed
  trains its own rotation pretext, so the spread over seeds covers the pretext's
  randomness too. A finished pretext lives in ``pretext_dir`` under a name made of
  what decides it (dataset, pool, network, schedule, seed) and is reused by any bench
  whose pretext settings match, whatever its task settings.
* **Pairs.** Each (strategy, seed) pair is a resumable run folder under
  ``OUT/runs``, so an interrupted benchmark continues pair by pair, over days if need be.

A strategy is a name or a name with options, ``bal[first=typical,beta=2]``: the options
of :func:`bal.selection.create_strategy` and the pretext's ``view`` and
``feature_norm``; the label is written in every table. The results (JSON, CSV), the
table of accuracy per budget (mean ± std over seeds) with AUBC and its rank, the plot
of the paper, the class-balance plot and the diagnostics land in ``OUT``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bal.data import (
    REGIMES,
    ImageSet,
    budgets_from_percentages,
    open_dataset,
    regime_percentages,
    stratified_indices,
    stratified_subset,
    subset,
)
from bal.data.presets import check_percentages
from bal.embedding import EmbeddingChoice, embedding_kind
from bal.engine.head import HeadConfig
from bal.engine.runfolder import bind_config
from bal.engine.runtime import resolve_device
from bal.engine.trainer import TrainConfig
from bal.errors import BalError, ParameterError
from bal.files import atomic_write_json, held_lock, read_json, write_lines
from bal.loop.cycles import TASK_MODELS, FinetuneTask, HeadTask, ScratchTask, TaskModel, run_cycles
from bal.pretext.features import FEATURE_NORMS, VIEWS, cdd_order, normalise_features
from bal.pretext.rotation import pretext_busy, train_rotation
from bal.report import summarise, summary_table, write_results
from bal.report.diagnostics import DIAGNOSTIC_COLUMNS, diagnostics_markdown, diagnostics_short, plot_balance
from bal.selection import Pretext, check_spec, create_strategy, list_strategies, parse_strategy
from bal.validation import check_choice, check_int, check_real

log = logging.getLogger("bal")

#: Splits a benchmark can evaluate on.
EVAL_SPLITS = ("test", "validation")
#: Strategy options that choose the pretext's embedding rather than the strategy.
PRETEXT_OPTIONS = ("view", "feature_norm")


@dataclass
class BenchConfig:
    """Everything a benchmark fixes; loadable from YAML (keys as the flags, ``-`` or ``_``)."""

    dataset: str = "cifar10"
    datapath: str = "data"
    pool_size: int | None = None  # a class-stratified subset of the training split, fixed by subset_seed
    val_size: int = 0  # validation images carved from the training split outside the pool
    test_size: int | None = None  # a class-stratified subset of the test split
    subset_seed: int = 0
    eval: str = "test"  # the split every cycle is evaluated on: test or validation
    regime: str = "small"
    per_samples_list: list[float] | None = None  # overrides the regime's per-cycle percentages
    strategies: list[str] = field(default_factory=list_strategies)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    net: str = "cnn"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list[float] = field(default_factory=lambda: [0.67])  # 20 of 30 epochs
    warm_start: bool = True
    beta: float | None = None  # None: the dataset preset's value for the regime
    window: str | None = None  # None: each strategy's default (strategy_options)
    first: str | None = None
    sampling: str | None = None
    addendum: int | str | None = None
    order_from: str | None = None
    view: str | None = None  # the rotation view the strategies embed (None: each strategy's, else upright)
    feature_norm: str | None = None  # None: each strategy's, else none
    embedding: str = "rotation"  # what the strategies read: rotation, efficientnet_lite0, timm:NAME,
    #                               torchvision:NAME (with weights) or FILE.npy (bal.embedding)
    weights: str | None = None  # the embedding network's weights file
    embedding_size: int | None = None  # its input size (None: the model's own)
    download: bool = False  # let timm download the weights it has no copy of
    task_model: str = "scratch"  # scratch: net trained on the images each cycle (the paper's);
    #                              linear: a head on the frozen embedding (bal.engine.head);
    #                              finetune: the pretrained network and a head, trained with epochs, lr...
    head_C: float = 1.0  # the head's inverse regularisation (scikit-learn's C)
    head_hidden: int = 0  # 0: a linear head; else an MLP with this many hidden units
    rotation_epochs: int = 15
    rotation_batch_size: int = 128
    rotation_lr: float = 0.1
    rotation_milestones: list[float] = field(default_factory=lambda: [0.67])  # 10 of 15 epochs
    pretext_dir: str | None = None  # finished pretexts, shared by benches whose pretext settings match
    #                                 (default: a folder "pretexts" beside out)
    clusters: int | None = None
    image_size: int | None = None
    flip: bool | None = None  # None: the preset's horizontal flips; false for digits, signs, text
    cache_dir: str | None = None
    skip_bad_images: bool = False
    out: str = "runs/bench"
    device: str = "auto"

    #: Older key names, still read.
    ALIASES = {"percentages": "per_samples_list", "backbone_size": "embedding_size"}

    @classmethod
    def from_mapping(cls, values: dict, source: str = "configuration") -> "BenchConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        clean = {}
        values = dict(values)
        # the older keys of an embedding: features: FILE.npy, and backbone: NAME with weights
        if "features" in values or "backbone" in values:
            if "embedding" in values or ("features" in values and "backbone" in values):
                raise BalError(f"{source}: give one of embedding, features and backbone")
            values["embedding"] = (values.pop("features") if "features" in values
                                   else f"torchvision:{values.pop('backbone')}")
        for key, value in values.items():
            name = str(key).replace("-", "_")
            name = cls.ALIASES.get(name, name)
            if name not in names:
                raise BalError(f"{source}: unknown key {key!r}; known keys: {', '.join(sorted(names))}")
            clean[name] = value
        for name, value in clean.items():
            clean[name] = _typed(name, value, _FIELD_TYPES[name], source)
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
        try:
            specs = [parse_strategy(s, "strategies") for s in self.strategies]
            self.train_config()
            self.rotation_config()
            if self.per_samples_list is not None:
                check_percentages(self.per_samples_list)
            for name, low, high in (("pool_size", 1, None), ("val_size", 0, None), ("test_size", 1, None),
                                    ("subset_seed", 0, 2**32 - 1), ("clusters", 2, None), ("image_size", 8, 1024),
                                    ("embedding_size", 16, 1024), ("head_hidden", 0, None)):
                if getattr(self, name) is not None:
                    check_int(name, getattr(self, name), low, high)
            for s in self.seeds:
                check_int("seeds", s, 0, 2**32 - 1)
            if self.beta is not None:
                check_real("beta", self.beta, low=0, low_open=True)
            self.embedding_choice()
            check_choice("task_model", self.task_model, TASK_MODELS)
            self.head_config()
        except ParameterError as e:
            raise BalError(f"{source}: {e}") from None
        known = list_strategies()
        unknown = [s for s, (name, _) in zip(self.strategies, specs) if name not in known]
        if unknown or not self.strategies:
            raise BalError(f"{source}: strategies must be among {', '.join(known)}; got {unknown or 'none'}")
        try:
            for spec in self.strategies:  # every option of every spec is one its strategy takes
                check_spec(spec, "strategies")
        except ParameterError as e:
            raise BalError(f"{source}: {e}") from None
        if len(set(self.strategies)) != len(self.strategies):
            raise BalError(f"{source}: a strategy is listed twice in {self.strategies}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise BalError(f"{source}: seeds must be a non-empty list of distinct integers, got {self.seeds}")
        if self.regime not in REGIMES:
            raise BalError(f"{source}: regime must be one of {', '.join(REGIMES)}, got {self.regime!r}")
        if self.eval not in EVAL_SPLITS:
            raise BalError(f"{source}: eval must be one of {', '.join(EVAL_SPLITS)}, got {self.eval!r}")
        if self.eval == "validation" and not self.val_size:
            raise BalError(f"{source}: eval: validation needs a validation split: set val_size")
        for name in ("epochs", "batch_size", "rotation_epochs", "rotation_batch_size"):
            if int(getattr(self, name)) < 1:
                raise BalError(f"{source}: {name} must be >= 1, got {getattr(self, name)}")
        if self.view is not None:
            check_choice("view", self.view, VIEWS)
        if self.feature_norm is not None:
            check_choice("feature_norm", self.feature_norm, FEATURE_NORMS)
        if self.task_model == "linear" and embedding_kind(self.embedding) == "rotation":
            raise BalError(f"{source}: task_model linear is a head on a pretrained embedding: set "
                           f"embedding (efficientnet_lite0, timm:NAME, torchvision:NAME or FILE.npy)")
        if self.task_model == "finetune" and embedding_kind(self.embedding) != "pretrained":
            raise BalError(f"{source}: task_model finetune trains a pretrained network: set embedding "
                           f"(efficientnet_lite0, timm:NAME or torchvision:NAME)")

    @property
    def percentages_used(self) -> list[float]:
        return list(self.per_samples_list) if self.per_samples_list else regime_percentages(self.regime)

    def embedding_choice(self) -> EmbeddingChoice:
        return EmbeddingChoice(self.embedding, weights=self.weights, size=self.embedding_size, download=self.download)

    def head_config(self) -> HeadConfig:
        return HeadConfig(C=self.head_C, hidden=self.head_hidden)

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum,
                           weight_decay=self.weight_decay, milestones=tuple(self.milestones))

    def rotation_config(self) -> TrainConfig:
        try:
            return TrainConfig(epochs=self.rotation_epochs, batch_size=self.rotation_batch_size, lr=self.rotation_lr,
                               milestones=tuple(self.rotation_milestones))
        except ParameterError as e:  # TrainConfig names its own fields; here they are the rotation_ keys
            raise ParameterError(f"rotation_{e.param}", e.template) from None


#: Each field's type as declared in BenchConfig (strings: the module has postponed annotations).
_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(BenchConfig)}


def _typed(name: str, value: Any, kind: str, source: str) -> Any:
    """``value`` of key ``name`` checked against its declared type (``kind``, as written in the class)."""
    optional = kind.endswith(" | None")
    base = kind.removesuffix(" | None")
    if value is None:
        if optional:
            return None
        raise BalError(f"{source}: {name} needs a value ({base})")
    scalar = {"int": "a whole number", "float": "a number", "str": "a text", "bool": "true or false"}

    def one(v: Any, t: str) -> Any:
        if t == "bool" and isinstance(v, bool):
            return v
        if t == "int" and isinstance(v, int) and not isinstance(v, bool):
            return v
        if t == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
            if not math.isfinite(v):
                raise BalError(f"{source}: {name} must be a finite number, got {v!r}")
            return float(v) if isinstance(v, float) else v
        if t == "str" and isinstance(v, str):
            return v
        if t == "int | str" and (isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))):
            return v
        raise BalError(f"{source}: {name} must be {scalar.get(t, t)}, got {v!r}")

    if base.startswith("list["):
        inner = base[5:-1]
        values = value if isinstance(value, list) else None
        if values is None:
            plural = {"int": "whole numbers", "float": "numbers", "str": "texts"}.get(inner, inner)
            raise BalError(f"{source}: {name} must be a list ([a, b, ...]) of {plural}, got {value!r}")
        return [one(v, inner) for v in values]
    return one(value, base)


# -- strategy specs ----------------------------------------------------------------------
def folder_name(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", spec).strip("_")


# -- splits and pretexts -----------------------------------------------------------------
def bench_splits(config: BenchConfig, train: ImageSet, test: ImageSet) -> tuple[ImageSet, ImageSet | None, ImageSet]:
    """(pool, validation or None, test): the pool and the validation split never share an image."""
    pool_idx = stratified_indices(train.labels, config.pool_size, config.subset_seed, "pool_size")
    pool = subset(train, pool_idx)
    val = None
    if config.val_size:
        rest = np.setdiff1d(np.arange(len(train)), pool_idx)
        left = subset(train, rest)
        val = subset(left, stratified_indices(left.labels, config.val_size, config.subset_seed, "val_size"))
    return pool, val, stratified_subset(test, config.test_size, config.subset_seed, "test")


def pretext_folder(config: BenchConfig, pool: ImageSet, seed: int) -> Path:
    """The folder of seed ``seed``'s pretext: named by everything that decides it, nothing else.

    Any bench with the same dataset, pool, network, image size, rotation schedule and seed
    finds the same folder, whatever its task settings, so a finished pretext is trained once.
    """
    key = {"dataset": config.dataset, "pool": hashlib.sha256("\n".join(pool.paths).encode()).hexdigest(),
           "image_size": int(pool.images.shape[1]), "net": config.net, "seed": seed,
           "rotation": [config.rotation_epochs, config.rotation_batch_size, config.rotation_lr,
                        list(config.rotation_milestones)]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    where = Path(config.pretext_dir) if config.pretext_dir else Path(config.out).parent / "pretexts"
    return where / f"{config.dataset}-{config.net}-seed{seed}-{digest}"


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 20, folds: int = 5) -> float:
    """Feature quality: 5-fold accuracy (%) of a k-NN classifier, cosine distance, on the simulation labels."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    counts = np.bincount(labels)
    folds = int(min(folds, counts[counts > 0].min()))
    if folds < 2:
        return float("nan")
    model = KNeighborsClassifier(n_neighbors=min(k, len(labels) - len(labels) // folds - 1), metric="cosine")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    return 100.0 * float(np.mean(cross_val_score(model, features, labels, cv=cv)))


class Pretexts:
    """Each seed's pretext, and the embeddings the strategies read from it, made once and reused."""

    def __init__(self, config: BenchConfig, pool: ImageSet, augment, device, progress: bool, out: Path):
        self.config, self.pool, self.augment, self.device, self.progress, self.out = (
            config, pool, augment, device, progress, out)
        self._rotations: dict[int, Any] = {}
        self._external: np.ndarray | None = None
        self.choice = config.embedding_choice()
        self._split: np.ndarray | None = None  # the evaluated split's embedding (task_model linear)
        self._known_quality: dict[str, float] = {}  # k-NN accuracy of an embedding that is not rotation's
        self.quality: list[dict] = []  # one row per (seed, embedding): kNN and rotation accuracy

    def rotation(self, seed: int):
        if seed not in self._rotations:
            t0 = time.perf_counter()
            folder = pretext_folder(self.config, self.pool, seed)
            self._rotations[seed] = train_rotation(
                self.pool, self.augment, net=self.config.net, config=self.config.rotation_config(), seed=seed,
                device=self.device, save=folder, progress=self.progress)
            log.info("bench: pretext of seed %d ready in %s (%.0f s)", seed, folder, time.perf_counter() - t0)
        return self._rotations[seed]

    def _reads_rotation(self, needs: frozenset[str]) -> bool:
        """Whether a strategy with ``needs`` reads the rotation pretext: for its losses, or for
        features when the embedding is the rotation pretext's."""
        return bool(needs) and ("losses" in needs or embedding_kind(self.config.embedding) == "rotation")

    def busy(self, seed: int, needs: frozenset[str]) -> bool:
        """True when a strategy with ``needs`` would wait for seed ``seed``'s pretext, which another
        process is training (see :meth:`for_pair`)."""
        if seed in self._rotations or not self._reads_rotation(needs):
            return False
        return pretext_busy(pretext_folder(self.config, self.pool, seed))

    def external(self) -> np.ndarray | None:
        """The embedding in pool order when it is not the rotation pretext's (a file, or a pretrained
        network's, computed once and cached); None for rotation features."""
        if self._external is None:
            self._external = self.choice.features(self.pool.images, cache_dir=self.config.cache_dir,
                                                  device=self.device, progress=self.progress,
                                                  what=f"the benchmark's pool ({self.out}/pool.txt)")
        return self._external

    def task_model(self, seed: int, split: ImageSet, split_name: str) -> TaskModel:
        """What the pairs train each cycle (``task_model``): the configured network from scratch, a head on
        the embedding of the pool and of the evaluated split, or the embedding's network to fine-tune from the
        linear probe of the pool's rows."""
        c = self.config
        if c.task_model == "scratch":
            return ScratchTask(c.net)
        if embedding_kind(c.embedding) == "file":
            raise BalError(f"task_model {c.task_model} needs the {split_name} split embedded too; a FILE.npy "
                           f"embeds only the pool: use a pretrained embedding")
        pool = self.external()
        self._record_quality(seed, "external", "none", pool, None)
        if c.task_model == "finetune":  # its network is built once; each cycle copies it
            return FinetuneTask(self.choice, pool=pool, config=c.head_config())
        if self._split is None:  # the evaluated split is the same for every pair
            self._split = self.choice.features(split.images, cache_dir=c.cache_dir, device=self.device,
                                               progress=self.progress, what=f"the {split_name} split")
        return HeadTask(pool=pool, test=self._split, name=c.embedding, config=c.head_config())

    def for_pair(self, seed: int, needs: frozenset[str], view: str, norm: str) -> Pretext:
        """The pretext a strategy with ``needs`` reads in seed ``seed``: features of ``view`` (or the
        configuration's embedding), normalised by ``norm``, and their CDD order (k-means seeded with ``seed``)."""
        pretext = Pretext()
        if not needs:
            return pretext
        external = self.external()
        rotation = self.rotation(seed) if self._reads_rotation(needs) else None
        if rotation is not None:
            pretext.losses = rotation.losses
        if needs & {"features", "order"}:
            raw = external if external is not None else rotation.views.get(view)
            if raw is None:
                raise BalError(f"the pretext of seed {seed} has no {view!r} view; delete its folder to score it again")
            features = normalise_features(raw, norm)
            pretext.features = features
            k = self.config.clusters or len(self.pool.classes)
            pretext.order = cdd_order(features, k, seed=seed)[1]
            self._record_quality(seed, "external" if external is not None else view, norm, features, rotation)
        return pretext

    def _record_quality(self, seed, source, norm, features, rotation) -> None:
        """One row of the embedding's diagnostics for ``seed``: its k-NN accuracy on the pool (and the
        rotation accuracy). A rotation view's is kept in its pretext folder; another embedding's once here."""
        if source == "external":
            source = self.config.embedding
        if any(q["seed"] == seed and q["features"] == source and q["feature_norm"] == norm for q in self.quality):
            return
        rotating = embedding_kind(self.config.embedding) == "rotation"
        cache = pretext_folder(self.config, self.pool, seed) / "quality.json" if rotating else None
        known = read_json(cache) if cache is not None and cache.exists() else self._known_quality
        key = f"{source}-{norm}"
        if key not in known:
            known[key] = knn_accuracy(np.asarray(features), self.pool.labels)
            if cache is not None:
                atomic_write_json(cache, known)
        self.quality.append({"seed": seed, "features": source, "feature_norm": norm, "knn_accuracy": known[key],
                             "rotation_accuracy": None if rotation is None else rotation.accuracy})


# -- the benchmark -----------------------------------------------------------------------
def run_bench(config: BenchConfig, *, progress: bool = True) -> list[dict]:
    """Run every (strategy, seed) pair; write results, tables, plots and diagnostics into ``config.out``.

    Returns every cycle of every pair as rows (strategy, seed, cycle, labelled,
    labelled_pct, accuracy, seconds and the diagnostics of :data:`DIAGNOSTIC_COLUMNS`).
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    train_config = config.train_config()  # checked before any decoding
    config.rotation_config()
    data = open_dataset(config.datapath, config.dataset, image_size=config.image_size, net=config.net,
                        flip=config.flip, cache_dir=config.cache_dir, skip_bad=config.skip_bad_images,
                        progress=progress, report_dir=out)
    pool, val, test = bench_splits(config, data.pool, data.test)
    write_lines(out / "pool.txt", pool.paths)  # the row order of a `features` file
    evaluate_on = val if config.eval == "validation" else test
    budgets = budgets_from_percentages(config.percentages_used, len(pool))
    preset_beta = data.preset.beta_for(config.regime)
    # The results of one folder must come from one configuration; where it runs may change, and so
    # may the lists of strategies and seeds: every pair's folder is bound on its own, so a bench
    # given more strategies or seeds reuses the pairs it has.
    bind_config(out / "bench_config.json",
                {k: v for k, v in dataclasses.asdict(config).items()
                 if k not in ("out", "device", "cache_dir", "pretext_dir", "strategies", "seeds")}, "benchmark")
    log.info("bench: %s, pool %d, validation %d, test %d, evaluated on the %s split (%d images), %s, budgets %s, "
             "%d strategies x %d seeds -> %s", config.dataset, len(pool), len(val) if val else 0, len(test),
             config.eval, len(evaluate_on), config.net, ",".join(map(str, budgets)), len(config.strategies),
             len(config.seeds), out)
    if not val:
        log.info("bench: no validation split (val_size 0): nothing can be chosen on validation; report the test "
                 "split only for settings chosen elsewhere")

    defaults = {"beta": config.beta, "window": config.window, "first": config.first, "sampling": config.sampling,
                "addendum": config.addendum, "order_from": config.order_from}
    defaults = {k: v for k, v in defaults.items() if v is not None}
    plans = {}
    for spec in config.strategies:
        _, options = parse_strategy(spec)
        strategy = create_strategy(spec, ignore_unknown=True, default_beta=preset_beta, **defaults)
        # the embedding: the spec's, else the configuration's, else the strategy's own, else the authors'
        pretext_options = {"view": options.get("view") or config.view or strategy.view or VIEWS[0],
                           "norm": options.get("feature_norm") or config.feature_norm or strategy.feature_norm
                           or FEATURE_NORMS[0]}
        check_choice("view", pretext_options["view"], VIEWS)
        check_choice("feature_norm", pretext_options["norm"], FEATURE_NORMS)
        plans[spec] = (strategy, pretext_options)

    pretexts = Pretexts(config, pool, data.augment, device, progress, out)
    pairs = [(spec, seed) for spec in config.strategies for seed in config.seeds]
    done: dict[int, list[dict]] = {}

    def run_pair(i: int, wait: bool) -> bool:
        """Run (or resume, or read) pair ``i``; False when another process holds it and ``wait`` is off."""
        spec, seed = pairs[i]
        run_dir = out / "runs" / folder_name(spec) / f"seed-{seed}"
        # One pair, one process: a second bench on the same folder (another terminal, a second core)
        # takes the pairs nobody holds and comes back for the others, which are finished by then.
        with held_lock(run_dir.with_name(run_dir.name + ".lock"), wait=wait, waiting=lambda: log.info(
                "bench: waiting for another process that is running %s seed %d", spec, seed)) as held:
            if not held:
                return False
            strategy, pretext_options = plans[spec]
            if not wait and pretexts.busy(seed, strategy.needs):
                # the pretext would keep this process waiting for as long as it trains (20 minutes at
                # CPU scale); run the pairs that need none, or another seed's, and come back
                log.info("bench: %s seed %d waits for its pretext, which another process is training; "
                         "running other pairs first", spec, seed)
                return False
            pretext = pretexts.for_pair(seed, strategy.needs, pretext_options["view"], pretext_options["norm"])
            task = pretexts.task_model(seed, evaluate_on, config.eval)
            t0 = time.perf_counter()
            done[i] = run_cycles(pool, evaluate_on, strategy=strategy, budgets=budgets, pretext=pretext,
                                 train=train_config, augment=data.augment, warm_start=config.warm_start,
                                 seed=seed, out_dir=run_dir, device=device, progress=progress,
                                 split_name=config.eval, task=task)
        accs = " ".join(f"{r['accuracy']:.1f}" for r in done[i])
        log.info("bench [%d/%d] %s seed %d: %s (%.0f s)", i + 1, len(pairs), spec, seed, accs,
                 time.perf_counter() - t0)
        return True

    skipped = [i for i in range(len(pairs)) if not run_pair(i, wait=False)]
    for i in skipped:
        run_pair(i, wait=True)
    rows: list[dict] = []
    for i, (spec, seed) in enumerate(pairs):  # in pair order, whichever finished first
        for r in done[i]:
            rows.append({"strategy": spec, "seed": seed, "split": config.eval, **{k: r.get(k) for k in (
                "cycle", "labelled", "labelled_pct", "accuracy", "seconds", *DIAGNOSTIC_COLUMNS)},
                "class_counts": r.get("class_counts")})

    notes = {spec: f"cycle 0: {strategy.cycle0}" for spec, (strategy, _) in plans.items()}
    # Random is the baseline every claim is made against: its paired differences go in the table.
    reference = "random" if "random" in config.strategies else None
    summaries = summarise(rows, notes=notes, order=config.strategies, reference=reference)
    split = f"{config.eval} split ({len(evaluate_on)} images)"
    title = (f"{config.dataset}: pool {len(pool)}, {split}, {config.net}, "
             f"{config.epochs} epochs, {len(config.seeds)} seeds")
    diagnostics = diagnostics_markdown(rows, pretexts.quality)
    write_results(out, rows, summaries, title=title, split=split, extra_markdown=diagnostics,
                  row_columns=("strategy", "seed", "split", "cycle", "labelled", "labelled_pct", "accuracy",
                               "seconds", *DIAGNOSTIC_COLUMNS),
                  extra={"eval": config.eval, "pretexts": pretexts.quality})
    plot_balance(rows, out / "balance.png", title=f"class balance of the labelled set ({config.dataset})")
    print(f"evaluated on the {split}")
    print(summary_table(summaries))
    print(diagnostics_short(rows, pretexts.quality))
    print(f"\nresults: {out}/results.csv, summary.csv, summary.md (with diagnostics), accuracy.png, balance.png")
    return rows
