"""Hostile inputs, one row each: bad flags, damaged files, odd names, malformed imports, a full disk.

Every row runs one ``bal`` command the way a user (or an attacker) would and asserts: exit
status 2, a message that names the file, flag or value, no Python traceback, and every
file that was there before is byte-identical afterwards (nothing wrong is recorded, no
finished work is lost).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder

from bal.cli import main

pytestmark = pytest.mark.slow

CLASSES = ["ant", "bee", "cat"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A toy dataset, a finished rotation + kmeans folder, a finished 1-cycle run, a project with a selection."""
    root = tmp_path_factory.mktemp("hostile")
    make_image_folder(root / "data" / "toy", CLASSES, 8, size=(16, 16))
    data = ["--datapath", str(root / "data"), "--dataset", "toy", "--cache_dir", str(root / "cache"), "--net", "cnn",
            "--no_progress"]
    ckpt = root / "ckpt"
    assert main(["rotation", *data, "--epochs", "1", "--batch_size", "8", "--save", str(ckpt)]) == 0
    assert main(["kmeans", "--load", str(ckpt)]) == 0
    run = root / "run"
    assert main(["train", *data, "--per_samples_list", "20", "--epochs", "1", "--batch_size", "8",
                 "--sorted_dataset_path", str(ckpt / "unlabeled_pool.txt"), "--save", str(run)]) == 0
    half = root / "half"  # two cycles asked for, killed after the first
    assert killed_after_first_cycle(train_flags({"data": data, "ckpt": ckpt}, half, "--per_samples_list", "20,20"))
    photos = root / "photos"
    make_image_folder(photos, CLASSES, 4, size=(16, 16), splits=("unsorted",))
    proj = root / "proj"
    assert main(["project", "init", str(proj), "--images", str(photos), "--classes", ",".join(CLASSES),
                 "--no-progress"]) == 0
    assert main(["query", str(proj), "--budget", "3", "--strategy", "random", "--no-progress"]) == 0
    return {"root": root, "data": data, "ckpt": ckpt, "run": run, "half": half, "proj": proj, "photos": photos}


def killed_after_first_cycle(argv: list[str]) -> bool:
    """Run ``bal`` as if killed (Ctrl-C) right after cycle 0 was committed; True when it stopped there."""
    import bal.loop.cycles as cycles

    real = cycles._Run.finish_cycle

    def stop_after_first(self, c, *a, **k):
        row = real(self, c, *a, **k)
        if c == 0:
            raise KeyboardInterrupt
        return row

    cycles._Run.finish_cycle = stop_after_first
    try:
        return main([str(a) for a in argv]) == 130
    finally:
        cycles._Run.finish_cycle = real


def snapshot(*folders: Path) -> dict[str, str]:
    out = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")) if Path(folder).is_dir() else []:
            if path.is_file() and path.suffix not in (".log", ".lock") and "-wal" not in path.name and \
                    "-shm" not in path.name:
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def train_flags(w, save, *extra):
    return ["train", *w["data"], "--per_samples_list", "20", "--epochs", "1", "--batch_size", "8",
            "--sorted_dataset_path", str(w["ckpt"] / "unlabeled_pool.txt"), "--save", str(save), *extra]


# Each case: (id, setup(world, tmp) -> (argv, folders whose files must not change), words the message must hold)
def _flag(*extra):
    return lambda w, t: (train_flags(w, t / "new", *extra), [w["ckpt"]])


def _train_in(folder_name, damage, *extra, source="run"):
    def setup(w, t):
        run = copy(w[source], t / folder_name)
        damage(run)
        return train_flags(w, run, *extra), [run, w["ckpt"]]
    return setup


def _kmeans_on(damage):
    def setup(w, t):
        ckpt = copy(w["ckpt"], t / "ckpt")
        damage(ckpt)
        return ["kmeans", "--load", str(ckpt)], [ckpt]
    return setup


def _import(name, content):
    def setup(w, t):
        proj = copy(w["proj"], t / "proj")
        f = t / name
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
        return ["import", str(proj), str(f)], [proj]
    return setup


def _bench_yaml(text):
    def setup(w, t):
        f = t / "bench.yaml"
        f.write_text(text)
        return ["bench", "--config", str(f), "--out", str(t / "out"), "--no_progress"], []
    return setup


def _ls(tasks):
    return _import("export.json", json.dumps(tasks))


def _write(path_in_folder, content):
    def damage(folder: Path):
        target = folder / path_in_folder
        if content is None:
            target.unlink()
        elif content == "dir":
            target.unlink()
            target.mkdir()
        else:
            target.write_bytes(content)
    return damage


def _truncate(path_in_folder):
    def damage(folder: Path):
        target = folder / path_in_folder
        target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 3])
    return damage


