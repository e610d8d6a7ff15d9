"""The command line: flags, help texts and error messages (no network training here)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import make_image_folder

from bal.cli import build_parser, flatten, main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    make_image_folder(root / "data" / "toy", ["a", "b", "c"], 8, size=(12, 12))
    return root


def test_help_lists_the_authors_flags(capsys):
    parser = build_parser()
    for command, flags in {
        "rotation": ["--save", "--net", "--dataset", "--datapath", "--lr", "--batch_size", "--epochs", "--milestones",
                     "--seed", "--device"],
        "kmeans": ["--net", "--dataset", "--datapath", "--load", "--clusters", "--kmeans", "--seed"],
        "train": ["--per_samples_list", "--addendum", "--save", "--beta", "--milestones", "--epochs", "--batch_size",
                  "--lr", "--momentum", "--weight_decay", "--sort", "--sampling", "--first", "--sorted_dataset_path",
                  "--cycles", "--seed", "--window", "--warm-start", "--reinit"],
        "run": ["--rotation_epochs", "--clusters", "--per_samples_list", "--window"],
    }.items():
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        for flag in flags:
            assert flag in text, f"`bal {command} --help` does not mention {flag}"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    assert "never uses it" in capsys.readouterr().out  # --sort says it is unused


def test_dash_and_underscore_spellings_are_the_same_flag():
    parser = build_parser()
    a = parser.parse_args(["train", "--per_samples_list", "10,5", "5", "--batch_size", "64", "--milestone", "3,6",
                           "--sorted_dataset_path", "x.txt", "--weight_decay", "0.001"])
    b = parser.parse_args(["train", "--per-samples-list", "10", "5,5", "--batch-size", "64", "--milestones", "3", "6",
                           "--sorted-dataset-path", "x.txt", "--weight-decay", "0.001"])
    flat = lambda ns: {k: flatten(v) if k in ("per_samples_list", "milestones") else v  # noqa: E731
                       for k, v in vars(ns).items()}
    assert flat(a) == flat(b)
    assert flatten(a.per_samples_list) == [10.0, 5.0, 5.0] and flatten(a.milestones) == [3, 6]
    assert parser.parse_args(["train", "--reinit"]).warm_start is False
    assert parser.parse_args(["train"]).warm_start is True


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--beta", "-1"], "--beta"),
        (["train", "--sampling", "bogus"], "--sampling"),
        (["train", "--per_samples_list", "10,x"], "--per_samples_list"),
        (["rotation", "--net", "alexnet"], "--net"),
        (["train", "--epochs", "0"], "--epochs"),
    ],
)
def test_bad_flag_values_exit_2_naming_the_flag(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_dataset_folder_is_named(capsys, tmp_path):
    code, _, err = run_cli(capsys, "rotation", "--datapath", str(tmp_path / "nowhere"), "--dataset", "toy",
                           "--save", str(tmp_path / "s"), "--no_progress", "--cache_dir", str(tmp_path / "c"))
    assert code == 2
    assert "bal: error:" in err and "nowhere" in err


def test_impossible_budget_names_the_flag(capsys, toy, tmp_path):
    code, _, err = run_cli(
        capsys, "train", "--datapath", str(toy / "data"), "--dataset", "toy", "--strategy", "random",
        "--per_samples_list", "60,60", "--save", str(tmp_path / "run"), "--no_progress", "--cache_dir", str(toy / "c"),
    )
    assert code == 2 and "--per_samples_list" in err and "more than the pool" in err
    code, _, err = run_cli(
        capsys, "train", "--datapath", str(toy / "data"), "--dataset", "toy", "--strategy", "random",
        "--per_samples_list", "1", "--save", str(tmp_path / "run"), "--no_progress", "--cache_dir", str(toy / "c"),
    )
    assert code == 2 and "less than one image" in err
    code, _, err = run_cli(
        capsys, "train", "--datapath", str(toy / "data"), "--dataset", "toy", "--strategy", "random",
        "--per_samples_list", "10,10", "--cycles", "3", "--save", str(tmp_path / "run"), "--no_progress",
        "--cache_dir", str(toy / "c"),
    )
    assert code == 2 and "--cycles 3" in err


def test_kmeans_without_rotation_says_what_to_run(capsys, tmp_path):
    code, _, err = run_cli(capsys, "kmeans", "--load", str(tmp_path / "empty"))
    assert code == 2 and "bal rotation" in err


def test_sorted_list_naming_an_unknown_image_names_the_line(capsys, toy, tmp_path):
    from bal.data import scan_dataset

    train, _ = scan_dataset(toy / "data", "toy")
    sorted_file = tmp_path / "unlabeled_pool.txt"
    sorted_file.write_text("\n".join(train.paths[:3] + ["elsewhere/x.png"] + train.paths[3:]) + "\n")
    code, _, err = run_cli(
        capsys, "train", "--datapath", str(toy / "data"), "--dataset", "toy", "--sorted_dataset_path",
        str(sorted_file), "--per_samples_list", "10", "--save", str(tmp_path / "run"), "--no_progress",
        "--cache_dir", str(toy / "c"),
    )
    assert code == 2 and "line 4" in err and "elsewhere/x.png" in err
    code, _, err = run_cli(
        capsys, "train", "--datapath", str(toy / "data"), "--dataset", "toy", "--sorted_dataset_path",
        str(tmp_path / "missing.txt"), "--per_samples_list", "10", "--save", str(tmp_path / "run2"),
        "--no_progress", "--cache_dir", str(toy / "c"),
    )
    assert code == 2 and "--sorted_dataset_path" in err and "bal kmeans" in err


def test_console_entry_point_runs_as_module():
    done = subprocess.run([sys.executable, "-m", "bal", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("bal ")


def test_the_installed_version_is_the_one_in_the_source():
    """pyproject.toml reads the version from bal.__version__: the package, its metadata and the
    CHANGELOG's newest entry say the same."""
    from importlib.metadata import version
    from pathlib import Path

    import bal

    root = Path(__file__).resolve().parents[1]
    assert 'dynamic = ["version"]' in (root / "pyproject.toml").read_text()
    assert version("bal") == bal.__version__
    newest = next(line for line in (root / "CHANGELOG.md").read_text().splitlines() if line.startswith("## "))
    assert newest.startswith(f"## {bal.__version__} ")


