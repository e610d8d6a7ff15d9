"""A dataset folder opened for training: decoded pool and test split, and its resolved preset.

The image size (the working size). A preset keeps its own (cifar10 32, tinyimagenet 64,
...). Any other folder works at the network's working size
(:func:`bal.models.working_size`, 64 px for the built-in networks), or at the images'
own size when they are smaller (the median short side of up to 500 files, read from
their headers with the EXIF orientation applied), never above :data:`MAX_AUTO_SIZE`.
``--image_size`` overrides it, up to :data:`MAX_IMAGE_SIZE`. A size whose cache would
not fit on the disk is refused before any decoding (:func:`bal.data.cache.check_cache_room`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bal.data.augment import BatchAugment
from bal.data.cache import check_cache_room, load_dataset
from bal.data.decode import image_header
from bal.data.folders import scan_dataset
from bal.data.imageset import ImageSet
from bal.data.presets import Preset, get_preset
from bal.errors import BalError
from bal.files import write_lines
from bal.validation import check_int

__all__ = ["MAX_AUTO_SIZE", "MAX_IMAGE_SIZE", "Dataset", "augment_for", "choose_image_size", "open_dataset"]

log = logging.getLogger("bal")

#: The largest image side bal chooses by itself for a folder.
MAX_AUTO_SIZE = 256
#: The largest image side bal accepts at all (--image_size): at 1024 px one decoded image is 3 MiB,
#: and one convolution layer of a batch of 64 needs gigabytes already.
MAX_IMAGE_SIZE = 1024
#: Files whose headers are read to learn a folder's typical image size.
_SIZE_SAMPLE = 500


def choose_image_size(paths: list[str], *, preset: Preset, net: str | None = None, given: int | None = None
                      ) -> tuple[int, str]:
    """The square side the images will be decoded to, and why (a sentence for the user).

    See the module docstring for the rule. ``net`` is the network the images are for.
    """
    if given is not None:
        return check_int("image_size", given, 8, MAX_IMAGE_SIZE), "as given (--image_size)"
    if preset.image_size is not None:
        return int(preset.image_size), f"the {preset.name} preset's"
    from bal.models import working_size

    net_size = working_size(net) if net else 64
    step = max(1, len(paths) // _SIZE_SAMPLE)
    sides = [min(wh) for wh in map(image_header, paths[::step]) if wh is not None]
    if not sides:
        return min(net_size, MAX_AUTO_SIZE), f"the working size of {net or 'the network'} (no image header is readable)"
    typical = int(np.median(sides))
    size = max(8, min(net_size, typical, MAX_AUTO_SIZE))
    if size == net_size:
        why = f"the working size of {net or 'the network'} (the images are about {typical} px on their short side)"
    else:
        why = f"the images' own size (about {typical} px on their short side, under the working size {net_size} px)"
    return size, why


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
    net: str | None = None,
    flip: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    report_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Decode ``DATAPATH/DATASET/{train,test}`` (cached) and resolve the dataset's preset.

    The image size is ``image_size``, or chosen for ``net`` by :func:`choose_image_size`
    (and said in the log). ``flip`` overrides the preset's horizontal flips (digits and
    signs change meaning when mirrored). With ``skip_bad`` the images left out are listed
    in ``report_dir/skipped_images.txt``.
    """
    preset = get_preset(dataset)
    if flip is not None:
        preset = replace(preset, hflip=bool(flip))
    train_split, test_split = scan_dataset(datapath, dataset)
    if len(train_split.classes) < 2:
        raise BalError(f"{train_split.root!r} has one class folder ({train_split.classes[0]!r}); a classifier "
                       f"needs at least two classes, each a folder of images under train/ and test/")
    size, why = choose_image_size(train_split.paths, preset=preset, net=net, given=image_size)
    log.info("image size %d px: %s; change it with --image_size", size, why)
    check_cache_room(len(train_split) + len(test_split), size, cache_dir,
                     f"images of {Path(datapath) / dataset}")
    pool, test = load_dataset(datapath, dataset, image_size=size, cache_dir=cache_dir, skip_bad=skip_bad,
                              progress=progress, splits=(train_split, test_split))
    skipped = list(pool.skipped) + list(test.skipped)
    if skipped:
        log.warning("left out %d unreadable files (--skip-bad-images)", len(skipped))
        if report_dir is not None:
            write_lines(Path(report_dir) / "skipped_images.txt", [f"{p}\t{why}" for p, why in skipped])
    if len(pool) == 0 or len(test) == 0:
        raise BalError(f"{Path(datapath) / dataset}: no readable images left in the train or test split")
    return Dataset(pool, test, preset.resolve(pool.images))
