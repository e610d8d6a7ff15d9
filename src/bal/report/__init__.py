"""Result tables (terminal text and CSV) and learning-curve plots."""

from bal.report.plot import plot_curves
from bal.report.table import format_table, write_csv

__all__ = ["format_table", "plot_curves", "write_csv"]
