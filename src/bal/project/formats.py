"""Labels out and back in: CSV and Label Studio files.

* **Export.** The current selection, as CSV (``path,label,absolute_path``) or as Label
  Studio tasks.
* **Label Studio.** Tasks point at ``/data/local-files/?d=<absolute path, URL-quoted>``:
  start Label Studio with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` set to the images folder or one of its
  parents, and add a "Local files" storage for the images folder to the Label Studio
  project (no sync needed). Use a labelling config with one ``<Choices>`` over the
  project's classes. Import reads each task's ``data.bal_path`` (or, failing that,
  recovers the path from ``data.image``) and the first choice of the last annotation
  that was not cancelled.
* **Import.** Every row is checked (known image, known class, no conflict with the
  image's current label or with another row); by default nothing is recorded unless
  all rows are valid. Reads and writes happen in one transaction.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from bal.errors import BalError
from bal.files import atomic_write_text
from bal.project.db import ImageRow, Project

__all__ = [
    "ImportReport", "ImportRow", "current_selection", "detect_format", "export_csv", "export_label_studio",
    "import_labels", "label_studio_url", "read_csv_rows", "read_label_studio_rows", "write_export",
]

LABEL_STUDIO_PREFIX = "/data/local-files/?d="


# -- export ------------------------------------------------------------------------------
def current_selection(project: Project) -> tuple[int, list[ImageRow], list[ImageRow]]:
    """(cycle id, images to export (status ok), images left out (changed or missing))."""
    cycle_id, rows = project.current_selection()
    if cycle_id is None:
        raise BalError(f"project {project.folder} has no selection yet; run `bal query {project.folder} --budget K`")
    return cycle_id, [r for r in rows if r.status == "ok"], [r for r in rows if r.status != "ok"]


def export_csv(project: Project, rows: Sequence[ImageRow]) -> str:
    """``path,label,absolute_path``; label empty unless already labelled."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "absolute_path"])
    for r in rows:
        w.writerow([r.path, r.label or "", str(project.absolute_path(r))])
    return buf.getvalue()


def label_studio_url(absolute: str | os.PathLike) -> str:
    return LABEL_STUDIO_PREFIX + quote(os.fspath(absolute), safe="/")


def export_label_studio(project: Project, rows: Sequence[ImageRow]) -> list[dict]:
    return [{"id": r.id, "data": {"image": label_studio_url(project.absolute_path(r)), "bal_path": r.path}}
            for r in rows]


def write_export(path: str | os.PathLike, text: str) -> None:
    atomic_write_text(path, text)


# -- import ------------------------------------------------------------------------------
@dataclass
class ImportRow:
    number: int  # CSV line (the header is line 1) or Label Studio task (from 1)
    path: str | None
    label: str | None
    problem: str | None = None  # set when the row cannot be read at all


@dataclass
class ImportReport:
    unit: str  # "line" or "task"
    applied: int = 0  # new labels recorded
    unchanged: int = 0  # rows giving an image the label it already has
    no_label: int = 0  # rows without a label (left for later)
    bad: list[tuple[int, str | None, str]] = field(default_factory=list)  # (number, path, reason)

    def bad_lines(self) -> str:
        return "\n".join(f"  {self.unit} {n}: {p + ': ' if p else ''}{why}" for n, p, why in self.bad)


def detect_format(file: str | os.PathLike, fmt: str | None) -> str:
    if fmt:
        return fmt
    ext = Path(file).suffix.lower()
    if ext == ".csv":
        return "csv"
    if ext == ".json":
        return "labelstudio"
    raise BalError(f"{file}: cannot tell the format from the extension {ext or '(none)'!r}; "
                   f"name it .csv or .json, or pass --format csv|labelstudio")