CASES = [
    # -- numbers: never non-finite, never out of range; refused before anything runs
    ("lr-inf", _flag("--lr", "inf"), ["--lr"]),
    ("lr-nan", _flag("--lr", "nan"), ["--lr"]),
    ("weight-decay-nan", _flag("--weight_decay", "nan"), ["--weight_decay"]),
    ("momentum-negative", _flag("--momentum", "-1"), ["--momentum"]),
    ("momentum-one", _flag("--momentum", "1"), ["--momentum"]),
    ("per-samples-inf", _flag("--per_samples_list", "inf"), ["--per_samples_list"]),
    ("per-samples-nan", _flag("--per_samples_list", "nan"), ["--per_samples_list"]),
    ("per-samples-too-many", _flag("--per_samples_list", "60,60"), ["--per_samples_list", "more than the pool"]),
    ("per-samples-over-100", _flag("--per_samples_list", "150"), ["--per_samples_list", "at most 100"]),
    ("image-size-huge", _flag("--image_size", "60000"), ["--image_size"]),
    ("beta-inf", _flag("--beta", "inf"), ["--beta"]),
    ("beta-negative", _flag("--beta", "-2"), ["--beta"]),
    ("epochs-zero", _flag("--epochs", "0"), ["--epochs"]),
    ("milestone-past-the-end", _flag("--milestones", "5", "--epochs", "3"), ["--milestones", "last epoch"]),
    ("seed-negative", _flag("--seed", "-1"), ["--seed"]),
    ("cycles-too-many", _flag("--cycles", "9"), ["--cycles 9"]),
    ("device-without-cuda", _flag("--device", "cuda"), ["--device"]),
    ("rotation-lr-inf", lambda w, t: (["run", *w["data"], "--rotation_lr", "inf", "--save", str(t / "r")], []),
     ["--rotation_lr"]),
    ("clusters-one", lambda w, t: (["kmeans", "--load", str(copy(w["ckpt"], t / "c")), "--clusters", "1"],
                                   [t / "c"]), ["--clusters"]),
    # -- folders and files the user points at
    ("save-is-a-file", lambda w, t: _then((t / "f").write_text, "x", (train_flags(w, t / "f"), [t])),
     ["--save", "is a file"]),
    ("save-under-a-file", lambda w, t: _then((t / "f").write_text, "x", (train_flags(w, t / "f" / "run"), [t])),
     ["--save", "is a file"]),
    ("load-missing", lambda w, t: (["kmeans", "--load", str(t / "nowhere")], []), ["--load", "does not exist"]),
    ("load-without-features", _kmeans_on(_write("features.npy", None)), ["features.npy"]),
    ("load-without-paths", _kmeans_on(_write("paths.txt", None)), ["paths.txt"]),
    ("load-truncated-features", _kmeans_on(_truncate("features.npy")), ["features.npy", "truncated"]),
    ("load-binary-paths", _kmeans_on(_write("paths.txt", b"\xff\xfe\x00garbage")), ["paths.txt", "UTF-8"]),
    ("rotation-json-not-json", _kmeans_on(_write("rotation.json", b"{not json")), ["rotation.json"]),
    ("sorted-list-is-a-folder", lambda w, t: _then((t / "dir").mkdir, None, (
        train_flags(w, t / "r") + ["--sorted_dataset_path", str(t / "dir")], [t])), ["is a folder"]),
    ("sorted-list-binary", lambda w, t: _then((t / "b.txt").write_bytes, b"\x89PNG\x00\xff", (
        train_flags(w, t / "r") + ["--sorted_dataset_path", str(t / "b.txt")], [t])), ["b.txt", "UTF-8"]),
    ("pt4al-without-losses", lambda w, t: _pt4al_without_losses(w, t), ["rotation_loss.npy"]),
    ("resume-truncated-model", _train_in("r", _truncate("model_0.pth"), "--per_samples_list", "20,20", source="half"),
     ["model_0.pth", "truncated"]),
    ("resume-damaged-state", _train_in("r", _write("state.json", b"{half"), "--per_samples_list", "20,20",
                                       source="half"), ["state.json"]),
    ("resume-damaged-selection", _train_in("r", _write("labeled_0.txt", b"\xff\xfe"), "--per_samples_list", "20,20",
                                           source="half"), ["labeled_0.txt"]),
    ("resume-other-settings", _train_in("r", lambda f: None, "--lr", "0.5"), ["lr", "other settings"]),
    # -- datasets that are not what they should be
    ("dataset-missing", lambda w, t: (train_flags(w, t / "r")[:1] + ["--datapath", str(t), "--dataset", "nope",
                                                                       "--save", str(t / "r")], []), ["nope"]),
    ("one-class", lambda w, t: _then(make_image_folder, (t / "d" / "one", ["cat"], 4), (
        ["rotation", "--datapath", str(t / "d"), "--dataset", "one", "--save", str(t / "s"), "--cache_dir",
         str(t / "c"), "--no_progress"], [])), ["one class", "two classes"]),
    ("flat-folder", lambda w, t: _then(make_image_folder, (t / "d", ["flat"], 3, (16, 16), ("",)), (
        ["rotation", "--datapath", str(t), "--dataset", "d", "--save", str(t / "s"), "--no_progress"], [])),
     ["bal project init"]),
    ("newline-in-a-name", lambda w, t: _odd_name(t, "bad\nname.png"), ["line break", "bad"]),
    ("carriage-return-in-a-name", lambda w, t: _odd_name(t, "bad\rname.png"), ["carriage return"]),
    ("non-utf8-name", lambda w, t: _odd_name(t, os.fsdecode(b"bad\xff.png")), ["not UTF-8"]),
    # -- projects
    ("project-db-corrupt", lambda w, t: _then((copy(w["proj"], t / "p") / "project.db").write_bytes, b"x" * 4096,
                                              (["status", str(t / "p")], [])), ["project.db", "not a bal project"]),
    ("project-db-is-a-folder", lambda w, t: _then((t / "p" / "project.db").mkdir, {"parents": True},
                                                  (["status", str(t / "p")], [])), ["project.db"]),
    ("query-budget-zero", lambda w, t: (["query", str(w["proj"]), "--budget", "0"], [w["proj"]]), ["--budget"]),
    ("fit-holdout-one", lambda w, t: (["fit", str(w["proj"]), "--holdout", "1"], [w["proj"]]), ["--holdout"]),
    ("undo-unknown-image", lambda w, t: (["undo", str(copy(w["proj"], t / "p")), "no/such.png"], [t / "p"]),
     ["no/such.png"]),
    ("import-missing-file", lambda w, t: (["import", str(w["proj"]), str(t / "none.csv")], [w["proj"]]),
     ["none.csv"]),
    ("csv-unclosed-quote", _import("b.csv", 'path,label\nunsorted/ant/0000.png,"ant\nunsorted/bee/0001.png,bee\n'),
     ["line 2", "quot"]),
    ("csv-text-after-quote", _import("b.csv", 'path,label\n"unsorted/ant/0000.png"x,ant\n'), ["line 2", "quot"]),
    ("csv-not-utf8", _import("b.csv", b"path,label\n\xff\xfe,ant\n"), ["b.csv", "UTF-8"]),
    ("csv-no-header", _import("b.csv", "unsorted/ant/0000.png,ant\n"), ["header", "path and label"]),
    ("ls-not-a-list", _ls({"tasks": []}), ["export.json", "list of tasks"]),
    ("ls-result-not-a-list", _ls([{"data": {"bal_path": "unsorted/ant/0000.png"}, "annotations": [{"result": 7}]}]),
     ["task 1", "result"]),
    ("ls-choice-not-text", _ls([{"data": {"bal_path": "unsorted/ant/0000.png"},
                                 "annotations": [{"result": [{"type": "choices", "value": {"choices": [3]}}]}]}]),
     ["task 1", "choice"]),
    ("ls-annotations-not-a-list", _ls([{"data": {"bal_path": "unsorted/ant/0000.png"}, "annotations": "ant"}]),
     ["task 1", "annotations"]),
    ("ls-data-missing", _ls([{"annotations": []}]), ["task 1", "data"]),
    ("ls-invalid-json", _import("export.json", "[{"), ["export.json", "not a valid JSON"]),
    ("ls-nested-too-deep", _import("export.json", "[" * 100000 + "]" * 100000), ["export.json", "not a valid JSON"]),
    ("ls-path-not-text", _ls([{"data": {"bal_path": 5}, "annotations": []}]), ["task 1", "bal_path"]),
    # -- bench configurations
    ("bench-epochs-text", _bench_yaml("epochs: ten\n"), ["epochs", "'ten'"]),
    ("bench-seeds-not-a-list", _bench_yaml("seeds: 3\n"), ["seeds"]),
    ("bench-lr-inf", _bench_yaml("lr: .inf\n"), ["lr", "finite"]),
    ("bench-unknown-key", _bench_yaml("epoch: 3\n"), ["unknown key 'epoch'"]),
    ("bench-not-a-mapping", _bench_yaml("- 1\n- 2\n"), ["mapping"]),
    ("bench-strategy-typo", _bench_yaml("strategies: [bal, margn]\n"), ["margn"]),
    ("bench-milestone-past-end", _bench_yaml("epochs: 10\nmilestones: [20]\n"), ["milestones", "last epoch"]),
    ("ls-value-not-an-object", _ls([{"data": {"bal_path": "unsorted/ant/0000.png"},
                                     "annotations": [{"result": [{"type": "choices", "value": ["ant"]}]}]}]),
     ["task 1", "\"value\" is not a JSON object"]),
    ("ls-choices-not-a-list", _ls([{"data": {"bal_path": "unsorted/ant/0000.png"},
                                    "annotations": [{"result": [{"type": "choices", "value": {"choices": "ant"}}]}]}]),
     ["task 1", "\"choices\" is not a list"]),
    # -- files that are not what their names say; embeddings that overflow
    ("eps-named-jpg", lambda w, t: _dataset_with(t, "photo.jpg", _EPS), ["photo.jpg", "not an image of an accepted"]),
    ("features-overflow", lambda w, t: _then(np.save, (t / "f.npy", np.full((24, 4), 1e19)), (
        ["kmeans", "--load", str(copy(w["ckpt"], t / "c")), "--features", str(t / "f.npy")], [t / "c"])),
     ["--features", "f.npy", "overflow", "rescale"]),
    ("bench-rotation-milestone", _bench_yaml("rotation_epochs: 10\nrotation_milestones: [20]\n"),
     ["rotation_milestones", "last epoch"]),
    ("run-rotation-milestone", lambda w, t: (["run", *w["data"], "--rotation_epochs", "3", "--rotation_milestones",
                                              "5", "--save", str(t / "r")], []), ["--rotation_milestones"]),
    ("train-on-a-busy-folder", lambda w, t: _busy_run(w, t), ["another bal process", "train.lock"]),
    # -- other commands
    ("serve-port", lambda w, t: (["serve", str(w["proj"]), "--port", "99999"], [w["proj"]]), ["--port"]),
    ("cache-prune-what", lambda w, t: (["cache", "prune", "--cache_dir", str(t)], []), ["--partial"]),
    ("export-into-a-file", lambda w, t: _then((t / "a-file").write_text, "x", (
        ["export", str(w["proj"]), "--out", str(t / "a-file" / "x.csv")], [w["proj"]])), ["a-file"]),
]


