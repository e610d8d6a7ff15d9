"""Learning-curve plots (accuracy against labelled fraction), without pyplot."""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from bal.errors import BalError
from bal.files import atomic_write_bytes

FORMATS = ("png", "svg")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")
_LINESTYLES = ("-", "--", ":")


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    title: str = "",
    xlabel: str = "labelled images (%)",
    ylabel: str = "test accuracy (%)",
    bands: Mapping[str, Sequence[float]] | None = None,
) -> None:
    """Draw one line with markers per curve and save it as PNG or SVG (by ``path``'s suffix).

    Args:
        curves: ``name -> (x, y)``, two sequences of equal length ``N``; the name is
            the legend label. Curves are drawn in the mapping's order.
        path: output file, ending in ``.png`` or ``.svg``; written atomically.
        title, xlabel, ylabel: figure texts.
        bands: optional ``name -> std`` (length ``N``) for some curves; ``y +/- std``
            is shaded in the curve's colour.

    Raises:
        BalError: no curves, an unsupported suffix, mismatched lengths, or a band
            for a curve that is not in ``curves``.
    """
    # Figure + Agg canvas directly: no pyplot global state, nothing to close, safe in threads.
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise BalError(f"cannot plot to {str(path)!r}: suffix {path.suffix!r} is not one of .png, .svg")
    if not curves:
        raise BalError(f"no curves to plot into {str(path)!r}")
    bands = dict(bands or {})
    unknown = sorted(set(bands) - set(curves))
    if unknown:
        raise BalError(f"bands given for unknown curves {unknown}; curves are {list(curves)}")
    for name, (x, y) in curves.items():
        if len(x) != len(y):
            raise BalError(f"curve {name!r}: {len(x)} x values but {len(y)} y values")
        if name in bands and len(bands[name]) != len(y):
            raise BalError(f"curve {name!r}: band has {len(bands[name])} values, curve has {len(y)}")

    # A fixed SVG hash salt and no date keep re-rendered files byte-identical.
    with rc_context({"svg.hashsalt": "bal"}):
        fig = Figure(figsize=(6.4, 4.4), dpi=150)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        colours = [f"C{i}" for i in range(10)]  # matplotlib's default cycle: 10 colours
        for i, (name, (x, y)) in enumerate(curves.items()):
            # the marker moves on by one and the line style changes each time the colours wrap, so no
            # two curves look alike (13 strategies: margin and bal-plus shared a green solid line)
            marker = _MARKERS[(i + i // len(colours)) % len(_MARKERS)]
            style = _LINESTYLES[(i // len(colours)) % len(_LINESTYLES)]
            xs, ys = [float(v) for v in x], [float(v) for v in y]
            (line,) = ax.plot(xs, ys, marker=marker, color=colours[i % len(colours)], markersize=4,
                              linewidth=1.5, linestyle=style, label=str(name))
            if name in bands:
                std = [float(v) for v in bands[name]]
                lo = [m - s for m, s in zip(ys, std)]
                hi = [m + s for m, s in zip(ys, std)]
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        if title:
            # a bench title (data, split, network, seeds) runs past the axes' width: wrap it
            ax.set_title(textwrap.fill(title, 70), fontsize=11)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        buf = io.BytesIO()
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(buf, format=fmt, metadata=metadata)
    atomic_write_bytes(path, buf.getvalue())
