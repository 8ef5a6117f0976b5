"""Which trouble a checkpoint is in: not a usable checkpoint, or a disk that cannot serve it.

`CheckpointUnusable`: the file is not a checkpoint this release can use
(corrupt, a foreign database, another item's, another schema version, a
symlink): it is set aside and the item starts over. `CheckpointUnavailable`:
the disk or the OS cannot serve it now (full, I/O error, cannot open): it
stays exactly where it is and the item fails, to resume once that is fixed.
Told apart by SQLite result codes and errno values, never by message text.
"""

from __future__ import annotations

import errno
import os
import resource
import sqlite3
from pathlib import Path

# SQLite primary result codes that are about the disk or the OS, not the file.
_NOT_THE_FILE = frozenset({
    sqlite3.SQLITE_PERM, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_READONLY, sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_NOLFS, sqlite3.SQLITE_AUTH,
})
_NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_HINTS = {"disk full": "free some space and run retry-failed",
          "disk error": "check the disk and run retry-failed"}


class CheckpointError(Exception):
    """The checkpoint cannot be used: one of the two subclasses."""


class CheckpointUnusable(CheckpointError):
    """This file is not a usable checkpoint: set it aside, start the item over."""


class CheckpointUnavailable(CheckpointError):
    """The disk or the OS cannot serve the checkpoint now: keep it, fail the item."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.hint = hint  # what the user does next


def trouble(path: Path, exc: sqlite3.Error, doing: str) -> CheckpointError:
    """Which trouble an SQLite error is, by its result code (never its message text)."""
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None) or "no SQLite code"
    primary = code & 0xFF if isinstance(code, int) else None
    detail = f"cannot {doing} checkpoint {path} ({exc}; {name})"
    if primary == sqlite3.SQLITE_FULL:
        return CheckpointUnavailable(f"disk full: {detail}", _HINTS["disk full"])
    if primary == sqlite3.SQLITE_IOERR:
        why = _space_exhausted(path)
        if why:
            return CheckpointUnavailable(f"disk full ({why}): {detail}", _HINTS["disk full"])
        return CheckpointUnavailable(f"disk error: {detail}", _HINTS["disk error"])
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return CheckpointUnavailable(detail, "another process holds it; run retry-failed later")
    if primary in _NOT_THE_FILE:
        return CheckpointUnavailable(detail, "check its permissions and run retry-failed")
    return CheckpointUnusable(f"{path}: {exc} ({name})")


def os_trouble(path: Path, exc: OSError, doing: str) -> CheckpointUnavailable:
    detail = f"cannot {doing} checkpoint {path}: {exc.strerror or exc}"
    if exc.errno in _NO_SPACE:
        return CheckpointUnavailable(f"disk full: {detail}", _HINTS["disk full"])
    if exc.errno == errno.EIO:
        return CheckpointUnavailable(f"disk error: {detail}", _HINTS["disk error"])
    return CheckpointUnavailable(detail, "check its folder and permissions and run retry-failed")


def _space_exhausted(path: Path) -> str | None:
    """Why an I/O error may be a full disk (SQLite reports EFBIG and a full -shm as I/O)."""
    try:
        if os.statvfs(path.parent).f_bavail == 0:
            return "no space left on the device"
    except OSError:
        pass
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else f"file size limit of {soft} bytes"
