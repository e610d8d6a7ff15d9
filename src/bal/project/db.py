"""A labelling project: one SQLite database holding images, labels, cycles and selections.

The database (``DIR/project.db``) runs in WAL mode with ``synchronous=FULL``: a call
that returns has committed, so a label confirmed to the user survives a kill of the
process at any later moment, and readers (the web page) never block the writer.
The schema carries a version (``PRAGMA user_version``) and is brought up to date by
:data:`MIGRATIONS` when a project is opened.

Labels are never overwritten: each is a row with its source and time, and "undo"
retracts a row instead of deleting it. An image's current label is its newest
unretracted one.

Every SQL statement of bal lives in this module. A method that writes commits before
it returns, unless it runs inside :meth:`Project.transaction`, which it then joins:
several reads and writes can so be made one atomic step (an import).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bal.errors import BalError
from bal.files import file_digest as file_sha256  # noqa: F401  (the project's name for it)

DB_NAME = "project.db"
SETTINGS_KEY = "settings"
#: The settings of a project that stored none (every project made by ``bal project init`` stores them).
DEFAULT_SETTINGS = {"net": "cnn", "image_size": None, "seed": 0, "flip": True}

#: One SQL script per schema version; version N is reached by running scripts 1..N.
MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE classes (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        position INTEGER NOT NULL
    );
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,          -- relative to the images folder, '/'-separated
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'changed', 'missing')),
        added_at TEXT NOT NULL
    );
    CREATE TABLE labels (
        id INTEGER PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES images(id),
        class_id INTEGER NOT NULL REFERENCES classes(id),
        source TEXT NOT NULL,               -- folder, import, serve, ...
        created_at TEXT NOT NULL,
        retracted_at TEXT
    );
    CREATE INDEX labels_image ON labels(image_id);
    CREATE TABLE cycles (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        strategy TEXT NOT NULL,
        budget INTEGER NOT NULL,
        model_path TEXT,
        metrics TEXT,                       -- JSON
        fitted_at TEXT
    );
    CREATE TABLE selections (
        cycle_id INTEGER NOT NULL REFERENCES cycles(id),
        image_id INTEGER NOT NULL REFERENCES images(id),
        rank INTEGER NOT NULL,
        PRIMARY KEY (cycle_id, image_id)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")




def _connect_read_only(path: Path, busy_seconds: float) -> sqlite3.Connection:
    """``path`` opened read-only; a WAL database whose folder cannot be written is opened immutable."""
    from urllib.parse import quote

    uri = f"file:{quote(str(path.resolve()))}"
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=busy_seconds, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:  # WAL needs its -shm file, which cannot be made here
        conn.close()
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=busy_seconds, isolation_level=None,
                               check_same_thread=False)


class ProjectBusyError(BalError):
    """The project's database is locked by another writer: trying again later works."""


