"""Per-workflow SQLite checkpoint: the state after every completed step.

One database per item (named by ASSEMBLYZERO_WORKFLOW_DB), so workers never
contend. Each step is one transaction; a rerun resumes from the last row.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from assemblyzero.constants import SQLITE_TIMEOUT

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS steps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    step TEXT NOT NULL,
    state TEXT NOT NULL,
    saved_at REAL NOT NULL
);
"""


class CheckpointError(Exception):
    """The checkpoint file exists but cannot be used."""


class Checkpoint:
    """Open (or create) the checkpoint of one item, identified by `owner`."""

    def __init__(self, path: Path, owner: str) -> None:
        self.path = path
        self.owner = owner
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                db = sqlite3.connect(self.path, timeout=SQLITE_TIMEOUT, isolation_level=None)
            except sqlite3.DatabaseError as exc:
                raise CheckpointError(f"{self.path}: {exc}") from exc
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.executescript(_SCHEMA)
                self._check_owner(db)
            except (sqlite3.DatabaseError, CheckpointError) as exc:
                db.close()
                if isinstance(exc, CheckpointError):
                    raise
                raise CheckpointError(f"{self.path}: {exc}") from exc
            self._db = db
        return self._db

    def _check_owner(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'owner'").fetchone()
        if row is None:
            with db:
                db.execute("BEGIN")
                db.execute("INSERT OR IGNORE INTO meta VALUES ('owner', ?)", (self.owner,))
                db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('version', ?)", (str(SCHEMA_VERSION),)
                )
        elif row[0] != self.owner:
            raise CheckpointError(f"{self.path} belongs to {row[0]!r}, not {self.owner!r}")

    def load(self) -> tuple[str, dict[str, Any]] | None:
        """The last completed step and its state, or None for a fresh start."""
        try:
            row = self._conn().execute(
                "SELECT step, state FROM steps ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            state = json.loads(row[1])
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise CheckpointError(f"{self.path}: {exc}") from exc
        if not isinstance(state, dict):
            raise CheckpointError(f"{self.path}: state of step {row[0]!r} is not an object")
        return str(row[0]), state

    def save(self, step: str, state: dict[str, Any]) -> None:
        """Record that `step` completed, with the whole state after it."""
        db = self._conn()
        try:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "INSERT INTO steps (step, state, saved_at) VALUES (?, ?, ?)",
                    (step, json.dumps(state), time.time()),
                )
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(f"{self.path}: {exc}") from exc

    def steps(self) -> list[str]:
        """Names of the completed steps, oldest first."""
        try:
            rows = self._conn().execute("SELECT step FROM steps ORDER BY seq").fetchall()
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(f"{self.path}: {exc}") from exc
        return [r[0] for r in rows]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def delete(self) -> None:
        """Remove the database and its WAL side files (after success)."""
        self.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def set_aside(self) -> Path:
        """Move an unusable checkpoint out of the way, keeping it for inspection."""
        self.close()
        target = self.path.with_name(f"{self.path.name}.unreadable-{time.time_ns()}")
        if self.path.exists():
            self.path.rename(target)
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        return target
