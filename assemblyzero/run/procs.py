"""All process handling: how a worker is started, waited on and signalled.

Each worker runs as `prefix-tee TAG LOG -- python -m assemblyzero.worker ...`
in a new session (so its own process group), stdin closed. Without a live
console the tee shares the coordinator's stdout, so whole prefixed lines
reach the terminal directly; with one, the tee writes to a pipe of its own,
which the thread waiting on the worker drains first. Signals go to the whole
group; a group that is already gone is expected and ignored. A worker's exit
is reported only once its whole group is gone (a killed tee may leave it).
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
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from assemblyzero.constants import DEFAULT_GRACE, GROUP_POLL, KILL_WAIT
from assemblyzero.ui.console import Sink

_TEE = Path(__file__).resolve().parent.parent / "ui" / "prefix_tee.py"
READ_SIZE = 65536


class Proc(Protocol):
    """What the local backend needs of a started worker (a Popen, or a test double)."""

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


def watch(proc: Proc, on_exit: Callable[[int], None],
          output: tuple[int, Sink] | None = None, grace: float = DEFAULT_GRACE) -> None:
    """Call `on_exit(returncode)` from a thread of its own when `proc` ends (no polling).

    `output` (read end, sink): first hand everything the worker writes there
    to the sink, up to end-of-file, then b"" so a last partial line comes
    out; so its exit is seen only after its last line was shown. And only
    once no process of its group runs (see end_group, `grace`): the item's
    lock and lease are released on that exit.
    """

    def wait() -> None:
        try:
            if output is not None:
                _drain(*output)
        finally:  # whatever the display did, the exit is seen
            code = proc.wait()
            try:
                end_group(proc.pid, grace)
            finally:
                on_exit(code)

    threading.Thread(target=wait, name=f"wait-{proc.pid}", daemon=True).start()


def end_group(pgid: int, grace: float) -> None:
    """Return once no process of group `pgid` runs: SIGTERM, after `grace` s SIGKILL.

    The group's leader (the tee) was reaped; the rest normally ended before it
    and this is one syscall. If the tee was killed, its worker (which stops by
    itself too, its output pipe gone) may still be saving its checkpoint.
    After SIGKILL at most KILL_WAIT s more: a process stuck in the kernel runs
    no more code of ours.
    """
    if not group_runs(pgid):
        return
    terminate_group(pgid)
    if _wait_gone(pgid, grace):
        return
    kill_group(pgid)
    _wait_gone(pgid, KILL_WAIT)


def _wait_gone(pgid: int, limit: float) -> bool:
    """Poll until no process of the group runs (True) or `limit` s passed (False)."""
    deadline = time.monotonic() + limit
    while group_runs(pgid):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(GROUP_POLL, left))
    return True


def group_runs(pgid: int) -> bool:
    """Does a process of group `pgid` still run?

    Zombies do not (an orphan's may stay unreaped under an init that does not
    reap); without /proc to tell, they count.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its user: it still runs
        pass
    try:
        pids = [name for name in os.listdir("/proc") if name.isdecimal()]
    except OSError:
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):  # gone meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


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
