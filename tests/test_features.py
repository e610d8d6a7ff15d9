"""The features the selection rules see: rotation views, normalisation, your own embedding, a backbone.

``--features FILE.npy`` and ``--backbone NAME --weights FILE`` reach ``bal kmeans``,
``bal train``, ``bal run``, ``bal bench``, ``bal query`` and the API. Backbone weights are
a randomly initialised torchvision state dict saved to a temporary file: nothing is
downloaded, ever.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torchvision
from conftest import make_image_folder

import bal
from bal.cli import main
from bal.embedding.torchvision import embed_with_backbone, load_backbone
from bal.engine.trainer import TrainConfig
from bal.errors import BalError
from bal.files import read_lines
from bal.pretext.features import load_features_file, normalise_features

pytestmark = pytest.mark.slow

CLASSES = ["ant", "bee", "cat", "dog"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    make_image_folder(root / "data" / "toy", CLASSES, 10, size=(16, 16))
    ckpt = root / "ckpt"
    assert main(["rotation", "--datapath", str(root / "data"), "--dataset", "toy", "--cache_dir", str(root / "cache"),
                 "--net", "cnn", "--epochs", "1", "--batch_size", "16", "--save", str(ckpt), "--no_progress"]) == 0
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def data_flags(toy):
    return ["--datapath", str(toy / "data"), "--dataset", "toy", "--cache_dir", str(toy / "cache")]


def truth_features(toy) -> np.ndarray:
    """One-hot class of every pool image, in paths.txt order: a perfect embedding."""
    paths = read_lines(toy / "ckpt" / "paths.txt")
    one_hot = np.eye(4, dtype=np.float32)[[CLASSES.index(p.split("/")[-2]) for p in paths]]
    return one_hot + 0.01 * np.arange(len(paths))[:, None]


def test_rotation_folder_keeps_three_views_and_the_rotation_accuracy(toy):
    ckpt = toy / "ckpt"
    views = [np.load(ckpt / f) for f in ("features.npy", "features_mean.npy", "features_random.npy")]
    assert all(v.shape == (40, 128) for v in views) and not np.allclose(views[0], views[1])
    assert 0 <= json.loads((ckpt / "rotation.json").read_text())["rotation_accuracy"] <= 100
    assert not list(ckpt.glob(".*.part"))  # the streamed arrays were renamed into place, not copied


def test_a_relative_save_folder_leaves_no_partial_files(toy, monkeypatch, caplog):
    # memmap file names are absolute: a relative --save once left a 5 MB .part copy of every view behind
    monkeypatch.chdir(toy)
    with caplog.at_level("INFO", logger="bal"):
        assert main(["rotation", *data_flags(toy), "--net", "cnn", "--epochs", "2", "--batch_size", "16",
                     "--save", "relative-ckpt", "--no_progress"]) == 0
    assert (toy / "relative-ckpt" / "features_mean.npy").exists()
    assert not list((toy / "relative-ckpt").glob(".*.part"))
    # without a progress bar, each pretext epoch says it finished (a CPU-scale pretext takes 20 minutes)
    assert re.findall(r"rotation: epoch (\d)/2, loss \d+\.\d+", caplog.text) == ["1", "2"]


def test_a_second_process_waits_for_the_pretext_another_is_training(toy, caplog):
    # two benches sharing a pretext folder: the second waits and loads the first one's run
    import threading

    from bal.files import held_lock

    save = toy / "shared-ckpt"
    codes = []
    run = ["rotation", *data_flags(toy), "--net", "cnn", "--epochs", "1", "--batch_size", "16", "--save", str(save),
           "--no_progress"]
    with caplog.at_level("INFO", logger="bal"), held_lock(save / "rotation.lock"):
        worker = threading.Thread(target=lambda: codes.append(main(run)))
        worker.start()
        worker.join(1.0)
        assert worker.is_alive() and not (save / "rotation_ckpt.pth").exists() and not (save / "rotation.pth").exists()
    worker.join(120)
    assert codes == [0] and (save / "rotation.pth").exists()
    assert "waiting for another process that is training the pretext" in caplog.text


def test_normalisation():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(normalise_features(x, "l2"), [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(normalise_features(x, "none"), x.astype(np.float32))
    with pytest.raises(BalError, match="feature_norm"):
        normalise_features(x, "zscore")


def test_kmeans_with_a_view_with_features_and_their_errors(toy, tmp_path, capsys):
    ckpt = toy / "ckpt"
    assert main(["kmeans", "--load", str(ckpt), "--view", "mean", "--feature_norm", "l2"]) == 0
    assert json.loads((ckpt / "kmeans.json").read_text())["features"] == "mean"
    good = tmp_path / "emb.npy"
    np.save(good, truth_features(toy))
    assert main(["kmeans", "--load", str(ckpt), "--features", str(good)]) == 0
    assert json.loads((ckpt / "kmeans.json").read_text())["features"] == "given"
    assert sorted(read_lines(ckpt / "unlabeled_pool.txt")) == sorted(read_lines(ckpt / "paths.txt"))
    capsys.readouterr()
    for name, content in (("short.npy", np.zeros((39, 4))), ("flat.npy", np.zeros(40)),
                          ("nan.npy", np.full((40, 4), np.nan)), ("text.npy", None)):
        bad = tmp_path / name
        bad.write_text("not numpy") if content is None else np.save(bad, content)
        assert main(["kmeans", "--load", str(ckpt), "--features", str(bad)]) == 2, name
        err = capsys.readouterr().err
        assert "--features" in err and name in err and "Traceback" not in err, err


def test_load_features_file_checks(tmp_path):
    ok = tmp_path / "ok.npy"
    np.save(ok, np.ones((3, 2), dtype=np.int16))
    assert load_features_file(ok, 3).dtype == np.float32
    with pytest.raises(BalError, match="3 rows, but the pool holds 4"):
        load_features_file(ok, 4)
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BalError, match="not a NumPy"):
        load_features_file(obj, 1)


def test_train_and_run_read_your_features(toy, tmp_path):
    emb = tmp_path / "emb.npy"
    np.save(emb, truth_features(toy))
    run = tmp_path / "typiclust"
    assert main(["train", *data_flags(toy), "--net", "cnn", "--strategy", "typiclust", "--features", str(emb),
                 "--per_samples_list", "10", "--epochs", "1", "--batch_size", "8", "--save", str(run),
                 "--sorted_dataset_path", str(toy / "ckpt" / "unlabeled_pool.txt"), "--no_progress"]) == 0
    first = read_lines(run / "labeled_0.txt")
    assert len({p.split("/")[-2] for p in first}) == 4  # a perfect embedding: one image per class
    save = tmp_path / "run"
    assert main(["run", *data_flags(toy), "--net", "cnn", "--rotation_epochs", "1", "--rotation_batch_size", "16",
                 "--first", "typical", "--beta", "4", "--features", str(emb), "--per_samples_list", "10",
                 "--epochs", "1", "--batch_size", "8", "--save", str(save), "--no_progress"]) == 0
    assert len({p.split("/")[-2] for p in read_lines(save / "labeled_0.txt")}) == 4
    # the CDD order of the given rows, with no rotation pretext trained for nothing
    assert (save / "pretext" / "unlabeled_pool.txt").exists() and not (save / "pretext" / "rotation.pth").exists()
    assert json.loads((save / "pretext" / "kmeans.json").read_text())["features"] == "given"


def test_backbone_from_a_local_weights_file(toy, weights, tmp_path, capsys):
    images = (np.random.default_rng(0).random((5, 16, 16, 3)) * 255).astype(np.uint8)
    out = embed_with_backbone(images, "resnet18", weights, input_size=32)
    assert out.shape == (5, 512) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out, embed_with_backbone(images, "resnet18", weights, input_size=32))
    assert main(["kmeans", "--load", str(toy / "ckpt"), *data_flags(toy), "--backbone", "resnet18", "--weights",
                 str(weights), "--backbone_size", "32", "--no_progress"]) == 0
    assert json.loads((toy / "ckpt" / "kmeans.json").read_text())["features"] == "given"
    capsys.readouterr()
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00" * 100)
    for argv, word in ((["--backbone", "resnet18", "--weights", str(garbage)], "not a torch weights file"),
                       (["--backbone", "resnet50", "--weights", str(weights)], "does not fit torchvision's resnet50"),
                       (["--backbone", "resnet18", "--weights", str(tmp_path / "none.pth")], "no such file"),
                       (["--backbone", "resnet18"], "needs its weights file")):
        assert main(["kmeans", "--load", str(toy / "ckpt"), *data_flags(toy), *argv, "--no_progress"]) == 2
        err = capsys.readouterr().err
        assert word in err and "Traceback" not in err, err
    with pytest.raises(BalError, match="vgg16"):
        load_backbone("vgg16", weights)


def test_api_with_features_and_backbone(weights):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    images = (rng.random((60, 12, 12, 3)) * 0.3 + labels[:, None, None, None] * 0.3).astype(np.float32)
    pool = bal.images_from_arrays(images[::2], labels[::2], ["a", "b", "c"])
    test = bal.images_from_arrays(images[1::2], labels[1::2], ["a", "b", "c"])
    quick = TrainConfig(epochs=1, batch_size=8, milestones=())
    onehot = np.eye(3)[labels[::2]] + 0.01 * np.arange(30)[:, None]
    rows = bal.active_learning(pool, test, percentages=[10, 10], strategy="typiclust", train=quick, rotation=quick,
                               features=onehot)
    assert [r["labelled"] for r in rows] == [3, 6] and rows[0]["class_entropy"] == pytest.approx(1.0)
    rows = bal.active_learning(pool, test, percentages=[10], strategy="bal", beta=3.0, first="typical", train=quick,
                               rotation=quick, backbone="resnet18", weights=weights)
    assert rows[0]["labelled"] == 3
    with pytest.raises(BalError, match="features"):
        bal.active_learning(pool, test, percentages=[10], features=onehot[:5], train=quick, rotation=quick)


def test_bench_with_your_features(toy, tmp_path):
    out = tmp_path / "bench"
    pool = read_lines(toy / "ckpt" / "paths.txt")  # the bench's pool is the whole training split here
    emb = tmp_path / "emb.npy"
    np.save(emb, truth_features(toy))
    assert main(["bench", "--datapath", str(toy / "data"), "--dataset", "toy", "--cache_dir", str(toy / "cache"),
                 "--strategies", "random,typiclust", "--seeds", "0", "--per_samples_list", "10", "--epochs", "1",
                 "--features", str(emb), "--out", str(out), "--no_progress", "--device", "cpu"]) == 0
    assert read_lines(out / "pool.txt") == pool
    results = json.loads((out / "results.json").read_text())
    assert any(q["features"] == str(emb) for q in results["pretexts"])
    first = read_lines(out / "runs" / "typiclust" / "seed-0" / "labeled_0.txt")
    assert len({p.split("/")[-2] for p in first}) == 4


def test_query_reads_your_features(tmp_path, capsys):
    root = tmp_path / "photos"
    make_image_folder(root, CLASSES, 5, splits=("unsorted",))
    d = tmp_path / "proj"
    assert main(["project", "init", str(d), "--images", str(root), "--classes", ",".join(CLASSES),
                 "--no-progress"]) == 0
    rows = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    emb = tmp_path / "emb.npy"
    one_hot = np.eye(4, dtype=np.float32)[[CLASSES.index(r.split("/")[1]) for r in rows]]
    np.save(emb, one_hot + 0.01 * np.arange(20)[:, None])
    capsys.readouterr()
    assert main(["query", str(d), "--budget", "4", "--strategy", "typiclust", "--features", str(emb),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert read_lines(d / "pool.txt") == rows
    picked = [line.split()[-1] for line in out.splitlines() if line.strip()[:1].isdigit() and "/" in line]
    assert len(picked) == 4 and len({p.split("/")[1] for p in picked}) == 4
    np.save(emb, np.zeros((3, 2)))
    assert main(["query", str(d), "--budget", "4", "--strategy", "typiclust", "--features", str(emb),
                 "--no-progress"]) == 2
    assert "--features" in capsys.readouterr().err
