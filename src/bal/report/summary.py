"""Aggregate a benchmark: per-strategy mean ± std learning curves, AUBC, ranks and result files.

A benchmark runs every (strategy, seed) pair on the same data; each pair yields one
row per cycle with ``strategy``, ``seed``, ``cycle``, ``labelled``, ``labelled_pct``
(0-100), ``accuracy`` (test accuracy in %, 0-100) and ``seconds``. This module turns
those rows into one :class:`StrategySummary` per strategy and writes the tables and
the plot.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bal.errors import BalError
from bal.files import atomic_write_json, atomic_write_text, write_csv
from bal.report.plot import plot_curves
from bal.report.table import format_table

ROW_COLUMNS = ("strategy", "seed", "cycle", "labelled", "labelled_pct", "accuracy", "seconds")
_REQUIRED = ("strategy", "seed", "cycle", "labelled_pct", "accuracy")

# Budgets are computed as 100 * labelled / pool size, so every seed gets the same float;
# the tolerance only forgives a different order of operations, never a different budget.
_BUDGET_TOL = 1e-9
# AUBCs (in accuracy percentage points) closer than this are the same number that merely
# went through different float rounding, so they share a rank.
_TIE_TOL = 1e-9


def aubc(labelled_pct: Sequence[float], accuracy: Sequence[float]) -> float:
    """Area under the budget-accuracy curve, normalised to the accuracy scale (0-100).

    Args:
        labelled_pct: budgets in % of the pool labelled, strictly increasing.
        accuracy: test accuracy in % at each budget.

    Returns:
        The trapezoidal area over ``[x_first, x_last]`` divided by ``x_last - x_first``,
        i.e. the mean accuracy over the budget range (a constant curve ``a`` gives ``a``);
        with a single budget, that budget's accuracy.

    Raises:
        BalError: empty or unequal-length inputs, non-finite values, or budgets that
            are not strictly increasing.
    """
    xs, ys = [float(v) for v in labelled_pct], [float(v) for v in accuracy]
    if len(xs) != len(ys):
        raise BalError(f"aubc: {len(xs)} budgets but {len(ys)} accuracies")
    if not xs:
        raise BalError("aubc: no budgets")
    if not all(math.isfinite(v) for v in xs + ys):
        raise BalError(f"aubc: non-finite value in budgets {xs} or accuracies {ys}")
    for a, b in zip(xs, xs[1:]):
        if not b > a:
            raise BalError(f"aubc: budgets must be strictly increasing, got {a:g} then {b:g} in {xs}")
    if len(xs) == 1:
        return ys[0]
    area = math.fsum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]))
    return area / (xs[-1] - xs[0])


@dataclass
class StrategySummary:
    """One strategy's results over all its seeds (accuracies in %, budgets in % labelled)."""

    strategy: str
    budgets: list[float]  # labelled %, per cycle (shared by all seeds)
    mean: list[float]  # mean accuracy over seeds, per budget
    std: list[float]  # sample std (ddof=1) over seeds, per budget; 0.0 with one seed
    aubc_mean: float
    aubc_std: float  # ddof=1; 0.0 with one seed
    n_seeds: int
    rank: int  # 1 = best AUBC mean; ties share the smaller rank ("min" ranking)
    note: str = ""  # e.g. what the strategy does in cycle 0; passed through
    # Paired comparison with ``reference`` (see :func:`summarise`): mean and sample std over the
    # seeds both ran of (this strategy's AUBC - the reference's AUBC), and how many seeds that is.
    reference: str = ""  # "" when no reference was given
    diff_mean: float | None = None  # None for the reference itself or when no seed is shared
    diff_std: float | None = None  # ddof=1; 0.0 with one shared seed
    diff_seeds: int = 0


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1); the std of a single value is 0.0, not undefined."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values, mean) if len(values) > 1 else 0.0)


def _same_budgets(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=_BUDGET_TOL, abs_tol=_BUDGET_TOL) for x, y in zip(a, b))


def _group(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[int, list[Mapping[str, Any]]]]:
    """``strategy -> seed -> rows sorted by cycle``, strategies and seeds in first-seen order."""
    groups: dict[str, dict[int, dict[int, Mapping[str, Any]]]] = {}
    for i, row in enumerate(rows):
        missing = [k for k in _REQUIRED if k not in row]
        if missing:
            raise BalError(f"result row {i} lacks {missing}: {dict(row)}")
        strategy, seed, cycle = str(row["strategy"]), int(row["seed"]), int(row["cycle"])
        cycles = groups.setdefault(strategy, {}).setdefault(seed, {})
        if cycle in cycles:
            raise BalError(f"strategy {strategy!r} seed {seed}: cycle {cycle} appears twice in the results")
        cycles[cycle] = row
    return {s: {seed: [c[k] for k in sorted(c)] for seed, c in seeds.items()} for s, seeds in groups.items()}


