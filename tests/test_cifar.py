"""The three steps on a few hundred images of the shared CIFAR-10, in the authors' layout.

Skipped with a reason on a machine without ``../shared/data/cifar10.tar.gz`` (a user's own).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bal.cli import main
from bal.files import read_lines

pytestmark = [pytest.mark.slow, pytest.mark.cifar]

ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10.tar.gz"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_CLASS = {"train": 30, "test": 10}  # 300 pool images, 100 test images


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    if not ARCHIVE.exists():
        pytest.skip(f"{ARCHIVE} is absent (it ships with the project's shared data, not with bal)")
    root = tmp_path_factory.mktemp("cifar")
    wanted = set()
    with tarfile.open(ARCHIVE) as tar:
        members = []
        for member in tar:
            parts = Path(member.name).parts  # cifar10/SPLIT/CLASS/FILE
            if len(parts) != 4 or not member.isfile():
                continue
            _, split, cls, _ = parts
            key = (split, cls)
            if split in PER_CLASS and sum(1 for k in wanted if k[:2] == key) < PER_CLASS[split]:
                wanted.add((split, cls, member.name))
                members.append(member)
        tar.extractall(root / "data", members=members, filter="data")
    return root


def test_three_steps_on_shared_cifar10(cifar):
    data = ["--datapath", str(cifar / "data"), "--dataset", "cifar10", "--cache_dir", str(cifar / "cache"),
            "--net", "cnn", "--no_progress"]
    ckpt = cifar / "checkpoint"
    assert main(["rotation", *data, "--epochs", "1", "--batch_size", "64", "--save", str(ckpt)]) == 0
    assert main(["kmeans", "--net", "cnn", "--dataset", "cifar10", "--load", str(ckpt)]) == 0
    run = cifar / "run"
    assert main(["train", *data, "--per_samples_list", "10,10", "--epochs", "1", "--batch_size", "32",
                 "--sorted_dataset_path", str(ckpt / "unlabeled_pool.txt"), "--save", str(run)]) == 0

    paths = read_lines(ckpt / "paths.txt")
    assert len(paths) == 300 and all(p.endswith(".jpg") for p in paths)
    assert {Path(p).parent.name for p in paths} == set(CLASSES)
    assert np.load(ckpt / "features.npy").shape == (300, 128)
    assert sorted(read_lines(ckpt / "unlabeled_pool.txt")) == sorted(paths)
    assert np.load(ckpt / "cdd.npy").shape == (300,)
    rows = [json.loads(x) for x in read_lines(run / "metrics.jsonl")]
    assert [r["labelled"] for r in rows] == [30, 60]
    assert set(rows[0]["per_class_accuracy"]) == set(CLASSES)
    assert len(read_lines(run / "labeled_1.txt")) == 60
    # The cifar10 preset: beta 1.2 in the base regime; A = the per-cycle size, 30 images.
    assert rows[0]["selection"]["window"] == [0, 36] and rows[0]["selection"]["beta"] == 1.2
