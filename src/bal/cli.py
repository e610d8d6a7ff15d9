"""The ``bal`` command: the authors' three steps, their flags, and a few of our own.

    bal rotation --dataset cifar10 --datapath DATA --save checkpoint      # step 1
    bal kmeans   --dataset cifar10 --datapath DATA --load checkpoint      # step 2
    bal train    --dataset cifar10 --datapath DATA --sorted_dataset_path checkpoint/unlabeled_pool.txt
    bal run      ... (all three)          bal demo   (digits, BAL against random)

Every ``--flag_with_underscores`` of the authors also works as ``--flag-with-dashes``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bal.errors import BalError
from bal.flags import add, flatten, number_list, positive_float, positive_int

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
    add(g, "--image_size", type=positive_int, default=None,
        help="square image side in pixels (default: the preset's, else the most common size of the files)")
    add(g, "--cache_dir", default=None,
        help="where decoded images are cached (default: $BAL_CACHE_DIR or ~/.cache/bal)")
    add(g, "--skip_bad_images", action="store_true",
        help="leave unreadable files out (listed in the output folder) instead of stopping")


def add_common_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    add(g, "--seed", type=int, default=0, help="fixes every random choice (default: %(default)s)")
    add(g, "--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ... (default: %(default)s)")
    add(g, "--no_progress", action="store_true", help="no progress bars")


def add_rotation_flags(p: argparse.ArgumentParser, prefix: str = "") -> None:
    g = p.add_argument_group("step 1: rotation pretext")
    add(g, f"--{prefix}epochs", type=positive_int, default=120, help="epochs (default: %(default)s, as the authors)")
    add(g, f"--{prefix}lr", type=positive_float, default=0.1, help="SGD learning rate (default: %(default)s)")
    add(g, f"--{prefix}batch_size", type=positive_int, default=256, help="batch size (default: %(default)s)")
    add(g, f"--{prefix}milestones", type=number_list(int), nargs="+", default=None,
        help="epochs at which the lr is divided by 10 (default: 30 60 90)")


def add_kmeans_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("step 2: k-means and CDD")
    add(g, "--clusters", type=positive_int, default=None, help="k-means clusters (default: the number of classes)")
    add(g, "--kmeans", choices=["kmeans", "minibatch", "faiss"], default="kmeans",
        help="k-means implementation: scikit-learn's exact or mini-batch, or faiss (extra bal[faiss]) "
             "(default: %(default)s)")


def add_train_flags(p: argparse.ArgumentParser) -> None:
    from bal.loop.cycles import STRATEGIES
    from bal.presets import REGIMES
    from bal.selection import FIRST_RULES, SAMPLING_RULES

    g = p.add_argument_group("step 3: active-learning cycles")
    add(g, "--regime", choices=list(REGIMES), default="base",
        help="budget regime of the paper: small = 2,4,..,10%% labelled, base = 10,15,..,40%%, "
             "large = 10,20,..,100%%; sets --per_samples_list and --beta unless given (default: %(default)s)")
    add(g, "--per_samples_list", type=number_list(float), nargs="+", default=None,
        help="new labels per cycle, in %% of the pool, e.g. 10,5,5,5 (default: from --regime)")
    add(g, "--addendum", type=positive_int, default=None,
        help="sub-pool unit A, in images (default: the per-cycle size, the most common one when cycles differ, "
             "as in the authors' reference)")
    add(g, "--beta", type=positive_float, default=None, help="sub-pool width factor (default: the dataset's preset)")
    add(g, "--window", choices=["centred", "released"], default="centred",
        help="sub-pool placement: centred (the paper's intent) or released (the authors' code) (default: %(default)s)")
    add(g, "--first", choices=list(FIRST_RULES), default="high1st",
        help="cycle-0 rule over the first window (default: %(default)s)")
    add(g, "--sampling", choices=list(SAMPLING_RULES), default="confidence",
        help="uncertainty rule of later cycles; confidence-normalized is the authors' released variant "
             "(default: %(default)s)")
    add(g, "--strategy", choices=list(STRATEGIES), default="bal",
        help="bal, or a baseline: random, confidence, margin, entropy, coreset, badge, typiclust, pt4al; "
             "bal-released and bal-fix are BAL's variants (default: %(default)s)")
    add(g, "--cycles", type=positive_int, default=None,
        help="run only the first N cycles of the budget list (default: all)")
    add(g, "--epochs", type=positive_int, default=100, help="epochs per cycle (default: %(default)s)")
    add(g, "--batch_size", type=positive_int, default=128, help="batch size (default: %(default)s)")
    add(g, "--lr", type=positive_float, default=0.1, help="SGD learning rate (default: %(default)s)")
    add(g, "--momentum", type=float, default=0.9, help="SGD momentum (default: %(default)s)")
    add(g, "--weight_decay", type=float, default=5e-4, help="SGD weight decay (default: %(default)s)")
    add(g, "--milestones", "--milestone", type=number_list(int), nargs="+", default=None,
        help="epochs at which the lr is divided by 10 (default: 30 60 90)")
    g.add_argument("--warm-start", "--warm_start", dest="warm_start", action="store_true", default=True,
                   help="start each cycle from the previous cycle's weights, fresh optimizer (default)")
    g.add_argument("--reinit", dest="warm_start", action="store_false",
                   help="start each cycle from a new random initialisation")
    add(g, "--sort", default=None,
        help="accepted for compatibility with the authors' main.py, which parses it and never uses it; "
             "the order always comes from --sorted_dataset_path, as it is")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bal",
        description="BAL: Balancing Active Learning (Li et al., TPAMI 2023) and PT4AL, on images.",
        epilog="Start with `bal demo`. Each step writes into its folder and resumes when run again.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

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
    add(p, "--seed", type=int, default=0, help="k-means seed (default: %(default)s)")

    p = sub.add_parser("train", help="step 3: the active-learning cycles",
                       description="Step 3 (the authors' main.py): per cycle, select from the sliding "
                                   "sub-pool, train on all labels, evaluate on the test split after the "
                                   "last epoch. Writes labeled_C.txt, window_C.json, model_C.pth, "
                                   "metrics.jsonl and metrics.csv into --save.")
    add_data_flags(p)
    add_train_flags(p)
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
    add(p, "--save", default="runs/bal", help="run folder (default: %(default)s)")
    add_common_flags(p)

    p = sub.add_parser("bench", help="compare strategies over seeds: results, table with AUBC, the paper's plot",
                       description="Run every (strategy, seed) pair on the same pool, test split, model and "
                                   "training; share one pretext and CDD order; resume pair by pair. Settings "
                                   "come from --config (YAML, keys as the flags with underscores) and from "
                                   "flags, which win over the file.")
    add(p, "--config", default=None, help="YAML file, e.g. benchmarks/cifar10-cpu.yaml")
    from bal.selection.strategies import STRATEGY_NAMES

    g = p.add_argument_group("overrides (default: the file's value, else bal's)")
    add(g, "--dataset", default=None, help="dataset folder name")
    add(g, "--datapath", default=None, help="folder holding DATASET/{train,test}/CLASS")
    add(g, "--pool_size", type=positive_int, default=None, help="stratified subset of the training split")
    add(g, "--test_size", type=positive_int, default=None, help="stratified subset of the test split")
    add(g, "--regime", choices=["small", "base", "large"], default=None, help="budget regime")
    add(g, "--per_samples_list", "--percentages", dest="percentages", type=number_list(float), nargs="+",
        default=None, help="new labels per cycle in %% of the pool (instead of --regime)")
    add(g, "--strategies", type=lambda t: [x for x in t.replace(",", " ").split() if x], default=None,
        help=f"comma-separated, from: {', '.join(STRATEGY_NAMES)} (default: all)")
    add(g, "--seeds", type=number_list(int), nargs="+", default=None, help="e.g. 0,1,2")
    add(g, "--net", default=None, help="network")
    add(g, "--epochs", type=positive_int, default=None, help="epochs per cycle")
    add(g, "--batch_size", type=positive_int, default=None, help="batch size per cycle")
    add(g, "--lr", type=positive_float, default=None, help="learning rate per cycle")
    add(g, "--rotation_epochs", type=positive_int, default=None, help="pretext epochs")
    add(g, "--out", default=None, help="output folder (default: runs/bench)")
    add(g, "--cache_dir", default=None, help="decoded-image cache")
    add(g, "--device", default=None, help="auto, cpu, cuda, ...")
    add(p, "--no_progress", action="store_true", help="no progress bars")

    p = sub.add_parser("demo", help="BAL against random on scikit-learn's digits: a table and a plot",
                       description="The embedded default: scikit-learn's 8x8 digits as pool and test "
                                   "(fixed split), BAL against random, a per-cycle table and a PNG plot.",
                       formatter_class=fmt)
    add(p, "--out", default="bal-demo", help="output folder")
    add(p, "--seed", type=int, default=0, help="seed")
    add(p, "--no_progress", action="store_true", help="no progress bars")

    from bal.project.serve import add_serve_command

    COMMANDS.update(add_serve_command(sub))
    from bal.project.commands import add_project_commands

    COMMANDS.update(add_project_commands(sub))
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bal")
    except PackageNotFoundError:
        return "unknown"


# -- commands ----------------------------------------------------------------------------
def _open(args, report_dir: Path):
    from bal import distributed
    from bal.pipeline import open_dataset

    # Under torchrun rank 0 decodes and fills the cache first; the others then read it.
    if not distributed.is_main():
        distributed.barrier()
    data = open_dataset(
        args.datapath, args.dataset, image_size=args.image_size, cache_dir=args.cache_dir,
        skip_bad=args.skip_bad_images, progress=not args.no_progress and distributed.is_main(),
        report_dir=report_dir if distributed.is_main() else None,
    )
    if distributed.is_main():
        distributed.barrier()
    return data


def _rotation(args, data, save: Path, prefix: str = "") -> None:
    from bal.loop.trainer import TrainConfig
    from bal.pretext.rotation import train_rotation

    get = lambda name: getattr(args, prefix + name)  # noqa: E731
    config = TrainConfig(
        epochs=get("epochs"), batch_size=get("batch_size"), lr=get("lr"),
        milestones=tuple(flatten(get("milestones")) or (30, 60, 90)),
    )
    log.info("step 1: rotation pretext, %s on %d images, %d epochs -> %s", args.net, len(data.pool), config.epochs, save)
    train_rotation(data.pool, data.augment, net=args.net, config=config, seed=args.seed,
                   device=args.device, save=save, progress=not args.no_progress)


def _kmeans(args, load: Path) -> None:
    from bal import distributed
    from bal.pipeline import kmeans_step

    if not distributed.is_main():
        distributed.barrier()  # rank 0 clusters and writes; the others wait for the files
        return
    cdd, _ = kmeans_step(load, n_clusters=args.clusters, algorithm=args.kmeans, seed=args.seed)
    distributed.barrier()
    log.info("step 2: CDD of %d images (median %.4g) -> %s", len(cdd), float(_median(cdd)), load / "unlabeled_pool.txt")


def _median(x):
    import numpy as np

    return np.median(x)


def _train(args, data, order_path: Path, save: Path) -> list[dict]:
    from bal.loop.cycles import CycleConfig, metrics_table, run_cycles
    from bal.loop.trainer import TrainConfig
    from bal.pipeline import load_pretext
    from bal.presets import budgets_from_percentages, regime_percentages
    from bal.report import plot_curves

    percentages = flatten(args.per_samples_list) or regime_percentages(args.regime)
    if args.cycles is not None:
        if args.cycles > len(percentages):
            raise BalError(
                f"--cycles {args.cycles} is more than the {len(percentages)} cycles of the budget list "
                f"{','.join(f'{p:g}' for p in percentages)} (--per_samples_list / --regime)"
            )
        percentages = percentages[: args.cycles]
    beta = args.beta if args.beta is not None else data.preset.beta[args.regime]
    cycle = CycleConfig(
        budgets=budgets_from_percentages(percentages, len(data.pool)), strategy=args.strategy,
        addendum=args.addendum, beta=beta, window=args.window, first=args.first, sampling=args.sampling,
        warm_start=args.warm_start, seed=args.seed,
    )
    train = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, milestones=tuple(flatten(args.milestones) or (30, 60, 90)),
    )
    pretext = load_pretext(order_path.parent, data.pool.paths, cycle.make_strategy().needs, order_path)
    log.info(
        "step 3: %d cycles of %s (%s labels), beta %g, %s, %d epochs each -> %s",
        len(cycle.budgets), args.strategy, ",".join(map(str, cycle.budgets)), beta, args.net, train.epochs, save,
    )
    rows = run_cycles(
        data.pool, data.test, pretext=pretext, cycle=cycle, train=train, augment=data.augment, net=args.net,
        out_dir=save, device=args.device, progress=not args.no_progress,
    )
    from bal import distributed

    if not distributed.is_main():
        return rows
    print(metrics_table(rows))
    plot_curves({args.strategy: ([r["labeled_pct"] for r in rows], [r["accuracy"] for r in rows])},
                save / "accuracy.png", title=f"{args.dataset}, {args.net}")
    print(f"\nmetrics: {save / 'metrics.csv'}   plot: {save / 'accuracy.png'}")
    return rows


def _say(text: str) -> None:
    from bal import distributed

    if distributed.is_main():
        print(text)


def cmd_rotation(args) -> int:
    save = Path(args.save)
    save.mkdir(parents=True, exist_ok=True)
    _rotation(args, _open(args, save), save)
    _say(f"rotation finished: {save}/rotation.pth, paths.txt, rotation_loss.npy, features.npy")
    return 0


def cmd_kmeans(args) -> int:
    load = Path(args.load)
    _kmeans(args, load)
    _say(f"kmeans finished: {load}/unlabeled_pool.txt, cdd.npy")
    return 0


def cmd_train(args) -> int:
    save = Path(args.save)
    save.mkdir(parents=True, exist_ok=True)
    _train(args, _open(args, save), Path(args.sorted_dataset_path), save)
    return 0


def cmd_run(args) -> int:
    save = Path(args.save)
    pretext = save / "pretext"
    pretext.mkdir(parents=True, exist_ok=True)
    data = _open(args, save)
    from bal.selection.strategies import make_strategy

    if make_strategy(args.strategy).needs:
        _rotation(args, data, pretext, prefix="rotation_")
        _kmeans(args, pretext)
    _train(args, data, pretext / "unlabeled_pool.txt", save)
    return 0


def cmd_bench(args) -> int:
    from bal.bench import BenchConfig, run_bench

    config = BenchConfig.from_yaml(args.config) if args.config else BenchConfig()
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("command", "config", "no_progress") and v is not None}
    for key in ("percentages", "seeds"):
        if key in overrides:
            overrides[key] = flatten(overrides[key])
    config = BenchConfig.from_mapping({**dataclasses.asdict(config), **overrides}, source="bal bench")
    run_bench(config, progress=not args.no_progress)
    return 0


def cmd_demo(args) -> int:
    from bal.demo import run_demo

    run_demo(Path(args.out), seed=args.seed, progress=not args.no_progress)
    return 0


COMMANDS = {"rotation": cmd_rotation, "kmeans": cmd_kmeans, "train": cmd_train, "run": cmd_run,
            "bench": cmd_bench, "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    from bal import distributed

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bal: %(message)s", stream=sys.stderr)
    where = ""
    try:
        if distributed.launched_by_torchrun() and args.command in ("bench", "demo", "kmeans"):
            raise BalError(f"`bal {args.command}` runs in one process; start it without torchrun")
        if getattr(args, "device", None) is not None and args.command != "bench":
            from bal.utils import resolve_device

            args.device = resolve_device(args.device)  # fail on a bad --device before any work
            if distributed.launched_by_torchrun():
                info, args.device = distributed.setup(args.device)
                where = f" (rank {info.rank} of {info.world_size})"
                if not info.is_main:
                    logging.getLogger("bal").setLevel(logging.WARNING)
        return COMMANDS[args.command](args)
    except BalError as e:
        print(f"bal: error{where}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bal: interrupted; run the same command again to resume where it stopped", file=sys.stderr)
        return 130
    except Exception as e:
        if not distributed.launched_by_torchrun():
            raise
        # torchrun stops the other ranks when this one exits non-zero
        print(f"bal: rank {os.environ.get('RANK', '?')} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
