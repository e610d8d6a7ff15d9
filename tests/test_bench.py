"""`bal bench` on a tiny configuration: two strategies, two cycles, one seed, a few hundred images."""

from __future__ import annotations

import contextlib
import csv
import json
import logging

import numpy as np
import pytest
from conftest import make_image_folder

from bal.bench import BenchConfig
from bal.cli import main
from bal.errors import BalError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    make_image_folder(root / "data" / "toy", ["a", "b", "c", "d"], 60, size=(16, 16))  # 240 train, 240 test
    return root


def tiny_config(toy, name: str, strategies: str, out):
    """A bench of two 5 % cycles, one seed, two epochs, on the toy data; returns the YAML file."""
    config = toy / f"{name}.yaml"
    config.write_text(
        f"dataset: toy\ndatapath: {toy / 'data'}\ncache_dir: {toy / 'cache'}\npool_size: 200\ntest_size: 100\n"
        f"strategies: [{strategies}]\nseeds: [0]\npercentages: [5, 5]\nnet: cnn\nepochs: 2\nbatch_size: 16\n"
        "milestones: [1]\nrotation_epochs: 1\nrotation_batch_size: 32\nrotation_milestones: []\n"
        f"out: {out}\n"
    )
    return config


def test_tiny_bench_writes_results_table_and_plot(toy, capsys, caplog):
    out = toy / "out"
    config = tiny_config(toy, "tiny", "random, bal", out)
    caplog.set_level(logging.INFO, logger="bal")
    assert main(["bench", "--config", str(config), "--no_progress", "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "AUBC" in table and "random" in table and "bal" in table and "±" in table
    # the diagnostics reach the terminal, not only summary.md; no validation split is said to mean no choosing
    assert "diagnostics (means over seeds" in table and "  bal: class balance" in table and "k-NN accuracy" in table
    assert "no validation split (val_size 0): nothing can be chosen on validation" in caplog.text
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {(r["strategy"], r["cycle"]) for r in rows} == {("random", "0"), ("random", "1"), ("bal", "0"), ("bal", "1")}
    assert [r["labelled"] for r in rows if r["strategy"] == "bal"] == ["10", "20"]
    results = json.loads((out / "results.json").read_text())
    assert {s["strategy"] for s in results["summary"]} == {"random", "bal"}
    # every strategy is compared with random seed by seed
    assert {s["strategy"]: s["diff_seeds"] for s in results["summary"]} == {"random": 0, "bal": 1}
    assert "vs random" in table
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG" and (out / "accuracy.svg").exists()
    assert (out / "summary.md").read_text().count("|") > 10
    # bal's seed trained its own pretext, beside the output folder, where other benches find it
    assert len(list((toy / "pretexts").glob("toy-cnn-seed0-*/rotation.json"))) == 1
    assert (out / "runs" / "bal" / "seed-0" / "labeled_1.txt").exists()

    # a second call resumes: every pair is finished, so nothing is trained again and results are identical
    before = (out / "results.csv").read_text()
    mtime = (out / "runs" / "bal" / "seed-0" / "model_1.pth").stat().st_mtime_ns
    assert main(["bench", "--config", str(config), "--no_progress", "--device", "cpu", "--val_size", "0"]) == 0
    assert (out / "results.csv").read_text() == before
    assert (out / "runs" / "bal" / "seed-0" / "model_1.pth").stat().st_mtime_ns == mtime

    # the same folder with another configuration is refused, naming the change
    capsys.readouterr()
    assert main(["bench", "--config", str(config), "--no_progress", "--epochs", "3"]) == 2
    assert "epochs" in capsys.readouterr().err


@contextlib.contextmanager
def held_by_another_process(lock, message: str):
    """Hold the file lock ``lock`` as another process would, and let it go once bal logs ``message``
    (the bench has run everything else and now waits for it)."""
    from bal.files import held_lock

    held = held_lock(lock)
    assert held.__enter__()

    class FinishOther(logging.Handler):
        def emit(self, record):
            if message in record.getMessage() and held is not None:
                release()

    def release():
        nonlocal held
        held.__exit__(None, None, None)
        held = None

    handler = FinishOther()
    logging.getLogger("bal").addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger("bal").removeHandler(handler)
        if held is not None:
            release()


def test_a_pair_another_process_holds_is_left_for_later(toy, caplog):
    # two benches on one folder: the second runs the pairs nobody holds, then waits for the rest
    out = toy / "out-shared"
    config = tiny_config(toy, "shared", "random, margin", out)
    with held_by_another_process(out / "runs" / "random" / "seed-0.lock", "waiting for another process"), \
            caplog.at_level("INFO", logger="bal"):
        assert main(["bench", "--config", str(config), "--no_progress", "--device", "cpu"]) == 0
    log = caplog.text
    assert "waiting for another process that is running random seed 0" in log
    assert log.index("bench [2/2] margin seed 0") < log.index("bench [1/2] random seed 0")
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["strategy"], r["cycle"]) for r in rows] == [("random", "0"), ("random", "1"), ("margin", "0"),
                                                            ("margin", "1")]


