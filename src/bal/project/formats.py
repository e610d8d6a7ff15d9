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
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
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


#: A cell starting with one of these is run as a formula by spreadsheets (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


#: What gets a leading ``'``: formula starts, and a leading ``'`` itself, so that the escape is
#: reversible (``=x.jpg`` becomes ``'=x.jpg``, and a file really named ``'=x.jpg`` becomes ``''=x.jpg``).
_ESCAPED_STARTS = (*FORMULA_STARTS, "'")


def spreadsheet_safe(cell: str) -> str:
    """``cell`` with a leading ``'`` when a spreadsheet would run it as a formula (OWASP's advice).

    A cell that starts with ``'`` gets one more, so :func:`from_spreadsheet` gives every
    cell back exactly: two names never share one cell.
    """
    return "'" + cell if cell.startswith(_ESCAPED_STARTS) else cell


def from_spreadsheet(cell: str) -> str:
    """The cell :func:`spreadsheet_safe` protected, as it was."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_ESCAPED_STARTS) else cell


def export_csv(project: Project, rows: Sequence[ImageRow]) -> str:
    """``path,label,absolute_path``; label empty unless already labelled; formula-like cells protected."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "absolute_path"])
    for r in rows:
        w.writerow([spreadsheet_safe(c) for c in (r.path, r.label or "", str(project.absolute_path(r)))])
    return buf.getvalue()


def label_studio_url(absolute: str | os.PathLike) -> str:
    return LABEL_STUDIO_PREFIX + quote(os.fspath(absolute), safe="/")


#: The names of the Label Studio labelling configuration that predictions refer to:
#: ``<Image name="image" value="$image"/>`` and ``<Choices name="choice" toName="image">``.
LABEL_STUDIO_NAMES = {"from_name": "choice", "to_name": "image"}


def export_label_studio(project: Project, rows: Sequence[ImageRow], predictions: dict | None = None,
                        model_version: str = "") -> list[dict]:
    """Tasks for ``rows``; with ``predictions`` (image id -> (class, confidence)) each unlabelled one carries
    the model's class as a Label Studio prediction (a pre-annotation the person confirms or changes)."""
    tasks = []
    for r in rows:
        task = {"id": r.id, "data": {"image": label_studio_url(project.absolute_path(r)), "bal_path": r.path}}
        if predictions and r.id in predictions:
            label, score = predictions[r.id]
            task["predictions"] = [{"model_version": model_version, "score": round(float(score), 4), "result": [
                {**LABEL_STUDIO_NAMES, "type": "choices", "value": {"choices": [label]}}]}]
        tasks.append(task)
    return tasks


