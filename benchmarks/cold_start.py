#!/usr/bin/env python
"""Never catastrophically worse than random: bal's recommendation and the BAL candidates on data nobody tuned on.

Two small data sets, made here from what scikit-learn ships (nothing is downloaded):

* ``digits``: scikit-learn's 1,797 digits, 16 x 16, the demo's fixed split (pool 1,300,
  test 497), 4 % of the pool per cycle over 6 cycles, no horizontal flips;
* ``photos``: a two-class folder of photo crops, 160 crops of each of scikit-learn's two
  sample photos (china.jpg, flower.jpg) at random positions and scales, saved as JPEGs of
  96 x 96 (pool 2 x 128, test 2 x 32), 5 % of the pool per cycle over 5 cycles.

Every strategy runs with ``bal bench`` (test split, ``cnn``, 30 epochs a cycle, 15
pretext epochs, every seed its own pretext), then, per data set, the two targets:

1. AUBC of each candidate (bal's recommendation, `bal`, `bal-plus`) within one standard deviation (of random's) of
   random's AUBC, or above it;
2. its first selection covers every class that random's first selection covers, seed by seed.

    python benchmarks/cold_start.py --json cold-start.json              # 5 seeds, about an hour on 2 CPU cores
    python benchmarks/cold_start.py --quick                             # smoke run: 1 seed, 2 epochs
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # measure this checkout's bal
# ruff: noqa: E402
import numpy as np
from PIL import Image

from bal.bench import BenchConfig, run_bench
from bal.selection import RECOMMENDED, split_strategy_list

#: What is checked against random: bal's recommendation, the paper's BAL and the candidate under study.
CANDIDATES = list(dict.fromkeys([RECOMMENDED, "bal", "bal-plus"]))


def write_digits(root: Path) -> None:
    from bal.demo import digits_split

    pool, test = digits_split()
    for split, data in (("train", pool), ("test", test)):
        for i, (pixels, label) in enumerate(zip(data.images, data.labels)):
            folder = root / "digits" / split / data.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / f"{i:04d}.png")


def write_photos(root: Path, per_class: tuple[int, int] = (128, 32)) -> None:
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    for name, photo in zip(("china", "flower"), load_sample_images().images):
        img = Image.fromarray(photo)
        w, h = img.size
        for split, n in zip(("train", "test"), per_class):
            folder = root / "photos" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                side = int(rng.integers(90, min(w, h)))
                x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
                img.crop((x, y, x + side, y + side)).resize((96, 96), Image.BILINEAR).save(
                    folder / f"{i:03d}.jpg", quality=90)


def first_classes(out: Path, strategy: str, seed: int) -> set[str]:
    from bal.bench import folder_name

    lines = (out / "runs" / folder_name(strategy) / f"seed-{seed}" / "labeled_0.txt").read_text().splitlines()
    return {Path(p).parent.name for p in lines if p}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs: only shows that everything runs")
    parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2,3,4)")
    parser.add_argument("--strategies", default=None, help=f"(default: random, {', '.join(CANDIDATES)})")
    parser.add_argument("--work", default=None, help="folder for data and runs (default: a temporary one)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--embedding", default="rotation",
                        help="what the strategies read (e.g. efficientnet_lite0: the pretrained extra)")
    parser.add_argument("--embedding_size", type=int, default=None)
    parser.add_argument("--task_model", default="scratch", help="scratch or linear (a head on the embedding)")
    args = parser.parse_args()
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2,3,4")).split(",")]
    strategies = split_strategy_list(args.strategies or ",".join(["random", *CANDIDATES]))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bal-cold-"))
    data = work / "data"
    if not (data / "digits").exists():
        write_digits(data)
    if not (data / "photos").exists():
        write_photos(data)
    quick = {"epochs": 2, "rotation_epochs": 1, "milestones": [], "rotation_milestones": []} if args.quick else {}
    report = {"command": shlex.join([sys.executable, *sys.argv]), "seeds": seeds, "embedding": args.embedding,
              "task_model": args.task_model, "datasets": {}}
    for dataset, percentages in (("digits", [4.0] * 6), ("photos", [5.0] * 5)):
        config = BenchConfig.from_mapping({
            "dataset": dataset, "datapath": str(data), "cache_dir": str(work / "cache"), "regime": "small",
            "per_samples_list": percentages, "strategies": strategies, "seeds": seeds, "net": "cnn", "epochs": 30,
            "batch_size": 32, "lr": 0.05, "milestones": [20], "rotation_epochs": 15, "rotation_batch_size": 128,
            "rotation_lr": 0.05, "rotation_milestones": [10], "flip": dataset != "digits",
            "embedding": args.embedding, "embedding_size": args.embedding_size, "task_model": args.task_model,
            "out": str(work / f"bench-{dataset}-{args.embedding}-{args.task_model}"), "device": "cpu", **quick},
            source=dataset)
        run_bench(config, progress=False)
        summary = json.loads((Path(config.out) / "results.json").read_text())["summary"]
        aubc = {s["strategy"]: (s["aubc_mean"], s["aubc_std"]) for s in summary}
        covered = {s: [sorted(first_classes(Path(config.out), s, seed)) for seed in seeds] for s in strategies}
        rnd = aubc["random"]
        report["datasets"][dataset] = {
            "aubc": aubc, "first_classes": covered,
            "targets": {s: {"aubc": aubc[s][0] >= rnd[0] - rnd[1],
                            "coverage": all(set(r) <= set(c) for r, c in zip(covered["random"], covered[s]))}
                        for s in strategies if s != "random"},
        }
    print(f"{'data set':<8}  {'strategy':<14}  {'AUBC':>13}  first selection's classes (per seed)")
    for dataset, entry in report["datasets"].items():
        for s, (m, sd) in entry["aubc"].items():
            classes = "; ".join(",".join(c) if len(c) <= 4 else f"{len(c)} classes" for c in entry["first_classes"][s])
            print(f"{dataset:<8}  {s:<14}  {m:6.1f} ± {sd:4.1f}  {classes}")
        for s, met in entry["targets"].items():
            print(f"{dataset:<8}  target: AUBC of {s} >= random's - 1 std: {'yes' if met['aubc'] else 'NO'}; "
                  f"its first selections cover random's classes: {'yes' if met['coverage'] else 'NO'}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