def _check_budgets(strategy: str, budgets: Mapping[int, list[float]]) -> list[float]:
    """The budgets every seed of ``strategy`` shares; BalError naming the seeds that differ."""
    # The longest run is the reference: a shorter one is most likely an unfinished pair.
    ref_seed = max(budgets, key=lambda s: (len(budgets[s]), -s))
    ref = budgets[ref_seed]
    for seed, b in sorted(budgets.items()):
        if _same_budgets(b, ref):
            continue
        if len(b) < len(ref) and _same_budgets(b, ref[: len(b)]):
            raise BalError(
                f"strategy {strategy!r}: seed {seed} has {len(b)} cycles but seed {ref_seed} has {len(ref)};"
                f" the pair ({strategy!r}, seed {seed}) looks unfinished"
            )
        shown = ", ".join(f"{v:g}" for v in b)
        ref_shown = ", ".join(f"{v:g}" for v in ref)
        raise BalError(
            f"strategy {strategy!r}: seeds {seed} and {ref_seed} have different budgets"
            f" ([{shown}]% vs [{ref_shown}]%); every seed must label the same amounts"
        )
    return [float(v) for v in ref]


def _min_ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """Rank 1 = highest score; a score within ``_TIE_TOL`` of another shares its rank."""
    return {s: 1 + sum(other > v + _TIE_TOL for other in scores.values()) for s, v in scores.items()}


def summarise(
    rows: Sequence[Mapping[str, Any]],
    notes: Mapping[str, str] | None = None,
    order: Sequence[str] | None = None,
    reference: str | None = None,
) -> list[StrategySummary]:
    """One :class:`StrategySummary` per strategy in ``rows``.

    AUBC is computed per seed (see :func:`aubc`), then averaged over seeds; curves are
    averaged per budget. ``notes`` maps strategy -> note (names not in ``rows`` are
    ignored). The output follows ``order`` if given (its strategies first, in that
    order, then any others by rank), else rank, with ties by strategy name.

    With ``reference`` (e.g. ``"random"``), every other strategy also gets the paired
    difference of AUBCs, seed by seed, over the seeds both ran: ``diff_mean`` ± ``diff_std``
    (percentage points). Within a seed the strategies share the pool, the pretext and, when
    their cycle 0 is random, the first labelled set, so the seed's luck cancels in the
    difference and its spread is the one a claim "better than the reference" must beat.

    Raises:
        BalError: no rows, a row without a required key, a repeated cycle, seeds of one
            strategy with different budgets (names the strategy and the seeds; a shorter
            run is reported as an unfinished pair), budgets that do not increase, or an
            ``order`` entry that is not a strategy in ``rows``.
    """
    if not rows:
        raise BalError("no result rows to summarise")
    notes = dict(notes or {})
    groups = _group(rows)
    if order is not None:
        unknown = [s for s in order if s not in groups]
        if unknown:
            raise BalError(f"order names strategies {unknown} that have no results; strategies are {list(groups)}")
        if len(set(order)) != len(order):
            raise BalError(f"order lists a strategy twice: {list(order)}")
    if reference is not None and reference not in groups:
        raise BalError(f"reference {reference!r} has no results; strategies are {list(groups)}")

    partial: dict[str, dict[str, Any]] = {}
    seed_aubcs: dict[str, dict[int, float]] = {}
    for strategy, seeds in groups.items():
        budgets = _check_budgets(strategy, {seed: [float(r["labelled_pct"]) for r in rs] for seed, rs in seeds.items()})
        curves = {seed: [float(r["accuracy"]) for r in rs] for seed, rs in seeds.items()}
        per_seed = seed_aubcs[strategy] = {}
        for seed, acc in curves.items():
            try:
                per_seed[seed] = aubc(budgets, acc)
            except BalError as e:
                raise BalError(f"strategy {strategy!r} seed {seed}: {e}") from None
        mean, std = zip(*(_mean_std(col) for col in zip(*curves.values())))
        aubc_mean, aubc_std = _mean_std(list(per_seed.values()))
        partial[strategy] = dict(
            strategy=strategy, budgets=budgets, mean=list(mean), std=list(std),
            aubc_mean=aubc_mean, aubc_std=aubc_std, n_seeds=len(seeds), note=str(notes.get(strategy, "")),
        )

    if reference is not None:
        ref = seed_aubcs[reference]
        for strategy, p in partial.items():
            shared = sorted(set(seed_aubcs[strategy]) & set(ref))
            p["reference"] = reference
            if strategy != reference and shared:
                p["diff_mean"], p["diff_std"] = _mean_std([seed_aubcs[strategy][i] - ref[i] for i in shared])
                p["diff_seeds"] = len(shared)

    ranks = _min_ranks({s: p["aubc_mean"] for s, p in partial.items()})
    summaries = {s: StrategySummary(rank=ranks[s], **p) for s, p in partial.items()}
    by_rank = sorted(summaries, key=lambda s: (ranks[s], s))
    first = list(order or [])
    return [summaries[s] for s in first + [s for s in by_rank if s not in first]]