def _then(action, argument, result):
    """Do ``action(argument)`` (a tuple: several arguments; a dict: keywords), then give ``result``."""
    if isinstance(argument, tuple):
        action(*argument)
    elif isinstance(argument, dict):
        action(**argument)
    elif argument is None:
        action()
    else:
        action(argument)
    return result


_EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n(ran) print\nshowpage\n"
_HELD = []  # locks held by a row until the end of the module (a run another process is busy with)


def _dataset_with(t: Path, name: str, content: bytes):
    """A dataset whose train/ant folder also holds ``name`` with ``content``; `bal rotation` on it."""
    make_image_folder(t / "d" / "odd", CLASSES, 3, size=(16, 16))
    (t / "d" / "odd" / "train" / "ant" / name).write_bytes(content)
    return ["rotation", "--datapath", str(t / "d"), "--dataset", "odd", "--save", str(t / "s"), "--cache_dir",
            str(t / "c"), "--no_progress"], []


def _busy_run(w, t):
    import fcntl

    run = copy(w["half"], t / "r")
    fd = os.open(run / "train.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a second `bal train` on this --save would find it
    _HELD.append(fd)
    return train_flags(w, run, "--per_samples_list", "20,20"), [run]


def _pt4al_without_losses(w, t):
    ckpt = copy(w["ckpt"], t / "c")
    (ckpt / "rotation_loss.npy").unlink()
    argv = train_flags(w, t / "r", "--strategy", "pt4al", "--sorted_dataset_path", str(ckpt / "unlabeled_pool.txt"))
    return argv, [ckpt]


def _odd_name(t: Path, name: str):
    """A dataset whose train/ant folder holds a file called ``name``; `bal rotation` on it."""
    make_image_folder(t / "d" / "odd", CLASSES, 3, size=(16, 16))
    shutil.copy(t / "d" / "odd" / "train" / "ant" / "0000.png", t / "d" / "odd" / "train" / "ant" / name)
    return ["rotation", "--datapath", str(t / "d"), "--dataset", "odd", "--save", str(t / "s"), "--cache_dir",
            str(t / "c"), "--no_progress"], []


@pytest.mark.parametrize("case, setup, words", CASES, ids=[c[0] for c in CASES])
def test_hostile_input(case, setup, words, world, tmp_path, capsys):
    argv, folders = setup(world, tmp_path)
    argv = [str(a) for a in argv]
    before = snapshot(*folders)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refuses a value before bal runs
        code = e.code
    out, err = capsys.readouterr()
    assert code == 2, f"{case}: exit {code}\n{err}"
    assert "Traceback" not in err + out, err
    for word in words:
        assert word in err, f"{case}: {word!r} not in\n{err}"
    assert snapshot(*folders) == before, f"{case}: files changed"


def test_at_least_forty_cases():
    assert len(CASES) >= 40


def test_non_finite_loss_stops_at_once_and_commits_nothing(world, tmp_path, capsys):
    run = tmp_path / "diverge"
    code = main(train_flags(world, run, "--lr", "1e30", "--epochs", "3", "--batch_size", "2"))
    err = capsys.readouterr().err
    assert code == 2 and "loss became" in err and "--lr" in err and "cycle 0" in err and "epoch 1" in err
    assert not (run / "model_0.pth").exists() and not (run / "state.json").exists()


def test_full_disk_says_so_and_where(world, tmp_path, capsys, monkeypatch):
    import bal.files

    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(bal.files.os, "fsync", full)
    run = tmp_path / "full"
    code = main(train_flags(world, run))
    monkeypatch.setattr(bal.files.os, "fsync", real)
    err = capsys.readouterr().err
    assert code == 2 and "no space left on device" in err and str(run) in err and "Traceback" not in err


def test_a_bug_is_one_line_and_a_log_file(world, tmp_path, capsys, monkeypatch):
    import bal.loop.cycles

    def broken(*args, **kwargs):
        raise ZeroDivisionError("something bal did wrong")

    monkeypatch.setattr(bal.loop.cycles, "select_cycle", broken)
    run = tmp_path / "bug"
    code = main(train_flags(world, run))
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "a bug in bal" in err and "Traceback" not in err
    log = Path(err.split("traceback is in ")[1].split(";")[0])
    assert log.parent == run and "ZeroDivisionError" in log.read_text() and "Traceback" in log.read_text()


def test_a_value_refused_after_binding_does_not_lock_the_folder(world, tmp_path, capsys):
    """Every setting is checked before the run folder is bound: the corrected command then works there."""
    run = tmp_path / "r"
    with pytest.raises(SystemExit) as refused:  # argparse's own check
        main(train_flags(world, run, "--lr", "inf"))
    assert refused.value.code == 2
    assert main(train_flags(world, run, "--momentum", "nan")) == 2
    assert main(train_flags(world, run, "--per_samples_list", "90,90")) == 2  # needs the pool's size: decoded first
    capsys.readouterr()
    assert main(train_flags(world, run)) == 0


def test_bounded_report_of_a_huge_import(world, tmp_path, capsys):
    """100,000 rows of unknown images: the report lists 50 and counts the rest; the file is read row by row."""
    proj = copy(world["proj"], tmp_path / "p")
    big = tmp_path / "big.csv"
    with open(big, "w") as f:
        f.write("path,label\n")
        for i in range(100_000):
            f.write(f"nowhere/{i:06d}.png,ant\n")
    code = main(["import", str(proj), str(big)])
    err = capsys.readouterr().err
    assert code == 2 and len(err) < 20_000
    assert err.count("unknown image: not in this project") == 50 and "100,000 unknown image" in err


def test_formula_cells_are_neutralised_and_read_back(world, tmp_path, capsys):
    from bal.project import Project
    from bal.project.formats import export_csv, from_spreadsheet, spreadsheet_safe

    for cell in ("=1+1", "+cmd", "-x", "@SUM(A1)", "\tx", "\rx", "plain", "'quoted"):
        assert from_spreadsheet(spreadsheet_safe(cell)) == cell
        assert not spreadsheet_safe(cell).startswith(("=", "+", "-", "@", "\t", "\r"))
    photos = tmp_path / "photos"
    make_image_folder(photos, CLASSES, 1, size=(16, 16), splits=("x",))
    (photos / "x" / "ant" / "0000.png").rename(photos / "=HYPERLINK(1).png")
    proj = tmp_path / "p"
    assert main(["project", "init", str(proj), "--images", str(photos), "--classes", ",".join(CLASSES),
                 "--no-progress"]) == 0
    with Project.open(proj) as p:
        image = p.image_by_path("=HYPERLINK(1).png")
        p.start_cycle("random", [image.id])
        text = export_csv(p, [image])
    assert "'=HYPERLINK(1).png" in text
    f = tmp_path / "back.csv"
    f.write_text(text.replace("'=HYPERLINK(1).png,,", "'=HYPERLINK(1).png,bee,"))
    assert main(["import", str(proj), str(f)]) == 0
    with Project.open(proj) as p:
        assert p.image_by_path("=HYPERLINK(1).png").label == "bee"


def test_relabel_and_undo_from_the_command_line(world, tmp_path, capsys):
    from bal.project import Project

    proj = copy(world["proj"], tmp_path / "p")
    with Project.open(proj) as p:
        _, selection = p.current_selection()
    path = selection[0].path
    f = tmp_path / "l.csv"
    f.write_text(f"path,label\n{path},ant\n")
    assert main(["import", str(proj), str(f)]) == 0
    f.write_text(f"path,label\n{path},bee\n")
    assert main(["import", str(proj), str(f)]) == 2
    assert "conflicts with its current label 'ant'" in capsys.readouterr().err
    assert main(["import", str(proj), str(f), "--relabel"]) == 0
    with Project.open(proj) as p:
        assert p.image_by_path(path).label == "bee"
        assert [lab.label for lab in p.labels_of(p.image_by_path(path).id, include_retracted=True)] == ["ant", "bee"]
    assert main(["undo", str(proj), path]) == 0
    with Project.open(proj) as p:
        assert p.image_by_path(path).label is None
    assert main(["import", str(proj), str(f)]) == 0
    assert main(["undo", str(proj), "--last", "1"]) == 0
    with Project.open(proj) as p:
        assert p.image_by_path(path).label is None


def test_symlink_loop_does_not_make_dogs_cats(tmp_path):
    from bal.data import scan_split

    root = make_image_folder(tmp_path / "ds", ["cat", "dog"], 3, splits=("train",)) / "train"
    os.symlink("..", root / "cat" / "loop")  # train/cat/loop -> train
    os.symlink(root / "dog" / "0000.png", root / "dog" / "again.png")  # the same file twice in one class
    split = scan_split(root)
    relative = [os.path.relpath(p, root) for p in split.paths]
    assert not [r for r in relative if "loop" in r] and len(split.paths) == 6  # each real file once
    assert all(r.split(os.sep)[0] == split.classes[c] for r, c in zip(relative, split.labels))  # in its own class
    os.symlink(root / "dog" / "0001.png", root / "cat" / "dog-in-disguise.png")  # one file in two classes
    with pytest.raises(Exception, match="in two classes at once"):
        scan_split(root)


def test_unreadable_folder_is_an_error_not_a_skip(tmp_path, monkeypatch):
    from bal.data import folders, scan_split

    root = make_image_folder(tmp_path / "ds", ["cat", "dog"], 2, splits=("train",)) / "train"
    (root / "dog" / "locked").mkdir()
    real_walk = os.walk

    def walk(top, **kwargs):
        for dirpath, dirnames, filenames in real_walk(top, **kwargs):
            if dirpath.endswith("locked"):
                kwargs["onerror"](PermissionError(errno.EACCES, "Permission denied", dirpath))
                continue
            yield dirpath, dirnames, filenames

    monkeypatch.setattr(folders.os, "walk", walk)
    with pytest.raises(Exception, match=r"locked.*cannot read this folder: Permission denied"):
        scan_split(root)


def test_changed_image_content_stops_a_resumed_run(world, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(world["root"] / "data", data)
    flags = ["--datapath", str(data), "--dataset", "toy", "--cache_dir", str(tmp_path / "cache"), "--net", "cnn",
             "--no_progress", "--per_samples_list", "20,20", "--epochs", "1", "--batch_size", "8", "--strategy",
             "random", "--save", str(tmp_path / "run")]
    assert killed_after_first_cycle(["train", *flags])  # a run of two cycles, killed after the first
    target = sorted((data / "toy" / "train" / "bee").glob("*.png"))[0]
    from PIL import Image

    Image.fromarray(np.full((16, 16, 3), 9, np.uint8)).save(target)
    before = snapshot(tmp_path / "run")
    capsys.readouterr()
    assert main(["train", *flags]) == 2
    err = capsys.readouterr().err
    assert "1 pool image(s) changed since the run" in err and target.name in err
    assert snapshot(tmp_path / "run") == before


# -- files bal loads are data, never code -----------------------------------------------------
class _Payload:
    """Pickles to a call of ``os.system``: loading it with plain pickle would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _plant(path: Path, marker: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0, "model": _Payload(marker), "net": "cnn"}, path)


def _labelled_fitted_project(w, t: Path) -> Path:
    """A copy of the world's project with its selection labelled and a model fitted (cycle 1)."""
    from bal.project import Project

    proj = copy(w["proj"], t / "p")
    with Project.open(proj) as p:
        _, selection = p.current_selection()
    f = t / "labels.csv"
    f.write_text("path,label\n" + "".join(f"{r.path},{r.path.split('/')[-2]}\n" for r in selection))
    assert main(["import", str(proj), str(f)]) == 0
    assert main(["fit", str(proj), "--epochs", "1", "--no-progress"]) == 0
    return proj


def _rotation_argv(w, save):
    return ["rotation", *w["data"], "--epochs", "1", "--batch_size", "8", "--save", str(save)]


def _payload_rotation(w, t, marker):
    ckpt = copy(w["ckpt"], t / "c")
    _plant(ckpt / "rotation.pth", marker)
    return _rotation_argv(w, ckpt), ckpt / "rotation.pth"


def _payload_rotation_ckpt(w, t, marker):
    ckpt = copy(w["ckpt"], t / "c")
    (ckpt / "rotation.json").unlink()  # an unfinished pretext resumes from its checkpoint
    _plant(ckpt / "rotation_ckpt.pth", marker)
    return _rotation_argv(w, ckpt), ckpt / "rotation_ckpt.pth"


def _payload_model(w, t, marker):
    run = copy(w["half"], t / "r")
    _plant(run / "model_0.pth", marker)
    return train_flags(w, run, "--per_samples_list", "20,20"), run / "model_0.pth"


def _payload_cycle_ckpt(w, t, marker):
    run = copy(w["half"], t / "r")
    _plant(run / "ckpt_1.pth", marker)
    return train_flags(w, run, "--per_samples_list", "20,20"), run / "ckpt_1.pth"


def _payload_project_model(w, t, marker):
    proj = _labelled_fitted_project(w, t)
    target = next((proj / "models").glob("cycle-*.pth"))
    _plant(target, marker)
    return ["query", str(proj), "--budget", "2", "--strategy", "confidence", "--no-progress"], target


def _payload_fit_ckpt(w, t, marker):
    import bal.engine.trainer as trainer

    proj = _labelled_fitted_project(w, t)
    real, seen = trainer.train_model, []

    def plant_then_train(*args, checkpoint=None, **kwargs):  # the fit checkpoint's name holds a digest
        _plant(Path(checkpoint), marker)
        seen.append(Path(checkpoint))
        return real(*args, checkpoint=checkpoint, **kwargs)

    trainer.train_model = plant_then_train
    return ["fit", str(proj), "--epochs", "1", "--no-progress"], ("fit-cycle", lambda: setattr(
        trainer, "train_model", real))


def _payload_project_pretext(w, t, marker):
    proj = copy(w["proj"], t / "p")
    argv = ["query", str(proj), "--budget", "2", "--strategy", "bal", "--pretext-epochs", "1", "--no-progress"]
    assert main(argv) == 0
    target = next((proj / "pretext").rglob("rotation.pth"))
    _plant(target, marker)
    (target.parent / "kmeans.json").unlink(missing_ok=True)  # the order is built again: the network is read
    return argv, target


PAYLOADS = {
    "rotation.pth": _payload_rotation,
    "rotation_ckpt.pth": _payload_rotation_ckpt,
    "model_C.pth": _payload_model,
    "ckpt_C.pth": _payload_cycle_ckpt,
    "project-cycle-model": _payload_project_model,
    "project-fit-checkpoint": _payload_fit_ckpt,
    "project-pretext-rotation.pth": _payload_project_pretext,
}


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_a_pickle_payload_is_never_run(kind, world, tmp_path, capsys):
    """A model or checkpoint file that would run code when unpickled is refused, named, and runs nothing."""
    marker = tmp_path / "MARKER"
    argv, target = PAYLOADS[kind](world, tmp_path, marker)
    undo = None
    if isinstance(target, tuple):
        name, undo = target
    else:
        name = target.name
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    finally:
        if undo is not None:
            undo()
    err = capsys.readouterr().err
    assert not marker.exists(), f"{kind}: the payload ran"
    assert code == 2, f"{kind}: exit {code}\n{err}"
    assert name in err and "could run code" in err and "Traceback" not in err, err


def test_an_eps_named_jpg_is_refused_with_or_without_ghostscript(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    from bal.data.decode import decode_image

    eps = tmp_path / "photo.jpg"
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n(ran) print\nshowpage\n")
    for has_gs in (False, True):
        monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: has_gs)
        monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs" if has_gs else False, raising=False)
        with pytest.raises(Exception, match=r"photo\.jpg: cannot identify image file: not an image of an accepted"):
            decode_image(str(eps), 16)


# -- errors say what is true; advice that is followed works ---------------------------------------
def _run_and_read(argv, capsys):
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_a_read_only_project_reads_and_says_why_it_cannot_write(world, tmp_path, capsys, monkeypatch):
    """Where the database or its folder cannot be written: status and export work; a write is 'read-only',
    never 'move it away and create the project again'."""
    import bal.project.db as db

    proj = copy(world["proj"], tmp_path / "p")
    with db.Project.open(proj) as p:  # a clean database, no -wal left, as on a read-only medium
        p.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    real = os.access
    monkeypatch.setattr(db.os, "access", lambda path, mode: False if mode == os.W_OK and str(proj) in str(path)
                        else real(path, mode))
    before = snapshot(proj)
    code, out, err = _run_and_read(["status", proj], capsys)
    assert code == 0 and "labelled" in out.lower()
    code, out, _ = _run_and_read(["export", proj], capsys)
    assert code == 0 and "path,label" in out
    f = tmp_path / "l.csv"
    with db.Project.open(proj) as p:
        _, selection = p.current_selection()
    f.write_text(f"path,label\n{selection[0].path},ant\n")
    code, _, err = _run_and_read(["import", proj, f], capsys)
    assert code == 2 and "read-only" in err and "project.db" in err
    assert "create the project again" not in err and "init" not in err
    assert snapshot(proj) == before


def _full_after_connect(monkeypatch):
    """Every connection bal opens may not grow its database file: SQLite's own 'database or disk is full'."""
    import bal.project.db as db

    real = db.Project._connect

    def connect(path, busy_seconds=30.0):
        conn = real(path, busy_seconds)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(db.Project, "_connect", staticmethod(connect))


def test_a_full_disk_during_scan_or_import_loses_nothing_and_says_so(tmp_path, capsys, monkeypatch):
    """SQLite's 'database or disk is full' in a scan and in an import: 'no space left on device', the labels
    safe, the database unchanged; never the advice to create the project again."""
    from bal.project import Project

    photos = tmp_path / "photos"
    make_image_folder(photos, CLASSES, 40, size=(8, 8), splits=("a",))
    proj = tmp_path / "p"
    assert main(["project", "init", str(proj), "--images", str(photos), "--classes", ",".join(CLASSES),
                 "--no-progress"]) == 0
    with Project.open(proj) as p:
        rows = [r for r in p.images() if r.label is None]
        p.start_cycle("random", [r.id for r in rows])
    make_image_folder(photos / "b", CLASSES, 40, size=(8, 8), splits=("",))
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"{r.path},{CLASSES[i % 3]}\n" for i, r in enumerate(rows)))
    _full_after_connect(monkeypatch)
    before = snapshot(proj)
    for argv in (["project", "scan", proj, "--no-progress"], ["import", proj, labels]):
        code, _, err = _run_and_read(argv, capsys)
        assert code == 2 and "no space left on device" in err and "project.db" in err and "label" in err, err
        assert "create the project again" not in err
        assert snapshot(proj) == before


