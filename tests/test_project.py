"""Labelling projects: init, scan, query, export, import, fit, status, and no label ever lost.

The commands are run through the parser that ``add_project_commands`` builds (the way
``bal``'s main will run them), on a generated folder of 16x16 images: three classes,
a few images already sorted into class folders, the rest in an ``unsorted`` tree.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import torch
from conftest import class_image, make_image_folder
from PIL import Image

from bal.cli.project import add_project_commands
from bal.errors import BalError
from bal.project import DB_NAME, Project
from bal.project.db import file_sha256
from bal.project.labelling import holdout_split
from bal.selection import RECOMMENDED, create_strategy

CLASSES = ["cat", "dog", "frog"]
SPECIAL = "unsorted/my cat #1.png"  # a space and a '#': URL quoting must round-trip


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="bal")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    return parser, add_project_commands(sub)


def run_bal(*argv) -> tuple[int, str, str]:
    """Run one command as bal's main does (BalError -> exit 2); returns (status, stdout, stderr)."""
    parser, handlers = build_parser()
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            args = parser.parse_args([str(a) for a in argv])
            code = handlers[args.command](args)
        except BalError as e:
            print(f"bal: error: {e}", file=sys.stderr)
            code = 2
        except SystemExit as e:  # argparse
            code = e.code
    return code, out.getvalue(), err.getvalue()


#: The same, as a script for subprocesses (bal's cli.py does not know these commands yet).
RUNNER = textwrap.dedent("""
    import argparse, sys
    from bal.errors import BalError
    from bal.cli.project import add_project_commands
    parser = argparse.ArgumentParser(prog="bal")
    handlers = add_project_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(sys.argv[1:])
    try:
        sys.exit(handlers[args.command](args))
    except BalError as e:
        print(f"bal: error: {e}", file=sys.stderr)
        sys.exit(2)
""")


def save_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")


@pytest.fixture
def images(tmp_path) -> tuple[Path, dict[str, str]]:
    """(folder, {relative path: true class}): 3 per class in class folders, 31 unsorted, and files to ignore."""
    root = tmp_path / "photos"
    make_image_folder(root, CLASSES, 3, splits=("",))  # photos/cat/0000.png ...
    truth = {f"{c}/{i:04d}.png": c for c in CLASSES for i in range(3)}
    rng = np.random.default_rng(7)
    for i in range(30):
        rel = f"unsorted/{'a' if i < 15 else 'b/deeper'}/{i:03d}.png"
        save_png(root / rel, class_image(i % 3, 3, (16, 16), rng))
        truth[rel] = CLASSES[i % 3]
    save_png(root / SPECIAL, class_image(0, 3, (16, 16), rng))
    truth[SPECIAL] = "cat"
    save_png(root / ".hidden.png", class_image(1, 3, (16, 16), rng))
    save_png(root / ".thumbnails" / "x.png", class_image(1, 3, (16, 16), rng))
    (root / "notes.txt").write_text("not an image\n")
    return root, truth


def init(tmp_path: Path, root: Path, *extra) -> Path:
    d = tmp_path / "proj"
    code, out, err = run_bal("project", "init", d, "--images", root, "--classes", ",".join(CLASSES),
                             "--no-progress", *extra)
    assert code == 0, err
    return d


def ranked_paths(out: str) -> list[str]:
    return [m.group(2) for m in re.finditer(r"^\s+(\d+)  (\S.*)$", out, re.M)]


def label_rows(d: Path) -> list[tuple]:
    with sqlite3.connect(d / DB_NAME) as conn:
        return conn.execute("SELECT image_id, class_id, source FROM labels ORDER BY id").fetchall()


