"""Stopping a worker without losing a paid reply.

SIGTERM/SIGINT never raise at an arbitrary point: the handler only records
the signal and posts it on a queue. A model call runs in a helper thread
while the main thread waits on that queue, so whichever comes first wins:
a reply that arrived is kept (and checkpointed before the worker stops); a
call still in flight is abandoned. Between steps, `check()` stops the run.

The coordinator may also ask a worker to stop once its current step is
saved (its run's budget is reached): it writes the worker's stop file, which
`between_steps` looks for; a call in flight then runs to its end.

A worker also stops when its coordinator dies (the lifeline) or its tee does
(its output pipe loses its reader); it then goes on quietly, see `go_quiet`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from queue import Empty, SimpleQueue
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")


class Interrupted(BaseException):
    """A stop signal arrived: end the item, keeping its checkpoint."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StoppedAfterStep(BaseException):  # a stop, like Interrupted: not an Exception
    """The coordinator asked this worker to stop after its current step (its stop file)."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"stopped after step '{step}': {reason}")
        self.step, self.reason = step, reason


STOP_FILE_LIMIT = 200  # bytes of a stop file's reason read


class Stop:
    def __init__(self, stop_file: Path | None = None) -> None:
        self.signum: int | None = None
        self.stop_file = stop_file  # its existence: stop after the current step
        # Why to stop before the next model call (the run's budget is spent), or None.
        self.over_budget: Callable[[], str | None] | None = None
        self._events: SimpleQueue[tuple[str, int, Any]] = SimpleQueue()
        self._calls = 0

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handler)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self._events.put(("stop", 0, None))  # SimpleQueue.put is safe in a handler

    def trigger(self, signum: int) -> None:
        """Stop as if `signum` had arrived (from any thread)."""
        self._handler(signum, None)

    def watch_lifeline(self, fd: int) -> None:
        """Stop (as SIGHUP) when the coordinator holding the pipe's other end dies."""

        def wait() -> None:
            with contextlib.suppress(OSError):
                while os.read(fd, 1):
                    pass
            self.trigger(signal.SIGHUP)

        threading.Thread(target=wait, name="lifeline", daemon=True).start()

    def watch_output(self, fd: int = 1) -> None:
        """Stop (as SIGPIPE) once the pipe `fd` writes to has no reader: its tee died.

        The kernel flags such a pipe's write end (POLLERR) at once, also when
        the tee was killed before this was called: no race, no polling. Output
        then goes nowhere (go_quiet). `fd` not a pipe: no-op.
        """
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                return
        except OSError:
            return

        def wait() -> None:
            poller = select.poll()
            poller.register(fd, 0)  # no events asked: only POLLERR/POLLHUP/POLLNVAL come
            events = poller.poll()
            if any(e & (select.POLLERR | select.POLLHUP) for _, e in events):
                go_quiet()  # first: no write of the stopping worker fails
                self.trigger(signal.SIGPIPE)

        threading.Thread(target=wait, name="output", daemon=True).start()

    def check(self) -> None:
        """Raise Interrupted if a stop signal has arrived."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def between_steps(self, step: str, spends: bool = True) -> None:
        """After step `step` was saved: raise Interrupted on a stop signal, StoppedAfterStep
        when the stop file is there (its first line is the reason) and the next step
        `spends` (calls a model: a step that costs nothing runs on)."""
        self.check()
        if not spends:
            return
        if self.over_budget is not None and (why := self.over_budget()):
            raise StoppedAfterStep(step, why)
        if self.stop_file is None:
            return
        try:
            fd = os.open(self.stop_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return
        except OSError:  # there, but not a file we read (a symlink...): a stop all the same
            raise StoppedAfterStep(step, "the coordinator asked for it") from None
        try:
            raw = os.read(fd, STOP_FILE_LIMIT)
        except OSError:
            raw = b""
        finally:
            os.close(fd)
        line = raw.decode("utf-8", "replace").splitlines()[0] if raw.strip() else ""
        raise StoppedAfterStep(step, line.strip() or "the coordinator asked for it")

    def pause(self, seconds: float) -> None:
        """Sleep `seconds` (waiting for a key's budget), ended at once by a stop signal:
        no spinning, no lost signal."""
        self.check()
        deadline = time.monotonic() + max(0.0, seconds)
        while (left := deadline - time.monotonic()) > 0:
            try:
                what, _, _ = self._events.get(timeout=left)
            except Empty:
                return
            if what == "stop":
                self.check()

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` (a model call) so that a stop signal abandons it at once."""
        self.check()
        self._calls += 1
        call_id = self._calls

        def run() -> None:
            try:
                self._events.put(("done", call_id, fn()))
            except BaseException as exc:  # handed to the main thread
                self._events.put(("error", call_id, exc))

        threading.Thread(target=run, name=f"model-call-{call_id}", daemon=True).start()
        while True:
            what, which, value = self._events.get()
            if what == "stop":
                self.check()
            elif which == call_id:
                if what == "error":
                    raise value
                result: T = value
                return result


def go_quiet() -> None:
    """Send stdout and stderr to /dev/null: they went to a tee that died.

    The worker goes on to save its checkpoint and result; what Python still
    holds buffered is flushed there too, so its exit is clean.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)