def test_a_full_disk_while_labelling_on_the_page_is_said_not_a_bug(world, tmp_path, monkeypatch):
    from bal.project.serve import LabelApp

    proj = copy(world["proj"], tmp_path / "p")
    from bal.project.db import Project

    with Project.open(proj) as p:
        _, selection = p.current_selection()
    _full_after_connect(monkeypatch)
    app = LabelApp(proj, None)
    with pytest.raises(Exception) as refused:
        for _ in range(200):  # enough labels to need a new page
            app.label({"image_id": selection[0].id, "label": "ant"})
    assert "no space left on device" in str(refused.value) and "create the project again" not in str(refused.value)


def test_an_interrupted_init_leaves_nothing_and_init_then_works(world, tmp_path, capsys, monkeypatch):
    import bal.project.scan as scan

    real = scan._add

    def killed(project, records):
        real(project, records)
        raise KeyboardInterrupt  # after the images went in, before the project was complete

    argv = ["project", "init", tmp_path / "p", "--images", world["photos"], "--classes", ",".join(CLASSES),
            "--no-progress", "--seed", "7"]
    monkeypatch.setattr(scan, "_add", killed)
    code, _, _ = _run_and_read(argv, capsys)
    monkeypatch.setattr(scan, "_add", real)
    assert code == 130 and not (tmp_path / "p" / "project.db").exists()
    code, out, _ = _run_and_read(["status", tmp_path / "p"], capsys)
    assert code == 2
    code, out, _ = _run_and_read(argv, capsys)
    assert code == 0 and "seed 7" in out
    from bal.project.db import Project

    with Project.open(tmp_path / "p") as p:
        assert p.settings()["seed"] == 7  # never silently the defaults


