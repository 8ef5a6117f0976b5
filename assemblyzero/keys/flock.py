"""`flock` on sidecar lock files, for the paths where every millisecond counts.

The coordinator (one item lock per worker start) and the lease store (two
locks per lease) take these. filelock, which guards the status index, costs
~45 ms of imports (asyncio, importlib.metadata) per process and ~0.4 ms per
lock: too much for a coordinator's start-up and a lease's round trip. Same
semantics: an exclusive `flock` on a file that is never deleted, released by
the kernel when its holder dies.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on `path`, or None if another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a lock file that is a symlink (even a dangling one) is refused (ELOOP),
    # never created or locked elsewhere.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def unlock(fd: int) -> None:
    """Release and close (closing alone would do: the kernel drops the lock)."""
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def locked(fd: int, what: str, timeout: float, poll: float) -> Iterator[None]:
    """Hold an exclusive lock on the open `fd` for a short critical section.

    Tried without blocking and retried every `poll` seconds: a TimeoutError
    naming `what` after `timeout` seconds, instead of hanging for ever behind
    a stopped process.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} is locked for more than {timeout:g}s") from None
            time.sleep(poll)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
