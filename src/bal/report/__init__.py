"""Result tables (terminal text and CSV), learning-curve plots, and benchmark summaries."""

from bal.report.plot import plot_curves
from bal.report.summary import StrategySummary, aubc, summarise, summary_markdown, summary_table, write_results
from bal.report.table import format_table

__all__ = [
    "StrategySummary", "aubc", "format_table", "plot_curves", "summarise", "summary_markdown", "summary_table",
    "write_results",
]