@pytest.mark.parametrize("leftover", [b"", "tables-none"])
def test_init_finishes_what_an_older_interrupted_init_left(world, tmp_path, capsys, leftover):
    """An older bal's init killed in its first moments left an empty project.db: init takes it, status explains."""
    import sqlite3

    db = tmp_path / "p" / "project.db"
    db.parent.mkdir()
    if leftover == b"":
        db.write_bytes(b"")
    else:
        conn = sqlite3.connect(db)  # a database file without a single table (its header written)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
        assert db.stat().st_size > 0
    if db.stat().st_size:
        code, _, err = _run_and_read(["status", db.parent], capsys)
        assert code == 2 and "interrupted `bal project init`" in err and "holds no labels" in err
    code, out, err = _run_and_read(["project", "init", db.parent, "--images", world["photos"], "--classes",
                                    ",".join(CLASSES), "--no-progress"], capsys)
    assert code == 0, err
    assert _run_and_read(["status", db.parent], capsys)[0] == 0


def test_a_real_full_disk_while_saving_a_model_is_a_user_error(world, tmp_path, capsys):
    """On a 300 KB file system a run's first model does not fit: 'no space left on device', never 'a bug'."""
    import subprocess

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(tiny)], capture_output=True).returncode:
        pytest.skip("cannot mount a small file system here (needs root in a container that allows it)")
    try:
        code, _, err = _run_and_read(train_flags(world, tiny / "run"), capsys)
    finally:
        subprocess.run(["umount", str(tiny)], capture_output=True)
    assert code == 2 and "no space left on device" in err and "a bug" not in err