# -- init --------------------------------------------------------------------------------
def test_init_records_every_image_and_class_folder_labels(tmp_path, images):
    root, truth = images
    d = tmp_path / "proj"
    code, out, err = run_bal("project", "init", d, "--images", root, "--classes", "cat, dog,frog", "--no-progress")
    assert code == 0, err
    assert "40 images" in out and "labelled from class folders: 9 (cat 3, dog 3, frog 3)" in out
    assert "unlabelled: 31" in out and f"bal query {d} --budget K" in out
    with Project.open(d) as p:
        assert p.classes == CLASSES
        assert p.images_root == root.resolve()
        rows = {r.path: r for r in p.images(None)}
        assert set(rows) == set(truth)  # hidden files and folders, notes.txt left out
        assert rows[SPECIAL].sha256 == file_sha256(root / SPECIAL)
        stored = p.conn.execute("SELECT size, mtime_ns FROM images WHERE path = ?", ("cat/0000.png",)).fetchone()
        st = os.stat(root / "cat/0000.png")
        assert tuple(stored) == (st.st_size, st.st_mtime_ns)
        assert {r.path: r.label for r in rows.values() if r.label} == {p_: c for p_, c in truth.items() if "/" in p_
                                                                      and p_.split("/")[0] in CLASSES}
        assert {lab.source for r in rows.values() for lab in p.labels_of(r.id)} == {"folder"}
        assert p.settings() == {"net": "cnn", "image_size": 16, "seed": 0, "flip": True}
        assert json.loads(p.conn.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()[0])["net"] == "cnn"


def test_commands_and_flags(tmp_path):
    parser, handlers = build_parser()
    assert set(handlers) == {"project", "query", "export", "import", "undo", "fit", "predict", "status"}
    args = parser.parse_args(["fit", "D", "--batch_size", "8", "--holdout", "0"])
    assert (args.batch_size, args.holdout, args.epochs, args.lr) == (8, 0.0, None, None)  # by task model
    args = parser.parse_args(["query", "D", "--budget", "5"])
    assert (args.beta, args.strategy, args.pretext_epochs) == (None, None, None)  # None: the project's stored values
    assert run_bal("query", "D", "--budget", "0")[0] == 2
    assert run_bal("fit", "D", "--holdout", "1")[0] == 2


def test_errors_name_what_is_wrong(tmp_path, images):
    root, _ = images
    code, _, err = run_bal("project", "init", tmp_path / "p", "--images", tmp_path / "nope", "--classes", "a,b")
    assert code == 2 and "--images" in err and "nope" in err and "no such folder" in err
    assert not (tmp_path / "p").exists()
    code, _, err = run_bal("project", "init", tmp_path / "p", "--images", root, "--classes", "a,b", "--net", "vgg99")
    assert code == 2 and "--net 'vgg99'" in err
    code, _, err = run_bal("project", "init", tmp_path / "p", "--images", root, "--classes", "cat")
    assert code == 2 and "--classes" in err

    not_a_project = tmp_path / "elsewhere"
    not_a_project.mkdir()
    for argv in (["status"], ["query", "--budget", "1"], ["export"], ["fit"], ["import", tmp_path / "x.csv"]):
        code, _, err = run_bal(argv[0], not_a_project, *argv[1:])
        assert code == 2 and "is not a bal project" in err, argv
    code, _, err = run_bal("project", "scan", not_a_project)
    assert code == 2 and "is not a bal project" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run_bal("project", "init", tmp_path / "e", "--images", empty, "--classes", "a,b")
    assert code == 0 and "0 images" in out and "bal project scan" in out
    for argv in (["query", "--budget", "3"], ["fit"]):
        code, _, err = run_bal(argv[0], tmp_path / "e", *argv[1:])
        assert code == 2 and "holds no images" in err and str(empty.resolve()) in err, argv
    code, _, err = run_bal("export", tmp_path / "e")
    assert code == 2 and "no selection yet" in err

    d = init(tmp_path, root)
    code, _, err = run_bal("project", "init", d, "--images", root, "--classes", "a,b")
    assert code == 2 and "already holds a project" in err
    code, _, err = run_bal("query", d, "--budget", 32, "--no-progress")
    assert code == 2 and "--budget 32 is more than the 31 unlabelled images" in err


# -- the whole loop ----------------------------------------------------------------------
def _pretexts(d: Path) -> list[Path]:
    return list((d / "pretext").iterdir()) if (d / "pretext").is_dir() else []


