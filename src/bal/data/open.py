"""A dataset folder opened for training: decoded pool and test split, and its resolved preset."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bal.data.augment import BatchAugment
from bal.data.cache import load_dataset
from bal.data.imageset import ImageSet
from bal.data.presets import Preset, get_preset
from bal.errors import BalError
from bal.files import write_lines

__all__ = ["Dataset", "augment_for", "open_dataset"]

log = logging.getLogger("bal")


@dataclass
class Dataset:
    """A dataset ready for training: decoded pool and test split, and its resolved preset."""

    pool: ImageSet
    test: ImageSet
    preset: Preset

    @property
    def augment(self) -> BatchAugment:
        return augment_for(self.preset)


def augment_for(preset: Preset) -> BatchAugment:
    return BatchAugment(preset.mean, preset.std, crop_padding=preset.crop_padding, hflip=preset.hflip)


def open_dataset(
    datapath: str | os.PathLike,
    dataset: str,
    *,
    image_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    report_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Decode ``DATAPATH/DATASET/{train,test}`` (cached) and resolve the dataset's preset.

    With ``skip_bad`` the images left out are listed in ``report_dir/skipped_images.txt``.
    """
    preset = get_preset(dataset)
    size = image_size or preset.image_size
    pool, test = load_dataset(
        datapath, dataset, image_size=size, cache_dir=cache_dir, skip_bad=skip_bad, progress=progress
    )
    skipped = list(pool.skipped) + list(test.skipped)
    if skipped:
        log.warning("left out %d unreadable files (--skip-bad-images)", len(skipped))
        if report_dir is not None:
            write_lines(Path(report_dir) / "skipped_images.txt", [f"{p}\t{why}" for p, why in skipped])
    if len(pool) == 0 or len(test) == 0:
        raise BalError(f"{Path(datapath) / dataset}: no readable images left in the train or test split")
    return Dataset(pool, test, preset.resolve(pool.images))