def test_following_the_advice_for_a_damaged_model_works(world, tmp_path, capsys):
    """A truncated model_0.pth: the message says to delete it and run the same command; doing so finishes
    the run, with the selections and accuracies of a run that was never damaged."""
    whole = tmp_path / "whole"
    assert main(train_flags(world, whole, "--per_samples_list", "20,20")) == 0
    run = copy(world["half"], tmp_path / "r")
    _truncate("model_0.pth")(run)
    code, _, err = _run_and_read(train_flags(world, run, "--per_samples_list", "20,20"), capsys)
    assert code == 2 and "model_0.pth" in err and "delete it and run the same command again" in err
    (run / "model_0.pth").unlink()
    code, _, err = _run_and_read(train_flags(world, run, "--per_samples_list", "20,20"), capsys)
    assert code == 0, err
    for name in ("labeled_0.txt", "labeled_1.txt"):
        assert (run / name).read_text() == (whole / name).read_text()
    accuracies = [[c["accuracy"] for c in json.loads((f / "state.json").read_text())["cycles"]] for f in (run, whole)]
    assert accuracies[0] == accuracies[1]


def test_following_the_advice_for_a_damaged_rotation_network_works(world, tmp_path, capsys):
    ckpt = copy(world["ckpt"], tmp_path / "c")
    features = (ckpt / "features.npy").read_bytes()
    _truncate("rotation.pth")(ckpt)
    code, _, err = _run_and_read(_rotation_argv(world, ckpt), capsys)
    assert code == 2 and "rotation.pth" in err and "delete it and run the same command again" in err
    (ckpt / "rotation.pth").unlink()
    code, _, err = _run_and_read(_rotation_argv(world, ckpt), capsys)
    assert code == 0, err
    assert (ckpt / "features.npy").read_bytes() == features  # the same seed trained the same network


