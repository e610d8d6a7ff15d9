"""`bal data prepare`: the official archive formats, fabricated tiny here, into the authors' layout."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bal.cli import main
from bal.data import scan_dataset

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _batch(rng, n: int, n_classes: int, label_key: bytes) -> tuple[dict, np.ndarray]:
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(x) for x in rng.permutation(np.arange(n) % n_classes)]  # every class in every split
    return {b"batch_label": b"fabricated", label_key: labels, b"data": data,
            b"filenames": [f"f{i}.png".encode() for i in range(n)]}, data


def fake_cifar10(path: Path, per_batch: int = 10) -> dict:
    """A cifar-10-python.tar.gz of the official structure (Python-2-style pickles of NumPy arrays)."""
    rng = np.random.default_rng(0)
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": per_batch}
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            d, _ = _batch(rng, per_batch, 10, b"labels")
            batches[name] = d
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps(d, protocol=2))
    return batches


def fake_cifar100(path: Path) -> dict:
    rng = np.random.default_rng(1)
    names = [f"c{i:02d}" for i in range(100)]
    out = {}
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-100-python/meta", pickle.dumps({b"fine_label_names": [n.encode() for n in names],
                                                         b"coarse_label_names": [b"x"]}, protocol=2))
        for split, n in (("train", 200), ("test", 100)):
            d, _ = _batch(rng, n, 100, b"fine_labels")
            out[split] = d
            _add(tar, f"cifar-100-python/{split}", pickle.dumps(d, protocol=2))
    return out


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def fake_caltech(path: Path, zipped: bool = False) -> dict[str, int]:
    counts = {"accordion": 5, "airplanes": 10, "Faces_easy": 3}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for c, n in counts.items():
            for i in range(n):
                _add(tar, f"101_ObjectCategories/{c}/image_{i + 1:04d}.jpg", _jpeg(i))
        _add(tar, "101_ObjectCategories/BACKGROUND_Google/image_0001.jpg", _jpeg(99))
    if zipped:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("caltech-101/101_ObjectCategories.tar.gz", buf.getvalue())
            z.writestr("caltech-101/Annotations.tar", b"")
    else:
        path.write_bytes(buf.getvalue())
    return counts


def fake_tiny(path: Path) -> None:
    wnids = ["n01443537", "n01629819"]
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids) + "\n")
        z.writestr("tiny-imagenet-200/words.txt", "n01443537\tgoldfish\nn01629819\tsalamander\n")
        for w in wnids:
            for i in range(3):
                z.writestr(f"tiny-imagenet-200/train/{w}/images/{w}_{i}.JPEG", _jpeg(i))
            z.writestr(f"tiny-imagenet-200/train/{w}/{w}_boxes.txt", "")
        lines = []
        for i in range(4):
            z.writestr(f"tiny-imagenet-200/val/images/val_{i}.JPEG", _jpeg(10 + i))
            lines.append(f"val_{i}.JPEG\t{wnids[i % 2]}\t0\t0\t10\t10")
        z.writestr("tiny-imagenet-200/val/val_annotations.txt", "\n".join(lines) + "\n")
        z.writestr("tiny-imagenet-200/test/images/test_0.JPEG", _jpeg(50))


def prepare(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["data", "prepare", *map(str, argv), "--no_progress"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_cifar10_from_the_python_archive_pixel_for_pixel(tmp_path, capsys):
    batches = fake_cifar10(tmp_path / "cifar-10-python.tar.gz")
    code, out, _ = prepare(capsys, "cifar10", "--out", tmp_path / "data", "--from", tmp_path / "cifar-10-python.tar.gz")
    assert code == 0 and "train 50, test 10 images" in out
    train, test = scan_dataset(tmp_path / "data", "cifar10")
    assert len(train) == 50 and len(test) == 10 and train.classes == sorted(CIFAR10_CLASSES)
    d = batches["data_batch_2"]
    first = d[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0)  # the batch's row layout: R plane, G, B
    written = tmp_path / "data" / "cifar10" / "train" / CIFAR10_CLASSES[d[b"labels"][0]] / "00010.png"
    assert np.array_equal(np.asarray(Image.open(written)), first)  # lossless
    again = prepare(capsys, "cifar10", "--out", tmp_path / "data", "--from", tmp_path / "cifar-10-python.tar.gz")
    assert again[0] == 0 and "prepared already" in again[1]


def test_cifar100_svhn_caltech_and_tiny_imagenet(tmp_path, capsys):
    from scipy.io import savemat

    fake_cifar100(tmp_path / "c100.tar.gz")
    assert prepare(capsys, "cifar100", "--out", tmp_path / "d", "--from", tmp_path / "c100.tar.gz")[0] == 0
    train, test = scan_dataset(tmp_path / "d", "cifar100")
    assert (len(train), len(test)) == (200, 100) and len(train.classes) == 100

    rng = np.random.default_rng(2)
    for split, n in (("train", 20), ("test", 10)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # 1..10, 10 standing for the digit 0
        savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
    assert prepare(capsys, "svhn", "--out", tmp_path / "d", "--from", tmp_path / "train_32x32.mat")[0] == 0
    train, test = scan_dataset(tmp_path / "d", "svhn")
    assert (len(train), len(test)) == (20, 10) and train.classes == [str(d) for d in range(10)]  # 10 is 0

    for zipped, name in ((False, "101_ObjectCategories.tar.gz"), (True, "caltech-101.zip")):
        counts = fake_caltech(tmp_path / name, zipped)
        out = tmp_path / ("z" if zipped else "t")
        assert prepare(capsys, "caltech101", "--out", out, "--from", tmp_path / name)[0] == 0
        train, test = scan_dataset(out, "caltech101")
        assert sorted(train.classes) == sorted(counts)  # BACKGROUND_Google left out
        per_test = {c: int(np.sum(test.labels == test.classes.index(c))) for c in counts}
        assert per_test == {c: max(1, round(0.2 * n)) for c, n in counts.items()}  # stratified
        assert len(train) + len(test) == sum(counts.values())
        copied = next((out / "caltech101" / "train" / "airplanes").iterdir())
        assert copied.read_bytes() in {_jpeg(i) for i in range(10)}  # copied byte for byte
    # the split is the seed's: the same seed, the same test images; another seed, others
    again = tmp_path / "again"
    assert prepare(capsys, "caltech101", "--out", again, "--from", tmp_path / name)[0] == 0
    assert sorted(p.name for p in (again / "caltech101" / "test").rglob("*.jpg")) == \
        sorted(p.name for p in (tmp_path / "z" / "caltech101" / "test").rglob("*.jpg"))

    fake_tiny(tmp_path / "tiny-imagenet-200.zip")
    tiny = tmp_path / "tiny-imagenet-200.zip"
    assert prepare(capsys, "tinyimagenet", "--out", tmp_path / "d", "--from", tiny)[0] == 0
    train, test = scan_dataset(tmp_path / "d", "tinyimagenet")
    assert (len(train), len(test)) == (6, 4) and train.classes == ["n01443537", "n01629819"]
    assert int(np.sum(test.labels == 0)) == 2  # labelled by val_annotations.txt


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.97])
def test_a_truncated_archive_is_named_and_nothing_is_finished(tmp_path, capsys, cut):
    fake_cifar10(tmp_path / "full.tar.gz")
    data = (tmp_path / "full.tar.gz").read_bytes()
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(data[: int(len(data) * cut)])
    code, _, err = prepare(capsys, "cifar10", "--out", tmp_path / "d", "--from", tmp_path / "cifar-10-python.tar.gz")
    assert code == 2 and "cifar-10-python.tar.gz" in err and "truncated" in err
    assert not (tmp_path / "d" / "cifar10" / "prepared.json").exists()


def test_wrong_archives_and_missing_sources_are_named(tmp_path, capsys):
    fake_tiny(tmp_path / "tiny.zip")
    code, _, err = prepare(capsys, "cifar10", "--out", tmp_path / "d", "--from", tmp_path / "tiny.zip")
    assert code == 2 and "tiny.zip" in err
    code, _, err = prepare(capsys, "svhn", "--out", tmp_path / "d", "--from", tmp_path / "nowhere.mat")
    assert code == 2 and "nowhere.mat" in err
    (tmp_path / "train_32x32.mat").write_bytes(b"MATLAB 5.0 garbage")
    (tmp_path / "test_32x32.mat").write_bytes(b"")
    code, _, err = prepare(capsys, "svhn", "--out", tmp_path / "d", "--from", tmp_path)
    assert code == 2 and "train_32x32.mat" in err
    code, _, err = prepare(capsys, "tinyimagenet", "--out", tmp_path / "d")
    assert code == 2 and "--from" in err


def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "MARKER"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch '{marker}'",))

    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps({b"label_names": Payload()}, protocol=2))
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps({b"data": b""}, protocol=2))
    code, _, err = prepare(capsys, "cifar10", "--out", tmp_path / "d", "--from", tmp_path / "evil.tar.gz")
    assert code == 2 and not marker.exists() and "posix.system" in err


def test_an_interrupted_prepare_resumes_to_the_same_folder(tmp_path, capsys, monkeypatch):
    import bal.data.prepare as prep

    fake_cifar10(tmp_path / "c.tar.gz")
    assert prepare(capsys, "cifar10", "--out", tmp_path / "whole", "--from", tmp_path / "c.tar.gz")[0] == 0
    real, calls = prep.atomic_write_bytes, []

    def killed_after_ten(path, data):
        if len(calls) == 10:
            raise KeyboardInterrupt
        calls.append(path)
        real(path, data)

    monkeypatch.setattr(prep, "atomic_write_bytes", killed_after_ten)
    assert prepare(capsys, "cifar10", "--out", tmp_path / "cut", "--from", tmp_path / "c.tar.gz")[0] == 130
    monkeypatch.setattr(prep, "atomic_write_bytes", real)
    code, out, _ = prepare(capsys, "cifar10", "--out", tmp_path / "cut", "--from", tmp_path / "c.tar.gz")
    assert code == 0 and "10 were there from an interrupted call" in out

    def tree(root: Path) -> dict:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}

    assert tree(tmp_path / "cut") == tree(tmp_path / "whole")
