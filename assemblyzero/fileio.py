"""Files: atomic replace, JSON updated under a lock, and the workspace's boundary.

A workspace is untrusted: any file or folder in it may be a symlink. What
the tool reads or writes there goes through `check_inside` first: its real
path (every symlink resolved, dangling ones too) must stay inside the root.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assemblyzero.constants import LOCK_TIMEOUT, RECORD_LIMIT


class OutsideWorkspace(OSError):
    """A path whose real location is outside the workspace: never read or written."""


def inside(root: Path, path: Path) -> bool:
    """Does `path`, every symlink on the way resolved (dangling ones too), stay in `root`?"""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def check_inside(root: Path, path: Path, verb: str = "write") -> None:
    """Raise OutsideWorkspace, naming `path` and where it leads, unless it stays in `root`."""
    if not inside(root, path):
        try:
            shown = str(path.relative_to(root))
        except ValueError:
            shown = str(path)
        raise OutsideWorkspace(f"{shown} leads outside the workspace (to "
                               f"{os.path.realpath(path)}); refusing to {verb} through it: "
                               "replace the symlink with a real file or folder")


def read_record(path: Path, limit: int = RECORD_LIMIT) -> bytes:
    """A record of ours (summary, journal) as bytes: a plain file only, at most `limit`.

    Never through a symlink (O_NOFOLLOW), never a FIFO or device (which could
    hang the read or never end, like /dev/zero). OSError otherwise.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a plain file", str(path))
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(limit)
    finally:
        os.close(fd)


def tail_lines(path: Path, count: int, window: int = 8192) -> list[str]:
    """The last `count` non-blank lines of a log of ours (its last `window` bytes), read as
    a plain file only (never through a symlink, never a FIFO); [] when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return []
    try:
        size = os.fstat(fd).st_size
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        os.lseek(fd, max(0, size - window), os.SEEK_SET)
        lines = os.read(fd, window).decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    finally:
        os.close(fd)
    return [line for line in lines if line.strip()][-count:]


def atomic_write(path: Path, data: str | bytes, root: Path | None = None,
                 fsync: bool = True) -> None:
    """Write `path` so that readers see the old or the new content, never half.

    Temp file in the same folder, fsync, `os.replace` (which replaces a
    symlink at `path` itself, never its target). With `root`, the folder must
    stay inside it (checked before any folder is made). `fsync=False`: for a file
    that only lives as long as the run (a worker's current spend), whole but not synced.
    """
    if root is not None:
        check_inside(root, path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            if fsync:
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
    root: Path | None = None,
) -> JsonDict:
    """Read-modify-write a JSON object under a FileLock: no update is lost.

    A missing file starts from `rebuild()`; so does a corrupt one, or one
    that leads outside `root` (if given), after a warning on stderr naming the file.
    """
    from filelock import FileLock  # lazy: the worker needs it only at the end

    if root is not None:
        check_inside(root, lock_path)  # filelock follows a symlink, even a dangling one
        check_inside(root, path.parent)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path), timeout=LOCK_TIMEOUT):
        data = _read_or_rebuild(path, rebuild, root)
        change(data)
        atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n", root)
        return data


def _read_or_rebuild(path: Path, rebuild: Callable[[], JsonDict],
                     root: Path | None) -> JsonDict:
    if root is not None and os.path.lexists(path) and not inside(root, path):
        _warn(f"{path} leads outside the workspace (to {os.path.realpath(path)}); not read, "
              "rebuilding it")
        return rebuild()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return rebuild()
    except (OSError, ValueError) as exc:
        _warn(f"{path} is unreadable ({exc}); rebuilding it")
        return rebuild()
    if not isinstance(data, dict):
        _warn(f"{path} is not a JSON object; rebuilding it")
        return rebuild()
    return data


def _warn(text: str) -> None:
    from assemblyzero.ui.console import printable  # the one sanitizer of printed lines

    print(printable(f"warning: {text}"), file=sys.stderr)


def append_line(path: Path, line: str) -> None:
    """Append one line with a single O_APPEND write (whole lines, any writer count)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
    finally:
        os.close(fd)