def export_predictions(predictions: Sequence) -> str:
    """``path,label,confidence`` of :func:`bal.project.labelling.predict_pool`'s predictions, most
    confident first (ties: by path); formula-like cells protected as in :func:`export_csv`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "confidence"])
    for p in sorted(predictions, key=lambda p: (-p.confidence, p.row.path)):
        w.writerow([spreadsheet_safe(p.row.path), spreadsheet_safe(p.label), f"{p.confidence:.4f}"])
    return buf.getvalue()


def write_export(path: str | os.PathLike, text: str) -> None:
    atomic_write_text(path, text)


# -- import ------------------------------------------------------------------------------
@dataclass
class ImportRow:
    number: int  # CSV line (the header is line 1) or Label Studio task (from 1)
    path: str | None
    label: str | None
    problem: str | None = None  # set when the row cannot be read at all
    kind: str = "unreadable"  # the kind of problem, for the report's counts


#: Problems listed one by one in an import's report; the rest are counted by kind.
LISTED_PROBLEMS = 50


@dataclass
class ImportReport:
    unit: str  # "line" or "task"
    applied: int = 0  # new labels recorded
    relabelled: int = 0  # labels replaced (--relabel)
    unchanged: int = 0  # rows giving an image the label it already has
    no_label: int = 0  # rows without a label (left for later)
    rows: int = 0  # rows read
    # the first LISTED_PROBLEMS (number, path, why)
    bad: list[tuple[int, str | None, str]] = field(default_factory=list)
    bad_count: int = 0
    bad_kinds: Counter = field(default_factory=Counter)

    def problem(self, number: int, path: str | None, why: str, kind: str) -> None:
        self.bad_count += 1
        self.bad_kinds[kind] += 1
        if len(self.bad) < LISTED_PROBLEMS:
            self.bad.append((number, path, why))

    def bad_lines(self) -> str:
        lines = [f"  {self.unit} {n}: {p + ': ' if p else ''}{why}" for n, p, why in sorted(self.bad)]
        if self.bad_count > len(self.bad):
            kinds = ", ".join(f"{n:,} {k}" for k, n in self.bad_kinds.most_common())
            lines.append(f"  ... {self.bad_count - len(self.bad):,} more not listed; all {self.bad_count:,} "
                         f"problems by kind: {kinds}")
        return "\n".join(lines)


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


def read_csv_rows(file: str | os.PathLike) -> Iterator[ImportRow]:
    """Rows of a ``path,label`` CSV (header required, other columns ignored, ``,`` ``;`` or tab
    separated), read one at a time. Broken quoting is an error naming the line: a quote that
    is never closed would otherwise swallow every row after it."""
    try:
        f = open(file, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise BalError(f"{file}: no such file") from None
    except OSError as e:
        raise BalError(f"{file}: cannot read it ({e.strerror or e})") from None
    with f:
        try:
            first = f.readline()
        except UnicodeDecodeError as e:
            raise BalError(f"{file}: cannot read it as UTF-8 text ({e})") from None
        if not first.strip():
            raise BalError(f"{file} is empty; expected a header line `path,label` and one line per image")
        delimiter = "," if "," in first else ";" if ";" in first else "\t" if "\t" in first else ","
        f.seek(0)
        if f.read(1) != "\ufeff":
            f.seek(0)
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        start = 1
        try:
            header = [h.strip().lower() for h in next(reader)]
            if "path" not in header or "label" not in header:
                raise BalError(f"{file}, line 1: the header must name the columns path and label "
                               f"(found: {', '.join(header) or 'nothing'})")
            ip, il = header.index("path"), header.index("label")
            start = reader.line_num + 1
            for fields in reader:
                number, start = start, reader.line_num + 1
                if reader.line_num > number:  # one row read over several lines: a quoted line break
                    yield ImportRow(number, None, None, f"a quoted field runs over lines {number}-{reader.line_num} "
                                                        f"(an unclosed quote?)", "broken quoting")
                    continue
                if not any(x.strip() for x in fields):
                    continue
                path = from_spreadsheet(fields[ip].strip()) if ip < len(fields) else ""
                label = from_spreadsheet(fields[il].strip()) if il < len(fields) else ""
                yield ImportRow(number, path or None, label or None, None if path or not label else "no path given",
                                "no path")
        except csv.Error as e:
            raise BalError(f"{file}, line {start}: broken CSV quoting ({e}); a quote opened there is never closed, "
                           f"or text follows a closing quote. Nothing was imported") from None
        except UnicodeDecodeError as e:
            raise BalError(f"{file}, line {reader.line_num + 1}: not UTF-8 text ({e}). Nothing was imported") from None


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


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _choice(annotation: object) -> tuple[str | None, str | None]:
    """(first choice, problem) of one Label Studio annotation; (None, None) when it chose nothing."""
    if not isinstance(annotation, dict):
        return None, "an annotation is not a JSON object"
    results = annotation.get("result") or []
    if not isinstance(results, list):
        return None, "an annotation's \"result\" is not a list"
    for result in results:
        if not isinstance(result, dict):
            return None, "an annotation result is not a JSON object"
        value = result.get("value")
        if result.get("type") in (None, "choices"):
            if value is not None and not isinstance(value, dict):
                return None, f"a choices result's \"value\" is not a JSON object: {_short(value)}"
            if isinstance(value, dict) and "choices" in value and not isinstance(value["choices"], list):
                return None, f"a result's \"choices\" is not a list: {_short(value['choices'])}"
        choices = value.get("choices") if isinstance(value, dict) else None
        if result.get("type") in (None, "choices") and isinstance(choices, list) and choices:
            if not isinstance(choices[0], str):
                return None, f"a choice is not a text: {choices[0]!r}"
            return choices[0].strip(), None
    return None, None


def read_label_studio_rows(file: str | os.PathLike) -> Iterator[ImportRow]:
    """One row per task of a Label Studio JSON export.

    Every annotation that was not cancelled counts: when they all choose one class, that
    is the label; when annotators disagree the task is a problem ("annotators disagree"),
    never settled by whichever came last.
    """
    try:
        with open(file, encoding="utf-8") as f:
            tasks = json.load(f)
    except FileNotFoundError:
        raise BalError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise BalError(f"{file} is not a valid JSON file ({str(e)[:200]})") from None
    if not isinstance(tasks, list):
        raise BalError(f"{file}: a Label Studio export is a JSON list of tasks, got a {type(tasks).__name__}")
    for number, task in enumerate(tasks, start=1):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            yield ImportRow(number, None, None, "not a Label Studio task (no \"data\" object)", "not a task")
            continue
        data = task["data"]
        path = data.get("bal_path")
        if not path and isinstance(data.get("image"), str):
            path = _path_from_image_url(data["image"])
        if path is not None and not isinstance(path, str):
            yield ImportRow(number, None, None, f"data.bal_path is not a text: {path!r}", "not a task")
            continue
        annotations = task.get("annotations", task.get("completions")) or []
        if not isinstance(annotations, list):
            yield ImportRow(number, path, None, "\"annotations\" is not a list", "not a task")
            continue
        chosen: list[tuple[str, str]] = []  # (label, who chose it, in words)
        problem = None
        for i, ann in enumerate(annotations, start=1):
            if isinstance(ann, dict) and ann.get("was_cancelled"):
                continue
            label, problem = _choice(ann)
            if problem:
                break
            if label:
                who = ann.get("completed_by")
                chosen.append((label, f"{label!r} (annotation {i}" + (f", by {who}" if who is not None else "") + ")"))
        if problem:
            yield ImportRow(number, path, None, problem, "not a task")
            continue
        labels = {c[0] for c in chosen}
        if len(labels) > 1:
            listing = ", ".join(c[1] for c in chosen)
            yield ImportRow(number, path, None, f"annotators disagree: {listing}; left for a person to decide",
                            "annotators disagree")
            continue
        label = labels.pop() if labels else None
        if not path and label is not None:
            yield ImportRow(number, None, label, "no data.bal_path and no data.image to tell which image it is",
                            "no path")
            continue
        yield ImportRow(number, path or None, label or None)


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
    relabel: bool = False,
    source: str = "import",
) -> ImportReport:
    """Validate every row of ``file`` and record its labels in one transaction.

    Without ``partial`` nothing is recorded unless every row is valid (a BalError lists
    the first problems and counts the rest by kind); with it the valid rows are recorded
    and the bad ones reported. Rows without a label are skipped (not errors); a row
    repeating an image's current label records nothing. A row giving a labelled image
    another class is a conflict, unless ``relabel``: then the current label is retracted
    (kept in the history) and the new one recorded. The file is read row by row, so its
    size costs time, not memory.
    """
    fmt = detect_format(file, fmt)
    rows = read_csv_rows(file) if fmt == "csv" else read_label_studio_rows(file)
    report = ImportReport("line" if fmt == "csv" else "task")
    classes = set(project.classes)
    # Reads and writes in one IMMEDIATE transaction: nobody can label in between, and a
    # kill at any moment leaves the import either fully recorded or not at all.
    with project.transaction():
        images = {r.path: r for r in project.images(None)}
        by_image: dict[int, list[ImportRow]] = defaultdict(list)
        for row in rows:
            report.rows += 1
            if row.problem:
                report.problem(row.number, row.path, row.problem, row.kind)
                continue
            if row.label is None:
                report.no_label += 1
                continue
            rel = _relative(project, row.path)
            image = images.get(rel)
            if image is None:
                report.problem(row.number, row.path, "unknown image: not in this project (new files are added by "
                                                     f"`bal project scan {project.folder}`)", "unknown image")
            elif row.label not in classes:
                report.problem(row.number, rel, f"unknown class {row.label!r}; the project's classes are "
                                                f"{', '.join(project.classes)}", "unknown class")
            else:
                by_image[image.id].append(row)
        to_add: list[tuple[int, str]] = []
        to_retract: list[int] = []
        by_id = {r.id: r for r in images.values()}
        for image_id, group in by_image.items():
            image = by_id[image_id]
            given = {row.label for row in group}
            if len(given) > 1:
                listing = ", ".join(f"{row.label!r} ({report.unit} {row.number})" for row in group)
                for row in group:
                    report.problem(row.number, image.path, f"the file gives this image different classes: {listing}",
                                   "different classes in the file")
            elif image.label is not None and image.label != group[0].label:
                if relabel:
                    to_retract += [lab.id for lab in project.labels_of(image_id)]
                    to_add.append((image_id, group[0].label))
                    report.relabelled += 1
                    continue
                for row in group:
                    report.problem(row.number, image.path, f"{row.label!r} conflicts with its current label "
                                                           f"{image.label!r}; pass --relabel to replace it, or undo it "
                                                           f"first (bal undo)", "conflict")
            elif image.label is not None:
                report.unchanged += len(group)
            else:
                to_add.append((image_id, group[0].label))
                report.unchanged += len(group) - 1
        if report.bad_count and not partial:
            raise BalError(
                f"{file}: {report.bad_count:,} of {report.rows:,} {report.unit}s cannot be imported, so nothing was "
                f"(fix them, or pass --partial to import the valid ones):\n{report.bad_lines()}"
            )
        for label_id in to_retract:
            project.retract(label_id)
        project.add_labels(to_add, source)
        report.applied = len(to_add) - report.relabelled
    return report

