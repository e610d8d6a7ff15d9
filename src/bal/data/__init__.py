"""Image folders in, uint8 arrays and batched augmentation out.

``DATAPATH/DATASET/{train,test}/CLASS/*`` is scanned (:mod:`.folders`), decoded once
into a cached uint8 array (:mod:`.cache`) and augmented on tensors batch by batch
(:mod:`.augment`).
"""

from bal.data.augment import BatchAugment
from bal.data.cache import (
    ImageDecodeError,
    ImageSet,
    decode_image,
    default_cache_dir,
    infer_image_size,
    load_dataset,
    load_split,
)
from bal.data.folders import IMAGE_EXTENSIONS, FolderSplit, scan_dataset, scan_split

__all__ = [
    "IMAGE_EXTENSIONS",
    "BatchAugment",
    "FolderSplit",
    "ImageDecodeError",
    "ImageSet",
    "decode_image",
    "default_cache_dir",
    "infer_image_size",
    "load_dataset",
    "load_split",
    "scan_dataset",
    "scan_split",
]
