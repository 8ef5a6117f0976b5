"""Files shared between processes: atomic replace, and JSON updated under a lock."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assemblyzero.constants import LOCK_TIMEOUT


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write `path` so that readers see the old or the new content, never half.

    Temp file in the same folder, fsync, `os.replace`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


JsonDict = dict[str, Any]


def update_json(
    path: Path,
    lock_path: Path,
    change: Callable[[JsonDict], None],
    rebuild: Callable[[], JsonDict],
) -> JsonDict:
    """Read-modify-write a JSON object under a FileLock: no update is lost.

    A missing file starts from `rebuild()`; so does a corrupt one, after a
    warning on stderr naming the file.
    """
    from filelock import FileLock  # lazy: the worker needs it only at the end

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path), timeout=LOCK_TIMEOUT):
        data = _read_or_rebuild(path, rebuild)
        change(data)
        atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return data


def _read_or_rebuild(path: Path, rebuild: Callable[[], JsonDict]) -> JsonDict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return rebuild()
    except (OSError, ValueError) as exc:
        print(f"warning: {path} is unreadable ({exc}); rebuilding it", file=sys.stderr)
        return rebuild()
    if not isinstance(data, dict):
        print(f"warning: {path} is not a JSON object; rebuilding it", file=sys.stderr)
        return rebuild()
    return data


def append_line(path: Path, line: str) -> None:
    """Append one line with a single O_APPEND write (whole lines, any writer count)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
    finally:
        os.close(fd)
