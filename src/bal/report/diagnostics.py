"""What a benchmark says besides accuracy: class balance of the labelled set, the previous
model's errors on the new picks, and the quality of each pretext's features."""

from __future__ import annotations

import math
import os
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from bal.report.plot import plot_curves

__all__ = ["DIAGNOSTIC_COLUMNS", "diagnostics_markdown", "diagnostics_short", "plot_balance"]

#: Per-cycle diagnostics a benchmark row carries (besides ``class_counts``).
DIAGNOSTIC_COLUMNS = ("class_entropy", "previous_model_wrong")


def _mean(values: Sequence[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(present) if present else None


def _by_strategy_cycle(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, dict[int, float | None]]:
    groups: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[str(r["strategy"])][int(r["cycle"])].append(r.get(key))
    return {s: {c: _mean(v) for c, v in sorted(cycles.items())} for s, cycles in groups.items()}


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def diagnostics_markdown(rows: Sequence[Mapping[str, Any]], quality: Sequence[Mapping[str, Any]]) -> str:
    """A markdown section: per strategy and cycle the labelled set's normalised class entropy
    (1 = balanced) and the share of new picks the previous model got wrong, means over seeds;
    then the feature quality (k-NN accuracy) and rotation accuracy of every pretext."""
    entropy = _by_strategy_cycle(rows, "class_entropy")
    wrong = _by_strategy_cycle(rows, "previous_model_wrong")
    cycles = sorted({int(r["cycle"]) for r in rows})
    lines = ["## Diagnostics", "",
             "Class balance of the labelled set (normalised entropy, 1 = balanced) / share of the new picks the "
             "previous model got wrong (%), mean over seeds, per cycle:", "",
             "| strategy | " + " | ".join(f"cycle {c}" for c in cycles) + " |",
             "|:---|" + "---:|" * len(cycles)]
    for strategy in entropy:
        cells = [f"{_cell(entropy[strategy].get(c), '.3f')} / "
                 f"{_cell(None if wrong[strategy].get(c) is None else 100 * wrong[strategy][c], '.0f')}"
                 for c in cycles]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    if quality:
        lines += ["", "Pretext features: k-NN accuracy (k = 20, cosine, 5-fold, on the pool's simulation labels) "
                      "and rotation accuracy (% of the pool's four rotations predicted right):", "",
                  "| seed | features | normalisation | k-NN accuracy % | rotation accuracy % |",
                  "|---:|:---|:---|---:|---:|"]
        for q in sorted(quality, key=lambda q: (q["features"], q["feature_norm"], q["seed"])):
            lines.append(f"| {q['seed']} | {q['features']} | {q['feature_norm']} | "
                         f"{_cell(q['knn_accuracy'], '.1f')} | {_cell(q['rotation_accuracy'], '.1f')} |")
    return "\n".join(lines)


def diagnostics_short(rows: Sequence[Mapping[str, Any]], quality: Sequence[Mapping[str, Any]]) -> str:
    """The diagnostics in a few terminal lines: per strategy, the class balance and the previous
    model's errors on the new picks at the first and last cycle; the pretexts' k-NN accuracy."""
    entropy = _by_strategy_cycle(rows, "class_entropy")
    wrong = _by_strategy_cycle(rows, "previous_model_wrong")
    lines = ["diagnostics (means over seeds; class balance 1 = balanced; previous model wrong on the new picks):"]
    for strategy, by_cycle in entropy.items():
        first, last = min(by_cycle), max(by_cycle)
        errs = [v for c, v in wrong[strategy].items() if v is not None]
        err = f", previous model wrong {100 * errs[0]:.0f} -> {100 * errs[-1]:.0f} %" if errs else ""
        lines.append(f"  {strategy}: class balance {_cell(by_cycle[first], '.3f')} -> {_cell(by_cycle[last], '.3f')}"
                     f"{err}")
    knn = [q["knn_accuracy"] for q in quality if q.get("knn_accuracy") is not None]
    if knn:
        lines.append(f"  pretext features: k-NN accuracy {min(knn):.1f}-{max(knn):.1f} % over {len(knn)} pretext(s)")
    return "\n".join(lines)


def plot_balance(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Normalised class entropy of the labelled set against % labelled, one line per strategy (mean over seeds)."""
    entropy = _by_strategy_cycle(rows, "class_entropy")
    pct = _by_strategy_cycle(rows, "labelled_pct")
    curves = {s: ([pct[s][c] for c in entropy[s]], [entropy[s][c] for c in entropy[s]]) for s in entropy
              if all(v is not None for v in entropy[s].values())}
    if curves:
        plot_curves(curves, path, title=title, ylabel="class entropy of the labelled set (1 = balanced)")