# -- no silent wrong data -------------------------------------------------------------------------
def test_names_that_escape_alike_keep_their_own_labels(tmp_path, capsys):
    """'=x.png and =x.png: the CSV gives each its own cell, and a label lands on the image it was given to."""
    from bal.project import Project

    photos = tmp_path / "photos"
    make_image_folder(photos, CLASSES, 1, size=(16, 16), splits=("x",))
    (photos / "x" / "ant" / "0000.png").rename(photos / "=x.png")
    (photos / "x" / "bee" / "0000.png").rename(photos / "'=x.png")
    proj = tmp_path / "p"
    assert main(["project", "init", str(proj), "--images", str(photos), "--classes", ",".join(CLASSES),
                 "--no-progress"]) == 0
    with Project.open(proj) as p:
        plain, quoted = p.image_by_path("=x.png"), p.image_by_path("'=x.png")
        p.start_cycle("random", [plain.id, quoted.id])
    code, text, _ = _run_and_read(["export", proj], capsys)
    assert code == 0 and "\n'=x.png," in text and "\n''=x.png," in text
    f = tmp_path / "back.csv"
    f.write_text(text.replace("\n''=x.png,,", "\n''=x.png,cat,"))
    assert _run_and_read(["import", proj, f], capsys)[0] == 0
    with Project.open(proj) as p:
        assert p.image_by_path("'=x.png").label == "cat" and p.image_by_path("=x.png").label is None


