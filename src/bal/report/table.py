"""Plain-text tables of results, aligned for a terminal (CSV files: :func:`bal.files.write_csv`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Number
from typing import Any

from bal.errors import BalError

MISSING = "-"
_GAP = "  "


def _format_cell(value: Any, spec: str, key: str) -> str:
    if value is None:
        return MISSING
    try:
        return format(value, spec)
    except (ValueError, TypeError) as e:
        raise BalError(f"column {key!r}: cannot format value {value!r} with spec {spec!r} ({e})") from None


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A table aligned for a terminal: header line, a rule of ``-``, one line per row.

    Args:
        rows: one mapping per row; a missing key or ``None`` prints as ``-``.
        columns: ``(key, header, spec)`` per column, ``spec`` a :func:`format` spec
            such as ``".2f"``, ``"d"`` or ``""`` (plain ``str``-like formatting).

    A column is right-aligned when all its present values are numbers (so digits
    line up) and left-aligned otherwise; its header follows the same alignment.
    Columns are separated by two spaces, trailing spaces are stripped, and the
    result has no final newline.

    Raises:
        BalError: a value does not fit its column's format spec.
    """
    if not columns:
        return ""
    cells = [[_format_cell(row.get(key), spec, key) for key, _, spec in columns] for row in rows]
    right = []
    for j, (key, _, _) in enumerate(columns):
        present = [row.get(key) for row in rows if row.get(key) is not None]
        # bool is a Number subclass, but True/False read as words, not quantities.
        right.append(bool(present) and all(isinstance(v, Number) and not isinstance(v, bool) for v in present))
    widths = [max([len(header)] + [len(r[j]) for r in cells]) for j, (_, header, _) in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return _GAP.join(parts).rstrip()

    out = [line([header for _, header, _ in columns]), _GAP.join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)
