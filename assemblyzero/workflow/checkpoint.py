"""Per-workflow SQLite checkpoint: the state after every completed step.

One database per item (named by ASSEMBLYZERO_WORKFLOW_DB), so workers never
contend. Each step is one transaction; a rerun resumes from the last row.

Two troubles are kept apart. `CheckpointUnusable`: the file is not a
checkpoint this release can use (corrupt, a foreign database, another item's,
another schema version, a symlink): `set_aside` renames it to the item's one
aside name and the item starts over. `CheckpointUnavailable`: the disk or the
OS cannot serve it now (full, I/O error, cannot open): it stays exactly where
it is and the item fails, to resume once that is fixed.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from assemblyzero.constants import SQLITE_TIMEOUT
from assemblyzero.fileio import inside
from assemblyzero.workflow.checkpoint_errors import (
    CheckpointError,
    CheckpointUnavailable,
    CheckpointUnusable,
    os_trouble,
    trouble,
)

if TYPE_CHECKING:
    from assemblyzero.workflow.state import WorkflowState

__all__ = ["Checkpoint", "CheckpointError", "CheckpointUnavailable", "CheckpointUnusable"]

SCHEMA_VERSION = 1
_COLUMNS = {"meta": ["key", "value"], "steps": ["seq", "step", "state", "saved_at"]}
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS steps (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " step TEXT NOT NULL, state TEXT NOT NULL, saved_at REAL NOT NULL)",
)
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")
ASIDE_SUFFIX = ".unreadable"  # lld-42.db -> lld-42.db.unreadable: one per item, ever

class Checkpoint:
    """Open (or create) the checkpoint of one item, identified by `owner`.

    `root`, when set, is the workspace: a checkpoint folder that leads
    outside it is refused before anything is created or opened.
    """

    def __init__(self, path: Path, owner: str, root: Path | None = None) -> None:
        self.path = path
        self.owner = owner
        self.root = root
        self._db: sqlite3.Connection | None = None
        # Told of every step once it is committed (on a cluster: it goes to the coordinator)
        self.on_saved: Callable[[str, WorkflowState], None] | None = None

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def aside_path(self) -> Path:
        return self.path.with_name(self.path.name + ASIDE_SUFFIX)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._check_place()
            try:
                db = sqlite3.connect(self.path, timeout=SQLITE_TIMEOUT, isolation_level=None)
            except sqlite3.Error as exc:
                raise trouble(self.path, exc, "open") from None
            try:
                fresh = self._inspect(db)  # reads only: a foreign file is never written
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                if fresh:
                    self._create(db)
            except sqlite3.Error as exc:
                db.close()
                raise trouble(self.path, exc, "open") from None
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _check_place(self) -> None:
        """Before SQLite opens anything: the folder, symlinks, side files, file type."""
        folder = self.path.parent
        if self.root is not None and not inside(self.root, folder):
            raise CheckpointUnavailable(
                f"cannot open checkpoint {self.path}: its folder leads outside the workspace "
                f"(to {os.path.realpath(folder)})",
                "make it a real folder inside the workspace and run retry-failed")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            info = _lstat(self.path)
            for suffix in SIDE_SUFFIXES:
                side = Path(f"{self.path}{suffix}")
                if os.path.islink(side):
                    side.unlink()  # the link, never what it points at
                elif (side_info := _lstat(side)) and not stat.S_ISREG(side_info.st_mode):
                    raise CheckpointUnusable(f"{side} is not a regular file")
        except OSError as exc:
            raise os_trouble(self.path, exc, "open") from None
        if info is None:
            return
        if stat.S_ISLNK(info.st_mode):
            raise CheckpointUnusable(f"{self.path} is a symlink (to {_link_target(self.path)}); "
                                     "a checkpoint is never opened through one")
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointUnusable(f"{self.path} is not a regular file")
        if info.st_nlink > 1:
            raise CheckpointUnusable(f"{self.path} has {info.st_nlink} hard links; "
                                     "a checkpoint has one")

    def _inspect(self, db: sqlite3.Connection) -> bool:
        """Is this a fresh (empty) database? Raises CheckpointUnusable unless it is ours."""
        objects = db.execute("SELECT type, name, tbl_name FROM sqlite_master").fetchall()
        foreign = sorted(str(name) for kind, name, table in objects
                         if not _ours(str(kind), str(name), str(table)))
        if foreign:
            raise CheckpointUnusable(f"{self.path} is not an assemblyzero checkpoint (it holds "
                                     f"{', '.join(foreign[:5])}); it is never modified")
        tables = {str(name) for kind, name, _ in objects if kind == "table"} & set(_COLUMNS)
        for table in sorted(tables):
            columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            if columns != _COLUMNS[table]:
                raise CheckpointUnusable(f"{self.path} is not an assemblyzero checkpoint "
                                         f"(table {table} has columns {columns})")
        meta = dict(db.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
        if not meta and not ("steps" in tables and db.execute(
                "SELECT 1 FROM steps LIMIT 1").fetchone()):
            return True  # new, or created by a run that ended before its first row
        version, owner = meta.get("version"), meta.get("owner")
        if owner is None or version is None or tables != set(_COLUMNS):
            raise CheckpointUnusable(f"{self.path} is not an assemblyzero checkpoint "
                                     "(no owner or schema version recorded)")
        if version != str(SCHEMA_VERSION):
            raise CheckpointUnusable(f"{self.path} has checkpoint schema version {version!r}; "
                                     f"this release uses {SCHEMA_VERSION} (not used, not modified)")
        if owner != self.owner:
            raise CheckpointUnusable(f"{self.path} belongs to {owner!r}, not {self.owner!r}")
        return False

    def _create(self, db: sqlite3.Connection) -> None:
        with db:
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('owner', ?)", (self.owner,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (str(SCHEMA_VERSION),))

    def load(self) -> tuple[str, dict[str, object]] | None:
        """The last completed step and its state, or None for a fresh start.

        The state is the JSON object as stored, not yet checked: `state.checked` makes
        it a WorkflowState, or says why it is not one.
        """
        try:
            row = self._conn().execute(
                "SELECT step, state FROM steps ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        except sqlite3.Error as exc:
            raise trouble(self.path, exc, "read") from None
        if row is None:
            return None
        try:
            state = json.loads(row[1])
        except (ValueError, TypeError, RecursionError) as exc:
            raise CheckpointUnusable(f"{self.path}: state of step {row[0]!r} is not JSON "
                                     f"({type(exc).__name__})") from None
        if not isinstance(state, dict):
            raise CheckpointUnusable(f"{self.path}: state of step {row[0]!r} is not an object")
        return str(row[0]), state

    def save(self, step: str, state: WorkflowState) -> None:
        """Record that `step` completed, with the whole state after it."""
        db = self._conn()
        try:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "INSERT INTO steps (step, state, saved_at) VALUES (?, ?, ?)",
                    (step, json.dumps(state), time.time()),
                )
        except sqlite3.Error as exc:
            raise trouble(self.path, exc, "write") from None
        if self.on_saved is not None:
            self.on_saved(step, state)

    def steps(self) -> list[str]:
        """Names of the completed steps, oldest first."""
        try:
            rows = self._conn().execute("SELECT step FROM steps ORDER BY seq").fetchall()
        except sqlite3.Error as exc:
            raise trouble(self.path, exc, "read") from None
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def delete(self) -> None:
        """Remove the database and its WAL side files (after success)."""
        self.close()
        for suffix in ("", *SIDE_SUFFIXES):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def set_aside(self) -> Path | None:
        """Rename an unusable checkpoint (a symlink: the link itself) to `aside_path`.

        An older aside and its side files are replaced, so an item has at most
        one. The -wal and -journal go with the file, for inspection; the -shm
        and symlinked side files are removed. None: there was nothing to move.
        """
        self.close()
        aside = self.aside_path
        try:
            moved = _lstat(self.path) is not None
            if moved:
                for suffix in ("", *SIDE_SUFFIXES):
                    _remove(Path(f"{aside}{suffix}"))
                os.replace(self.path, aside)
            for suffix in SIDE_SUFFIXES:
                side = Path(f"{self.path}{suffix}")
                if suffix == "-shm" or not moved or os.path.islink(side):
                    _remove(side)
                elif _lstat(side) is not None:
                    os.replace(side, f"{aside}{suffix}")
        except OSError as exc:
            raise os_trouble(self.path, exc, "set aside") from None
        return aside if moved else None


def _ours(kind: str, name: str, table: str) -> bool:
    if kind == "table":
        return name in _COLUMNS or name == "sqlite_sequence"
    return kind == "index" and name.startswith("sqlite_autoindex_") and table in _COLUMNS


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _remove(path: Path) -> None:
    """Delete a file, a symlink (never its target) or a folder; missing is fine."""
    info = _lstat(path)
    if info is not None and stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    elif info is not None:
        path.unlink()
