"""Step 3: the labelled pool (:mod:`.pool`) and the active-learning cycles (:mod:`.cycles`)."""

from bal.loop.cycles import METRIC_COLUMNS, run_cycles, select_cycle
from bal.loop.pool import LabelledPool

__all__ = ["METRIC_COLUMNS", "LabelledPool", "run_cycles", "select_cycle"]
