"""Image folders in, uint8 arrays and batched augmentation out.

``DATAPATH/DATASET/{train,test}/CLASS/*`` is scanned (:mod:`.folders`), each file
decoded (:mod:`.decode`) once into a cached uint8 array (:mod:`.cache`), held as an
:class:`ImageSet` (:mod:`.imageset`), opened with its dataset's preset (:mod:`.presets`,
:mod:`.open`) and augmented on tensors batch by batch (:mod:`.augment`).
"""

from bal.data.augment import BatchAugment
from bal.data.cache import cached_split, default_cache_dir, load_dataset, load_split
from bal.data.decode import ImageDecodeError, decode_image, encode_png, infer_image_size
from bal.data.folders import IMAGE_EXTENSIONS, FolderSplit, scan_dataset, scan_split, walk_images
from bal.data.imageset import ImageSet, images_from_arrays, stratified_indices, stratified_subset, subset
from bal.data.open import Dataset, augment_for, choose_image_size, open_dataset
from bal.data.presets import (
    DEFAULT_REGIME,
    PRESETS,
    REGIMES,
    Preset,
    budgets_from_percentages,
    generic_preset,
    get_preset,
    regime_percentages,
)

__all__ = [
    "DEFAULT_REGIME",
    "IMAGE_EXTENSIONS",
    "PRESETS",
    "REGIMES",
    "BatchAugment",
    "Dataset",
    "FolderSplit",
    "ImageDecodeError",
    "ImageSet",
    "Preset",
    "augment_for",
    "budgets_from_percentages",
    "choose_image_size",
    "cached_split",
    "decode_image",
    "encode_png",
    "default_cache_dir",
    "generic_preset",
    "get_preset",
    "images_from_arrays",
    "infer_image_size",
    "load_dataset",
    "load_split",
    "open_dataset",
    "regime_percentages",
    "scan_dataset",
    "scan_split",
    "stratified_indices",
    "stratified_subset",
    "subset",
    "walk_images",
]
