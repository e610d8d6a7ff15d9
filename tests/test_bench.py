"""`bal bench` on a tiny configuration: two strategies, two cycles, one seed, a few hundred images."""

from __future__ import annotations

import csv
import json

import pytest

from bal.bench import BenchConfig
from bal.cli import main
from bal.errors import BalError
from conftest import make_image_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    make_image_folder(root / "data" / "toy", ["a", "b", "c", "d"], 60, size=(16, 16))  # 240 train, 240 test
    return root


def test_tiny_bench_writes_results_table_and_plot(toy, capsys):
    out = toy / "out"
    config = toy / "tiny.yaml"
    config.write_text(
        f"dataset: toy\ndatapath: {toy / 'data'}\ncache_dir: {toy / 'cache'}\npool_size: 200\ntest_size: 100\n"
        "strategies: [random, bal]\nseeds: [0]\npercentages: [5, 5]\nnet: cnn\nepochs: 2\nbatch_size: 16\n"
        "milestones: [1]\nrotation_epochs: 1\nrotation_batch_size: 32\nrotation_milestones: []\n"
        f"out: {out}\n"
    )
    assert main(["bench", "--config", str(config), "--no_progress", "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "AUBC" in table and "random" in table and "bal" in table and "±" in table
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {(r["strategy"], r["cycle"]) for r in rows} == {("random", "0"), ("random", "1"), ("bal", "0"), ("bal", "1")}
    assert [r["labelled"] for r in rows if r["strategy"] == "bal"] == ["10", "20"]
    results = json.loads((out / "results.json").read_text())
    assert {s["strategy"] for s in results["summary"]} == {"random", "bal"}
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG" and (out / "accuracy.svg").exists()
    assert (out / "summary.md").read_text().count("|") > 10
    # both strategies saw the same 200-image pool and the same shared pretext
    assert (out / "pretext" / "rotation.json").exists()
    assert (out / "runs" / "bal" / "seed-0" / "labeled_1.txt").exists()

    # a second call resumes: every pair is finished, so nothing is trained again and results are identical
    before = (out / "results.csv").read_text()
    mtime = (out / "runs" / "bal" / "seed-0" / "model_1.pth").stat().st_mtime_ns
    assert main(["bench", "--config", str(config), "--no_progress", "--device", "cpu"]) == 0
    assert (out / "results.csv").read_text() == before
    assert (out / "runs" / "bal" / "seed-0" / "model_1.pth").stat().st_mtime_ns == mtime

    # the same folder with another configuration is refused, naming the change
    capsys.readouterr()
    assert main(["bench", "--config", str(config), "--no_progress", "--epochs", "3"]) == 2
    assert "epochs" in capsys.readouterr().err


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


def test_checked_in_configurations_load():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    configs = sorted(folder.glob("*.yaml"))
    assert len(configs) >= 4
    for path in configs:
        config = BenchConfig.from_yaml(path)
        assert len(config.strategies) == 11 and len(config.seeds) == 3