def test_class_folders_that_differ_only_by_case_or_spaces_are_matched_and_said(tmp_path, capsys):
    from bal.project import Project

    photos = tmp_path / "photos"
    make_image_folder(photos, ["Cat", "ship "], 2, size=(16, 16), splits=("",))
    code, out, _ = _run_and_read(["project", "init", tmp_path / "p", "--images", photos, "--classes", "cat,ship",
                                  "--no-progress"], capsys)
    assert code == 0
    assert "class folder 'Cat/' taken as class 'cat'" in out and "class folder 'ship /' taken as class 'ship'" in out
    with Project.open(tmp_path / "p") as p:
        assert sorted(r.label for r in p.images()) == ["cat", "cat", "ship", "ship"]


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, capsys, monkeypatch):
    from PIL import Image

    import bal.data.decode as decode

    monkeypatch.setattr(decode, "MAX_DECODE_PIXELS", 100 * 100)
    big = np.zeros((120, 120), np.uint16)
    buf = tmp_path / "big.png"
    Image.fromarray(big).save(buf)
    argv, _ = _dataset_with(tmp_path, "big.png", buf.read_bytes())
    code, _, err = _run_and_read(argv, capsys)
    assert code == 2 and "big.png" in err and "too large: 120 x 120 pixels" in err


# -- no traceback, ever -------------------------------------------------------------------------
def test_ctrl_c_while_bal_starts_is_an_interruption(monkeypatch, capsys):
    import bal.cli

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(bal.cli, "build_parser", interrupted)
    code, _, err = _run_and_read(["status", "x"], capsys)
    assert code == 130 and err.strip() == "bal: interrupted"


def test_torch_that_cannot_load_is_a_message_and_reading_commands_need_none(world, tmp_path):
    """Under an address-space limit torch cannot load: `bal status` and `bal --version` still work, `bal train`
    says it is short of memory (exit 2, no traceback)."""
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (700 * 2**20, 700 * 2**20))

    def bal(*argv):
        return subprocess.run([sys.executable, "-m", "bal", *map(str, argv)], capture_output=True, text=True,
                              preexec_fn=limit, timeout=120)

    version = bal("--version")
    assert version.returncode == 0 and "bal" in version.stdout
    status = bal("status", world["proj"])
    assert status.returncode == 0, status.stderr
    train = bal(*train_flags(world, tmp_path / "r"))
    if train.returncode == 0:
        pytest.skip("torch loaded within 700 MB of address space here")
    assert train.returncode == 2 and "short of memory" in train.stderr and "Traceback" not in train.stderr


def test_a_query_says_when_pretext_flags_are_not_used(world, tmp_path, capsys):
    proj = copy(world["proj"], tmp_path / "p")
    code, out, err = _run_and_read(["query", proj, "--budget", "2", "--strategy", "random", "--pretext-epochs", "3",
                                    "--no-progress"], capsys)
    assert code == 0 and "--pretext-epochs 3 is not used: random needs no rotation pretext" in err
    assert "{" not in err and "planned" not in out and "(cycle 0)" not in out


def test_a_project_image_replaced_at_the_same_size_and_time_is_a_change(world, tmp_path, capsys):
    """`cp -p` of another picture over a labelled one: query refuses until a scan, and the scan reports it
    changed (its label kept, out of the pool), never training the old label on the new pixels."""
    from PIL import Image

    from bal.project import Project

    photos = tmp_path / "photos"
    shutil.copytree(world["photos"], photos)
    proj = tmp_path / "p"
    assert main(["project", "init", str(proj), "--images", str(photos), "--classes", ",".join(CLASSES),
                 "--no-progress"]) == 0
    target = sorted((photos / "unsorted" / "ant").glob("*.png"))[0]
    before = os.stat(target)
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(target)
    target.write_bytes(target.read_bytes()[: before.st_size].ljust(before.st_size, b"\0"))  # the same size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same time
    code, _, err = _run_and_read(["query", proj, "--budget", "2", "--strategy", "random", "--no-progress"], capsys)
    assert code == 2 and target.name in err and "bal project scan" in err
    code, out, _ = _run_and_read(["project", "scan", proj, "--no-progress"], capsys)
    assert code == 0 and "CHANGED: 1 image(s)" in out and target.name in out
    with Project.open(proj) as p:
        assert p.image_by_path(f"unsorted/ant/{target.name}").status == "changed"
