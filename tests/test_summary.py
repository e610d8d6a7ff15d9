"""Benchmark aggregation: AUBC, per-strategy mean ± std, ranks, tables and result files."""

from __future__ import annotations

import csv
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest

from bal.errors import BalError
from bal.report.summary import (
    StrategySummary,
    aubc,
    summarise,
    summary_markdown,
    summary_table,
    write_results,
)

BUDGETS = (2.0, 4.0, 6.0)


def _pair(strategy: str, seed: int, accuracy: Sequence[float], budgets: Sequence[float] = BUDGETS) -> list[dict]:
    """The rows one (strategy, seed) pair of ``bal bench`` yields, one per cycle."""
    return [
        {"strategy": strategy, "seed": seed, "cycle": c, "labelled": int(b * 10), "labelled_pct": b,
         "accuracy": a, "seconds": 1.5}
        for c, (b, a) in enumerate(zip(budgets, accuracy))
    ]


def _bench() -> list[dict]:
    """2 strategies x 3 seeds, interleaved as a parallel bench might write them.

    "a": seed curves [10,20,40], [12,22,42], [14,24,44] -> per-budget mean [12,22,42],
         std 2 each; AUBCs 22.5, 24.5, 26.5 -> 24.5 ± 2.
    "b": constant 30, 20, 10 -> mean [20,20,20], std 10 each; AUBC 20 ± 10.
    """
    return [
        *_pair("b", 0, [30, 30, 30]),
        *_pair("a", 2, [14, 24, 44]),
        *_pair("a", 0, [10, 20, 40]),
        *_pair("b", 2, [10, 10, 10]),
        *_pair("a", 1, [12, 22, 42]),
        *_pair("b", 1, [20, 20, 20]),
    ]


# --- aubc ---------------------------------------------------------------------------------


def test_aubc_hand_computed_trapezoids() -> None:
    assert aubc([2, 4, 6], [10, 20, 40]) == pytest.approx(((15 * 2) + (30 * 2)) / 4)  # 22.5
    # Uneven spacing: (1 * 55 + 3 * 65) / 4 = 62.5.
    assert aubc([1, 2, 5], [50, 60, 70]) == pytest.approx(62.5)
    # Not starting at 0: the range is [x_first, x_last], not [0, x_last].
    assert aubc([10, 20], [40, 60]) == pytest.approx(50.0)


def test_aubc_constant_curve_and_single_point() -> None:
    assert aubc([0.5, 1.0, 7.25, 30.0], [63.7] * 4) == pytest.approx(63.7)
    assert aubc([3.0], [71.2]) == 71.2


@pytest.mark.parametrize("x,y,word", [
    ([2, 2, 6], [1, 2, 3], "strictly increasing"),
    ([2, 6, 4], [1, 2, 3], "strictly increasing"),
    ([2, 4], [1.0], "2 budgets but 1"),
    ([], [], "no budgets"),
    ([2, 4], [1.0, math.nan], "non-finite"),
])
def test_aubc_bad_input(x: list, y: list, word: str) -> None:
    with pytest.raises(BalError, match=word):
        aubc(x, y)


# --- summarise ----------------------------------------------------------------------------


def test_summarise_means_std_and_aubc() -> None:
    a, b = summarise(_bench())
    assert (a.strategy, a.rank, a.n_seeds, b.strategy, b.rank, b.n_seeds) == ("a", 1, 3, "b", 2, 3)
    assert a.budgets == b.budgets == list(BUDGETS)
    assert a.mean == pytest.approx([12, 22, 42])
    assert a.std == pytest.approx([2, 2, 2])  # ddof=1: ddof=0 would give 1.633
    assert (a.aubc_mean, a.aubc_std) == pytest.approx((24.5, 2.0))
    assert b.mean == pytest.approx([20, 20, 20])
    assert b.std == pytest.approx([10, 10, 10])
    assert (b.aubc_mean, b.aubc_std) == pytest.approx((20.0, 10.0))
    assert a.note == b.note == ""


def test_summarise_aubc_is_per_seed_then_averaged() -> None:
    # Seeds stop improving at different times; averaging the curves first would give the
    # same mean AUBC (it is linear) but a std of 0 - the per-seed std must be nonzero.
    rows = _pair("s", 0, [10, 10, 50]) + _pair("s", 1, [10, 50, 50])
    (s,) = summarise(rows)
    assert s.aubc_mean == pytest.approx((20.0 + 40.0) / 2)
    assert s.aubc_std == pytest.approx(math.sqrt(2) * 10.0)


