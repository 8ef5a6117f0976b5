"""What runs a worker: the backend protocol, the job it gets, the events it posts.

The coordinator hands a backend one `Job` per attempt and gets a `Handle`
back; the backend posts `Finished` on the run's inbox once the attempt is
over (its last output line shown first), whatever ended it. `LocalBackend`
(run/local.py) runs the job as a local process group under prefix-tee; a
cluster backend runs the same job as a task on another machine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, Protocol

from assemblyzero.cost import Spend
from assemblyzero.results import WorkerResult


@dataclass(frozen=True)
class Job:
    """One attempt of one item: everything needed to start its worker, all plain data."""

    key: str  # the item's slug (`lld-41`): names its log, its result and its events
    tag: str  # `LLD-41`: its output prefix
    args: tuple[str, ...]  # the worker's arguments, each `--opt=value`
    env: Mapping[str, str]  # added to the worker's environment; nothing secret
    secrets: Mapping[str, Any] | None  # its keys and the values to mask; never in argv or env
    log: Path  # where its raw output goes
    result: Path  # where it writes its WorkerResult
    hue: int = 0  # its prefix colour
    spend_file: Path | None = None  # where the worker keeps its spend current (a budget)
    stop_file: Path | None = None  # its "stop after your current step" (a budget)


@dataclass(frozen=True)
class Finished:
    """An attempt is over: what the worker reported (None if nothing) and its exit code."""

    key: str
    result: WorkerResult | None
    code: int


@dataclass(frozen=True)
class Began:
    """A queued attempt began to run (a cluster task on its Dask worker, on `host`)."""

    key: str
    host: str


@dataclass(frozen=True)
class Signalled:
    """SIGINT or SIGTERM reached the coordinator."""

    signum: int


Message = Finished | Signalled | Began
Post = Callable[[Message], None]


class Handle(Protocol):
    """A started attempt."""

    @property
    def pid(self) -> int | None:
        """Its process (group) id, for the journal; None where there is none here."""

    def stop(self) -> None:
        """Ask it to stop and save its checkpoint (SIGTERM)."""

    def kill(self) -> None:
        """End it now (SIGKILL). Must not block; once called, `wait` must return."""

    def stop_after_step(self, reason: str) -> None:
        """Ask it to stop once its current step is saved (its call in flight finishes)."""

    def spent(self) -> Spend | None:
        """What this attempt has spent so far, as the worker last said (None: not yet)."""

    def wait(self) -> Finished:
        """Block until it is over (used only after its Finished was never posted)."""


class Backend(Protocol):
    def start(self, job: Job) -> Handle:
        """Start the attempt; raises if it cannot start, and then nothing of it is left
        running (the item's lock and keys are given back at once)."""

    def close(self) -> None:
        """The run is over: release what the backend holds (every attempt has ended)."""


class Inbox:
    """The run's one event queue: the backend's Finished, the signal handlers' Signalled.

    `get` waits at most `timeout` seconds (None: until something comes).
    """

    def __init__(self) -> None:
        self._queue: SimpleQueue[Message] = SimpleQueue()

    def put(self, message: Message) -> None:
        self._queue.put(message)

    def get(self, timeout: float | None) -> Message | None:
        try:
            return self._queue.get(timeout=timeout)
        except Empty:
            return None
