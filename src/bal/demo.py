"""``bal demo``: BAL against random on scikit-learn's digits, end to end on a CPU.

The digits (1,797 images of 8x8 pixels, shipped inside scikit-learn, so nothing is
downloaded) are upscaled to 16x16 RGB and split once, stratified, into a pool of
1,300 images and a test split of 497. Both strategies share the pool, the test
split, the network (``cnn``), the training schedule and the seed; BAL additionally
trains the rotation pretext and sorts the pool by CDD. Everything lands in the
output folder, and a second call resumes or reuses it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bal.api import active_learning
from bal.data import images_from_arrays
from bal.engine.trainer import TrainConfig
from bal.files import write_csv
from bal.report import format_table, plot_curves

#: Demo settings, fixed in advance (not tuned on the test split).
PERCENTAGES = [4.0] * 6  # 52 new labels per cycle: 4, 8, ..., 24 % of the pool
TRAIN = TrainConfig(epochs=30, batch_size=32, lr=0.05, milestones=(20,))
ROTATION = TrainConfig(epochs=15, batch_size=128, lr=0.05, milestones=(10,))
BETA = 1.0


def digits_split(seed: int = 0):
    """(pool, test) ImageSets from scikit-learn's digits; the split is fixed by ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.kron(digits.images, np.ones((2, 2)))  # 8x8 -> 16x16, nearest
    images = np.clip(np.round(images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    classes = [str(c) for c in digits.target_names]
    idx = np.arange(len(images))
    pool_idx, test_idx = train_test_split(idx, test_size=497, stratify=digits.target, random_state=seed)
    pool_idx, test_idx = np.sort(pool_idx), np.sort(test_idx)
    make = lambda ids: images_from_arrays(  # noqa: E731
        images[ids], digits.target[ids], classes, [f"digits/{i:04d}" for i in ids]
    )
    return make(pool_idx), make(test_idx)


def run_demo(out: Path, *, seed: int = 0, device="cpu", progress: bool = True) -> list[dict]:
    pool, test = digits_split()
    print(f"bal demo: digits, pool {len(pool)} images, test {len(test)}, network cnn, seed {seed}")
    results, seconds = {}, {}
    for strategy in ("bal", "random"):
        t0 = time.perf_counter()
        print(f"  running {strategy} ...", flush=True)
        results[strategy] = active_learning(
            pool, test, percentages=PERCENTAGES, strategy=strategy, net="cnn", train=TRAIN, rotation=ROTATION,
            beta=BETA, seed=seed, device=device, out_dir=out / strategy, progress=progress,
        )
        seconds[strategy] = time.perf_counter() - t0
    rows = []
    for b, r in zip(results["bal"], results["random"]):
        rows.append({
            "cycle": b["cycle"], "labelled": b["labelled"], "labelled_pct": b["labelled_pct"],
            "bal": b["accuracy"], "random": r["accuracy"], "difference": b["accuracy"] - r["accuracy"],
        })
    print()
    print(format_table(rows, [
        ("cycle", "cycle", "d"), ("labelled", "labelled", "d"), ("labelled_pct", "% pool", ".0f"),
        ("bal", "BAL acc %", ".1f"), ("random", "random acc %", ".1f"), ("difference", "BAL - random", "+.1f"),
    ]))
    mean_b = np.mean([r["bal"] for r in rows])
    mean_r = np.mean([r["random"] for r in rows])
    print(f"\nmean over cycles: BAL {mean_b:.1f} %, random {mean_r:.1f} % (one seed, one split)")
    print(f"time: BAL {seconds['bal']:.0f} s (pretext included), random {seconds['random']:.0f} s")
    write_csv(out / "results.csv", rows, list(rows[0]))
    plot_curves(
        {name: ([r["labelled_pct"] for r in rows], [r[name] for r in rows]) for name in ("bal", "random")},
        out / "demo.png", title=f"digits: BAL vs random (cnn, seed {seed})",
    )
    print(f"table: {out / 'results.csv'}   plot: {out / 'demo.png'}")
    return rows