def read_csv_rows(file: str | os.PathLike) -> list[ImportRow]:
    """Rows of a ``path,label`` CSV (header required, other columns ignored, `,` `;` or tab separated)."""
    try:
        with open(file, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise BalError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BalError(f"{file}: cannot read it as UTF-8 text ({e})") from None
    if not text.strip():
        raise BalError(f"{file} is empty; expected a header line `path,label` and one line per image")
    first = text.splitlines()[0]
    delimiter = "," if "," in first else ";" if ";" in first else "\t" if "\t" in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    if "path" not in header or "label" not in header:
        raise BalError(f"{file}, line 1: the header must name the columns path and label "
                       f"(found: {', '.join(header) or 'nothing'})")
    ip, il = header.index("path"), header.index("label")
    rows = []
    start = reader.line_num + 1
    for fields in reader:
        number, start = start, reader.line_num + 1
        if not any(x.strip() for x in fields):
            continue
        path = fields[ip].strip() if ip < len(fields) else ""
        label = fields[il].strip() if il < len(fields) else ""
        rows.append(ImportRow(number, path or None, label or None,
                              None if path or not label else "no path given"))
    return rows


def _path_from_image_url(value: str) -> str:
    """The file a Label Studio ``data.image`` points at: ``/data/local-files/?d=...``, ``file://...`` or a path."""
    parts = urlsplit(value)
    if "local-files" in parts.path:
        d = parse_qs(parts.query).get("d")
        if d:
            return d[0]  # parse_qs has unquoted it
    if parts.scheme == "file":
        return unquote(parts.path)
    return value


def read_label_studio_rows(file: str | os.PathLike) -> list[ImportRow]:
    """One row per task of a Label Studio JSON export (see the module docstring)."""
    try:
        with open(file, encoding="utf-8") as f:
            tasks = json.load(f)
    except FileNotFoundError:
        raise BalError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BalError(f"{file} is not a valid JSON file ({e})") from None
    if not isinstance(tasks, list):
        raise BalError(f"{file}: a Label Studio export is a JSON list of tasks, got a {type(tasks).__name__}")
    rows = []
    for number, task in enumerate(tasks, start=1):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            rows.append(ImportRow(number, None, None, "not a Label Studio task (no \"data\" object)"))
            continue
        data = task["data"]
        path = data.get("bal_path")
        if not path and isinstance(data.get("image"), str):
            path = _path_from_image_url(data["image"])
        label, problem = None, None
        annotations = task.get("annotations", task.get("completions")) or []
        if not isinstance(annotations, list):
            problem = "\"annotations\" is not a list"
            annotations = []
        for ann in reversed(annotations):
            if not isinstance(ann, dict) or ann.get("was_cancelled"):
                continue
            for result in ann.get("result") or []:
                choices = result.get("value", {}).get("choices") if isinstance(result, dict) else None
                if (result.get("type") in (None, "choices")) and isinstance(choices, list) and choices:
                    label = str(choices[0]).strip()
                    break
            break  # the last annotation that was not cancelled decides, even without a choice
        if not path and label is not None:
            problem = problem or "no data.bal_path and no data.image to tell which image it is"
        rows.append(ImportRow(number, path or None, label or None, problem))
    return rows


def _relative(project: Project, path: str) -> str:
    """A path as the project stores it: relative to the images folder, '/'-separated."""
    p = path.strip().replace("\\", "/")
    if p.startswith("/") or (len(p) > 2 and p[1] == ":"):
        root = project.images_root
        for base in (str(root), os.path.realpath(root)):
            base = base.replace("\\", "/").rstrip("/") + "/"
            if p.startswith(base):
                p = p[len(base):]
                break
    p = posixpath.normpath(p) if p else p
    return p[2:] if p.startswith("./") else p


def import_labels(
    project: Project,
    file: str | os.PathLike,
    *,
    fmt: str | None = None,
    partial: bool = False,
    source: str = "import",
) -> ImportReport:
    """Validate every row of ``file`` and record its labels in one transaction.

    Without ``partial`` nothing is recorded unless every row is valid (a BalError lists
    the bad rows); with it the valid rows are recorded and the bad ones returned in the
    report. Rows without a label are skipped (not errors); a row repeating an image's
    current label records nothing.
    """
    fmt = detect_format(file, fmt)
    rows = read_csv_rows(file) if fmt == "csv" else read_label_studio_rows(file)
    report = ImportReport("line" if fmt == "csv" else "task")
    classes = project.classes
    # Reads and writes in one IMMEDIATE transaction: nobody can label in between, and a
    # kill at any moment leaves the import either fully recorded or not at all.
    with project.transaction():
        images = {r.path: r for r in project.images(None)}
        candidates: list[tuple[ImportRow, ImageRow]] = []
        bad: dict[int, tuple[str | None, str]] = {}
        for row in rows:
            if row.problem:
                bad[row.number] = (row.path, row.problem)
                continue
            if row.label is None:
                report.no_label += 1
                continue
            rel = _relative(project, row.path)
            image = images.get(rel)
            if image is None:
                bad[row.number] = (row.path, "unknown image: not in this project "
                                             f"(new files are added by `bal project scan {project.folder}`)")
            elif row.label not in classes:
                bad[row.number] = (rel, f"unknown class {row.label!r}; the project's classes are {', '.join(classes)}")
            else:
                candidates.append((row, image))
        by_image: dict[int, list[tuple[ImportRow, ImageRow]]] = defaultdict(list)
        for row, image in candidates:
            by_image[image.id].append((row, image))
        to_add: list[tuple[int, str]] = []
        for image_id, group in by_image.items():
            image = group[0][1]
            given = {row.label for row, _ in group}
            if len(given) > 1:
                listing = ", ".join(f"{row.label!r} ({report.unit} {row.number})" for row, _ in group)
                for row, _ in group:
                    bad[row.number] = (image.path, f"the file gives this image different classes: {listing}")
            elif image.label is not None and image.label != group[0][0].label:
                for row, _ in group:
                    bad[row.number] = (image.path, f"{row.label!r} conflicts with its current label {image.label!r}; "
                                                   f"undo that label first to change it")
            elif image.label is not None:
                report.unchanged += len(group)
            else:
                to_add.append((image_id, group[0][0].label))
                report.unchanged += len(group) - 1
        report.bad = [(n, *bad[n]) for n in sorted(bad)]
        if report.bad and not partial:
            raise BalError(
                f"{file}: {len(report.bad)} of {len(rows)} {report.unit}s cannot be imported, so nothing was "
                f"(fix them, or pass --partial to import the valid ones):\n{report.bad_lines()}"
            )
        project.add_labels(to_add, source)
        report.applied = len(to_add)
    return report