def _shared_budgets(summaries: Sequence[StrategySummary]) -> list[float]:
    if not summaries:
        raise BalError("no strategies to tabulate")
    ref = summaries[0]
    for s in summaries[1:]:
        if not _same_budgets(s.budgets, ref.budgets):
            raise BalError(
                f"strategies {ref.strategy!r} and {s.strategy!r} have different budgets"
                f" ({[f'{b:g}' for b in ref.budgets]} vs {[f'{b:g}' for b in s.budgets]}); one table needs one set"
            )
    return ref.budgets


def _budget_labels(budgets: Sequence[float]) -> list[str]:
    """Budgets as people write them: at most one decimal ("2", "9.4"), more only where two would print alike."""
    for digits in range(1, 12):
        labels = [f"{b:.{digits}f}".rstrip("0").rstrip(".") for b in budgets]
        if len(set(labels)) == len(labels):
            return labels
    return [repr(float(b)) for b in budgets]


def _pm(mean: float, std: float) -> str:
    return f"{mean:.1f} ± {std:.1f}"


def _table_rows(summaries: Sequence[StrategySummary]) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Cells (``"mean ± std"`` strings, 1 decimal) and ``(key, header)`` columns shared by both tables."""
    labels = _budget_labels(_shared_budgets(summaries))
    columns = [("rank", "rank"), ("strategy", "strategy")]
    columns += [(f"b{i}", f"{label}%") for i, label in enumerate(labels)]
    columns += [("aubc", "AUBC")]
    reference = next((s.reference for s in summaries if s.reference), "")
    if reference:
        columns.append(("diff", f"vs {reference}"))
    columns.append(("seeds", "seeds"))
    if any(s.note for s in summaries):
        columns.append(("note", "note"))
    rows = []
    for s in summaries:
        row: dict[str, Any] = {"rank": s.rank, "strategy": s.strategy, "seeds": s.n_seeds, "note": s.note}
        row |= {f"b{i}": (m, d) for i, (m, d) in enumerate(zip(s.mean, s.std))}
        row["aubc"] = (s.aubc_mean, s.aubc_std)
        row["diff"] = "-" if s.diff_mean is None else f"{s.diff_mean:+.1f} ± {s.diff_std:.1f}"
        rows.append(row)
    return rows, columns


def _is_pm(key: str) -> bool:
    """Whether a column of :func:`_table_rows` holds ``(mean, std)`` pairs."""
    return key == "aubc" or (key[0] == "b" and key[1:].isdigit())


def summary_table(summaries: list[StrategySummary]) -> str:
    """The summary as a plain-text table (see :func:`bal.report.table.format_table`).

    One row per strategy, in the given order: rank, strategy, ``mean ± std`` accuracy
    (%, 1 decimal) per budget (headers like ``2%``, ``2.5%``), AUBC as ``mean ± std``,
    the paired AUBC difference ``vs REFERENCE`` (signed ``mean ± std``; ``-`` for the
    reference itself) only if the summaries carry one, number of seeds, and a note column
    only if some strategy has a note.

    Raises:
        BalError: no summaries, or strategies with different budgets.
    """
    rows, columns = _table_rows(summaries)
    for key, _ in columns:
        if not _is_pm(key):
            continue
        # format_table left-aligns text cells; padding mean and std to the column's widths
        # lines up the "±" signs (and the digits) down the column.
        means = [f"{r[key][0]:.1f}" for r in rows]
        stds = [f"{r[key][1]:.1f}" for r in rows]
        wm, ws = max(map(len, means)), max(map(len, stds))
        for r, m, d in zip(rows, means, stds):
            r[key] = f"{m.rjust(wm)} ± {d.ljust(ws)}"
    return format_table(rows, [(key, header, "") for key, header in columns])


def _md_cell(value: Any) -> str:
    # A bare "|" would split the cell; newlines would end the table row.
    return str(value).replace("|", "\\|").replace("\n", " ")


def summary_markdown(summaries: list[StrategySummary]) -> str:
    """The table of :func:`summary_table` as GitHub-flavoured markdown (no final newline).

    Raises:
        BalError: no summaries, or strategies with different budgets.
    """
    rows, columns = _table_rows(summaries)
    text_columns = {"strategy", "note"}
    lines = [
        "| " + " | ".join(_md_cell(h) for _, h in columns) + " |",
        "|" + "|".join(":---" if k in text_columns else "---:" for k, _ in columns) + "|",
    ]
    for r in rows:
        cells = [_pm(*r[k]) if _is_pm(k) else _md_cell(r[k]) for k, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _summary_csv_rows(summaries: Sequence[StrategySummary]) -> tuple[list[dict[str, Any]], list[str]]:
    labels = _budget_labels(_shared_budgets(summaries))
    columns = ["rank", "strategy", "aubc_mean", "aubc_std", "n_seeds"]
    if any(s.reference for s in summaries):
        columns += ["reference", "diff_mean", "diff_std", "diff_seeds"]
    fields = list(columns)
    for label in labels:
        columns += [f"mean_{label}", f"std_{label}"]
    rows = []
    for s in summaries:
        row: dict[str, Any] = {k: getattr(s, k) for k in fields}
        for label, m, d in zip(labels, s.mean, s.std):
            row[f"mean_{label}"], row[f"std_{label}"] = m, d
        rows.append(row)
    return rows, columns


def write_results(
    out_dir: str | os.PathLike,
    rows: Sequence[Mapping[str, Any]],
    summaries: list[StrategySummary],
    title: str = "",
    *,
    split: str = "",
    extra_markdown: str = "",
    row_columns: Sequence[str] = ROW_COLUMNS,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write a benchmark's results into ``out_dir`` (created if needed), each file atomically.

    Files: ``results.json`` (``{"rows": rows, "summary": [...], **extra}``), ``results.csv``
    (one line per row, ``row_columns``), ``summary.csv`` (one line per strategy: rank,
    strategy, aubc_mean, aubc_std, n_seeds, with a reference also reference, diff_mean, diff_std,
    diff_seeds (empty for the reference), then ``mean_<b>``, ``std_<b>`` per budget ``b``
    in %), ``summary.txt`` (:func:`summary_table`), ``summary.md``
    (:func:`summary_markdown`, then ``extra_markdown``), and ``accuracy.png`` /
    ``accuracy.svg``: mean accuracy (%) against % labelled, one line per strategy in
    ``summaries`` order, shaded ±1 std where there are 2+ seeds. ``split`` (e.g. "test
    split (5000 images)") heads the text tables and labels the plot's axis.

    Returns:
        File name (e.g. ``"summary.csv"``) -> path.

    Raises:
        BalError: no summaries, or strategies with different budgets (checked before
            anything is written).
    """
    out = Path(out_dir)
    summary_rows, summary_columns = _summary_csv_rows(summaries)  # validates before any write
    table, markdown = summary_table(summaries), summary_markdown(summaries)
    paths = {name: out / name for name in (
        "results.json", "results.csv", "summary.csv", "summary.txt", "summary.md", "accuracy.png", "accuracy.svg",
    )}
    results = {"rows": [dict(r) for r in rows], "summary": [asdict(s) for s in summaries], **(extra or {})}
    atomic_write_json(paths["results.json"], results)
    write_csv(paths["results.csv"], rows, row_columns)
    write_csv(paths["summary.csv"], summary_rows, summary_columns)
    head = f"evaluated on the {split}\n\n" if split else ""
    atomic_write_text(paths["summary.txt"], head + table + "\n")
    atomic_write_text(paths["summary.md"], head + markdown + "\n" + (f"\n{extra_markdown}\n" if extra_markdown else ""))
    curves = {s.strategy: (s.budgets, s.mean) for s in summaries}
    # With one seed the std is 0: a zero-width band would only add an empty path.
    bands = {s.strategy: s.std for s in summaries if s.n_seeds > 1}
    ylabel = f"accuracy on the {split.split(' (')[0]} (%)" if split else "test accuracy (%)"
    for fmt in ("png", "svg"):
        plot_curves(curves, paths[f"accuracy.{fmt}"], title=title, bands=bands, ylabel=ylabel)
    return paths
