"""Dataset presets, regimes and per-cycle budgets."""

from __future__ import annotations

import numpy as np
import pytest

from bal.data.presets import REGIMES, budgets_from_percentages, get_preset
from bal.errors import BalError


def test_beta_table_matches_the_method():
    table = {"caltech101": (0.5, 1.3, 2.5), "cifar10": (1.0, 1.2, 2.0), "svhn": (1.0, 1.4, 2.0),
             "tinyimagenet": (0.5, 1.2, 2.5)}
    for name, (small, base, large) in table.items():
        assert get_preset(name).beta == {"small": small, "base": base, "large": large}
    assert get_preset("CIFAR10").name == "cifar10" and get_preset("tiny-imagenet").name == "tinyimagenet"


def test_regimes_reach_the_papers_labelled_fractions():
    assert np.cumsum(REGIMES["small"]).tolist() == [2, 4, 6, 8, 10]
    assert np.cumsum(REGIMES["base"]).tolist() == [10, 15, 20, 25, 30, 35, 40]
    assert np.cumsum(REGIMES["large"]).tolist() == [10 * i for i in range(1, 11)]


def test_budgets_floor_percentages_of_the_pool():
    assert budgets_from_percentages([10, 5], 50000) == [5000, 2500]
    assert budgets_from_percentages([2.0] * 5, 1234) == [24] * 5  # floor(24.68)
    assert budgets_from_percentages([10] * 10, 50000) == [5000] * 10  # exactly 100 %, float-safe


@pytest.mark.parametrize("percentages, pool, message", [
    ([60, 50], 100, "more than the pool"), ([0.5], 100, "less than one image"), ([-5], 100, "must be > 0"),
    ([], 100, "empty"),
])
def test_impossible_budgets(percentages, pool, message):
    with pytest.raises(BalError, match=message):
        budgets_from_percentages(percentages, pool)


def test_unknown_dataset_measures_its_own_statistics():
    images = np.zeros((4, 24, 24, 3), dtype=np.uint8)
    images[..., 0] = 255
    preset = get_preset("my-photos").resolve(images)
    assert preset.image_size == 24 and preset.crop_padding == 3
    assert preset.mean == pytest.approx((1.0, 0.0, 0.0)) and preset.std[0] == pytest.approx(1e-3)
    cifar = get_preset("cifar10").resolve(images)
    assert cifar.mean == (0.4914, 0.4822, 0.4465)  # a preset's statistics are kept
