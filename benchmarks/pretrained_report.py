#!/usr/bin/env python
"""The pretrained study's test-split tables: what each rule gains over random, seed by seed.

Reads the ``results.csv`` of finished ``bal bench`` folders and prints, per regime and per
strategy: the accuracy at the first and last budget, the AUBC, the paired AUBC difference
with random (the same seed's random run: mean ± sample std over seeds), in how many seeds the
strategy is ahead of random, and the labels it needs to reach random's final accuracy (on
the mean curves; and the most any one seed needs to reach its own random run's final
accuracy, "-" where a seed never does). Strategies of several folders of one regime are
merged; a folder's strategies can be given a suffix (``--run small DIR " (scratch)"``), so the
same rule with another task model gets a row of its own.

    python benchmarks/pretrained_report.py \\
        --run tiny runs/tiny-test --run tiny runs/tiny-scratch " (scratch)" \\
        --run small runs/small-test --out docs-table.md

Nothing is chosen here: it reports the folders it is given.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bal.report.summary import aubc  # noqa: E402


def read(folder: Path, suffix: str) -> dict[str, dict[int, list[tuple[int, float, float]]]]:
    """strategy -> seed -> [(labelled, labelled %, accuracy)] in cycle order."""
    path = folder / "results.csv"
    if not path.is_file():
        sys.exit(f"{path}: no such file (is the bench finished?)")
    runs: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            runs[row["strategy"] + suffix][int(row["seed"])].append(
                (int(row["cycle"]), int(row["labelled"]), float(row["labelled_pct"]), float(row["accuracy"])))
    return {s: {seed: [r[1:] for r in sorted(rows)] for seed, rows in seeds.items()} for s, seeds in runs.items()}


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def signed(values: list[float]) -> str:
    m = statistics.fmean(values)
    return f"{m:+.1f}" + (f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else "")


def reach(curve: list[tuple[int, float, float]], target: float) -> int | None:
    """The fewest labels at which ``curve`` is at or above ``target`` (None: never)."""
    return next((labelled for labelled, _, acc in curve if acc >= target), None)


def table(regime: str, runs: dict[str, dict[int, list]], reference: str) -> str:
    if reference not in runs:
        sys.exit(f"regime {regime}: no {reference!r} rows to compare with")
    ref = runs[reference]
    lines = [f"### {regime}", "",
             f"Paired with `{reference}` of the same seed. \"reaches\": labels needed to reach {reference}'s final "
             f"accuracy (mean curves; in brackets the most any one seed needs to reach its own {reference} run's).",
             "",
             "| strategy | seeds | first budget | last budget | AUBC | vs " + reference + " | ahead in | reaches |",
             "|:---|---:|---:|---:|---:|---:|---:|---:|"]
    ref_final = statistics.fmean(curve[-1][2] for curve in ref.values())
    rows = []
    for name, seeds in runs.items():
        common = sorted(set(seeds) & set(ref))
        curves = [seeds[s] for s in common]
        if not curves:
            continue
        budgets = [[b for _, b, _ in c] for c in curves]
        if any(b != budgets[0] for b in budgets):
            sys.exit(f"regime {regime}: {name} has seeds with other budgets")
        areas = [aubc([b for _, b, _ in c], [a for _, _, a in c]) for c in curves]
        deltas = [aubc([b for _, b, _ in seeds[s]], [a for _, _, a in seeds[s]])
                  - aubc([b for _, b, _ in ref[s]], [a for _, _, a in ref[s]]) for s in common]
        mean_curve = [(curves[0][i][0], curves[0][i][1], statistics.fmean(c[i][2] for c in curves))
                      for i in range(len(curves[0]))]
        first = reach(mean_curve, ref_final)
        per_seed = [reach(seeds[s], ref[s][-1][2]) for s in common]
        worst = "-" if any(p is None for p in per_seed) else str(max(per_seed))
        ahead = sum(d > 0 for d in deltas)
        rows.append((statistics.fmean(areas), (
            f"| {name} | {len(common)} | {mean_sd([c[0][2] for c in curves])} | {mean_sd([c[-1][2] for c in curves])} "
            f"| {mean_sd(areas)} | {'-' if name == reference else signed(deltas)} "
            f"| {'-' if name == reference else f'{ahead}/{len(common)}'} "
            f"| {'-' if first is None else first} ({worst}) |")))
    lines += [r for _, r in sorted(rows, key=lambda x: -x[0])]
    labelled = [b for b, _, _ in next(iter(ref.values()))]
    lines += ["", f"Budgets (labels): {', '.join(map(str, labelled))}.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", nargs="+", action="append", required=True, metavar="REGIME DIR [SUFFIX]",
                        help="a regime's name, a finished bench folder, and a suffix for its strategies' names")
    parser.add_argument("--reference", default="random")
    parser.add_argument("--out", default=None, help="also write the tables to this file")
    args = parser.parse_args()
    regimes: dict[str, dict] = {}
    for run in args.run:
        if len(run) not in (2, 3):
            parser.error("--run takes REGIME DIR [SUFFIX]")
        regime, folder, suffix = run[0], Path(run[1]), run[2] if len(run) == 3 else ""
        merged = regimes.setdefault(regime, {})
        for name, seeds in read(folder, suffix).items():
            if name in merged:
                sys.exit(f"regime {regime}: {name} comes from two folders; give one a suffix")
            merged[name] = seeds
    text = "\n".join(table(regime, runs, args.reference) for regime, runs in regimes.items())
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
