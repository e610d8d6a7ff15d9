"""Per-dataset settings: image size, normalisation, augmentation and the β table.

The β values and the three budget regimes are those of ``docs/method.md``
(from the authors). Any other dataset name gets :func:`generic_preset`: image
size from its files, mean and standard deviation measured on its training split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bal.errors import ParameterError
from bal.validation import check_choice

#: The regime a run uses when none is named (the paper's main setting).
DEFAULT_REGIME = "base"

#: Per-cycle percentages of the pool (k_c = floor(p_c / 100 * N)) for the paper's regimes.
#: small labels 2,4,...,10 % in all; base 10,15,...,40 %; large 10,20,...,100 %.
REGIMES: dict[str, list[float]] = {
    "small": [2.0] * 5,
    "base": [10.0] + [5.0] * 6,
    "large": [10.0] * 10,
}


@dataclass(frozen=True)
class Preset:
    """How to read and augment one dataset.

    ``image_size`` is the square side in pixels (``None``: the most common size of the
    training files). ``mean``/``std`` are per RGB channel on the 0..1 scale
    (``None``: measured on the training images). ``crop_padding`` is the zero padding,
    in pixels, of the random crop used for training.
    """

    name: str
    image_size: int | None
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    crop_padding: int | None
    hflip: bool
    beta: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BETA))

    def beta_for(self, regime: str) -> float:
        """The sub-pool width factor β of this dataset in ``regime`` (docs/method.md's table)."""
        return float(self.beta[check_choice("regime", regime, list(REGIMES))])

    def resolve(self, images: np.ndarray) -> "Preset":
        """Fill the ``None`` fields from the decoded training images, uint8 (N, S, S, 3).

        Mean and standard deviation are one streaming pass over the images (a memory-mapped
        cache is read in chunks of about 64 MiB of float64, each chunk's pages handed back),
        so a split larger than memory is measured in the memory of one chunk.
        """
        from bal.data.cache import release

        size = int(images.shape[1])
        mean, std = self.mean, self.std
        if mean is None or std is None:
            total = np.zeros(3)
            total_sq = np.zeros(3)
            rows = max(1, (1 << 23) // (size * size * 3))  # 8 Mi values of float64 = 64 MiB
            for start in range(0, len(images), rows):
                chunk = images[start : start + rows].reshape(-1, 3).astype(np.float64) / 255.0
                total += chunk.sum(0)
                total_sq += (chunk**2).sum(0)
                release(images, np.arange(start, min(start + rows, len(images))))
            count = images.shape[0] * images.shape[1] * images.shape[2]
            m = total / count
            s = np.sqrt(np.maximum(total_sq / count - m**2, 1e-12))
            mean = tuple(float(x) for x in m) if mean is None else mean
            std = tuple(float(max(x, 1e-3)) for x in s) if std is None else std
        padding = self.crop_padding if self.crop_padding is not None else max(1, round(size / 8))
        return Preset(self.name, size, mean, std, padding, self.hflip, dict(self.beta))


#: β of a dataset without a preset of its own (cifar10's values).
DEFAULT_BETA = {"small": 1.0, "base": 1.2, "large": 2.0}

PRESETS: dict[str, Preset] = {
    "cifar10": Preset(
        "cifar10", 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 4, True,
        {"small": 1.0, "base": 1.2, "large": 2.0},
    ),
    # Digits read differently when mirrored, so SVHN is not flipped.
    "svhn": Preset(
        "svhn", 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 4, False,
        {"small": 1.0, "base": 1.4, "large": 2.0},
    ),
    "caltech101": Preset(
        "caltech101", 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 8, True,
        {"small": 0.5, "base": 1.3, "large": 2.5},
    ),
    "tinyimagenet": Preset(
        "tinyimagenet", 64, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821), 8, True,
        {"small": 0.5, "base": 1.2, "large": 2.5},
    ),
}

def generic_preset(name: str) -> Preset:
    """The preset of a dataset bal has no table for: size, mean and std from its images, flips."""
    return Preset(name, None, None, None, None, True)


def get_preset(dataset: str) -> Preset:
    """The preset for a dataset folder name (case-insensitive), else :func:`generic_preset`."""
    key = dataset.lower().replace("-", "").replace("_", "")
    return PRESETS.get(key, generic_preset(dataset))


def regime_percentages(regime: str) -> list[float]:
    return list(REGIMES[check_choice("regime", regime, list(REGIMES))])


def check_percentages(percentages) -> list[float]:
    """Per-cycle percentages as floats, each finite, > 0 and <= 100 (checked before any data is read)."""
    name = "percentages"
    if not len(percentages):
        raise ParameterError(name, "{name} is empty: give one percentage per cycle, e.g. 10,5,5")
    out = []
    for c, p in enumerate(percentages):
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not np.isfinite(p):
            raise ParameterError(name, f"{{name}}: cycle {c} asks for {p!r}% of the pool; give finite numbers")
        if not 0 < p <= 100:
            raise ParameterError(name, f"{{name}}: cycle {c} asks for {p}% of the pool; percentages must be > 0 "
                                       f"and at most 100")
        out.append(float(p))
    return out


def budgets_from_percentages(percentages: list[float], pool_size: int) -> list[int]:
    """Per-cycle label counts ``k_c = floor(p_c / 100 * N)``, validated.

    Raises :class:`~bal.errors.ParameterError` naming ``percentages`` when a cycle
    would label nothing or the cycles together ask for more images than the pool holds.
    """
    name = "percentages"
    percentages = check_percentages(percentages)
    budgets = []
    for c, p in enumerate(percentages):
        k = int(np.floor(p / 100.0 * pool_size + 1e-9))
        if k < 1:
            raise ParameterError(
                name, f"{{name}}: cycle {c} asks for {p}% of a pool of {pool_size} images, which is less than one image"
            )
        budgets.append(k)
    if sum(budgets) > pool_size:
        raise ParameterError(
            name, f"{{name}} adds up to {sum(percentages):g}% ({sum(budgets)} images), "
                  f"more than the pool of {pool_size} images"
        )
    return budgets