def test_summarise_one_seed_has_zero_std_and_notes_pass_through() -> None:
    (s,) = summarise(_pair("solo", 7, [40, 50, 60]), notes={"solo": "random first cycle", "other": "unused"})
    assert s.std == [0.0, 0.0, 0.0] and s.aubc_std == 0.0 and s.n_seeds == 1
    assert s.note == "random first cycle"


def test_summarise_sorts_cycles_within_a_pair() -> None:
    rows = list(reversed(_pair("a", 0, [10, 20, 40])))
    (s,) = summarise(rows)
    assert s.budgets == list(BUDGETS) and s.mean == [10, 20, 40]


def test_summarise_min_ranking_with_ties() -> None:
    rows = _bench() + [
        # "c" ties "b" at AUBC 20 (19, 20, 21); "d" ties "a" at 24.5 with a different std.
        *_pair("c", 0, [19] * 3), *_pair("c", 1, [20] * 3), *_pair("c", 2, [21] * 3),
        *_pair("d", 0, [24.5] * 3), *_pair("d", 1, [24.5] * 3), *_pair("d", 2, [24.5] * 3),
    ]
    summaries = summarise(rows)
    assert {s.strategy: s.rank for s in summaries} == {"a": 1, "d": 1, "b": 3, "c": 3}
    # By rank, ties by name.
    assert [s.strategy for s in summaries] == ["a", "d", "b", "c"]


def test_summarise_tie_survives_float_rounding() -> None:
    # 0.1 + 0.2 != 0.3 in floats; the AUBCs are the same number and must share a rank.
    rows = _pair("x", 0, [0.1 + 0.2] * 3) + _pair("y", 0, [0.3] * 3) + _pair("z", 0, [0.2] * 3)
    assert {s.strategy: s.rank for s in summarise(rows)} == {"x": 1, "y": 1, "z": 3}


def test_summarise_order_argument() -> None:
    assert [s.strategy for s in summarise(_bench(), order=["b", "a"])] == ["b", "a"]
    # Strategies left out of `order` follow by rank; ranks themselves are unchanged.
    rows = _bench() + _pair("c", 0, [90, 90, 90])
    got = summarise(rows, order=["b"])
    assert [(s.strategy, s.rank) for s in got] == [("b", 3), ("c", 1), ("a", 2)]
    with pytest.raises(BalError, match="'nope'"):
        summarise(_bench(), order=["a", "nope"])


def test_summarise_paired_difference_with_a_reference() -> None:
    # AUBCs per seed: "a" 22.5, 24.5, 26.5; "b" 30, 20, 10. a - b: -7.5, 4.5, 16.5 -> 4.5 ± 12.0
    # (ddof=1), while the unpaired means differ by the same 4.5 with stds of 2 and 10.
    # "c" ran seed 0 only (AUBC 90): one shared seed, 90 - 30 = 60, std 0.
    rows = _bench() + _pair("c", 0, [90, 90, 90])
    got = {s.strategy: s for s in summarise(rows, reference="b")}
    assert (got["a"].diff_mean, got["a"].diff_std, got["a"].diff_seeds) == pytest.approx((4.5, 12.0, 3))
    assert (got["c"].diff_mean, got["c"].diff_std, got["c"].diff_seeds) == pytest.approx((60.0, 0.0, 1))
    assert (got["b"].diff_mean, got["b"].diff_std, got["b"].diff_seeds) == (None, None, 0)
    assert {s.reference for s in got.values()} == {"b"}
    # ranks still come from the AUBC means, not from the differences
    assert [got[k].rank for k in "cab"] == [1, 2, 3]
    # without a reference nothing is compared
    assert {(s.reference, s.diff_mean) for s in summarise(rows)} == {("", None)}
    with pytest.raises(BalError, match="reference 'random' has no results"):
        summarise(rows, reference="random")


def test_tables_show_the_paired_difference() -> None:
    summaries = summarise(_bench(), reference="b")
    header, _, a, b = summary_table(summaries).split("\n")
    assert header.split() == ["rank", "strategy", "2%", "4%", "6%", "AUBC", "vs", "b", "seeds"]
    assert "+4.5 ± 12.0" in a and b.split()[-2:] == ["-", "3"]
    markdown = summary_markdown(summaries).split("\n")
    assert markdown[0].endswith("| AUBC | vs b | seeds |") and "| +4.5 ± 12.0 | 3 |" in markdown[2]
    assert "| - | 3 |" in markdown[3]


