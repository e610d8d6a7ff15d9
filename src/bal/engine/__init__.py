"""The engine: devices, ranks and seeds (:mod:`.runtime`), the training loop (:mod:`.trainer`)
and run folders bound to their settings (:mod:`.runfolder`)."""

from bal.engine.runfolder import bind_config
from bal.engine.runtime import derive_seed, resolve_device
from bal.engine.trainer import TrainConfig, evaluate, predict, train_model

__all__ = ["TrainConfig", "bind_config", "derive_seed", "evaluate", "predict", "resolve_device", "train_model"]
