#!/usr/bin/env python
"""Fine-tuning from a random head against fine-tuning from the linear probe, on one labelled set.

Takes the labelled images of a bench run folder (``labeled_C.txt`` of a pair of
``benchmarks/cifar10-cpu-pretrained.yaml``), and trains the configuration's pretrained network from
its ImageNet weights on them, 10 epochs of batch 32 at each learning rate given: once with a random
head, once with the head started from the linear probe fitted on the cached embedding (what
``task_model: finetune`` does since 0.3.1); and the probe alone. Prints the accuracy of each on the
``--n_val`` images drawn at random from the bench's validation split (never the test split: this is
how the default learning rate was chosen). Both fine-tuned networks read the rows standardised with
the pool's statistics; only the head's start differs. One labelled set, one seed: a pointer, not a
result.

    python benchmarks/finetune_probe_check.py --data data \\
        --labels runs/tiny-finetune-val/runs/schedule_.../seed-0/labeled_5.txt --lrs 0.01 0.001
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bal.bench import BenchConfig, bench_splits  # noqa: E402
from bal.data.open import open_dataset  # noqa: E402
from bal.embedding.choice import EmbeddingChoice  # noqa: E402
from bal.embedding.finetune import finetune_augment, finetune_net  # noqa: E402
from bal.engine.head import HeadConfig, fit_head  # noqa: E402
from bal.engine.trainer import TrainConfig, evaluate, train_model  # noqa: E402
from bal.files import read_lines  # noqa: E402
from bal.models.head import head_statistics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="benchmarks/cifar10-cpu-pretrained.yaml")
    parser.add_argument("--data", required=True, help="the folder holding cifar10/{train,test}")
    parser.add_argument("--labels", required=True, type=Path, help="a run folder's labeled_C.txt")
    parser.add_argument("--lrs", nargs="+", type=float, default=[0.01, 0.001])
    parser.add_argument("--n_val", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = dataclasses.replace(BenchConfig.from_yaml(args.config), datapath=args.data)
    data = open_dataset(config.datapath, config.dataset, image_size=config.image_size, net=config.net,
                        cache_dir=config.cache_dir, progress=False)
    pool, val, _ = bench_splits(config, data.pool, data.test)
    if not val:
        sys.exit(f"{args.config}: no validation split (val_size 0)")
    index = {p: i for i, p in enumerate(pool.paths)}
    labelled = np.array([index[p] for p in read_lines(args.labels)], dtype=np.int64)
    choice = EmbeddingChoice.from_flags(config.embedding, size=config.embedding_size)
    network = choice.embedder()
    augment = finetune_augment(data.augment, network)
    rows = choice.features(pool.images, cache_dir=config.cache_dir, progress=False)
    labels = torch.from_numpy(np.asarray(pool.labels, dtype=np.int64))
    n_classes = len(pool.classes)
    # drawn, not the first n: a split may list its images class by class
    shown = np.sort(np.random.default_rng(args.seed).choice(len(val), min(args.n_val, len(val)), replace=False))
    val_images, val_labels = val.images[shown], np.asarray(val.labels)[shown]
    statistics = head_statistics(rows)
    device = torch.device("cpu")

    # fitted once: finetune_net copies its weights, so every network below starts from the same probe
    probe = fit_head(rows, pool.labels, labelled, classes=n_classes, config=HeadConfig(), seed=args.seed,
                     stream=("probe",), statistics=statistics)

    def random_head():
        net = finetune_net(network, n_classes)
        with torch.no_grad():  # the probe's standardisation, a random head
            net.row_mean.copy_(torch.from_numpy(statistics[0]))
            net.row_std.copy_(torch.from_numpy(statistics[1]))
        return net

    def report(what: str, net, lr: float | None) -> None:
        t0 = time.perf_counter()
        if lr is not None:
            train = TrainConfig(epochs=10, batch_size=32, lr=lr, weight_decay=1e-4, milestones=(6, 9))
            train_model(net, pool.images, labels, labelled, train, augment, device=device, seed=args.seed,
                        stream=("check",), progress=False)
        accuracy, _ = evaluate(net, val_images, val_labels, augment, n_classes, device=device)
        print(f"| {what} | {'-' if lr is None else lr} | {accuracy:.1f} | {time.perf_counter() - t0:.0f} |",
              flush=True)

    print(f"{len(labelled)} labels from {args.labels}; validation images: {len(val_labels)}; {choice.describe()}\n")
    print("| head | lr | validation accuracy % | seconds |\n|:---|---:|---:|---:|")
    report("the probe alone", finetune_net(network, n_classes, probe), None)
    for lr in args.lrs:
        torch.manual_seed(args.seed)
        report("random, fine-tuned", random_head(), lr)
        report("the probe, fine-tuned", finetune_net(network, n_classes, probe), lr)


if __name__ == "__main__":
    main()