def test_a_pair_whose_pretext_another_process_trains_is_left_for_later(toy, caplog):
    # the pretext of seed 0 is "being trained by another process": the bench runs random first
    main(["bench", "--config", str(tiny_config(toy, "pre", "bal", toy / "out-pre")), "--no_progress",
          "--device", "cpu"])  # makes the pretext folder, in toy/pretexts
    (folder,) = (toy / "pretexts").glob("toy-cnn-seed0-*")
    config = tiny_config(toy, "pretext-held", "bal, random", toy / "out-pretext-held")
    with held_by_another_process(folder / "rotation.lock", "waiting for another process that is training"), \
            caplog.at_level("INFO", logger="bal"):
        assert main(["bench", "--config", str(config), "--no_progress", "--device", "cpu"]) == 0
    log = caplog.text
    assert "bal seed 0 waits for its pretext, which another process is training" in log
    assert log.index("bench [2/2] random seed 0") < log.index("bench [1/2] bal seed 0")


def test_bench_configuration_errors(tmp_path):
    with pytest.raises(BalError, match="unknown key 'epoch'"):
        BenchConfig.from_mapping({"epoch": 3})
    with pytest.raises(BalError, match="strategies must be among"):
        BenchConfig.from_mapping({"strategies": ["bal", "magic"]})
    with pytest.raises(BalError, match="seeds"):
        BenchConfig.from_mapping({"seeds": [1, 1]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    with pytest.raises(BalError, match="not valid YAML"):
        BenchConfig.from_yaml(bad)
    assert BenchConfig.from_mapping({"batch-size": 7}).batch_size == 7


def test_every_configuration_key_is_a_flag_too(tmp_path, capsys, monkeypatch):
    import dataclasses

    import bal.bench

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    flags = {f.name: f"--{f.name}" for f in dataclasses.fields(BenchConfig)} | {"flip": "--no-flip"}
    assert [name for name, flag in flags.items() if flag not in text] == []

    seen = []
    monkeypatch.setattr(bal.bench, "run_bench", lambda config, progress: seen.append(config))
    yaml_file = tmp_path / "b.yaml"
    yaml_file.write_text("rotation_epochs: 30\nrotation_milestones: [20]\nwarm_start: true\n")
    assert main(["bench", "--config", str(yaml_file), "--rotation_milestones", "0.5", "0.8", "--reinit",
                 "--addendum", "even", "--order_from", "model", "--subset_seed", "3", "--backbone_size", "64",
                 "--out", str(tmp_path / "out")]) == 0
    (config,) = seen
    assert (config.rotation_milestones, config.warm_start, config.addendum, config.order_from, config.subset_seed,
            config.embedding_size) == ([0.5, 0.8], False, "even", "model", 3, 64)
    with pytest.raises(SystemExit) as stop:
        main(["bench", "--config", str(yaml_file), "--addendum", "lots"])
    assert stop.value.code == 2 and "--addendum" in capsys.readouterr().err


def test_checked_in_configurations_load():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    configs = sorted(folder.glob("**/*.yaml"))
    assert len(configs) >= 4
    for path in configs:
        config = BenchConfig.from_yaml(path)  # every key known, every value checked
        assert len(config.seeds) >= 3 and {"random", "bal"} <= {s.split("[")[0] for s in config.strategies}


def test_validation_protocol_per_seed_pretexts_and_diagnostics(toy, capsys):
    """eval: validation on a split outside the pool; each seed its own pretext, reused by another bench."""
    base = (f"dataset: toy\ndatapath: {toy / 'data'}\ncache_dir: {toy / 'cache'}\npool_size: 120\nval_size: 60\n"
            "test_size: 100\nstrategies: [random, 'bal[first=typical,view=mean,feature_norm=l2]', probcover]\n"
            "seeds: [0, 1]\nper_samples_list: [5, 5]\nnet: cnn\nbatch_size: 16\nmilestones: [1]\n"
            "rotation_epochs: 1\nrotation_batch_size: 32\nrotation_milestones: []\neval: validation\n")
    first = toy / "protocol.yaml"
    first.write_text(base + f"epochs: 2\nout: {toy / 'val-a'}\n")
    assert main(["bench", "--config", str(first), "--no_progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "evaluated on the validation split (60 images)" in printed
    results = json.loads((toy / "val-a" / "results.json").read_text())
    assert results["eval"] == "validation" and {r["split"] for r in results["rows"]} == {"validation"}
    # diagnostics: class counts and entropy every cycle, the previous model's errors after the first
    rows = results["rows"]
    assert all(sum(r["class_counts"].values()) == r["labelled"] and 0 <= r["class_entropy"] <= 1 for r in rows)
    assert all((r["previous_model_wrong"] is None) == (r["cycle"] == 0) for r in rows)
    quality = results["pretexts"]
    seen = {(q["seed"], q["features"], q["feature_norm"]) for q in quality}
    assert seen >= {(0, "mean", "l2"), (1, "upright", "none")}
    assert all(0 <= q["knn_accuracy"] <= 100 and 0 <= q["rotation_accuracy"] <= 100 for q in quality)
    summary = (toy / "val-a" / "summary.md").read_text()
    assert summary.startswith("evaluated on the validation split") and "## Diagnostics" in summary
    assert (toy / "val-a" / "balance.png").read_bytes()[:4] == b"\x89PNG"
    assert (toy / "val-a" / "runs" / "bal_first=typical_view=mean_feature_norm=l2" / "seed-1").is_dir()

    # each seed trained its own pretext ...
    folders = sorted((toy / "pretexts").glob("toy-cnn-seed[01]-*"))
    assert len({f.name.split("-")[2] for f in folders}) == 2
    stamps = {f: (f / "rotation.pth").stat().st_mtime_ns for f in folders}
    # ... and another bench with other task settings reuses them, training no pretext again
    second = toy / "protocol-b.yaml"
    second.write_text(base + f"epochs: 3\nout: {toy / 'val-b'}\n")
    assert main(["bench", "--config", str(second), "--no_progress", "--device", "cpu"]) == 0
    assert {f: (f / "rotation.pth").stat().st_mtime_ns for f in folders} == stamps


def test_splits_are_disjoint_and_stratified(toy):
    from bal.bench import BenchConfig, bench_splits
    from bal.data import open_dataset

    data = open_dataset(toy / "data", "toy", cache_dir=toy / "cache", progress=False)
    config = BenchConfig.from_mapping({"pool_size": 120, "val_size": 60, "test_size": 100})
    pool, val, test = bench_splits(config, data.pool, data.test)
    assert (len(pool), len(val), len(test)) == (120, 60, 100)
    assert not set(pool.paths) & set(val.paths) and set(pool.paths) | set(val.paths) <= set(data.pool.paths)
    assert np.bincount(val.labels).tolist() == [15, 15, 15, 15]
    with pytest.raises(BalError, match="val_size"):
        BenchConfig.from_mapping({"eval": "validation"})


def test_held_out_features_embed_the_pool_from_images_outside_pool_and_validation(toy, tmp_path):
    """benchmarks/held_out_features.py: trained on the rest of the training split, one row per pool image."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "held_out_features.py"
    spec = importlib.util.spec_from_file_location("held_out_features", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.held_out_indices(["a", "b", "c", "d"], ["b"], ["d"]).tolist() == [0, 2]

    config = tmp_path / "c.yaml"
    config.write_text(f"dataset: toy\ncache_dir: {toy / 'cache'}\npool_size: 120\nval_size: 60\ntest_size: 100\n"
                      "strategies: [random, bal]\nnet: cnn\n")
    out = tmp_path / "features.npy"
    assert module.main(["--config", str(config), "--datapath", str(toy / "data"), "--out", str(out),
                        "--epochs", "1"]) == 0
    features, info = np.load(out), json.loads(out.with_suffix(".json").read_text())
    assert features.shape[0] == 120 and features.dtype == np.float32 and np.isfinite(features).all()
    assert info["held_out"] == 240 - 120 - 60 and info["pool"] == 120
    assert 0 <= info["held_out_model_validation_accuracy"] <= 100
    assert info["trained_on"] == info["held_out"]

    # --labels: a stratified part of the held-out images (toy's four classes, 15 each of 60)
    assert module.main(["--config", str(config), "--datapath", str(toy / "data"), "--out", str(out),
                        "--epochs", "1", "--labels", "20"]) == 0
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["trained_on"] == 20 and info["held_out"] == 60 and np.load(out).shape[0] == 120


def test_neighbour_purity_of_first_picks_by_hand():
    """benchmarks/first_picks.py: the share of each image's nearest neighbours with its class."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "first_picks.py"
    spec = importlib.util.spec_from_file_location("first_picks", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # two tight groups along the axes; the third point of the first group carries the other class
    x = np.array([[1, 0], [1, 0.01], [1, 0.02], [0, 1], [0.01, 1], [0.02, 1]], dtype=float)
    y = np.array([0, 0, 1, 1, 1, 1])
    # k = 2: each point's two neighbours are the rest of its group
    assert module.neighbour_purity(x, y, k=2).tolist() == [0.5, 0.5, 0.0, 1.0, 1.0, 1.0]


def test_strategy_specs():
    from bal.selection import parse_strategy, split_strategy_list

    assert parse_strategy("bal[first=typical, beta=2, addendum=none]") == (
        "bal", {"first": "typical", "beta": 2, "addendum": None})
    assert parse_strategy("random") == ("random", {})
    assert split_strategy_list("random,bal[first=typical,beta=2.5] margin") == [
        "random", "bal[first=typical,beta=2.5]", "margin"]
    with pytest.raises(BalError, match="key=value"):
        BenchConfig.from_mapping({"strategies": ["bal[first]"]})
