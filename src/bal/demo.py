"""``bal demo``: BAL and bal's recommendation against random on scikit-learn's digits, on a CPU.

The digits (1,797 images of 8x8 pixels, shipped inside scikit-learn, so nothing is
downloaded) are upscaled to 16x16 RGB and split once, stratified, into a pool of
1,300 images and a test split of 497. The paper's BAL and random share the pool, the
test split, the network (``cnn``), the training schedule and the seed; BAL additionally
trains the rotation pretext and sorts the pool by CDD. bal's recommendation for this
machine (:func:`bal.recommend.recommendation`, what ``bal query`` uses) runs beside
them; when it reads a pretrained embedding with a linear head, random on that same
embedding and head runs too, so the table shows what the embedding buys and what the
rule adds to it. Everything lands in the output folder, and a second call resumes or
reuses it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bal.api import active_learning
from bal.bench import folder_name
from bal.data import images_from_arrays
from bal.engine.trainer import TrainConfig
from bal.files import write_csv
from bal.recommend import recommendation
from bal.report import format_table, plot_curves

#: The pretrained network's input side for the demo's 16-px digits (its own 224 would cost 3x for nothing).
EMBEDDING_SIZE = 128

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
    rec, why = recommendation()
    runs = {"bal": {"strategy": "bal"}, "random": {"strategy": "random"}}  # the paper's and the baseline
    if rec.task_model == "linear":
        head = {"embedding": rec.embedding, "embedding_size": EMBEDDING_SIZE, "task_model": "linear"}
        runs[f"{rec.strategy} ({rec.embedding}, linear)"] = {"strategy": rec.strategy, **head}
        runs[f"random ({rec.embedding}, linear)"] = {"strategy": "random", **head}
    else:
        runs[rec.strategy] = {"strategy": rec.strategy}
    print(f"  bal's recommendation: {rec.describe()} ({why})")
    strategies = list(runs)
    results, seconds = {}, {}
    for strategy, options in runs.items():
        t0 = time.perf_counter()
        print(f"  running {strategy} ...", flush=True)
        results[strategy] = active_learning(
            pool, test, percentages=PERCENTAGES, net="cnn", train=TRAIN, rotation=ROTATION,
            beta=BETA, seed=seed, device=device, out_dir=out / folder_name(strategy), progress=progress, **options,
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
    print(f"\nmean over cycles: {means} (one seed, one split; {rec.strategy} is what `bal query` uses)")
    print("time: " + ", ".join(f"{s} {seconds[s]:.0f} s" for s in strategies)
          + " (BAL's includes its pretext; the first run on an embedding includes computing it)")
    write_csv(out / "results.csv", rows, list(rows[0]))
    plot_curves(
        {s: ([r["labelled_pct"] for r in rows], [r[s] for r in rows]) for s in strategies},
        out / "demo.png", title=f"digits: BAL, bal's recommendation and random (seed {seed})",
    )
    print(f"table: {out / 'results.csv'}   plot: {out / 'demo.png'}")
    return rows