@pytest.mark.slow
def test_whole_loop_init_query_export_import_fit_status_query(tmp_path, images, cache_dir):
    root, truth = images
    d = init(tmp_path, root)

    # first query: bal's recommendation, no model yet (its cold-start rule); recorded as cycle 1
    code, out, err = run_bal("query", d, "--budget", 9, "--pretext-epochs", 1, "--no-progress")
    assert code == 0, err
    assert f"strategy: {RECOMMENDED} " in err and "(bal's recommendation without the pretrained extra" in err
    assert "cycle 1: 9 image(s)" in out and "no fitted model yet" in out
    assert f"bal serve {d}" in out and f"bal export {d}" in out
    first = ranked_paths(out)
    with Project.open(d) as p:
        cycle_id, selection = p.current_selection()
        assert cycle_id == 1 and [r.path for r in selection] == first
        assert all(r.label is None and r.status == "ok" for r in selection)
        assert p.cycles()[0]["strategy"] == RECOMMENDED and p.cycles()[0]["budget"] == 9
    # a pretext is trained only for a strategy that reads one (the recommendation, confidence, does not)
    pretexts = 1 if create_strategy(RECOMMENDED, default_beta=1.0).needs else 0
    # the pool's decoded images live in bal's one image cache ($BAL_CACHE_DIR), where `bal cache list` sees them
    assert len(list(_pretexts(d))) == pretexts and len(list(cache_dir.glob("*.npy"))) == 1
    from bal.cli import main

    listing = io.StringIO()
    with redirect_stdout(listing):
        assert main(["cache", "list"]) == 0
    assert str(root) in listing.getvalue()

    # export: CSV on stdout, Label Studio tasks in DIR/export.json
    code, out, err = run_bal("export", d)
    assert code == 0, err
    exported = list(csv.DictReader(io.StringIO(out)))
    assert list(exported[0]) == ["path", "label", "absolute_path"]
    assert [r["path"] for r in exported] == first and all(r["label"] == "" for r in exported)
    assert all(Path(r["absolute_path"]) == root.resolve() / r["path"] for r in exported)
    code, out, err = run_bal("export", d, "--format", "labelstudio")
    assert code == 0, err
    tasks = json.loads((d / "export.json").read_text())
    assert [t["data"]["bal_path"] for t in tasks] == first
    assert tasks[0]["data"]["image"] == "/data/local-files/?d=" + quote(str(root.resolve() / first[0]), safe="/")
    assert "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true" in out

    # the labeller fills the CSV in
    batch = tmp_path / "batch.csv"
    with open(batch, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "absolute_path"])
        w.writerows([r["path"], truth[r["path"]], r["absolute_path"]] for r in exported)
    code, out, err = run_bal("import", d, batch)
    assert code == 0, err
    assert "imported 9 label(s)" in out
    with Project.open(d) as p:
        assert all(p.image_by_path(x).label == truth[x] for x in first)
        assert len(p.current_labels()) == 18

    # fit: accuracy on a held-out split, model saved and recorded on cycle 1
    code, out, err = run_bal("fit", d, "--epochs", 2, "--batch-size", 8, "--no-progress")
    assert code == 0, err
    assert re.search(r"held-out accuracy: \d+\.\d % on \d+ images", out), out
    with Project.open(d) as p:
        c = p.cycles()[-1]
        assert c["id"] == 1 and c["model_path"] == "models/cycle-1.pth"
        m = c["metrics"]
        assert m["labelled"] == 18 and m["held_out"] > 0 and m["trained_on"] == 18 - m["held_out"]
        assert m["accuracy"] is not None and sum(m["per_class"].values()) == 18
    state = torch.load(d / "models" / "cycle-1.pth", map_location="cpu", weights_only=False)
    assert {"net", "num_classes", "image_size", "classes", "model"} <= set(state)
    assert (state["net"], state["num_classes"], state["image_size"], state["classes"]) == ("cnn", 3, 16, CLASSES)

    code, out, err = run_bal("status", d)
    assert code == 0, err
    assert "40 ok, 0 changed, 0 missing; 18 labelled, 22 unlabelled" in out
    assert re.search(rf"^\s+1 .* {RECOMMENDED}\s+9\s+9\s+\d+\.\d %", out, re.M), out
    assert f"next: run `bal query {d} --budget 9`" in out

    # second query: scored by the cycle-1 model, never a labelled image, pretext reused
    code, out, err = run_bal("query", d, "--budget", 6, "--pretext-epochs", 1, "--no-progress")
    assert code == 0, err
    assert "cycle 2: 6 image(s)" in out and "under the model fitted in cycle 1" in out
    second = ranked_paths(out)
    assert len(second) == 6 and set(second) != set(first)
    with Project.open(d) as p:
        labelled = {p.image(i).path for i in p.current_labels()}
        assert not labelled & set(second)
        assert [r.path for r in p.current_selection()[1]] == second
    assert len(list(_pretexts(d))) == pretexts

    code, out, _ = run_bal("status", d)
    assert f"next: label the 6 image(s) of cycle 2: `bal serve {d}`" in out


