#!/usr/bin/env python
"""An embedding better than the rotation pretext's, to test whether features are what holds BAL back.

The validation ablation found every rule that reads the CDD order of the rotation features
(k-NN accuracy about 44 % on the pool) losing its cold start to random. This script makes
a far better embedding without touching the pool, the validation split or the test split:
a ``cnn`` trained, with labels, on the training images a bench leaves out of both (35,000
for the CPU-scale CIFAR-10 configuration), then its penultimate features of the pool, one
row per line of the bench's ``pool.txt``. Give the file to ``bal bench --features FILE``.

It stands for a pretrained backbone from the same domain, the best case a practitioner can
have (``--backbone``/``--features`` with weights of their own); it is a probe of the
hypothesis, not something bal can ship, since those labels are not the user's.

    python benchmarks/held_out_features.py --config benchmarks/ablation/cifar10-cpu-small-val.yaml \\
        --datapath /tmp/c10 --out runs/held-out-features.npy

``--labels N`` trains on a class-stratified N of those images instead (seeded by ``--seed``):
embeddings of graded quality, to see how a rule's gain over random grows with the quality of
the features it reads.

The file is written atomically with a ``.json`` beside it (the command, the images used,
the held-out model's accuracy on the validation split, seconds, the machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # measure this checkout's bal
# ruff: noqa: E402
import numpy as np
import torch

from bal.bench import BenchConfig, bench_splits
from bal.data import stratified_indices
from bal.data.open import open_dataset
from bal.engine.runtime import resolve_device
from bal.engine.trainer import TrainConfig, evaluate, predict, train_model
from bal.files import atomic_save_npy, atomic_write_json
from bal.models import create_model


def held_out_indices(train_paths: list[str], *used: list[str]) -> np.ndarray:
    """Indices of ``train_paths`` in none of the ``used`` path lists (the pool, the validation split)."""
    taken = set().union(*map(set, used))
    return np.array([i for i, p in enumerate(train_paths) if p not in taken], dtype=np.int64)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="the bench configuration whose pool is embedded")
    ap.add_argument("--datapath", required=True)
    ap.add_argument("--out", required=True, help="the .npy file to write (rows in the bench's pool.txt order)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--labels", type=int, default=None,
                    help="train on a class-stratified subset of this many held-out images (default: all)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    config = BenchConfig.from_yaml(args.config)
    device = resolve_device("auto")
    data = open_dataset(args.datapath, config.dataset, image_size=config.image_size, net=config.net,
                        flip=config.flip, cache_dir=config.cache_dir, skip_bad=config.skip_bad_images, progress=False)
    pool, val, _ = bench_splits(config, data.pool, data.test)
    held = held_out_indices(data.pool.paths, pool.paths, val.paths if val is not None else [])
    print(f"held out: {len(held)} training images outside the pool ({len(pool)}) and the validation split "
          f"({len(val) if val is not None else 0})", flush=True)
    chosen = held
    if args.labels is not None:
        chosen = held[stratified_indices(np.asarray(data.pool.labels)[held], args.labels, args.seed, "--labels")]
        print(f"trained on {len(chosen)} of them (--labels, stratified, seed {args.seed})", flush=True)

    train = TrainConfig(epochs=args.epochs, batch_size=128, lr=0.05, milestones=(0.5, 0.75))
    model = create_model(config.net, num_classes=len(data.pool.classes), image_size=int(data.pool.images.shape[1]))
    t0 = time.perf_counter()
    train_model(model, data.pool.images, torch.from_numpy(np.asarray(data.pool.labels, dtype=np.int64)), chosen, train,
                data.augment, device=device, seed=args.seed, stream=("held-out",), progress=False,
                log_epochs=True)
    seconds = time.perf_counter() - t0
    val_acc = None
    if val is not None:
        val_acc = evaluate(model, val.images, val.labels, data.augment, len(val.classes), device=device)[0]
    _, features = predict(model, pool.images, np.arange(len(pool)), data.augment,
                          device=device, features=True)
    atomic_save_npy(args.out, features.astype(np.float32))
    info = {"command": " ".join(sys.argv), "config": args.config, "pool": len(pool), "held_out": len(held),
            "trained_on": len(chosen),
            "epochs": args.epochs, "seed": args.seed, "net": config.net, "shape": list(features.shape),
            "held_out_model_validation_accuracy": val_acc, "train_seconds": round(seconds, 1),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
                       f"{device.type}"}
    atomic_write_json(Path(args.out).with_suffix(".json"), info)
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
