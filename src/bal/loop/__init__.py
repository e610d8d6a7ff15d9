"""Training and the active-learning cycles."""

from bal.loop.cycles import CycleConfig, metrics_table, run_cycles
from bal.loop.trainer import TrainConfig, evaluate, predict, train_model

__all__ = ["CycleConfig", "TrainConfig", "evaluate", "metrics_table", "predict", "run_cycles", "train_model"]
