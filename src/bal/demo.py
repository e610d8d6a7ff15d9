"""``bal demo``: BAL and bal's recommendation against random on scikit-learn's digits, on a CPU.

The digits (1,797 images of 8x8 pixels, shipped inside scikit-learn, so nothing is
downloaded) are upscaled to 16x16 RGB and split once, stratified, into a pool of
1,300 images and a test split of 497. The paper's BAL, the selection ``bal query``
uses (:data:`bal.RECOMMENDED`) and random share the pool, the test split, the
network (``cnn``), the training schedule and the seed; BAL additionally trains the
rotation pretext and sorts the pool by CDD. Everything lands in the output folder,
and a second call resumes or reuses it.
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
from bal.selection import RECOMMENDED

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
    """Run the demo into ``out``; returns one row per cycle (accuracies in % of the test split)."""
    pool, test = digits_split()
    print(f"bal demo: digits, pool {len(pool)} images, test {len(test)}, network cnn, seed {seed}")
    strategies = list(dict.fromkeys(["bal", RECOMMENDED, "random"]))  # the paper's, bal query's, the baseline
    results, seconds = {}, {}
    for strategy in strategies:
        t0 = time.perf_counter()
        print(f"  running {strategy} ...", flush=True)
        results[strategy] = active_learning(
            pool, test, percentages=PERCENTAGES, strategy=strategy, net="cnn", train=TRAIN, rotation=ROTATION,
            beta=BETA, seed=seed, device=device, out_dir=out / strategy, progress=progress,
        )
        seconds[strategy] = time.perf_counter() - t0
    others = [s for s in strategies if s != "random"]
    rows = []
    for cycle in zip(*(results[s] for s in strategies)):
        first = cycle[0]
        row = {"cycle": first["cycle"], "labelled": first["labelled"], "labelled_pct": first["labelled_pct"]}
        row.update({s: r["accuracy"] for s, r in zip(strategies, cycle)})
        row.update({f"{s} - random": row[s] - row["random"] for s in others})
        rows.append(row)
    print()
    print(format_table(rows, [
        ("cycle", "cycle", "d"), ("labelled", "labelled", "d"), ("labelled_pct", "% pool", ".0f"),
        *((s, f"{s} %", ".1f") for s in strategies), *((f"{s} - random", f"{s} - random", "+.1f") for s in others),
    ]))
    means = ", ".join(f"{s} {np.mean([r[s] for r in rows]):.1f} %" for s in strategies)
    print(f"\nmean over cycles: {means} (one seed, one split; {RECOMMENDED} is what `bal query` uses)")
    print("time: " + ", ".join(f"{s} {seconds[s]:.0f} s" for s in strategies) + " (BAL's includes its pretext)")
    write_csv(out / "results.csv", rows, list(rows[0]))
    plot_curves(
        {s: ([r["labelled_pct"] for r in rows], [r[s] for r in rows]) for s in strategies},
        out / "demo.png", title=f"digits: BAL, {RECOMMENDED} and random (cnn, seed {seed})",
    )
    print(f"table: {out / 'results.csv'}   plot: {out / 'demo.png'}")
    return rows
