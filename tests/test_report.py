"""Text tables, CSV files and learning-curve plots."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bal.errors import BalError
from bal.files import write_csv
from bal.report import format_table, plot_curves

COLUMNS = [("method", "method", ""), ("cycle", "cycle", "d"), ("acc", "accuracy", ".2f")]


def test_format_table_layout() -> None:
    rows = [
        {"method": "bal", "cycle": 1, "acc": 91.234},
        {"method": "random", "cycle": 10, "acc": 5.0},
    ]
    lines = format_table(rows, COLUMNS).split("\n")
    assert lines == [
        "method  cycle  accuracy",
        "------  -----  --------",
        "bal         1     91.23",
        "random     10      5.00",
    ]
    # No cell here is shorter than its column at the right edge, so all lines share the rule's width.
    assert len({len(line) for line in lines}) == 1


def test_format_table_missing_and_none() -> None:
    rows = [{"method": "pt4al", "acc": None}, {"cycle": 3, "acc": 80.0}]
    lines = format_table(rows, COLUMNS).split("\n")
    assert lines[2] == "pt4al       -         -"
    assert lines[3] == "-           3     80.00"


def test_format_table_no_rows_and_wide_values() -> None:
    assert format_table([], COLUMNS).split("\n") == ["method  cycle  accuracy", "------  -----  --------"]
    text = format_table([{"method": "a-very-long-name", "cycle": 123456, "acc": 1234.5}], COLUMNS)
    header, rule, row = text.split("\n")
    assert rule == "----------------  ------  --------"
    assert row == "a-very-long-name  123456   1234.50"
    assert header.startswith("method          ")


def test_format_table_bad_spec_names_column() -> None:
    with pytest.raises(BalError, match="cycle"):
        format_table([{"cycle": "three"}], COLUMNS)


def test_write_csv_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "results.csv"
    rows = [
        {"method": "bal", "acc": 91.23456789, "note": 'has, comma "and" quotes', "extra": 1},
        {"method": "random", "acc": None},
    ]
    write_csv(path, rows, ["method", "acc", "note"])
    with open(path, newline="", encoding="utf-8") as f:
        got = list(csv.reader(f))
    assert got == [
        ["method", "acc", "note"],
        ["bal", "91.23456789", 'has, comma "and" quotes'],
        ["random", "", ""],
    ]
    assert [p.name for p in path.parent.iterdir()] == ["results.csv"]  # no temp files left


def _curves() -> dict:
    x = [1, 2, 3, 4]
    return {"bal": (x, [50.0, 60.0, 65.0, 70.0]), "random": (x, [48.0, 55.0, 61.0, 66.5])}


def test_plot_png(tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    plot_curves(_curves(), path, title="CIFAR-10")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 1000


def test_plot_svg_with_bands(tmp_path: Path) -> None:
    path = tmp_path / "curves.svg"
    plot_curves(_curves(), path, bands={"bal": [1.0, 0.5, 0.4, 0.3]})
    text = path.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    # Deterministic output: re-rendering gives the same bytes.
    first = path.read_bytes()
    plot_curves(_curves(), path, bands={"bal": [1.0, 0.5, 0.4, 0.3]})
    assert path.read_bytes() == first


def test_plot_past_ten_curves_changes_the_line_style(tmp_path: Path) -> None:
    # matplotlib's 10 colours wrap at the 11th curve: it is dashed, so it cannot be taken for the 1st
    def svg(n: int) -> str:
        path = tmp_path / f"{n}.svg"
        plot_curves({f"s{i}": ([2, 4, 6], [30.0 + i, 40.0, 50.0]) for i in range(n)}, path)
        return path.read_text(encoding="utf-8")

    assert "stroke-dasharray" not in svg(10)
    assert "stroke-dasharray" in svg(11)


@pytest.mark.parametrize("kwargs,word", [
    ({"path": "out.pdf"}, "suffix"),
    ({"curves": {}}, "no curves"),
    ({"curves": {"a": ([1, 2], [3.0])}}, "'a'"),
    ({"bands": {"missing": [1.0] * 4}}, "missing"),
    ({"bands": {"bal": [1.0]}}, "band"),
])
def test_plot_bad_input(tmp_path: Path, kwargs: dict, word: str) -> None:
    args = {"curves": _curves(), "path": "out.png"} | kwargs
    args["path"] = tmp_path / args["path"]
    with pytest.raises(BalError, match=word):
        plot_curves(**args)
    assert not args["path"].exists()
