"""Step 1 (rotation prediction, :mod:`.rotation`) and the files steps 1 and 2 leave (:mod:`.store`);
:func:`build_pretext` runs both for a pool in memory."""

from bal.pretext.build import build_pretext
from bal.pretext.rotation import ROTATION_DEFAULTS, rotation_scores, train_rotation
from bal.pretext.store import RotationResult, kmeans_step, load_pretext, read_rotation, read_sorted_pool

__all__ = [
    "ROTATION_DEFAULTS", "RotationResult", "build_pretext", "kmeans_step", "load_pretext", "read_rotation",
    "read_sorted_pool", "rotation_scores", "train_rotation",
]
