#!/usr/bin/env python
"""How ambiguous are a strategy's first labels? Neighbour purity of each pair's cycle-0 selection.

For every pool image: the share of its 20 nearest neighbours (cosine, in the embedding
given) that have its class. The script prints that share averaged over the pool and over
each (strategy, seed)'s first selection (``labeled_0.txt``) of a finished ``bal bench``
folder. A rule that picks images between classes scores low, one that picks from the
middle of a class high. Uses the simulation labels (the class folder of each path).

    python benchmarks/first_picks.py runs/ablation-heldout-small-val runs/held-out-features.npy \\
        --strategies random,probcover,typiclust,bal,bal-plus
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def neighbour_purity(features: np.ndarray, labels: np.ndarray, k: int = 20) -> np.ndarray:
    """(N,) share of each row's ``k`` nearest other rows (cosine) with the same label."""
    from sklearn.neighbors import NearestNeighbors

    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    _, ind = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(x).kneighbors(x)
    return (labels[ind[:, 1:]] == labels[:, None]).mean(1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path, help="a finished bal bench folder (pool.txt, runs/STRATEGY/seed-S)")
    ap.add_argument("features", type=Path, help=".npy embedding, one row per line of pool.txt")
    ap.add_argument("--strategies", required=True, help="comma-separated folder names under runs/")
    ap.add_argument("--k", type=int, default=20)
    args = ap.parse_args(argv)

    paths = [p for p in (args.bench / "pool.txt").read_text().splitlines() if p]
    classes = sorted({Path(p).parent.name for p in paths})
    labels = np.array([classes.index(Path(p).parent.name) for p in paths])
    purity = neighbour_purity(np.load(args.features), labels, args.k)
    where = {p: i for i, p in enumerate(paths)}
    print(f"{args.features}: share of the {args.k} nearest neighbours with the same class")
    print(f"  whole pool ({len(paths)} images): {purity.mean():.3f}")
    for strategy in args.strategies.split(","):
        shares = []
        for folder in sorted(f for f in (args.bench / "runs" / strategy).glob("seed-*") if f.is_dir()):
            picked = [where[p] for p in (folder / "labeled_0.txt").read_text().splitlines() if p]
            shares.append(f"{folder.name} {purity[picked].mean():.3f}")
        print(f"  {strategy}, first selection: {', '.join(shares) or 'no finished seed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