def test_bad_images_stop_before_training_or_are_skipped_and_listed(capsys, tmp_path):
    root = make_image_folder(tmp_path / "data" / "toy", ["a", "b"], 6, size=(12, 12))
    (root / "train" / "a" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (root / "test" / "b" / "notes.txt").write_text("hello")
    flags = ["rotation", "--datapath", str(tmp_path / "data"), "--dataset", "toy", "--net", "cnn", "--epochs", "1",
             "--no_progress", "--cache_dir", str(tmp_path / "c"), "--save", str(tmp_path / "s")]
    code, _, err = run_cli(capsys, *flags)
    assert code == 2 and "broken.jpg" in err and "notes.txt" in err and "--skip-bad-images" in err
    assert not (tmp_path / "s" / "rotation_ckpt.pth").exists()  # nothing was trained
    code, _, err = run_cli(capsys, *flags, "--skip_bad_images")
    assert code == 0
    listed = (tmp_path / "s" / "skipped_images.txt").read_text()
    assert "broken.jpg" in listed and "notes.txt" in listed
    assert len((tmp_path / "s" / "paths.txt").read_text().split()) == 12


def test_cuda_asked_for_on_a_machine_without_it(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_cli(capsys, "rotation", "--device", "cuda", "--datapath", "nowhere")
    assert code == 2 and "--device 'cuda'" in err and "nowhere" not in err  # checked before the data
