"""torchrun with 2 processes on the CPU (gloo): same selections run after run, accuracy of one process,
and a crash of one rank stops all with a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import make_image_folder

from bal.files import read_lines

pytestmark = pytest.mark.slow


def torchrun(n: int, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "-m", "bal", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    make_image_folder(root / "data" / "toy", ["a", "b", "c"], 20, size=(16, 16))
    return root


def accuracies(folder) -> list[float]:
    return [json.loads(line)["accuracy"] for line in read_lines(folder / "metrics.jsonl")]


def test_two_processes_run_all_steps_reproducibly(toy):
    def run(save):
        done = torchrun(2, "run", "--datapath", str(toy / "data"), "--dataset", "toy", "--cache_dir",
                        str(toy / "cache"), "--net", "cnn", "--no_progress", "--seed", "5", "--rotation_epochs", "2",
                        "--rotation_batch_size", "16", "--per_samples_list", "10,10,10", "--epochs", "4",
                        "--batch_size", "8", "--milestones", "2", "--beta", "1.2", "--save", str(save))
        assert done.returncode == 0, done.stderr
        return done

    first = run(toy / "first")
    run(toy / "second")  # the same command again: the same selections and accuracies
    for c in range(3):
        assert read_lines(toy / "first" / f"labeled_{c}.txt") == read_lines(toy / "second" / f"labeled_{c}.txt")
    assert accuracies(toy / "first") == accuracies(toy / "second")
    # only rank 0 prints the table and writes the files
    assert first.stdout.count("test acc %") == 1
    assert not list((toy / "first").glob("**/*.tmp")) and not list((toy / "first").glob("**/ckpt_*"))
    assert (toy / "first" / "pretext" / "features.npy").exists()


def test_two_processes_reach_the_accuracy_of_one(toy):
    results = {}
    for n in (1, 2):
        save = toy / f"procs-{n}"
        done = torchrun(n, "train", "--datapath", str(toy / "data"), "--dataset", "toy", "--cache_dir",
                        str(toy / "cache"), "--net", "cnn", "--no_progress", "--seed", "1", "--strategy", "random",
                        "--per_samples_list", "40", "--epochs", "10", "--batch_size", "8", "--milestones", "7",
                        "--save", str(save))
        assert done.returncode == 0, done.stderr
        results[n] = accuracies(save)[-1]
    # the classes are easy: both must learn them, and land within a few test images of each other
    assert results[1] >= 80 and abs(results[2] - results[1]) <= 10, results


def test_a_crash_on_one_rank_stops_all_with_a_clear_message(toy):
    done = torchrun(2, "train", "--datapath", str(toy / "data"), "--dataset", "toy", "--cache_dir",
                    str(toy / "cache"), "--net", "cnn", "--no_progress", "--strategy", "random",
                    "--per_samples_list", "10", "--epochs", "2", "--save", str(toy / "crash"),
                    env={"BAL_FAULT_INJECT_RANK": "1"}, timeout=180)
    assert done.returncode != 0
    assert "bal: rank 1 failed: RuntimeError: failure injected on rank 1" in done.stderr


def test_single_process_commands_refuse_torchrun(toy):
    done = torchrun(2, "demo", "--out", str(toy / "demo"))
    assert done.returncode != 0 and "runs in one process" in done.stderr
