"""All process handling: how a worker is started, waited on and signalled.

Each worker runs as `prefix-tee TAG LOG -- python -m assemblyzero.worker ...`
in a new session (so its own process group), stdin closed; the tee shares
the coordinator's stdout, so whole prefixed lines reach the terminal
directly. Signals go to the whole group; a group that is already gone is
expected and ignored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from queue import SimpleQueue
from typing import Protocol

_TEE = Path(__file__).with_name("prefix_tee.py")


class Proc(Protocol):
    """What the scheduler needs of a started worker (a Popen, or a test double)."""

    pid: int

    def wait(self) -> int: ...


Spawn = Callable[[list[str], Mapping[str, str]], Proc]


def worker_argv(tag: str, width: int, log: Path, worker_args: list[str]) -> list[str]:
    """The full command line: the tee wrapping `python -m assemblyzero.worker`."""
    tee = [sys.executable, "-I", "-S", str(_TEE), "--width", str(width), tag, str(log), "--"]
    return [*tee, sys.executable, "-m", "assemblyzero.worker", *worker_args]


def spawn(argv: list[str], env: Mapping[str, str]) -> Proc:
    """Start `argv` in its own session (process group), stdin closed."""
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, start_new_session=True, env=dict(env), close_fds=True
    )


def watch(proc: Proc, key: str, events: SimpleQueue[tuple[str, str, int]]) -> None:
    """Put ("exit", key, returncode) on `events` when `proc` ends (no polling)."""

    def wait() -> None:
        events.put(("exit", key, proc.wait()))

    threading.Thread(target=wait, name=f"wait-{key}", daemon=True).start()


def signal_group(pid: int, signum: int) -> None:
    """Send `signum` to the process group led by `pid`; a gone group is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def terminate_group(pid: int) -> None:
    signal_group(pid, signal.SIGTERM)


def kill_group(pid: int) -> None:
    signal_group(pid, signal.SIGKILL)