# -- import ------------------------------------------------------------------------------
def test_import_checks_every_row_and_applies_all_or_nothing(tmp_path, images):
    root, _ = images
    d = init(tmp_path, root)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "path,label,comment\n"
        "unsorted/a/000.png,cat,fine\n"      # 2
        "unsorted/nowhere.png,cat,\n"        # 3 unknown image
        "unsorted/a/001.png,bird,\n"         # 4 unknown class
        "cat/0000.png,dog,\n"                # 5 conflicts with the folder label
        "unsorted/a/003.png,cat,\n"          # 6 the file disagrees with itself
        "unsorted/a/003.png,dog,\n"          # 7
        "cat/0001.png,cat,\n"                # 8 the label it has: fine, not duplicated
        "unsorted/a/004.png,,\n"             # 9 no label yet: skipped
        "unsorted/a/006.png,frog,\n"         # 10 repeated with the same class: one label
        f"{root.resolve() / 'unsorted/a/006.png'},frog,\n"  # 11 absolute path of the same image
    )
    before = label_rows(d)
    code, out, err = run_bal("import", d, bad)
    assert code == 2
    problems = dict(re.findall(r"^  line (\d+): (.*)$", err, re.M))
    assert sorted(map(int, problems)) == [3, 4, 5, 6, 7], err
    assert "unknown image" in problems["3"] and "unsorted/nowhere.png" in problems["3"]
    assert "unknown class 'bird'" in problems["4"] and "cat, dog, frog" in problems["4"]
    assert "conflicts with its current label 'cat'" in problems["5"]
    assert "different classes" in problems["6"] and "'dog' (line 7)" in problems["6"] and problems["6"] == problems["7"]
    assert "nothing was" in err and "--partial" in err
    assert label_rows(d) == before

    code, out, err = run_bal("import", d, bad, "--partial")
    assert code == 0, err
    assert "imported 2 label(s)" in out and "1 line(s) without a label skipped" in out
    assert sorted(map(int, re.findall(r"^  line (\d+):", out, re.M))) == [3, 4, 5, 6, 7]
    with Project.open(d) as p:
        assert p.image_by_path("unsorted/a/000.png").label == "cat"
        assert [lab.source for lab in p.labels_of(p.image_by_path("unsorted/a/006.png").id)] == ["import"]
        assert [lab.source for lab in p.labels_of(p.image_by_path("cat/0001.png").id)] == ["folder"]
        assert p.image_by_path("cat/0000.png").label == "cat"
        assert p.image_by_path("unsorted/a/003.png").label is None
    n = len(label_rows(d))
    code, out, _ = run_bal("import", d, bad, "--partial")
    assert code == 0 and "imported 0 label(s)" in out and len(label_rows(d)) == n

    other = tmp_path / "labels.txt"
    other.write_text("path,label\n")
    code, _, err = run_bal("import", d, other)
    assert code == 2 and "--format" in err
    code, out, err = run_bal("import", d, other, "--format", "csv")
    assert code == 0 and "imported 0 label(s)" in out
    headless = tmp_path / "headless.csv"
    headless.write_text("unsorted/a/000.png,cat\n")
    code, _, err = run_bal("import", d, headless)
    assert code == 2 and "line 1" in err and "path and label" in err


