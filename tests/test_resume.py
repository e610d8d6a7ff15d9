"""Kill a run with SIGKILL at any moment; the same command finishes it with the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder

from bal.files import read_lines

pytestmark = pytest.mark.slow


def command(toy: Path, save: Path) -> list[str]:
    return [
        sys.executable, "-m", "bal", "run", "--datapath", str(toy / "data"), "--dataset", "toy",
        "--cache_dir", str(toy / "cache"), "--net", "cnn", "--no_progress", "--seed", "5",
        "--rotation_epochs", "8", "--rotation_batch_size", "8", "--rotation_milestones", "4",
        "--per_samples_list", "10,10,10", "--epochs", "8", "--batch_size", "4", "--milestones", "4",
        "--beta", "1.2", "--save", str(save),
    ]


def run_until(cmd: list[str], marker: Path, timeout: float = 240) -> bool:
    """Start ``cmd``; SIGKILL it as soon as ``marker`` exists. True if it was killed."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if marker.exists():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()
    return False


def outputs(save: Path) -> dict:
    rows = [json.loads(line) for line in read_lines(save / "metrics.jsonl")]
    return {
        "features": np.load(save / "pretext" / "features.npy"),
        "order": read_lines(save / "pretext" / "unlabeled_pool.txt"),
        "labelled": [read_lines(save / f"labeled_{c}.txt") for c in range(3)],
        "accuracy": [r["accuracy"] for r in rows],
        "per_class": [r["per_class_accuracy"] for r in rows],
    }


def test_sigkill_during_pretext_and_during_a_cycle_then_resume(tmp_path):
    toy = tmp_path
    make_image_folder(toy / "data" / "toy", ["a", "b", "c"], 20, size=(16, 16))
    reference = toy / "reference"
    subprocess.run(command(toy, reference), check=True, capture_output=True)

    save = toy / "killed"
    killed_in_pretext = run_until(command(toy, save), save / "pretext" / "rotation_ckpt.pth")
    assert killed_in_pretext and not (save / "pretext" / "rotation.json").exists(), "the kill came too late"
    killed_in_cycle = run_until(command(toy, save), save / "ckpt_1.pth")
    assert killed_in_cycle and not (save / "model_1.pth").exists(), "the kill came too late"
    assert (save / "labeled_1.txt").exists()  # the selection was committed before training
    subprocess.run(command(toy, save), check=True, capture_output=True)

    want, got = outputs(reference), outputs(save)
    np.testing.assert_array_equal(got["features"], want["features"])
    assert got["order"] == want["order"]
    assert got["labelled"] == want["labelled"]
    assert got["accuracy"] == want["accuracy"]
    assert got["per_class"] == want["per_class"]
    assert not list(save.glob("**/*.tmp")) and not list(save.glob("**/ckpt_*.pth"))