def test_summarise_unfinished_pair_is_named() -> None:
    rows = [r for r in _bench() if not (r["strategy"] == "a" and r["seed"] == 1 and r["cycle"] == 2)]
    with pytest.raises(BalError, match=r"'a'.*seed 1 has 2 cycles but seed 0 has 3.*unfinished") as e:
        summarise(rows)
    assert "('a', seed 1)" in str(e.value)


def test_summarise_different_budgets_names_strategy_and_seeds() -> None:
    rows = _bench()
    for r in rows:
        if r["strategy"] == "b" and r["seed"] == 2 and r["cycle"] == 1:
            r["labelled_pct"] = 5.0
    with pytest.raises(BalError, match=r"strategy 'b': seeds 2 and 0 have different budgets.*\[2, 5, 6\]"):
        summarise(rows)


@pytest.mark.parametrize("rows,word", [
    ([], "no result rows"),
    ([{"strategy": "a", "seed": 0, "cycle": 0, "accuracy": 50.0}], "labelled_pct"),
    (_pair("a", 0, [1, 2, 3]) + _pair("a", 0, [1, 2, 3])[:1], "cycle 0 appears twice"),
    (_pair("a", 0, [1, 2, 3], budgets=[2, 6, 4]), "'a' seed 0: aubc: budgets must be strictly increasing"),
])
def test_summarise_bad_rows(rows: list, word: str) -> None:
    with pytest.raises(BalError, match=word):
        summarise(rows)


# --- tables -------------------------------------------------------------------------------


def test_summary_table_layout() -> None:
    # "c": one seed, AUBC ((5.4 + 6.5) + (6.5 + 100)) / 4 = 29.6, ranked first.
    rows = _bench() + _pair("c", 0, [5.4, 6.5, 100])
    assert summary_table(summarise(rows)).split("\n") == [
        "rank  strategy  2%           4%           6%            AUBC         seeds",
        "----  --------  -----------  -----------  ------------  -----------  -----",
        "   1  c          5.4 ± 0.0    6.5 ± 0.0   100.0 ± 0.0   29.6 ± 0.0       1",
        "   2  a         12.0 ± 2.0   22.0 ± 2.0    42.0 ± 2.0   24.5 ± 2.0       3",
        "   3  b         20.0 ± 10.0  20.0 ± 10.0   20.0 ± 10.0  20.0 ± 10.0      3",
    ]


def test_summary_table_formats_pm_and_budget_headers() -> None:
    rows = [
        *_pair("bal", 0, [50.04, 60.0], budgets=[2.5, 10.0]),
        *_pair("bal", 1, [49.96, 62.0], budgets=[2.5, 10.0]),
        *_pair("random", 0, [45.0, 55.0], budgets=[2.5, 10.0]),
    ]
    text = summary_table(summarise(rows, notes={"random": "uniform"}))
    header, rule, first, second = text.split("\n")
    assert header.split() == ["rank", "strategy", "2.5%", "10%", "AUBC", "seeds", "note"]
    assert set(rule) == {"-", " "}
    # bal: 50.0 ± 0.1 (std of 50.04, 49.96 is 0.0566 -> 0.1), 61.0 ± 1.4, AUBC 55.5 ± 0.7.
    assert "50.0 ± 0.1" in first and "61.0 ± 1.4" in first and "55.5 ± 0.7" in first
    assert first.split()[:2] == ["1", "bal"] and first.split()[-1] == "2"
    assert "45.0 ± 0.0" in second and second.endswith("uniform")
    # The "±" signs line up down each column.
    assert [i for i, ch in enumerate(first) if ch == "±"] == [i for i, ch in enumerate(second) if ch == "±"]


def test_summary_table_no_note_column_without_notes() -> None:
    assert "note" not in summary_table(summarise(_bench())).split("\n")[0]


def test_tables_reject_different_budgets_between_strategies() -> None:
    summaries = summarise(_bench() + _pair("c", 0, [1, 2, 3], budgets=[2, 4, 8]))
    with pytest.raises(BalError, match="different budgets"):
        summary_table(summaries)
    with pytest.raises(BalError, match="different budgets"):
        summary_markdown(summaries)
    with pytest.raises(BalError, match="no strategies"):
        summary_table([])