def test_label_studio_export_and_import(tmp_path, images):
    root, truth = images
    d = init(tmp_path, root)
    picked = [SPECIAL, "unsorted/a/000.png", "unsorted/a/001.png", "unsorted/a/002.png", "unsorted/b/deeper/020.png"]
    with Project.open(d) as p:
        p.start_cycle("bal", [p.image_by_path(x).id for x in picked])
    out_file = tmp_path / "tasks.json"
    code, out, err = run_bal("export", d, "--format", "labelstudio", "--out", out_file)
    assert code == 0, err
    tasks = json.loads(out_file.read_text())
    assert [t["data"]["bal_path"] for t in tasks] == picked
    assert "my%20cat%20%231.png" in tasks[0]["data"]["image"]
    with Project.open(d) as p:
        assert [t["id"] for t in tasks] == [p.image_by_path(x).id for x in picked]

    def choice(label, cancelled=False):
        return {"was_cancelled": cancelled, "result": [
            {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]}

    tasks[0]["annotations"] = [choice("cat")]
    tasks[1]["annotations"] = [choice("dog"), choice("frog", cancelled=True)]  # the cancelled one does not count
    tasks[2]["annotations"] = [choice("dog"), choice("frog")]  # annotators disagree: left for a person
    del tasks[3]["data"]["bal_path"]  # the path comes back from data.image
    tasks[3]["annotations"] = [choice("frog")]
    tasks[4]["annotations"] = []  # not labelled yet
    done = tmp_path / "project-1-at-2024.json"
    done.write_text(json.dumps(tasks))
    code, out, err = run_bal("import", d, done)
    assert code == 2 and "task 3: unsorted/a/001.png: annotators disagree: 'dog' (annotation 1), 'frog'" in err
    code, out, err = run_bal("import", d, done, "--partial")
    assert code == 0, err
    assert "imported 3 label(s)" in out and "1 task(s) without a label skipped" in out
    assert "not imported (--partial): 1 task(s)" in out and "annotators disagree" in out
    with Project.open(d) as p:
        got = {x: p.image_by_path(x).label for x in picked}
    assert got == {SPECIAL: "cat", "unsorted/a/000.png": "dog", "unsorted/a/001.png": None,
                   "unsorted/a/002.png": "frog", "unsorted/b/deeper/020.png": None}

    tasks[4]["annotations"] = [choice("bird")]
    tasks[4]["data"]["bal_path"] = "unsorted/b/deeper/020.png"
    done.write_text(json.dumps(tasks))
    code, _, err = run_bal("import", d, done)
    assert code == 2 and re.search(r"^  task 5: unsorted/b/deeper/020.png: unknown class 'bird'", err, re.M), err


# -- scan --------------------------------------------------------------------------------
def test_scan_reports_added_changed_and_vanished_images_and_keeps_labels(tmp_path, images):
    root, _ = images
    d = init(tmp_path, root)
    changed, vanished, touched = "unsorted/a/005.png", "unsorted/b/deeper/021.png", "unsorted/a/010.png"
    with Project.open(d) as p:
        p.label(p.image_by_path(changed).id, "frog", "import")
        p.label(p.image_by_path(vanished).id, "dog", "import")
    original, vanished_bytes = (root / changed).read_bytes(), (root / vanished).read_bytes()
    save_png(root / changed, np.zeros((16, 16, 3), np.uint8))
    (root / vanished).unlink()
    st = os.stat(root / touched)
    os.utime(root / touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))  # same content, new mtime
    rng = np.random.default_rng(3)
    save_png(root / "unsorted/new.png", class_image(1, 3, (16, 16), rng))
    save_png(root / "frog/later/new.png", class_image(2, 3, (16, 16), rng))

    code, out, err = run_bal("project", "scan", d, "--no-progress")
    assert code == 0, err
    assert "added 2 image(s) (1 labelled from class folders: frog 1)" in out
    assert "frog/later/new.png" in out and "unsorted/new.png" in out
    assert re.search(rf"CHANGED: 1 image\(s\).*\n  {re.escape(changed)}\n", out), out
    assert f"bal project scan {d} --accept-changed" in out
    assert re.search(rf"MISSING: 1 image\(s\).*\n  {re.escape(vanished)}\n", out), out
    assert touched not in out and "labels kept on changed or missing images: 2" in out
    with Project.open(d) as p:
        assert p.image_by_path(changed).status == "changed" and p.image_by_path(changed).label == "frog"
        assert p.image_by_path(vanished).status == "missing" and p.image_by_path(vanished).label == "dog"
        assert p.image_by_path(changed).sha256 == file_sha256_bytes(original)  # the row keeps what was added
        assert p.image_by_path("frog/later/new.png").label == "frog"
        assert p.image_by_path(touched).status == "ok"
        assert p.conn.execute("SELECT mtime_ns FROM images WHERE path = ?", (touched,)).fetchone()[0] == \
            os.stat(root / touched).st_mtime_ns
        pool = {r.path for r in p.images("ok")}
        assert changed not in pool and vanished not in pool and len(pool) == 40
    code, out, _ = run_bal("status", d)
    assert "40 ok, 1 changed, 1 missing" in out and "labels kept on changed or missing images: 2" in out

    # both come back as they were: back in the pool, labels current again
    (root / changed).write_bytes(original)
    (root / vanished).write_bytes(vanished_bytes)
    code, out, _ = run_bal("project", "scan", d, "--no-progress")
    assert code == 0 and "back in the pool" in out and changed in out and vanished in out
    with Project.open(d) as p:
        assert p.image_by_path(changed).status == "ok" and p.image_by_path(vanished).status == "ok"
        assert p.current_labels()[p.image_by_path(changed).id] == "frog"
    assert run_bal("project", "scan", d, "--no-progress")[1].strip().endswith("no changes")

    # a re-saved image kept on purpose: --accept-changed takes its new content, labels stay
    save_png(root / changed, np.full((16, 16, 3), 200, np.uint8))
    assert "CHANGED: 1" in run_bal("project", "scan", d, "--no-progress")[1]
    code, out, _ = run_bal("project", "scan", d, "--accept-changed", "--no-progress")
    assert code == 0 and "accepted the new content of 1 changed image(s)" in out
    with Project.open(d) as p:
        row = p.image_by_path(changed)
        assert (row.status, row.label, row.sha256) == ("ok", "frog", file_sha256(root / changed))


