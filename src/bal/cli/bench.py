"""``bal bench`` (strategies over seeds) and ``bal demo`` (the embedded default)."""

from __future__ import annotations

import argparse
import dataclasses

from bal.cli.flags import (
    add,
    add_network_flags,
    add_warm_start,
    addendum,
    count,
    embedding,
    flatten,
    image_side,
    milestone,
    number_list,
    output_folder,
    positive_float,
    positive_int,
    seed,
)
from bal.errors import BalError


def add_bench_commands(sub) -> dict:
    """Add bench and demo to ``bal``'s sub-commands; returns {command: handler}."""
    from bal.bench import EVAL_SPLITS
    from bal.data import REGIMES
    from bal.embedding import EMBEDDING_FORMS
    from bal.embedding.torchvision import BACKBONES
    from bal.loop.cycles import TASK_MODELS
    from bal.pretext.features import FEATURE_NORMS, VIEWS
    from bal.selection import list_strategies, split_strategy_list
    from bal.selection.strategies import ORDER_SOURCES

    p = sub.add_parser("bench", help="compare strategies over seeds: results, table with AUBC, the paper's plot",
                       description="Run every (strategy, seed) pair on the same pool, evaluation split, model "
                                   "and training; each seed trains its own pretext (reused by any bench with the "
                                   "same pretext settings); resume pair by pair. Choose settings with --eval "
                                   "validation, report --eval test once. Settings come from --config (YAML, keys "
                                   "as the flags with underscores) and from flags, which win over the file.")
    add(p, "--config", default=None, help="YAML file, e.g. benchmarks/cifar10-cpu.yaml")
    g = p.add_argument_group("overrides (default: the file's value, else bal's)")
    add(g, "--dataset", default=None, help="dataset folder name")
    add(g, "--datapath", default=None, help="folder holding DATASET/{train,test}/CLASS")
    add(g, "--pool_size", type=positive_int, default=None, help="stratified subset of the training split")
    add(g, "--val_size", type=count, default=None,
        help="validation images, carved (stratified) from the training split outside the pool; 0 for none "
             "(then nothing can be chosen on validation)")
    add(g, "--test_size", type=positive_int, default=None, help="stratified subset of the test split")
    add(g, "--subset_seed", type=seed, default=None, help="seed of the pool, validation and test subsets")
    add(g, "--eval", choices=list(EVAL_SPLITS), default=None,
        help="the split every cycle is evaluated on: validation to choose, test to report (default: test)")
    add(g, "--regime", choices=list(REGIMES), default=None, help="budget regime")
    add(g, "--per_samples_list", "--percentages", dest="per_samples_list", type=number_list(float), nargs="+",
        default=None, help="new labels per cycle in %% of the pool (instead of --regime)")
    add(g, "--strategies", type=split_strategy_list, default=None,
        help=f"comma-separated, from: {', '.join(list_strategies())}; options in brackets, e.g. "
             f"bal[first=typical,beta=2] (default: all)")
    add(g, "--seeds", type=number_list(int), nargs="+", default=None, help="e.g. 0,1,2")
    add(g, "--net", default=None, help="network")
    add(g, "--epochs", type=positive_int, default=None, help="epochs per cycle")
    add(g, "--batch_size", type=positive_int, default=None, help="batch size per cycle")
    add(g, "--lr", type=positive_float, default=None, help="learning rate per cycle")
    add(g, "--momentum", type=float, default=None, help="SGD momentum per cycle")
    add(g, "--weight_decay", type=float, default=None, help="SGD weight decay per cycle")
    add(g, "--milestones", type=number_list(milestone), nargs="+", default=None,
        help="lr milestones per cycle: epochs, or fractions of the epochs")
    add_warm_start(g, default=None)
    add(g, "--beta", type=positive_float, default=None,
        help="sub-pool width factor of the BAL family (default: the preset's for the regime)")
    add(g, "--window", default=None, help="window placement of the BAL family")
    add(g, "--first", default=None, help="cycle-0 rule of the BAL family")
    add(g, "--sampling", default=None, help="uncertainty rule of the BAL family")
    add(g, "--addendum", type=addendum, default=None,
        help="sub-pool unit A of the BAL family: images, budget or even")
    add(g, "--order_from", choices=list(ORDER_SOURCES), default=None,
        help="where the BAL family's later cycles take their order from")
    add(g, "--rotation_epochs", type=positive_int, default=None, help="pretext epochs")
    add(g, "--rotation_batch_size", type=positive_int, default=None, help="pretext batch size")
    add(g, "--rotation_lr", type=positive_float, default=None, help="pretext learning rate")
    add(g, "--rotation_milestones", type=number_list(milestone), nargs="+", default=None,
        help="pretext lr milestones: epochs, or fractions of the epochs")
    add(g, "--clusters", type=positive_int, default=None, help="k-means clusters (default: the number of classes)")
    add(g, "--image_size", type=image_side, default=None, help="square image side (default: the preset's, or the "
                                                               "network's working size)")
    g.add_argument("--no-flip", "--no_flip", dest="flip", action="store_false", default=None,
                   help="no horizontal flips in training")
    add(g, "--skip_bad_images", action="store_true", default=None, help="leave unreadable files out")
    add(g, "--view", choices=list(VIEWS), default=None, help="rotation view the strategies embed")
    add(g, "--feature_norm", choices=list(FEATURE_NORMS), default=None, help="normalisation before k-means")
    add(g, "--embedding", "--features", dest="embedding", type=embedding, default=None,
        help=f"what the strategies read: {', '.join(EMBEDDING_FORMS)} (a .npy: one row per line of OUT/pool.txt; "
             f"default: rotation)")
    add(g, "--backbone", choices=list(BACKBONES), default=None,
        help="older name of --embedding torchvision:NAME")
    add_network_flags(g)
    add(g, "--task_model", choices=list(TASK_MODELS), default=None,
        help="scratch: the network trained on the images each cycle (the paper's); linear: a head on the "
             "frozen embedding; finetune: the pretrained network trained on the images, its head starting from "
             "that linear probe (a GPU's work: set --epochs and a small --lr, 0.001 for Lite0)")
    add(g, "--head_C", type=positive_float, default=None, help="the head's inverse regularisation (default 1)")
    add(g, "--head_hidden", type=count, default=None, help="hidden units of an MLP head (default 0: linear)")
    add(g, "--pretext_dir", default=None,
        help="where finished pretexts are kept and found (default: pretexts beside --out)")
    add(g, "--out", default=None, help="output folder (default: runs/bench)")
    add(g, "--cache_dir", default=None, help="decoded-image cache")
    add(g, "--device", default=None, help="auto, cpu, cuda, ...")
    add(p, "--no_progress", action="store_true", help="no progress bars")

    p = sub.add_parser("demo", help="BAL and the recommended selection against random on scikit-learn's digits: "
                                    "a table and a plot",
                       description="The embedded default: scikit-learn's 8x8 digits as pool and test "
                                   "(fixed split), the paper's BAL and bal's recommended selection (the one "
                                   "`bal query` uses) against random, a per-cycle table and a PNG plot.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add(p, "--out", default="bal-demo", help="output folder")
    add(p, "--seed", type=seed, default=0, help="seed")
    add(p, "--device", default="cpu", help="cpu (the figures of the README), auto, cuda, ...")
    add(p, "--no_progress", action="store_true", help="no progress bars")
    return {"bench": cmd_bench, "demo": cmd_demo}


def cmd_bench(args) -> int:
    from bal.bench import BenchConfig, run_bench

    config = BenchConfig.from_yaml(args.config) if args.config else BenchConfig()
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("command", "config", "no_progress") and v is not None}
    for key in ("per_samples_list", "seeds", "milestones", "rotation_milestones"):
        if key in overrides:
            overrides[key] = flatten(overrides[key])
    if "backbone" in overrides:
        if "embedding" in overrides:
            raise BalError("give --embedding or --backbone, not both")
        overrides["embedding"] = f"torchvision:{overrides.pop('backbone')}"
    config = BenchConfig.from_mapping({**dataclasses.asdict(config), **overrides}, source="bal bench")
    output_folder(config.out, "--out")
    run_bench(config, progress=not args.no_progress)
    return 0


def cmd_demo(args) -> int:
    from bal.demo import run_demo

    run_demo(output_folder(args.out, "--out"), seed=args.seed, device=args.device, progress=not args.no_progress)
    return 0