def is_empty_database(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an empty file or an SQLite database without a single table (nothing to lose)."""
    path = Path(path)
    if path.stat().st_size == 0:
        return True
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def database_error(path: str | os.PathLike, e: sqlite3.Error) -> BalError:
    """What an SQLite error means for the project's database ``path``, with advice that loses nothing.

    Only a file that truly is not a database is told to be replaced, and then with the
    warning that the labels in it would be lost; a read-only file, a full disk or a busy
    database are said as such (their labels are safe).
    """
    text = str(e)
    low = text.lower()
    if "disk is full" in low or "no space" in low:
        return BalError(f"no space left on device while writing {path}; nothing of this command was recorded and "
                        f"every earlier label is safe: free some space, then run the same command again")
    if "readonly" in low or "read-only" in low:
        return BalError(f"{path} is read-only (the file or its folder cannot be written): commands that only read "
                        f"(bal status, bal export) work; to label, query, scan or fit, make the project writable")
    if "unable to open" in low or "access permission" in low:
        return BalError(f"{path} cannot be opened ({text}): check the permissions of the file and of its folder; "
                        f"the project itself is untouched")
    if "locked" in low or "busy" in low:
        return ProjectBusyError(f"{path} is busy: another bal process (a page, a fit, a query) is writing to it; "
                                f"try again once it has finished")
    if "not a database" in low or "malformed" in low or "encrypted" in low:
        return BalError(f"{path} is not a bal project database ({text}); restore it from a backup. Creating the "
                        f"project again (move the file away, then `bal project init`) starts with no labels: the "
                        f"labels in this file would be lost")
    return BalError(f"{path}: the project database reported an error ({text}); nothing of this command was "
                    f"recorded")


@dataclass(frozen=True)
class ImageRow:
    id: int
    path: str  # relative to the project's images folder
    sha256: str
    status: str  # ok, changed or missing
    label: str | None  # current label, if any


@dataclass(frozen=True)
class Label:
    id: int
    image_id: int
    label: str
    source: str
    created_at: str


class Project:
    """Open with :meth:`create` or :meth:`open`; every method commits before it returns."""

    def __init__(self, folder: Path, conn: sqlite3.Connection):
        self.folder = folder
        self.conn = conn
        self._tx: sqlite3.Cursor | None = None  # the open transaction, which nested writes join
        self.filled: Any = None  # what create()'s fill returned

    # -- opening -----------------------------------------------------------------------
    @staticmethod
    def _connect(path: Path, busy_seconds: float = 30.0) -> sqlite3.Connection:
        """A connection to ``path``: read-write, or read-only where the file or its folder cannot be written.

        A read-only project still answers the commands that only read (``bal status``,
        ``bal export``); one that writes is told that the project is read-only.
        """
        writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK) if path.exists() else True
        try:
            if writable:
                conn = sqlite3.connect(path, timeout=busy_seconds, isolation_level=None, check_same_thread=False)
            else:
                conn = _connect_read_only(path, busy_seconds)
            conn.row_factory = sqlite3.Row
            if writable:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # reads the header: is it a database?
        except sqlite3.Error as e:
            raise database_error(path, e) from None
        return conn

    @classmethod
    def create(cls, folder: str | os.PathLike, images: str | os.PathLike, classes: Sequence[str], *,
               settings: dict | None = None, fill: Callable[["Project"], Any] | None = None) -> "Project":
        """Create the project in ``folder``, atomically: its database appears complete or not at all.

        The database is built beside ``project.db`` under a temporary name, with its
        ``settings`` and whatever ``fill(project)`` adds (the first scan), and then linked
        into place; an init interrupted at any moment leaves no ``project.db``, and the
        same ``bal project init`` starts afresh. Returns the project and ``fill``'s result
        as ``project.filled``.
        """
        folder, images = Path(folder), Path(images)
        db = folder / DB_NAME
        if db.exists():
            raise BalError(f"{folder} already holds a project ({DB_NAME}); use `bal project scan {folder}`")
        if not images.is_dir():
            raise BalError(f"--images {images} is not a folder")
        names = [c.strip() for c in classes]
        if len(names) < 2 or any(not c for c in names) or len(set(names)) != len(names):
            raise BalError(f"--classes needs at least two distinct, non-empty names, got {','.join(classes)!r}")
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(f".{DB_NAME}.init-*"):  # what an interrupted init left
            stale.unlink(missing_ok=True)
        tmp = folder / f".{DB_NAME}.init-{os.getpid()}"
        project = cls(folder, cls._connect(tmp))
        filled = None
        try:
            project._migrate()
            with project.transaction() as cur:
                cur.execute("INSERT INTO meta VALUES ('images_root', ?)", (str(images.resolve()),))
                cur.execute("INSERT INTO meta VALUES ('created_at', ?)", (now(),))
                cur.executemany("INSERT INTO classes (name, position) VALUES (?, ?)",
                                [(c, i) for i, c in enumerate(names)])
                if settings is not None:
                    project.write_settings(settings)
                if fill is not None:
                    filled = fill(project)
            project.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
            project.close()
            try:
                os.link(tmp, db)  # never replaces a project made meanwhile
            except FileExistsError:
                raise BalError(f"{folder} already holds a project ({DB_NAME}); use `bal project scan {folder}`"
                               ) from None
        except sqlite3.Error as e:
            raise database_error(tmp, e) from None
        finally:
            project.close()
            for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                leftover.unlink(missing_ok=True)
        project = cls.open(folder)
        project.filled = filled
        return project

    @classmethod
    def open(cls, folder: str | os.PathLike, busy_seconds: float = 30.0) -> "Project":
        """Open the project in ``folder``; a write waits up to ``busy_seconds`` for another writer."""
        folder = Path(folder)
        if not (folder / DB_NAME).exists():
            raise BalError(f"{folder} is not a bal project (no {DB_NAME}); create one with `bal project init`")
        if not (folder / DB_NAME).is_file():
            raise BalError(f"{folder / DB_NAME} is not a file; {folder} is not a bal project")
        project = cls(folder, cls._connect(folder / DB_NAME, busy_seconds))
        try:
            if project.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
                project.close()  # nothing is created in it: opening must not turn any file into a project
                raise BalError(f"{folder / DB_NAME} is an empty database, not a bal project (no tables); an "
                               f"interrupted `bal project init` leaves one: run that init again (it holds no labels)")
            project._migrate()
            row = project.conn.execute("SELECT value FROM meta WHERE key = 'images_root'").fetchone()
        except sqlite3.Error as e:
            project.close()
            raise database_error(folder / DB_NAME, e) from None
        if row is None:
            project.close()
            raise BalError(f"{folder / DB_NAME} records no images folder: it was not made by `bal project init`")
        return project

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise BalError(
                f"{self.folder / DB_NAME} has schema version {version}, newer than this bal knows "
                f"({SCHEMA_VERSION}); upgrade bal"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction() as cur:
                for statement in MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        cur.execute(statement)
                cur.execute(f"PRAGMA user_version = {target}")

    @contextmanager
    def transaction(self):
        """One atomic write: everything inside commits together or not at all.

        ``BEGIN IMMEDIATE`` takes the write lock at once, so nobody else can write between
        the reads and the writes inside. Inside an open transaction, this joins it.
        """
        if self._tx is not None:
            yield self._tx
            return
        cur = self.conn.cursor()
        path = self.folder / DB_NAME
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise database_error(path, e) from None
        self._tx = cur
        try:
            yield cur
        except BaseException as e:
            try:
                cur.execute("ROLLBACK")
            except sqlite3.Error:  # SQLite may have rolled back already (a full disk does)
                pass
            if isinstance(e, sqlite3.Error):
                raise database_error(path, e) from None
            raise
        else:
            try:
                cur.execute("COMMIT")
            except sqlite3.Error as e:
                try:
                    cur.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise database_error(path, e) from None
        finally:
            self._tx = None

    # -- reading -----------------------------------------------------------------------
    def settings(self) -> dict:
        """The project's settings (net, image size, seed, ...), over :data:`DEFAULT_SETTINGS`."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (SETTINGS_KEY,)).fetchone()
        return {**DEFAULT_SETTINGS, **(json.loads(row[0]) if row else {})}

    @property
    def images_root(self) -> Path:
        return Path(self.conn.execute("SELECT value FROM meta WHERE key = 'images_root'").fetchone()[0])

    @property
    def classes(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM classes ORDER BY position")]

    def class_id(self, name: str) -> int:
        row = self.conn.execute("SELECT id FROM classes WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise BalError(f"unknown class {name!r}; the project's classes are {', '.join(self.classes)}")
        return row[0]

    _IMAGE_SELECT = """
        SELECT i.id, i.path, i.sha256, i.status,
               (SELECT c.name FROM labels l JOIN classes c ON c.id = l.class_id
                WHERE l.image_id = i.id AND l.retracted_at IS NULL ORDER BY l.id DESC LIMIT 1) AS label
        FROM images i
    """

    def images(self, status: str | None = "ok") -> list[ImageRow]:
        """Every image (with ``status`` only, unless None), in path order."""
        where = "" if status is None else " WHERE i.status = ?"
        args = () if status is None else (status,)
        return [ImageRow(*r) for r in self.conn.execute(self._IMAGE_SELECT + where + " ORDER BY i.path", args)]

    def image(self, image_id: int) -> ImageRow:
        row = self.conn.execute(self._IMAGE_SELECT + " WHERE i.id = ?", (image_id,)).fetchone()
        if row is None:
            raise BalError(f"no image with id {image_id} in this project")
        return ImageRow(*row)

    def image_by_path(self, path: str) -> ImageRow | None:
        row = self.conn.execute(self._IMAGE_SELECT + " WHERE i.path = ?", (path,)).fetchone()
        return None if row is None else ImageRow(*row)

    def absolute_path(self, image: ImageRow) -> Path:
        return self.images_root / image.path

    def labels_of(self, image_id: int, include_retracted: bool = False) -> list[Label]:
        sql = """SELECT l.id, l.image_id, c.name, l.source, l.created_at FROM labels l
                 JOIN classes c ON c.id = l.class_id WHERE l.image_id = ?"""
        if not include_retracted:
            sql += " AND l.retracted_at IS NULL"
        return [Label(*r) for r in self.conn.execute(sql + " ORDER BY l.id", (image_id,))]

    def image_files(self, status: str | None = None) -> list[sqlite3.Row]:
        """``id, path, sha256, size, mtime_ns, status`` of every image (with ``status`` only, unless None)."""
        sql = "SELECT id, path, sha256, size, mtime_ns, status FROM images"
        if status is None:
            return self.conn.execute(sql + " ORDER BY path").fetchall()
        return self.conn.execute(sql + " WHERE status = ? ORDER BY path", (status,)).fetchall()

    def status_counts(self) -> dict[str, int]:
        """Number of images per status (ok, changed, missing), only the statuses present."""
        return dict(self.conn.execute("SELECT status, COUNT(*) FROM images GROUP BY status").fetchall())

    def selected_and_labelled(self) -> dict[int, int]:
        """Cycle id -> how many of its selected images carry a current label now."""
        return dict(self.conn.execute(
            """SELECT s.cycle_id, COUNT(*) FROM selections s WHERE EXISTS
               (SELECT 1 FROM labels l WHERE l.image_id = s.image_id AND l.retracted_at IS NULL)
               GROUP BY s.cycle_id""").fetchall())

    def current_labels(self) -> dict[int, str]:
        """Image id -> current label, for every labelled image that is still present."""
        return {r.id: r.label for r in self.images() if r.label is not None}

    # -- writing -----------------------------------------------------------------------
    def write_settings(self, settings: dict) -> None:
        with self.transaction() as cur:
            cur.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        (SETTINGS_KEY, json.dumps(settings, sort_keys=True)))

    def add_images(self, rows: Iterable[tuple[str, str, int, int]]) -> list[int]:
        """Insert images given as (relative path, sha256, size, mtime_ns); returns their ids, in order."""
        stamp = now()
        ids = []
        with self.transaction() as cur:
            for p, h, s, m in rows:
                cur.execute("INSERT INTO images (path, sha256, size, mtime_ns, added_at) VALUES (?, ?, ?, ?, ?)",
                            (p, h, s, m, stamp))
                ids.append(cur.lastrowid)
        return ids

    def update_images(self, rows: Iterable[tuple[str, str, int, int, int]]) -> None:
        """Set ``(status, sha256, size, mtime_ns)`` of images, given as (status, sha256, size, mtime_ns, id)."""
        with self.transaction() as cur:
            cur.executemany("UPDATE images SET status = ?, sha256 = ?, size = ?, mtime_ns = ? WHERE id = ?", list(rows))

    def set_status(self, image_id: int, status: str) -> None:
        with self.transaction() as cur:
            cur.execute("UPDATE images SET status = ? WHERE id = ?", (status, image_id))

    def label(self, image_id: int, class_name: str, source: str) -> int:
        """Record a label; returns its id. Committed (durable) when this returns."""
        self.image(image_id)
        with self.transaction():
            return self.add_labels([(image_id, class_name)], source)[0]

    def add_labels(self, rows: Iterable[tuple[int, str]], source: str) -> list[int]:
        """Several (image id, class) labels in one transaction: all are recorded or none; returns their ids."""
        rows = [(image_id, self.class_id(name)) for image_id, name in rows]
        stamp = now()
        ids = []
        with self.transaction() as cur:
            for image_id, class_id in rows:
                cur.execute("INSERT INTO labels (image_id, class_id, source, created_at) VALUES (?, ?, ?, ?)",
                            (image_id, class_id, source, stamp))
                ids.append(cur.lastrowid)
        return ids

    def retract_current(self, image_ids: Sequence[int]) -> list[tuple[str, str]]:
        """Retract every current label of these images in one transaction; returns (path, label) of each."""
        done = []
        with self.transaction():
            for image_id in image_ids:
                image = self.image(image_id)
                for lab in self.labels_of(image_id):
                    self.retract(lab.id)
                    done.append((image.path, lab.label))
        return done

    def retract_last(self, n: int) -> list[tuple[str, str]]:
        """Retract the ``n`` labels given last (any source) in one transaction; returns (path, label) of each."""
        rows = self.conn.execute(
            """SELECT l.id, i.path, c.name FROM labels l JOIN images i ON i.id = l.image_id
               JOIN classes c ON c.id = l.class_id WHERE l.retracted_at IS NULL ORDER BY l.id DESC LIMIT ?""",
            (int(n),)).fetchall()
        with self.transaction():
            for label_id, _, _ in rows:
                self.retract(label_id)
        return [(path, name) for _, path, name in rows]

    def retract(self, label_id: int) -> None:
        """Undo a label: it stays in the history, marked retracted."""
        with self.transaction() as cur:
            cur.execute("UPDATE labels SET retracted_at = ? WHERE id = ? AND retracted_at IS NULL", (now(), label_id))
            if cur.rowcount != 1:
                raise BalError(f"label {label_id} does not exist or was already undone")

    # -- cycles --------------------------------------------------------------------------
    def start_cycle(self, strategy: str, image_ids: Sequence[int]) -> int:
        """Record a new selection (the images to label next, most useful first)."""
        with self.transaction() as cur:
            cur.execute("INSERT INTO cycles (created_at, strategy, budget) VALUES (?, ?, ?)",
                        (now(), strategy, len(image_ids)))
            cycle_id = cur.lastrowid
            cur.executemany("INSERT INTO selections (cycle_id, image_id, rank) VALUES (?, ?, ?)",
                            [(cycle_id, i, r) for r, i in enumerate(image_ids)])
        return cycle_id

    def finish_cycle(self, cycle_id: int, model_path: str, metrics: dict) -> None:
        with self.transaction() as cur:
            cur.execute("UPDATE cycles SET model_path = ?, metrics = ?, fitted_at = ? WHERE id = ?",
                        (model_path, json.dumps(metrics, sort_keys=True), now(), cycle_id))

    def cycles(self) -> list[dict]:
        rows = self.conn.execute("SELECT * FROM cycles ORDER BY id").fetchall()
        return [{**dict(r), "metrics": json.loads(r["metrics"]) if r["metrics"] else None} for r in rows]

    def current_selection(self) -> tuple[int | None, list[ImageRow]]:
        """The newest cycle's id and its selected images, in selection order (empty if none)."""
        row = self.conn.execute("SELECT MAX(id) FROM cycles").fetchone()
        if row[0] is None:
            return None, []
        ids = [r[0] for r in self.conn.execute(
            "SELECT image_id FROM selections WHERE cycle_id = ? ORDER BY rank", (row[0],))]
        return row[0], [self.image(i) for i in ids]