def file_sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


# -- fit ---------------------------------------------------------------------------------
def test_holdout_split_rule():
    items = [(f"c0/{i}", 0) for i in range(10)] + [(f"c1/{i}", 1) for i in range(3)] + [("c2/0", 2)] + \
            [(f"c3/{i}", 3) for i in range(2)]
    train, held = holdout_split(items, 0.2, seed=0)
    per_class = {c: sum(items[i][1] == c for i in held) for c in range(4)}
    assert per_class == {0: 2, 1: 1, 2: 0, 3: 0}  # floor(0.2 n + 0.5), at most n - 1
    assert sorted(train + held) == list(range(len(items)))
    assert holdout_split(items, 0.2, seed=0) == (train, held)
    assert holdout_split(items, 0.2, seed=1)[1] != held
    assert holdout_split(items, 0.0, seed=0)[1] == []
    # more labels of one class later: the other classes keep their held-out images
    grown = items + [(f"c0/{i}", 0) for i in range(10, 15)]
    held_grown = {grown[i][0] for i in holdout_split(grown, 0.2, seed=0)[1]}
    assert {items[i][0] for i in held if items[i][1] != 0} == {x for x in held_grown if not x.startswith("c0/")}
    assert sum(x.startswith("c0/") for x in held_grown) == 3
    with pytest.raises(BalError, match="holdout"):
        holdout_split(items, 1.0, seed=0)


def test_fit_needs_labels_and_reports_no_accuracy_without_holdout(tmp_path, images):
    root, _ = images
    code, _, err = run_bal("project", "init", tmp_path / "p", "--images", root / "unsorted", "--classes", "x,y",
                           "--no-progress")
    assert code == 0, err
    code, _, err = run_bal("fit", tmp_path / "p", "--no-progress")
    assert code == 2 and "no labels yet" in err
    d = init(tmp_path, root)  # 3 folder labels per class
    code, out, err = run_bal("fit", d, "--epochs", 1, "--holdout", 0, "--no-progress")
    assert code == 0, err
    assert "held-out accuracy: none" in out and "9 of 9 labels, 0 held out" in out
    with Project.open(d) as p:
        c = p.cycles()
        assert len(c) == 1 and c[0]["strategy"] == "fit" and c[0]["budget"] == 0
        assert c[0]["metrics"]["accuracy"] is None and c[0]["model_path"] == "models/cycle-1.pth"
    assert not list((d / "models").glob(".fit-*"))  # the resume checkpoint is removed


