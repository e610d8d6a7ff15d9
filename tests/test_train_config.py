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
