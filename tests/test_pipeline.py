"""The three steps end to end on a tiny generated folder, through the command line and the API."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_image_folder

from bal.cli import main
from bal.files import read_lines

pytestmark = pytest.mark.slow

CLASSES = ["ant", "bee", "cat", "dog"]
N_PER_CLASS = 15  # pool of 60
TINY = ["--net", "cnn", "--no_progress", "--seed", "3"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    make_image_folder(root / "data" / "toy", CLASSES, N_PER_CLASS, size=(16, 16), ext="mixed")
    return root


def data_flags(toy):
    return ["--datapath", str(toy / "data"), "--dataset", "toy", "--cache_dir", str(toy / "cache")]


def train_flags(save, sorted_path, *extra):
    return ["--per_samples_list", "10,10,10", "--epochs", "2", "--batch_size", "8", "--lr", "0.05",
            "--milestones", "1", "--beta", "1.5", "--save", str(save), "--sorted_dataset_path", str(sorted_path),
            *extra]


@pytest.fixture(scope="module")
def three_steps(toy):
    """`bal rotation`, `bal kmeans`, `bal train` as a user types them."""
    ckpt = toy / "checkpoint"
    assert main(["rotation", *data_flags(toy), *TINY, "--epochs", "2", "--batch_size", "16", "--save", str(ckpt)]) == 0
    assert main(["kmeans", "--load", str(ckpt), "--seed", "3"]) == 0
    run = toy / "run"
    assert main(["train", *data_flags(toy), *TINY, *train_flags(run, ckpt / "unlabeled_pool.txt")]) == 0
    return ckpt, run


def test_rotation_writes_the_authors_files(three_steps):
    ckpt, _ = three_steps
    paths = read_lines(ckpt / "paths.txt")
    assert len(paths) == len(CLASSES) * N_PER_CLASS and len(set(paths)) == len(paths)
    losses = np.load(ckpt / "rotation_loss.npy")
    features = np.load(ckpt / "features.npy")
    assert losses.shape == (len(paths),) and np.all(losses > 0)
    assert features.shape == (len(paths), 128) and np.isfinite(features).all()
    assert (ckpt / "rotation.pth").exists() and not (ckpt / "rotation_ckpt.pth").exists()


def test_kmeans_sorts_every_pool_image_once_by_cdd(three_steps):
    ckpt, _ = three_steps
    paths = read_lines(ckpt / "paths.txt")
    pool_order = read_lines(ckpt / "unlabeled_pool.txt")
    assert sorted(pool_order) == sorted(paths)
    cdd = np.load(ckpt / "cdd.npy")
    index = {p: i for i, p in enumerate(paths)}
    assert np.all(np.diff(cdd[[index[p] for p in pool_order]]) >= 0)
    assert np.all(cdd >= 0)


def test_train_writes_each_cycle(three_steps, capsys):
    ckpt, run = three_steps
    pool_order = read_lines(ckpt / "unlabeled_pool.txt")
    rows = [json.loads(line) for line in read_lines(run / "metrics.jsonl")]
    assert [r["cycle"] for r in rows] == [0, 1, 2]
    previous: list[str] = []
    for c, row in enumerate(rows):
        labelled = read_lines(run / f"labeled_{c}.txt")
        assert labelled[: len(previous)] == previous and len(labelled) == 6 * (c + 1) == row["labelled"]
        assert len(set(labelled)) == len(labelled)
        window = json.loads((run / f"window_{c}.json").read_text())
        new = labelled[len(previous):]
        start, stop = window["window"]
        positions = [pool_order.index(p) for p in new]
        if window["n_topped_up"] == 0:
            assert all(start <= q < stop for q in positions), "a selection left its window"
        assert (run / f"model_{c}.pth").exists()
        assert 0 <= row["accuracy"] <= 100 and set(row["per_class_accuracy"]) == set(CLASSES)
        assert row["seconds"] > 0
        previous = labelled
    assert rows[0]["selection"]["rule"] == "high1st" and rows[1]["selection"]["rule"] == "confidence"
    # cycle 0 with high1st takes the first k images of the window [0, beta*A) = [0, 30)
    assert read_lines(run / "labeled_0.txt") == pool_order[:6]
    csv_lines = read_lines(run / "metrics.csv")
    assert csv_lines[0].startswith("cycle,labelled") and len(csv_lines) == 4
    assert not list(run.glob("ckpt_*.pth"))
    assert (run / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_same_seed_same_selections_and_metrics(three_steps, toy):
    ckpt, run = three_steps
    again = toy / "again"
    assert main(["train", *data_flags(toy), *TINY, *train_flags(again, ckpt / "unlabeled_pool.txt")]) == 0
    for c in range(3):
        assert read_lines(again / f"labeled_{c}.txt") == read_lines(run / f"labeled_{c}.txt")
    acc = lambda d: [json.loads(x)["accuracy"] for x in read_lines(d / "metrics.jsonl")]  # noqa: E731
    assert acc(again) == acc(run)


def test_rerunning_a_finished_run_changes_nothing_and_other_settings_are_refused(three_steps, toy, capsys):
    ckpt, run = three_steps
    before = (run / "metrics.jsonl").read_text()
    assert main(["train", *data_flags(toy), *TINY, *train_flags(run, ckpt / "unlabeled_pool.txt")]) == 0
    assert (run / "metrics.jsonl").read_text() == before
    capsys.readouterr()
    code = main(["train", *data_flags(toy), *TINY, *train_flags(run, ckpt / "unlabeled_pool.txt", "--reinit")])
    assert code == 2 and "warm_start" in capsys.readouterr().err


def test_bal_run_reuses_finished_steps_and_random_baseline(toy, capsys):
    save = toy / "one-command"
    flags = [*data_flags(toy), *TINY, "--rotation_epochs", "1", "--rotation_batch_size", "16",
             *train_flags(save, "unused")[:-4], "--save", str(save), "--cycles", "2"]
    assert main(["run", *flags]) == 0
    first = (save / "pretext" / "features.npy").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["run", *flags]) == 0
    assert (save / "pretext" / "features.npy").stat().st_mtime_ns == first
    assert "test acc" in capsys.readouterr().out  # the table is printed
    rand = toy / "random"
    assert main(["train", *data_flags(toy), *TINY, *train_flags(rand, "unused"), "--strategy", "random"]) == 0
    assert len(read_lines(rand / "labeled_2.txt")) == 18


def test_python_api_on_arrays():
    import bal
    from bal.engine.trainer import TrainConfig

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    images = (rng.random((60, 12, 12, 3)) * 0.3 + labels[:, None, None, None] * 0.3).astype(np.float32)
    pool = bal.images_from_arrays(images[::2], labels[::2], ["a", "b", "c"])
    test = bal.images_from_arrays(images[1::2], labels[1::2], ["a", "b", "c"])
    quick = TrainConfig(epochs=1, batch_size=8, milestones=())
    rows = bal.active_learning(pool, test, percentages=[20, 20], net="cnn", train=quick, rotation=quick, beta=1.0)
    assert [r["labelled"] for r in rows] == [6, 12]
    again = bal.active_learning(pool, test, percentages=[20, 20], net="cnn", train=quick, rotation=quick, beta=1.0)
    assert [r["accuracy"] for r in rows] == [r["accuracy"] for r in again]


@pytest.mark.parametrize("strategy", ["pt4al", "typiclust", "coreset"])
def test_baselines_through_bal_train_read_the_pretext_folder(three_steps, toy, strategy):
    ckpt, _ = three_steps
    save = toy / f"strategy-{strategy}"
    assert main(["train", *data_flags(toy), *TINY, *train_flags(save, ckpt / "unlabeled_pool.txt"),
                 "--strategy", strategy]) == 0
    rows = [json.loads(line) for line in read_lines(save / "metrics.jsonl")]
    assert [r["labelled"] for r in rows] == [6, 12, 18] and {r["strategy"] for r in rows} == {strategy}
    if strategy == "pt4al":
        # cycle 0: evenly spaced over the first of 3 batches of the pool sorted by rotation loss, descending
        paths = read_lines(ckpt / "paths.txt")
        losses = np.load(ckpt / "rotation_loss.npy")
        by_loss = [paths[i] for i in np.argsort(-losses.astype(np.float64), kind="stable")]
        batch0 = by_loss[:20]
        assert read_lines(save / "labeled_0.txt") == [batch0[int(i * 20 / 6)] for i in range(6)]


def test_demo_runs_bal_the_recommendation_and_random(tmp_path, monkeypatch, capsys):
    """`bal demo` on its digits with a one-epoch schedule: one column per strategy, a table, a plot."""
    import bal.demo
    from bal.engine.trainer import TrainConfig
    from bal.selection import RECOMMENDED

    monkeypatch.setattr(bal.demo, "PERCENTAGES", [4.0, 4.0])
    monkeypatch.setattr(bal.demo, "TRAIN", TrainConfig(epochs=1, batch_size=64, lr=0.05, milestones=()))
    monkeypatch.setattr(bal.demo, "ROTATION", TrainConfig(epochs=1, batch_size=128, lr=0.05, milestones=()))
    assert main(["demo", "--out", str(tmp_path / "demo"), "--no_progress"]) == 0
    out = capsys.readouterr().out
    strategies = list(dict.fromkeys(["bal", RECOMMENDED, "random"]))
    header = next(line for line in out.splitlines() if line.startswith("cycle"))
    assert all(f"{s} %" in header for s in strategies) and f"{RECOMMENDED} - random" in header
    rows = (tmp_path / "demo" / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and all(s in rows[0].split(",") for s in strategies)
    assert (tmp_path / "demo" / "demo.png").stat().st_size > 0
    assert all((tmp_path / "demo" / s / "cycles" / "metrics.csv").exists() for s in strategies)