# -- no lost labels ----------------------------------------------------------------------
@pytest.mark.slow
def test_killed_import_is_all_or_nothing(tmp_path, images):
    """SIGKILL at several moments of a large import: the database stays sound and holds the
    import entirely or not at all; once the command has reported, the labels are on disk."""
    root, _ = images
    n = 30000
    template = tmp_path / "template"
    with Project.create(template, root, CLASSES) as p:  # import never opens the image files
        p.add_images([(f"many/{i:06d}.png", "0" * 64, 1, 0) for i in range(n)])
    big = tmp_path / "big.csv"
    big.write_text("path,label\n" + "".join(f"many/{i:06d}.png,{CLASSES[i % 3]}\n" for i in range(n)))

    def fresh(name: str) -> Path:
        return Path(shutil.copytree(template, tmp_path / name))

    def command(d: Path) -> list[str]:
        return [sys.executable, "-u", "-c", RUNNER, "import", str(d), str(big)]

    def state(d: Path) -> tuple[str, int]:
        conn = sqlite3.connect(d / DB_NAME)
        try:
            ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
            return ok, conn.execute("SELECT COUNT(*) FROM labels WHERE source = 'import'").fetchone()[0]
        finally:
            conn.close()

    d = fresh("uninterrupted")
    r = subprocess.run(command(d), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"imported {n} label(s)") and state(d) == ("ok", n)

    # Kill while the import's transaction is open: a second connection finds the write
    # lock taken (BEGIN IMMEDIATE fails at once), then the process gets SIGKILL after a delay.
    interrupted = 0
    for k, delay in enumerate((0.0, 0.05, 0.15)):
        d = fresh(f"killed-{k}")
        proc = subprocess.Popen(command(d), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = sqlite3.connect(d / DB_NAME, timeout=0, isolation_level=None)
        locked, deadline = False, time.monotonic() + 120
        while not locked and proc.poll() is None and time.monotonic() < deadline:
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                time.sleep(0.002)
            except sqlite3.OperationalError:  # database is locked: the import is writing
                locked = True
        time.sleep(delay)
        proc.kill()
        proc.wait()
        probe.close()
        ok, count = state(d)
        assert ok == "ok" and count in (0, n), (delay, ok, count)
        if count == 0:  # nothing recorded: running it again records everything
            interrupted += locked
            r = subprocess.run(command(d), capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr
            assert state(d) == ("ok", n)
    assert interrupted, "no kill landed inside the import's transaction"

    d = fresh("reported")
    proc = subprocess.Popen(command(d), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    proc.kill()
    proc.wait()
    proc.stdout.close()
    assert line.startswith(f"imported {n} label(s)")
    assert state(d) == ("ok", n)


@pytest.mark.slow
def test_a_later_query_keeps_the_projects_settings(tmp_path, images):
    """A flag left out takes the project's value from its last query; a pretext setting that
    would retrain is refused unless --retrain-pretext."""
    root, _ = images
    d = init(tmp_path, root)
    code, _, err = run_bal("query", d, "--budget", 3, "--strategy", "bal", "--beta", "2", "--pretext-epochs", 1,
                           "--no-progress")
    assert code == 0, err
    with Project.open(d) as p:
        stored = p.settings()["query"]
    assert stored["strategy"] == "bal" and stored["options"] == {"beta": 2.0}
    code, _, err = run_bal("query", d, "--budget", 3, "--no-progress")
    assert code == 0, err
    assert "strategy: bal[" in err and "beta=2.0" in err and "{" not in err and "from its last query" in err
    assert len(_pretexts(d)) == 1  # the first query's pretext, reused
    code, _, err = run_bal("query", d, "--budget", 3, "--pretext-epochs", 2, "--no-progress")
    assert code == 2 and "--retrain-pretext" in err and "(the project's is 1)" in err
