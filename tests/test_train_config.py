"""The training schedule: checked values, milestones as epochs or fractions, never past the last epoch."""

from __future__ import annotations

import math

import pytest

from bal.cli import main
from bal.engine.trainer import TrainConfig
from bal.errors import BalError
from bal.pretext import ROTATION_DEFAULTS


def test_default_milestones_are_the_authors_at_their_epochs_and_scale_with_others():
    assert TrainConfig().resolved_milestones() == [30, 60, 90]  # 100 epochs
    assert ROTATION_DEFAULTS.resolved_milestones() == [30, 60, 90]  # 120 epochs
    assert TrainConfig(epochs=15).resolved_milestones() == [5, 9, 14]  # floor(f * 15 + 1/2)
    assert TrainConfig(epochs=1).resolved_milestones() == []
    assert TrainConfig(epochs=30, milestones=(20,)).resolved_milestones() == [20]
    assert TrainConfig(epochs=30, milestones=(0.5, 20, 15)).resolved_milestones() == [15, 20]


@pytest.mark.parametrize("kwargs, word", [
    ({"epochs": 15, "milestones": (20,)}, "at or past the last epoch"),
    ({"epochs": 15, "milestones": (15,)}, "at or past the last epoch"),
    ({"milestones": (2.5,)}, "neither a whole epoch nor a fraction"),
    ({"milestones": (0,)}, "milestones"),
    ({"milestones": (math.nan,)}, "milestones"),
    ({"lr": math.inf}, "lr"), ({"lr": 0}, "lr"), ({"momentum": -1}, "momentum"), ({"momentum": 1.0}, "momentum"),
    ({"weight_decay": math.nan}, "weight_decay"), ({"epochs": 0}, "epochs"), ({"batch_size": 2.5}, "batch_size"),
])
def test_bad_schedules_are_refused_naming_the_parameter(kwargs, word):
    with pytest.raises(BalError, match=word):
        TrainConfig(**kwargs)


def test_the_command_line_names_the_flag(capsys, tmp_path):
    code = main(["train", "--epochs", "15", "--milestones", "20", "--datapath", str(tmp_path), "--save",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "--milestones" in err and "last epoch" in err


def test_a_short_last_batch_joins_the_one_before():
    """64k + 2 images at batch 64 end with a 66-image batch, never a 2-image SGD step; every image once."""
    import numpy as np

    from bal.engine.trainer import epoch_batches

    for n, sizes in [(130, [64, 66]), (65, [65]), (64, [64]), (104, [64, 40]), (2, [2]), (127, [64, 63])]:
        batches, _ = epoch_batches(np.arange(n), 64, 0, ("t",), 0)
        assert [len(b) for b in batches] == sizes, n
        assert sorted(np.concatenate(batches).tolist()) == list(range(n))


def test_training_never_takes_a_step_on_a_tiny_batch():
    """Train on 64 + 1 images: the step sizes the loss sees are 65, not 64 and then 1."""
    import numpy as np
    import torch

    from bal.data.augment import BatchAugment
    from bal.engine.trainer import TrainConfig, classification_loss, train_model
    from bal.models import create_model

    seen = []

    def loss(model, x, y):
        seen.append(len(x))
        return classification_loss(model, x, y)

    images = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (65, 16, 16, 3), dtype=np.uint8))
    labels = torch.tensor([0, 1] * 32 + [0])
    model = create_model("cnn", num_classes=2, image_size=16)
    train_model(model, images, labels, np.arange(65), TrainConfig(epochs=2, batch_size=64, milestones=(0.5,)),
                BatchAugment((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
                device=torch.device("cpu"), seed=0, loss_fn=loss, progress=False)
    assert seen == [65, 65]
