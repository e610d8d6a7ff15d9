"""Ordinary photos and pools larger than memory: working size, fast and upright decoding, the
memory-mapped cache, streaming statistics, thumbnails, --no-flip and `bal cache`.

Photo folders are generated from scikit-learn's two sample photos (china.jpg, flower.jpg),
saved at phone-camera sizes, with EXIF orientation tags, as panoramas, PNG with alpha,
grayscale and CMYK JPEGs.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image
from sklearn.datasets import load_sample_images

import bal.data.cache as cache_mod
from bal.cli import main
from bal.data import choose_image_size, decode_image, generic_preset, get_preset, load_split, scan_split
from bal.data.cache import check_cache_room, list_caches, release
from bal.data.decode import image_header
from bal.errors import BalError

PHOTOS = load_sample_images().images  # two 427 x 640 RGB photos


def exif_jpeg(path: Path, pixels: np.ndarray, orientation: int) -> Path:
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=95, exif=exif)
    return path


def test_exif_orientation_makes_a_phone_photo_upright(tmp_path):
    # left half red, right half blue, stored turned so that orientation 6 (rotate 90 degrees clockwise) rights it
    upright = np.zeros((40, 80, 3), np.uint8)
    upright[:, :40] = (255, 0, 0)
    upright[:, 40:] = (0, 0, 255)
    stored = np.rot90(upright, k=1).copy()  # what a phone writes: the sensor's landscape, turned
    path = exif_jpeg(tmp_path / "phone.jpg", stored, orientation=6)
    assert image_header(str(path)) == (80, 40)  # shown size, EXIF applied
    out = decode_image(str(path), 16)
    # after the transpose the image is 80 x 40 again, centre-cropped to 40 x 40: red left, blue right
    assert out[:, :4, 0].mean() > 200 and out[:, :4, 2].mean() < 60
    assert out[:, -4:, 2].mean() > 200 and out[:, -4:, 0].mean() < 60


def test_panorama_is_padded_not_cropped_and_squares_stay_exact(tmp_path):
    pano = np.full((20, 100, 3), 200, np.uint8)
    pano[:, :10] = (255, 0, 0)  # a red left end that a centre crop would cut off
    path = tmp_path / "pano.png"
    Image.fromarray(pano).save(path)
    out = decode_image(str(path), 20)
    assert (out[:8] == 0).all() and (out[-8:] == 0).all()  # black bands above and below (100:20 -> 20:4)
    assert out[9, 0, 0] > 200 and out[9, 0, 1] < 60  # the red end is there
    square = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(square).save(tmp_path / "sq.png")
    assert np.array_equal(decode_image(str(tmp_path / "sq.png"), 32), square)


def test_large_jpeg_draft_decoding_matches_a_full_decode(tmp_path):
    big = Image.fromarray(PHOTOS[0]).resize((3000, 2000), Image.BILINEAR)
    path = tmp_path / "big.jpg"
    big.save(path, quality=92)
    fast = decode_image(str(path), 64).astype(float)
    with Image.open(path) as img:
        full = np.asarray(img.convert("RGB").resize((64, 64), Image.BILINEAR, box=(500, 0, 2500, 2000)), dtype=float)
    assert np.abs(fast - full).mean() < 3.0  # the same picture, a few levels of rounding apart


def test_every_kind_of_photo_decodes(tmp_path):
    rgb = PHOTOS[1]
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.jpg")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    rgba = Image.fromarray(rgb).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(tmp_path / "alpha.png")
    Image.fromarray(rgb[:, :200]).save(tmp_path / "tall.png")  # 427 x 200, aspect 2.1: padded
    for name in ("gray.jpg", "cmyk.jpg", "alpha.png", "tall.png"):
        out = decode_image(str(tmp_path / name), 48)
        assert out.shape == (48, 48, 3) and out.dtype == np.uint8 and out.std() > 10, name


def test_working_size_rule(tmp_path):
    photos = tmp_path / "photos"
    for i in range(3):
        exif_jpeg(photos / f"{i}.jpg", PHOTOS[i % 2], orientation=1)
    paths = sorted(str(p) for p in photos.iterdir())
    assert choose_image_size(paths, preset=generic_preset("x"), net="cnn") == (64, choose_image_size(
        paths, preset=generic_preset("x"), net="cnn")[1])
    size, why = choose_image_size(paths, preset=generic_preset("x"), net="cnn")
    assert size == 64 and "working size of cnn" in why and "427" in why
    assert choose_image_size(paths, preset=get_preset("cifar10"), net="cnn")[0] == 32  # presets keep theirs
    assert choose_image_size(paths, preset=generic_preset("x"), net="cnn", given=100)[0] == 100
    small = make_image_folder(tmp_path / "small", ["a"], 3, size=(16, 16), splits=("train",))
    tiny = sorted(str(p) for p in (small / "train" / "a").iterdir())
    size, why = choose_image_size(tiny, preset=generic_preset("x"), net="cnn")
    assert size == 16 and "own size" in why
    with pytest.raises(BalError, match="image_size"):
        choose_image_size(paths, preset=generic_preset("x"), net="cnn", given=60000)


def test_a_cache_that_would_not_fit_is_refused_before_decoding(tmp_path, capsys, monkeypatch):
    with pytest.raises(BalError, match=r"image_size 30000 needs a cache of .* GiB for 1000 .* free"):
        check_cache_room(1000, 30000, tmp_path)
    root = make_image_folder(tmp_path / "data" / "toy", ["a", "b"], 2, size=(16, 16))
    flags = ["--datapath", str(root.parent), "--dataset", "toy", "--cache_dir", str(tmp_path / "c"), "--no_progress"]
    with pytest.raises(SystemExit) as refused:  # the cap, at the flag
        main(["rotation", *flags, "--image_size", "2000", "--save", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "--image_size" in err and "8 to 1024" in err
    # a disk with 1 MiB free: 8 images at 256 px (1.5 MiB) do not fit, and nothing is decoded
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: type("U", (), {"free": 2**20})())
    monkeypatch.setattr(cache_mod, "decode_image", lambda p, s: pytest.fail("decoded before the check"))
    assert main(["rotation", *flags, "--image_size", "256", "--save", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "--image_size 256 needs a cache of 2 MiB for 8 images" in err and "1 MiB are free" in err


def test_cache_is_memory_mapped_written_in_chunks_and_resumes(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "ds", ["a", "b"], 5, splits=("train",))
    split = scan_split(root / "train")
    monkeypatch.setattr(cache_mod, "_CHUNK", 2)
    monkeypatch.setattr(cache_mod, "_PROGRESS_EVERY", 0.0)
    real = cache_mod.decode_image
    calls = []

    def dies_after_six(path, size):
        if len(calls) == 6:
            raise KeyboardInterrupt  # a kill in the middle of the build
        calls.append(path)
        return real(path, size)

    monkeypatch.setattr(cache_mod, "decode_image", dies_after_six)
    monkeypatch.setattr(cache_mod.os, "cpu_count", lambda: 1)  # one worker: a deterministic kill point
    with pytest.raises(KeyboardInterrupt):
        load_split(split, cache_dir=tmp_path / "c", progress=False)
    progress = json.loads(next((tmp_path / "c").glob("*.progress.json")).read_text())
    assert progress["done"] == [0, 1, 2]  # three chunks of two rows on disk
    assert list((tmp_path / "c").glob("*.partial.npy"))
    calls.clear()
    monkeypatch.setattr(cache_mod, "decode_image", lambda p, s: calls.append(p) or real(p, s))
    data = load_split(split, cache_dir=tmp_path / "c", progress=False)
    assert len(calls) == 4  # only the two missing chunks
    assert isinstance(data.images, np.memmap) and not data.images.flags.writeable
    want = np.stack([real(p, 16) for p in split.paths])
    assert np.array_equal(data.images, want)
    assert not list((tmp_path / "c").glob("*.partial.npy")) and not list((tmp_path / "c").glob("*.progress.json"))
    release(data.images)  # hands the pages back; the data stay readable
    assert np.array_equal(data.images, want)


def test_streaming_mean_and_std_of_a_memory_mapped_split(tmp_path):
    root = make_image_folder(tmp_path / "ds", ["a", "b"], 6, splits=("train",))
    data = load_split(scan_split(root / "train"), cache_dir=tmp_path / "c", progress=False)
    preset = generic_preset("x").resolve(data.images)
    x = np.asarray(data.images, dtype=np.float64) / 255
    np.testing.assert_allclose(preset.mean, x.reshape(-1, 3).mean(0), rtol=1e-9)
    np.testing.assert_allclose(preset.std, x.reshape(-1, 3).std(0), rtol=1e-6)


def test_no_flip_reaches_the_augmentation(tmp_path):
    from bal.data import open_dataset

    root = make_image_folder(tmp_path / "data" / "toy", ["a", "b"], 2)
    assert open_dataset(root.parent, "toy", cache_dir=tmp_path / "c", progress=False).augment.hflip is True
    assert open_dataset(root.parent, "toy", flip=False, cache_dir=tmp_path / "c", progress=False).augment.hflip is False
    assert get_preset("svhn").hflip is False and get_preset("cifar10").hflip is True


def test_bal_cache_lists_and_prunes(tmp_path, capsys):
    root = make_image_folder(tmp_path / "ds", ["a", "b"], 2, splits=("train",))
    load_split(scan_split(root / "train"), cache_dir=tmp_path / "c", progress=False)
    (tmp_path / "c" / ("f" * 64 + ".partial.npy")).write_bytes(b"x" * 10)  # an unfinished build
    entries = list_caches(tmp_path / "c")
    assert [e.partial for e in entries].count(True) == 1 and len(entries) == 2
    assert main(["cache", "list", "--cache_dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "partial" in out and "ready" in out and str(root / "train") in out
    assert main(["cache", "prune", "--cache_dir", str(tmp_path / "c")]) == 2  # must say which
    assert main(["cache", "prune", "--partial", "--cache_dir", str(tmp_path / "c")]) == 0
    assert [e.partial for e in list_caches(tmp_path / "c")] == [False]
    assert main(["cache", "prune", "--all", "--cache_dir", str(tmp_path / "c")]) == 0
    assert list_caches(tmp_path / "c") == []


@pytest.mark.slow
def test_photo_project_prints_its_size_and_the_page_sends_thumbnails(tmp_path, capsys, caplog):
    """157-style photos: big JPEGs with EXIF tags, a PNG with alpha; init chooses 64 px, query
    trains a small-batch pretext, the page sends cached thumbnails, never the 4 MB originals."""
    caplog.set_level(logging.INFO, logger="bal")
    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for i in range(12):
        big = Image.fromarray(PHOTOS[i % 2]).resize((1600, 1200), Image.BILINEAR)
        arr = np.asarray(big).copy()
        arr[rng.integers(0, 1100):, :100] = rng.integers(0, 255)
        exif_jpeg(photos / "camera" / f"{i}.jpg", arr, orientation=(1, 6, 3)[i % 3])
    d = tmp_path / "proj"
    assert main(["project", "init", str(d), "--images", str(photos), "--classes", "china,flower", "--no-progress",
                 "--no-flip"]) == 0
    out = capsys.readouterr().out
    assert "image size 64 px: the working size of cnn" in out and "flips off" in out
    # the pretext batch is lowered for 64 px: 4 x 256 x 32 x 32 pixels -> 64 images a step
    assert main(["query", str(d), "--budget", "2", "--strategy", "bal", "--pretext-epochs", "1",
                 "--no-progress"]) == 0
    assert "query: rotation pretext (cnn, 1 epochs, batch 64)" in caplog.text
    assert "query: pool of 12 images at 64 px" in caplog.text
    from bal.project import Project

    with Project.open(d) as p:
        assert p.settings()["pretext"] == {"epochs": 1, "batch_size": 64} and p.settings()["flip"] is False
        image_id = p.images()[0].id
    import threading
    import urllib.request

    from bal.project.serve import make_server

    server, url = make_server(d, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen(url + f"image/{image_id}") as r:
            body = r.read()
            assert r.headers["Content-Type"] == "image/png" and len(body) < 30_000
        thumb = Image.open(io.BytesIO(body))
        assert thumb.size == (64, 64)
        with urllib.request.urlopen(url + f"image/{image_id}?original=1") as r:
            assert r.headers["Content-Type"] == "image/jpeg" and len(r.read()) > len(body)
    finally:
        server.shutdown()
        server.server_close()
    # a later query with another pretext setting is refused, the cost stated; --retrain-pretext allows it
    assert main(["query", str(d), "--budget", "2", "--pretext-epochs", "2", "--no-progress"]) == 2
    assert "--retrain-pretext" in capsys.readouterr().err