def test_summary_markdown() -> None:
    lines = summary_markdown(summarise(_bench(), notes={"b": "a|b"})).split("\n")
    assert lines == [
        "| rank | strategy | 2% | 4% | 6% | AUBC | seeds | note |",
        "|---:|:---|---:|---:|---:|---:|---:|:---|",
        "| 1 | a | 12.0 ± 2.0 | 22.0 ± 2.0 | 42.0 ± 2.0 | 24.5 ± 2.0 | 3 |  |",
        "| 2 | b | 20.0 ± 10.0 | 20.0 ± 10.0 | 20.0 ± 10.0 | 20.0 ± 10.0 | 3 | a\\|b |",
    ]


# --- files --------------------------------------------------------------------------------


def test_write_results_creates_every_file(tmp_path: Path) -> None:
    rows = _bench()
    summaries = summarise(rows, notes={"a": "cycle 0: random"})
    out = tmp_path / "bench"
    paths = write_results(out, rows, summaries, title="toy bench")
    names = {"results.json", "results.csv", "summary.csv", "summary.txt", "summary.md", "accuracy.png", "accuracy.svg"}
    assert set(paths) == names
    assert {p.name for p in out.iterdir()} == names  # and no temp files left behind
    assert all(paths[n] == out / n for n in names)

    data = json.loads(paths["results.json"].read_text(encoding="utf-8"))
    assert data["rows"] == rows
    assert [StrategySummary(**s) for s in data["summary"]] == summaries

    with open(paths["results.csv"], newline="", encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    assert len(got) == len(rows) == 18
    assert list(got[0]) == ["strategy", "seed", "cycle", "labelled", "labelled_pct", "accuracy", "seconds"]
    assert got[1] == {"strategy": "b", "seed": "0", "cycle": "1", "labelled": "40", "labelled_pct": "4.0",
                      "accuracy": "30", "seconds": "1.5"}

    with open(paths["summary.csv"], newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        got = list(reader)
    assert reader.fieldnames == ["rank", "strategy", "aubc_mean", "aubc_std", "n_seeds",
                                 "mean_2", "std_2", "mean_4", "std_4", "mean_6", "std_6"]
    assert [(r["rank"], r["strategy"], r["n_seeds"]) for r in got] == [("1", "a", "3"), ("2", "b", "3")]
    assert float(got[0]["aubc_mean"]) == pytest.approx(24.5) and float(got[0]["aubc_std"]) == pytest.approx(2.0)
    assert float(got[0]["mean_6"]) == pytest.approx(42.0) and float(got[1]["std_4"]) == pytest.approx(10.0)

    assert paths["summary.txt"].read_text(encoding="utf-8") == summary_table(summaries) + "\n"
    assert paths["summary.md"].read_text(encoding="utf-8") == summary_markdown(summaries) + "\n"
    assert paths["accuracy.png"].read_bytes().startswith(b"\x89PNG")
    svg = ET.fromstring(paths["accuracy.svg"].read_bytes())
    assert svg.tag.endswith("svg")
    assert "toy bench" in paths["accuracy.svg"].read_text(encoding="utf-8")


def test_summary_csv_carries_the_paired_difference(tmp_path: Path) -> None:
    rows = _bench()
    paths = write_results(tmp_path, rows, summarise(rows, reference="b"))
    with open(paths["summary.csv"], newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        got = {r["strategy"]: r for r in reader}
    assert reader.fieldnames[:9] == ["rank", "strategy", "aubc_mean", "aubc_std", "n_seeds",
                                     "reference", "diff_mean", "diff_std", "diff_seeds"]
    assert float(got["a"]["diff_mean"]) == pytest.approx(4.5) and float(got["a"]["diff_std"]) == pytest.approx(12.0)
    assert (got["b"]["reference"], got["b"]["diff_mean"], got["b"]["diff_seeds"]) == ("b", "", "0")


def test_write_results_checks_before_writing(tmp_path: Path) -> None:
    rows = _bench() + _pair("c", 0, [1, 2, 3], budgets=[2, 4, 8])
    with pytest.raises(BalError, match="different budgets"):
        write_results(tmp_path / "out", rows, summarise(rows))
    assert not (tmp_path / "out").exists()
