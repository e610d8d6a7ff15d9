"""Tests for bal.data: folder scanning, decoding + cache, batched augmentation."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import class_image, make_image_folder
from PIL import Image, ImageFile

import bal.data.cache as cache_mod
from bal.data import (
    IMAGE_EXTENSIONS,
    BatchAugment,
    FolderSplit,
    ImageSet,
    decode_image,
    default_cache_dir,
    infer_image_size,
    load_dataset,
    load_split,
    scan_dataset,
    scan_split,
)
from bal.data.augment import crop_flip
from bal.errors import DataError

# --------------------------------------------------------------------------- helpers


def save(path: Path, img: Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def noise_rgb(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def split_of(root: Path, classes: dict[str, int], size=(8, 8)) -> Path:
    """A bare split folder ``root/CLASS/i.png``; returns root."""
    for c, n in classes.items():
        for i in range(n):
            save(root / c / f"{i}.png", noise_rgb(*size, seed=i))
    return root


# --------------------------------------------------------------------------- scanning


def test_image_extensions():
    assert IMAGE_EXTENSIONS == (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def test_scan_dataset_sorted_classes_labels_and_relative_paths(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data" / "toy", ["zebra", "ant", "Moose"], 3, size=(8, 8))
    monkeypatch.chdir(tmp_path)
    train, test = scan_dataset("data", "toy")
    assert isinstance(train, FolderSplit)
    # Codepoint order, as torchvision's ImageFolder: upper case first.
    assert train.classes == test.classes == ["Moose", "ant", "zebra"]
    assert train.root == os.path.join("data", "toy", "train")
    assert train.paths[0] == os.path.join("data", "toy", "train", "Moose", "0000.png")
    assert train.paths == sorted(train.paths)
    assert train.labels.dtype == np.int64 and train.labels.shape == (9,)
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for p, y in zip(train.paths, train.labels):
        assert p.split(os.sep)[3] == train.classes[y]
    assert len(train) == len(test) == 9 and train.bad == []


def test_scan_recurses_into_subfolders_and_matches_extensions_case_insensitively(tmp_path):
    root = tmp_path / "train"
    for rel in ["a/z.png", "a/sub/b.PNG", "a/sub/deeper/c.JpEg", "a/m.TIFF", "b/x.webp", "b/y.bmp"]:
        formats = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "webp": "WEBP", "bmp": "BMP"}
        fmt = formats[rel.rsplit(".", 1)[1].lower()]
        save(root / rel, noise_rgb(4, 4), format=fmt)
    s = scan_split(root)
    rel = [os.path.relpath(p, root).replace(os.sep, "/") for p in s.paths]
    assert rel == ["a/m.TIFF", "a/sub/b.PNG", "a/sub/deeper/c.JpEg", "a/z.png", "b/x.webp", "b/y.bmp"]
    assert s.labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert s.bad == []


def test_hidden_files_and_folders_are_ignored(tmp_path):
    root = split_of(tmp_path / "train", {"a": 2, "b": 1})
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x01junk")
    (root / ".DS_Store").write_bytes(b"junk")
    save(root / "a" / ".hidden" / "x.png", noise_rgb(8, 8))
    save(root / ".git" / "objects" / "y.png", noise_rgb(8, 8))
    (root / "b" / "._0.png").write_bytes(b"AppleDouble")
    s = scan_split(root)
    assert s.classes == ["a", "b"]
    assert len(s) == 3 and s.bad == []


def test_non_image_file_is_bad_and_reported_by_load(tmp_path):
    root = split_of(tmp_path / "train", {"a": 2, "b": 2})
    (root / "a" / "notes.txt").write_text("hello")
    (root / "b" / "README").write_text("hello")
    s = scan_split(root)
    assert len(s) == 4
    assert (str(root / "a" / "notes.txt"), "not an image file (extension .txt)") in s.bad
    assert (str(root / "b" / "README"), "not an image file (no extension)") in s.bad
    with pytest.raises(DataError) as e:
        load_split(s, cache_dir=tmp_path / "c", progress=False)
    msg = str(e.value)
    assert f"  {root / 'a' / 'notes.txt'}: not an image file (extension .txt)" in msg
    assert f"{root / 'b' / 'README'}: not an image file" in msg


def test_file_directly_in_split_folder_is_bad(tmp_path):
    root = split_of(tmp_path / "train", {"a": 1})
    save(root / "stray.png", noise_rgb(8, 8))
    s = scan_split(root)
    assert [p for p, _ in s.bad] == [str(root / "stray.png")]
    assert "class folder" in s.bad[0][1]


def test_empty_class_folders_are_all_named(tmp_path):
    root = split_of(tmp_path / "train", {"a": 1})
    (root / "empty1").mkdir()
    (root / "empty2" / "sub").mkdir(parents=True)
    (root / "empty2" / "notes.txt").write_text("x")  # a non-image does not count
    with pytest.raises(DataError) as e:
        scan_split(root)
    lines = str(e.value).splitlines()
    assert lines[0].startswith("2 class folder(s)")
    assert lines[1:] == [f"  {root / 'empty1'}", f"  {root / 'empty2'}"]


def test_split_without_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        scan_split(tmp_path / "train")


def test_class_mismatch_lists_the_classes(tmp_path):
    base = tmp_path / "data" / "ds"
    split_of(base / "train", {"cat": 1, "dog": 1, "emu": 1})
    split_of(base / "test", {"cat": 1, "dog": 1, "fox": 1, "gnu": 1})
    with pytest.raises(DataError) as e:
        scan_dataset(tmp_path / "data", "ds")
    msg = str(e.value)
    assert "only in train: emu" in msg
    assert "only in test: fox, gnu" in msg


def test_missing_split_folder_names_the_path(tmp_path):
    base = tmp_path / "data" / "ds"
    split_of(base / "train", {"cat": 1})
    with pytest.raises(DataError) as e:
        scan_dataset(tmp_path / "data", "ds")
    msg = str(e.value)
    assert repr(os.path.join(str(tmp_path / "data"), "ds", "test")) in msg
    assert "DATAPATH/DATASET/{train,test}/CLASS" in msg


def test_missing_dataset_folder_names_the_path(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError) as e:
        scan_dataset(tmp_path / "data", "nope")
    assert repr(os.path.join(str(tmp_path / "data"), "nope")) in str(e.value)
    with pytest.raises(DataError, match="does not exist"):
        scan_split(tmp_path / "data" / "nope" / "train")


# --------------------------------------------------------------------------- decoding


def test_load_dataset_png_roundtrip_exact(tmp_path, cache_dir, monkeypatch):
    classes = ["b", "a"]
    make_image_folder(tmp_path / "data" / "toy", classes, 3, size=(12, 12), seed=3)
    monkeypatch.chdir(tmp_path)
    train, test = load_dataset("data", "toy", progress=False)
    assert isinstance(train, ImageSet)
    assert train.images.dtype == np.uint8 and train.images.shape == (6, 12, 12, 3)
    assert test.images.shape == (6, 12, 12, 3)
    assert train.labels.dtype == np.int64 and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert train.classes == ["a", "b"] and train.skipped == []
    assert train.paths[0] == os.path.join("data", "toy", "train", "a", "0000.png")
    for img, p in zip(train.images, train.paths):
        assert np.array_equal(img, np.asarray(Image.open(p).convert("RGB")))
    assert any(cache_dir.glob("*.npy")), "BAL_CACHE_DIR should be used by default"


def _mode_zoo(root: Path) -> dict[str, np.ndarray]:
    """Write one image per awkward mode/format; returns file name -> expected RGB pixel."""
    expect: dict[str, np.ndarray] = {}
    s = (16, 16)

    def put(name, img, rgb, **kw):
        save(root / name, img, **kw)
        expect[name] = np.array(rgb, dtype=np.uint8)

    put("gray_white.png", Image.new("L", s, 255), (255, 255, 255))
    put("gray_alpha.png", Image.new("LA", s, (200, 0)), (200, 200, 200))
    put("bilevel.png", Image.new("1", s, 1), (255, 255, 255))
    put("gray16_white.png", Image.fromarray(np.full((16, 16), 65535, np.uint16)), (255, 255, 255))
    put("gray16_half.tif", Image.fromarray(np.full((16, 16), 32896, np.uint16)), (128, 128, 128))
    pal = Image.new("P", s, 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    put("palette.png", pal, (255, 0, 0))
    put("palette_transparent.png", pal.copy(), (255, 0, 0), transparency=1)
    put("palette_alpha_bytes.png", pal.copy(), (255, 0, 0), transparency=bytes([0, 128]))
    put("palette.bmp", pal.copy(), (255, 0, 0))
    put("rgba.png", Image.new("RGBA", s, (10, 20, 30, 0)), (10, 20, 30))  # alpha dropped
    put("cmyk.jpg", Image.new("CMYK", s, (0, 0, 0, 0)), (255, 255, 255), quality=100)
    put("rgb.bmp", Image.new("RGB", s, (1, 2, 3)), (1, 2, 3))
    put("rgb.webp", Image.new("RGB", s, (0, 0, 255)), (0, 0, 255), lossless=True)
    put("rgb.jpeg", Image.new("RGB", s, (0, 255, 0)), (0, 255, 0), quality=100)
    put("big.png", Image.new("RGB", (40, 24), (9, 99, 199)), (9, 99, 199))  # resized
    put("small_gray.png", Image.new("L", (5, 7), 77), (77, 77, 77))  # resized
    return expect


def test_every_mode_and_size_becomes_rgb_square(tmp_path):
    root = tmp_path / "train"
    expect = _mode_zoo(root / "x")
    split = scan_split(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. PIL's palette-transparency warning
        data = load_split(split, cache_dir=tmp_path / "c", progress=False)
    assert data.skipped == []
    assert data.images.shape == (len(expect), 16, 16, 3) and data.images.dtype == np.uint8
    for img, p in zip(data.images, data.paths):
        want = expect[os.path.basename(p)]
        lossy = p.endswith((".jpg", ".jpeg"))
        diff = np.abs(img.astype(int) - want.astype(int)).max()
        assert diff <= (2 if lossy else 0), (p, img[0, 0], want)


def test_resize_keeps_the_aspect_ratio_by_centre_crop(tmp_path):
    # the aspect ratio is kept; up to 2:1 the central square is taken (30x20 -> x 5..25)
    img = noise_rgb(30, 20, seed=5)
    p = save(tmp_path / "x.png", img)
    got = decode_image(str(p), 16)
    assert got.shape == (16, 16, 3) and got.dtype == np.uint8
    assert np.array_equal(got, np.asarray(img.resize((16, 16), Image.BILINEAR, box=(5, 0, 25, 20))))


def test_infer_image_size_uses_most_common_size(tmp_path):
    paths = [str(save(tmp_path / f"a{i}.png", noise_rgb(20, 24))) for i in range(3)]
    paths += [str(save(tmp_path / f"b{i}.png", noise_rgb(8, 8))) for i in range(2)]
    (tmp_path / "junk.png").write_bytes(b"nope")
    paths.append(str(tmp_path / "junk.png"))
    assert infer_image_size(sorted(paths)) == 20
    with pytest.raises(DataError):
        infer_image_size([str(tmp_path / "junk.png")])


def test_load_dataset_applies_train_size_to_test(tmp_path, cache_dir):
    base = tmp_path / "data" / "ds"
    split_of(base / "train", {"a": 2, "b": 2}, size=(12, 12))
    split_of(base / "test", {"a": 1, "b": 1}, size=(20, 20))
    train, test = load_dataset(tmp_path / "data", "ds", progress=False)
    assert train.images.shape[1:] == test.images.shape[1:] == (12, 12, 3)
    train, test = load_dataset(tmp_path / "data", "ds", image_size=10, progress=False)
    assert train.images.shape[1:] == test.images.shape[1:] == (10, 10, 3)


def _bad_folder(tmp_path: Path) -> tuple[FolderSplit, dict[str, str]]:
    root = split_of(tmp_path / "train", {"a": 3, "b": 3}, size=(16, 16))
    garbage = root / "a" / "garbage.jpg"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    buf = io.BytesIO()
    noise_rgb(64, 64).save(buf, format="JPEG", quality=95)
    truncated = root / "b" / "truncated.jpg"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    empty = root / "b" / "empty.png"
    empty.write_bytes(b"")
    text = root / "a" / "labels.txt"
    text.write_text("x")
    reasons = {
        str(garbage): "cannot identify image file",
        str(truncated): "truncated/corrupt: ",
        str(empty): "empty file",
        str(text): "not an image file (extension .txt)",
    }
    return scan_split(root), reasons


def test_corrupt_files_error_lists_every_bad_file(tmp_path, monkeypatch):
    split, reasons = _bad_folder(tmp_path)
    # Even if some other library allowed truncated images, ours must refuse them.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(DataError) as e:
        load_split(split, cache_dir=tmp_path / "c", progress=False)
    lines = str(e.value).splitlines()
    assert lines[0].startswith(f"4 bad image file(s) under {split.root!r}")
    assert "--skip-bad-images" in lines[0]
    body = lines[1:]
    assert len(body) == 4
    for path, reason in reasons.items():
        assert any(line.startswith(f"  {path}: {reason}") for line in body), (path, body)
    assert not list((tmp_path / "c").glob("*.npy")), "a failed load must not write a cache"


def test_skip_bad_leaves_them_out_and_reports_them(tmp_path):
    split, reasons = _bad_folder(tmp_path)
    data = load_split(split, cache_dir=tmp_path / "c", skip_bad=True, progress=False)
    assert len(data) == 6 and data.images.shape == (6, 16, 16, 3)
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert all(os.path.basename(p) in {"0.png", "1.png", "2.png"} for p in data.paths)
    assert sorted(p for p, _ in data.skipped) == sorted(reasons)
    for path, reason in data.skipped:
        assert reason.startswith(reasons[path])
    # The skipped list survives a trip through the cache.
    again = load_split(split, cache_dir=tmp_path / "c", skip_bad=True, progress=False)
    assert again.skipped == data.skipped and again.paths == data.paths


def test_all_files_bad_is_an_error_even_with_skip_bad(tmp_path):
    root = tmp_path / "train"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(b"not a png")
    split = scan_split(root)
    for skip in (False, True):
        with pytest.raises(DataError, match=r"x\.png: cannot identify image file"):
            load_split(split, cache_dir=tmp_path / "c", skip_bad=skip, progress=False)


def test_load_dataset_reports_bad_files_of_both_splits(tmp_path):
    base = tmp_path / "data" / "ds"
    split_of(base / "train", {"a": 2})
    split_of(base / "test", {"a": 2})
    (base / "train" / "a" / "bad1.png").write_bytes(b"x")
    (base / "test" / "a" / "bad2.png").write_bytes(b"y")
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "data", "ds", cache_dir=tmp_path / "c", progress=False)
    assert "bad1.png" in str(e.value) and "bad2.png" in str(e.value)


def test_decode_image_reasons(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        decode_image(str(tmp_path / "e.png"), 8)
    with pytest.raises(DataError, match="cannot read"):
        decode_image(str(tmp_path / "missing.png"), 8)


# --------------------------------------------------------------------------- cache


def test_cache_hit_skips_decoding(tmp_path, monkeypatch):
    split = scan_split(make_image_folder(tmp_path / "ds", ["a", "b"], 4, splits=("train",)) / "train")
    first = load_split(split, cache_dir=tmp_path / "c", progress=False)
    calls = []

    def boom(path, size):
        calls.append(path)
        raise AssertionError("decode_image must not run on a cache hit")

    monkeypatch.setattr(cache_mod, "decode_image", boom)
    monkeypatch.setattr(cache_mod, "infer_image_size", boom)
    second = load_split(split, cache_dir=tmp_path / "c", progress=False)
    assert calls == []
    assert np.array_equal(first.images, second.images)
    assert np.array_equal(first.labels, second.labels) and second.labels.dtype == np.int64
    assert first.paths == second.paths and first.classes == second.classes
    # A new scan of the unchanged folder hits the cache too.
    third = load_split(scan_split(split.root), cache_dir=tmp_path / "c", progress=False)
    assert np.array_equal(first.images, third.images)


def test_cache_invalidated_when_a_file_changes(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "ds", ["a", "b"], 3, splits=("train",)) / "train"
    c = tmp_path / "c"
    first = load_split(scan_split(root), cache_dir=c, progress=False)

    target = root / "b" / "0001.png"
    st = os.stat(target)
    new = np.full((16, 16, 3), 7, np.uint8)
    Image.fromarray(new).save(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    seen = []
    real = cache_mod.decode_image
    monkeypatch.setattr(cache_mod, "decode_image", lambda p, s: seen.append(p) or real(p, s))
    second = load_split(scan_split(root), cache_dir=c, progress=False)
    assert len(seen) == 6
    i = second.paths.index(str(target))
    assert np.array_equal(second.images[i], new)
    assert not np.array_equal(first.images[i], new)

    # Only the modification time differs (a `touch`): the same content, the same cache.
    seen.clear()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    load_split(scan_split(root), cache_dir=c, progress=False)
    assert seen == []

    # Other pixels at the same size and modification time (`cp -p`, `rsync -a`): a new key.
    before = os.stat(target)
    other = np.full((16, 16, 3), 201, np.uint8)
    Image.fromarray(other).save(target)
    assert os.stat(target).st_size == before.st_size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    fourth = load_split(scan_split(root), cache_dir=c, progress=False)
    assert len(seen) == 6 and np.array_equal(fourth.images[i], other)
    seen.clear()

    # A new file, too.
    seen.clear()
    save(root / "a" / "extra.png", noise_rgb(16, 16))
    third = load_split(scan_split(root), cache_dir=c, progress=False)
    assert len(third) == 7 and len(seen) == 7


def test_cache_key_depends_on_size_and_skip_bad(tmp_path, monkeypatch):
    split = scan_split(make_image_folder(tmp_path / "ds", ["a"], 2, splits=("train",)) / "train")
    c = tmp_path / "c"
    load_split(split, image_size=16, cache_dir=c, progress=False)
    seen = []
    real = cache_mod.decode_image
    monkeypatch.setattr(cache_mod, "decode_image", lambda p, s: seen.append(s) or real(p, s))
    assert load_split(split, image_size=8, cache_dir=c, progress=False).images.shape == (2, 8, 8, 3)
    load_split(split, image_size=16, skip_bad=True, cache_dir=c, progress=False)
    assert seen == [8, 8, 16, 16]


def test_broken_cache_file_is_rebuilt(tmp_path):
    split = scan_split(make_image_folder(tmp_path / "ds", ["a"], 2, splits=("train",)) / "train")
    c = tmp_path / "c"
    first = load_split(split, cache_dir=c, progress=False)
    first.images = np.array(first.images)  # a copy: the cache is memory-mapped, and we damage its file in place
    (npy,) = c.glob("*.npy")
    npy.write_bytes(npy.read_bytes()[:100])
    again = load_split(split, cache_dir=c, progress=False)
    assert np.array_equal(first.images, again.images)
    assert not [p for p in c.iterdir() if p.name.endswith(".tmp")]


def test_unwritable_cache_dir_warns_and_continues(tmp_path):
    split = scan_split(make_image_folder(tmp_path / "ds", ["a"], 2, splits=("train",)) / "train")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="without a cache"):
        data = load_split(split, cache_dir=blocker / "cache", progress=False)
    assert data.images.shape == (2, 16, 16, 3)


def test_threaded_decoding_keeps_order(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "ds", ["a", "b", "c"], 7, splits=("train",), ext="mixed")
    split = scan_split(root / "train")
    monkeypatch.setattr(cache_mod, "_CHUNK", 2)  # many chunks, so several threads run
    data = load_split(split, cache_dir=tmp_path / "c", progress=False)
    want = np.stack([decode_image(p, 16) for p in split.paths])
    assert np.array_equal(data.images, want)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("BAL_CACHE_DIR", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("BAL_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "bal"


def test_class_images_are_class_dependent():
    rng = np.random.default_rng(0)
    means = [class_image(k, 4, (16, 16), rng).reshape(-1, 3).mean(0) for k in range(4)]
    assert min(np.abs(a - b).max() for i, a in enumerate(means) for b in means[i + 1 :]) > 30


# --------------------------------------------------------------------------- augmentation

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _batch(b=6, h=10, w=12, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, w, 3), generator=g, dtype=torch.uint8)


def _reference(batch, offsets, flips, p):
    """Per image: zero-pad, slice, mirror; then ToTensor + Normalize."""
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    out = []
    _, h, w, _ = batch.shape
    for img, (t, left), f in zip(batch, offsets.tolist(), flips.tolist()):
        padded = torch.zeros((h + 2 * p, w + 2 * p, 3), dtype=torch.uint8)
        padded[p : p + h, p : p + w] = img
        crop = padded[t : t + h, left : left + w]
        if f:
            crop = crop.flip(1)
        out.append((crop.permute(2, 0, 1).float() / 255 - mean) / std)
    return torch.stack(out)


def test_eval_is_exact_normalisation():
    x = _batch()
    y = BatchAugment(MEAN, STD)(x, train=False)
    want = (x.permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(
        1, 3, 1, 1
    )
    assert y.dtype == torch.float32 and y.shape == (6, 3, 10, 12) and y.device == x.device
    assert y.is_contiguous()
    assert torch.equal(y, want)


def test_crop_flip_equals_per_image_slicing():
    x = _batch(b=8)
    p = 3
    offsets = torch.tensor([[0, 0], [6, 6], [0, 6], [6, 0], [3, 3], [1, 5], [2, 0], [5, 4]])
    flips = torch.tensor([False, True, False, True, True, False, True, False])
    got = crop_flip(x, offsets, flips, p)
    for k in range(8):
        padded = torch.zeros((10 + 2 * p, 12 + 2 * p, 3), dtype=torch.uint8)
        padded[p:-p, p:-p] = x[k]
        t, left = offsets[k].tolist()
        want = padded[t : t + 10, left : left + 12]
        assert torch.equal(got[k], want.flip(1) if flips[k] else want), k


def test_train_call_matches_reference_with_documented_draws():
    x = _batch(b=16)
    aug = BatchAugment(MEAN, STD, crop_padding=4, hflip=True)
    y = aug(x, train=True, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(123)
    offsets = torch.randint(0, 9, (16, 2), generator=g)
    flips = torch.randint(0, 2, (16,), generator=g).bool()
    assert torch.allclose(y, _reference(x, offsets, flips, 4), atol=1e-6, rtol=0)
    assert y.shape == (16, 3, 10, 12) and y.dtype == torch.float32
    # Randomness is really used: some crops shifted, some flipped.
    assert not torch.equal(y, aug(x, train=False))


def test_matches_torchvision_pipeline():
    tvf = pytest.importorskip("torchvision.transforms.functional")
    x = _batch(b=4, h=8, w=8)
    offsets = torch.tensor([[0, 8], [4, 4], [8, 1], [2, 7]])
    flips = torch.tensor([True, False, True, False])
    y = BatchAugment(MEAN, STD, crop_padding=4).normalize(crop_flip(x, offsets, flips, 4))
    for k in range(4):
        pil = Image.fromarray(x[k].numpy())
        pil = tvf.crop(tvf.pad(pil, 4, fill=0), offsets[k, 0].item(), offsets[k, 1].item(), 8, 8)
        if flips[k]:
            pil = tvf.hflip(pil)
        want = tvf.normalize(tvf.to_tensor(pil), MEAN, STD)
        assert torch.allclose(y[k], want, atol=1e-5, rtol=0), k


def test_same_seed_same_output_different_seed_different():
    x = _batch(b=32)
    aug = BatchAugment(MEAN, STD)
    a = aug(x, True, torch.Generator().manual_seed(7))
    b = aug(x, True, torch.Generator().manual_seed(7))
    c = aug(x, True, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_no_crop_no_flip_equals_eval():
    x = _batch()
    aug = BatchAugment(MEAN, STD, crop_padding=0, hflip=False)
    assert torch.equal(aug(x, True, torch.Generator().manual_seed(0)), aug(x, False))


def test_flip_only_and_crop_only():
    x = _batch(b=32)
    flip = BatchAugment(MEAN, STD, crop_padding=0, hflip=True)(x, True, torch.Generator().manual_seed(1))
    ev = BatchAugment(MEAN, STD)(x, False)
    per_image = [torch.equal(flip[k], ev[k]) or torch.equal(flip[k], ev[k].flip(-1)) for k in range(32)]
    assert all(per_image) and not torch.equal(flip, ev)
    crop = BatchAugment(MEAN, STD, crop_padding=2, hflip=False)(x, True, torch.Generator().manual_seed(1))
    assert crop.shape == ev.shape and not torch.equal(crop, ev)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = _batch(b=8)
    aug = BatchAugment(MEAN, STD)
    cpu = aug(x, True, torch.Generator().manual_seed(3))
    gpu = aug(x.cuda(), True, torch.Generator().manual_seed(3))
    assert gpu.device.type == "cuda" and torch.allclose(cpu, gpu.cpu(), atol=1e-6)


def test_bad_input_rejected():
    aug = BatchAugment(MEAN, STD)
    with pytest.raises(TypeError):
        aug(torch.zeros((1, 4, 4, 3)), train=False)
    with pytest.raises(ValueError):
        aug(torch.zeros((1, 3, 4, 4), dtype=torch.uint8), train=False)
    with pytest.raises(ValueError):
        BatchAugment((0.5, 0.5), (0.5, 0.5))
    with pytest.raises(ValueError):
        BatchAugment(MEAN, (0.5, 0.0, 0.5))


def test_a_second_process_waits_for_the_cache_another_is_building(tmp_path, caplog):
    # Two benches on one cache once decoded into the same partial file, and the second crashed
    # renaming a file the first had already renamed. Now the second waits, then reads the cache.
    import threading

    from bal.files import held_lock

    split = scan_split(make_image_folder(tmp_path / "ds", ["a", "b"], 4, splits=("train",)) / "train")
    c = tmp_path / "c"
    key = cache_mod._key(["images", cache_mod.CACHE_FORMAT_VERSION, 16, False, cache_mod._fingerprint(split)])
    got = {}
    with caplog.at_level("INFO", logger="bal"), held_lock(c / f"{key}.lock"):  # "another process" builds it
        worker = threading.Thread(target=lambda: got.update(data=load_split(split, 16, cache_dir=c, progress=False)))
        worker.start()
        worker.join(1.0)
        assert worker.is_alive() and "data" not in got  # waiting, not decoding beside the builder
        assert not (c / f"{key}.partial.npy").exists()
    worker.join(60)
    assert not worker.is_alive()
    assert "waiting for another process that is caching the images" in caplog.text
    again = load_split(split, 16, cache_dir=c, progress=False)
    assert np.array_equal(got["data"].images, again.images) and got["data"].paths == again.paths
    assert [e.key for e in cache_mod.list_caches(c)] == [key]


def test_a_float_tiff_in_zero_to_one_is_scaled_not_black(tmp_path):
    from bal.data.decode import decode_image

    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1))
    Image.fromarray(ramp, mode="F").save(tmp_path / "f.tif")
    out = decode_image(str(tmp_path / "f.tif"), 16)
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, -1].tolist() == [255, 255, 255]
    assert out[..., 0].tolist() == out[..., 1].tolist() == np.rint(ramp * 255).astype(np.uint8).tolist()
    Image.fromarray(ramp * 1000, mode="F").save(tmp_path / "g.tif")  # not 0..1: clipped to 0..255, as PIL does
    assert decode_image(str(tmp_path / "g.tif"), 16)[0, -1].tolist() == [255, 255, 255]
