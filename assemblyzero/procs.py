"""All process handling: how a worker is started, waited on and signalled.

Each worker runs as `prefix-tee TAG LOG -- python -m assemblyzero.worker ...`
in a new session (so its own process group), stdin closed. Without a live
console the tee shares the coordinator's stdout, so whole prefixed lines
reach the terminal directly; with one, the tee writes to a pipe of its own,
which the thread waiting on the worker drains first. Signals go to the whole
group; a group that is already gone is expected and ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path
from queue import SimpleQueue
from typing import Any, Protocol

from assemblyzero.console import Sink

_TEE = Path(__file__).with_name("prefix_tee.py")
READ_SIZE = 65536


class Proc(Protocol):
    """What the scheduler needs of a started worker (a Popen, or a test double)."""

    pid: int

    def wait(self) -> int: ...


class Spawn(Protocol):
    """(argv, environment, fds the child inherits[, its stdout]) -> the started worker."""

    def __call__(self, argv: list[str], env: Mapping[str, str], pass_fds: tuple[int, ...],
                 /, stdout: int | None = None) -> Proc: ...


def worker_argv(tag: str, width: int, log: Path, worker_args: list[str],
                color: bool = False, hue: int = 0) -> list[str]:
    """The full command line: the tee wrapping `python -m assemblyzero.worker`.

    `color`: the tee colours its prefix even though it writes to a pipe (the
    live console's); otherwise it decides itself (colour on a terminal only).
    `hue`: which colour, if any (see prefix_tee.PALETTE).
    """
    tee = [sys.executable, "-I", "-S", str(_TEE), "--width", str(width), "--hue", str(hue),
           *(["--color", "always"] if color else []), tag, str(log), "--"]
    return [*tee, sys.executable, "-m", "assemblyzero.worker", *worker_args]


def spawn(argv: list[str], env: Mapping[str, str], pass_fds: tuple[int, ...] = (),
          /, stdout: int | None = None) -> Proc:
    """Start `argv` in its own session (process group), stdin closed.

    `stdout`: an fd for the child's stdout and stderr (default: ours).
    """
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True,
                            env=dict(env), close_fds=True, pass_fds=pass_fds, stdout=stdout,
                            stderr=stdout)


def output_pipe() -> tuple[int, int]:
    """(read end, write end) for a worker's output; both close-on-exec."""
    return os.pipe()


def secret_pipe(payload: dict[str, Any]) -> int:
    """A pipe already holding `payload` as JSON; the read end, for the child to inherit.

    Secrets travel this way, never in argv or the environment: the worker
    reads the pipe once at start, and nothing else ever sees it.
    """
    data = json.dumps(payload).encode()
    if len(data) > select.PIPE_BUF * 16:  # the write below must not block
        raise ValueError("too many secrets for one worker")
    rfd, wfd = os.pipe()
    try:
        os.write(wfd, data)
    finally:
        os.close(wfd)
    return rfd


def lifeline() -> tuple[int, int]:
    """(read end, write end) of the pipe that tells workers their coordinator is alive.

    Only the coordinator holds the write end (close-on-exec, never passed on);
    each worker inherits the read end. When the coordinator dies, even by
    SIGKILL, the kernel closes the write end and every worker's read returns
    end-of-file at once: no polling.
    """
    return os.pipe()


def watch(proc: Proc, key: str, events: SimpleQueue[tuple[str, str, int]],
          output: tuple[int, Sink] | None = None) -> None:
    """Put ("exit", key, returncode) on `events` when `proc` ends (no polling).

    `output` (read end, sink): first hand everything the worker writes there
    to the sink, up to end-of-file, then b"" so a last partial line comes
    out; so its exit is seen only after its last line was shown.
    """

    def wait() -> None:
        try:
            if output is not None:
                _drain(*output)
        finally:  # whatever the display did, the exit is seen
            events.put(("exit", key, proc.wait()))

    threading.Thread(target=wait, name=f"wait-{key}", daemon=True).start()


def _drain(fd: int, sink: Sink) -> None:
    try:
        while chunk := os.read(fd, READ_SIZE):
            sink(chunk)
        sink(b"")
    except BaseException:  # a broken display (rich even raises SystemExit) must not hide
        traceback.print_exc()  # the exit, nor end the run: this thread goes on to report it
    finally:
        os.close(fd)


def signal_group(pid: int, signum: int) -> None:
    """Send `signum` to the process group led by `pid`; a gone group is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def terminate_group(pid: int) -> None:
    signal_group(pid, signal.SIGTERM)


def kill_group(pid: int) -> None:
    signal_group(pid, signal.SIGKILL)
