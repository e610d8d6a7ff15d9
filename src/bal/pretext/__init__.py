"""Step 1: self-supervised pretext tasks on the unlabelled pool."""

from bal.pretext.rotation import RotationResult, load_rotation, rotation_scores, train_rotation

__all__ = ["RotationResult", "load_rotation", "rotation_scores", "train_rotation"]
