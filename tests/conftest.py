"""Shared fixtures: tiny image datasets written on the fly (no downloads)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}


@pytest.fixture(autouse=True)
def scratch_recommendation(request, monkeypatch):
    """Tests see bal as a machine without the pretrained extra sees it (the rotation pretext and a network
    from scratch by default), whatever is installed, unless marked ``pretrained_default``: the default
    then changes with the environment, and those tests say which one they check."""
    if request.node.get_closest_marker("pretrained_default") is None:
        import bal.recommend

        monkeypatch.setattr(bal.recommend, "pretrained_available", lambda: False)


def class_image(class_index: int, n_classes: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One uint8 (H, W, 3) image whose colour and stripe pattern depend on the class.

    Classes differ in hue (evenly spread) and in stripe orientation/period, so even a
    tiny network separates them; per-image brightness jitter and noise keep the images
    distinct.
    """
    w, h = size
    hue = class_index / max(n_classes, 1)
    base = 127.5 + 100.0 * np.cos(2 * np.pi * (hue + np.array([0.0, 1 / 3, 2 / 3])))
    yy, xx = np.mgrid[0:h, 0:w]
    period = 2 + class_index % 3
    coord = xx if class_index % 2 == 0 else yy
    stripes = np.where((coord // period) % 2 == 0, 25.0, -25.0)
    img = base[None, None, :] + stripes[..., None] + rng.uniform(-20, 20) + rng.normal(0, 8, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_image_folder(
    root: str | os.PathLike,
    classes: Sequence[str],
    n_per_class: int,
    size: tuple[int, int] = (16, 16),
    splits: Sequence[str] = ("train", "test"),
    seed: int = 0,
    ext: str = ".png",
) -> Path:
    """Write ``root/SPLIT/CLASS/NNNN.EXT`` images and return ``Path(root)``.

    ``root`` plays the part of ``DATAPATH/DATASET``. ``size`` is (width, height).
    ``ext`` is ``.png`` (lossless, default), ``.jpg``, ``.bmp`` or ``"mixed"``
    (alternating PNG and JPEG). Content is deterministic given ``seed``.
    """
    root = Path(root)
    for s_index, split in enumerate(splits):
        for c_index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            # A stream per (seed, split, class) so adding a class does not change the others.
            rng = np.random.default_rng([seed, s_index, zlib.crc32(name.encode())])
            for i in range(n_per_class):
                e = (".png", ".jpg")[i % 2] if ext == "mixed" else ext.lower()
                arr = class_image(c_index, len(classes), size, rng)
                Image.fromarray(arr).save(folder / f"{i:04d}{e}", format=_FORMATS[e])
    return root


@pytest.fixture(name="make_image_folder")
def _make_image_folder_fixture():
    """The :func:`make_image_folder` function, for tests that prefer a fixture."""
    return make_image_folder


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    """Every test's image caches (projects' pools included) under a temporary BAL_CACHE_DIR, never ~/.cache."""
    before = os.environ.get("BAL_CACHE_DIR")
    os.environ["BAL_CACHE_DIR"] = str(tmp_path_factory.mktemp("bal-cache"))
    yield
    if before is None:
        os.environ.pop("BAL_CACHE_DIR", None)
    else:
        os.environ["BAL_CACHE_DIR"] = before


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A private image cache folder; BAL_CACHE_DIR points there so nothing touches ~/.cache."""
    d = tmp_path / "bal-cache"
    monkeypatch.setenv("BAL_CACHE_DIR", str(d))
    return d


@pytest.fixture
def tiny_dataset(tmp_path, make_image_folder):
    """(datapath, dataset): 3 classes x 4 images of 16x16 PNG in train and test."""
    make_image_folder(tmp_path / "data" / "toy", ["cat", "dog", "frog"], 4)
    return tmp_path / "data", "toy"
