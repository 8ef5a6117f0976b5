"""The coordinator: at most N workers at once, each item exactly once (SPEC 6).

One thread per running worker waits on its process and posts the exit on a
queue; signal handlers post on the same queue; the loop blocks on it with a
timeout set by the nearest deadline (a `--timeout`, or a SIGKILL after
`--grace`). No polling, no sleeping.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue
from types import FrameType
from typing import Any

from filelock import FileLock, Timeout

from assemblyzero import backlog, procs
from assemblyzero.backlog import Item, Skipped
from assemblyzero.constants import (
    DEFAULT_GRACE,
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    ENV_WORKFLOW_DB,
    EXIT_INTERRUPTED,
    EXIT_NOT_DONE,
    EXIT_OK,
    EXIT_TERMINATED,
)
from assemblyzero.ids import slug
from assemblyzero.report import Outcome, RunRecord, summary_data, table
from assemblyzero.results import Status, WorkerResult, status_from_exit
from assemblyzero.workspace import Workspace

COORDINATOR_TAG = "COORDINATOR"


@dataclass(frozen=True)
class RunOptions:
    parallel: int = 1
    drafter: str = DEFAULT_MODEL
    reviewer: str = DEFAULT_MODEL
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    timeout: float = DEFAULT_TIMEOUT
    grace: float = DEFAULT_GRACE


@dataclass
class _Running:
    item: Item
    proc: procs.Proc
    lock: FileLock
    started: float
    log: Path
    ended_by: Status | None = None  # TIMEOUT or INTERRUPTED when we stopped it
    kill_at: float | None = None  # when SIGKILL follows our SIGTERM


class Console:
    """`[COORDINATOR] text` lines, each one whole write to the shared stdout."""

    def __init__(self, width: int = 0, fd: int = 1) -> None:
        self.width, self.fd = width, fd

    def say(self, text: str) -> None:
        """Write one line; once the terminal is gone (EPIPE, ...), stay quiet."""
        if self.fd < 0:
            return
        prefix = f"[{COORDINATOR_TAG}]".ljust(self.width)
        try:
            os.write(self.fd, f"{prefix} {text}\n".encode("utf-8", "replace"))
        except OSError:
            self.fd = -1


class Coordinator:
    def __init__(
        self, ws: Workspace, opts: RunOptions, console: Console | None = None,
        spawn: procs.Spawn = procs.spawn, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ws, self.opts, self.spawn, self.clock = ws, opts, spawn, clock
        self.console = console or Console()
        self.events: SimpleQueue[tuple[str, str, int]] = SimpleQueue()
        self.running: dict[str, _Running] = {}
        self.outcomes: list[Outcome] = []
        self.stopped_by: int | None = None  # the signal that stopped the run

    # --- the run ------------------------------------------------------------
    def run(self, items: list[Item], label: str, skipped: Sequence[Skipped] = ()) -> int:
        """Run `items`; print and record the summary; return the exit code.

        `skipped` are the items refused while planning (bad file names):
        reported here and in the summary, never run.
        """
        self.label = label
        self.ws.ensure_state_dirs()
        self.record = RunRecord(self.ws.runs, label)
        self.width = max(len(f"[{t}]") for t in [COORDINATOR_TAG, *(i.tag for i in items)])
        self.console.width = self.width
        started, wall = time.time(), self.clock()
        self.record.event("run-start", items=[i.tag for i in items], parallel=self.opts.parallel)
        how = f"{self.opts.parallel} at a time" if self.opts.parallel > 1 else "one at a time"
        self.say(f"run {self.record.run_id}: {len(items)} item(s), {how}; "
                 f"logs in {self._rel(self.record.dir)}")
        for refused in skipped:
            self.say(f"skipped {refused.name}: {refused.reason}")
            self._outcome(Outcome(refused.kind.value, refused.name, refused.name,
                                  Status.SKIPPED, reason=refused.reason))
        queue = deque(items)
        with self._signals():
            try:
                while queue or self.running:
                    while (self.stopped_by is None and queue
                           and len(self.running) < self.opts.parallel):
                        self._start(queue.popleft())
                    if self.running:
                        self._wait_one()
                    elif self.stopped_by is not None:
                        break
            except Exception as exc:  # a bug or a broken disk: stop cleanly, keep the record
                self.say(f"error: {type(exc).__name__}: {exc}; stopping every worker")
                self.record.event("error", error=repr(exc), traceback=traceback.format_exc())
            finally:  # whatever happened, no worker outlives its supervisor
                self._abandon()
        for item in queue:  # never started: the run was stopped first
            self._outcome(Outcome(item.kind.value, item.id, item.tag, Status.SKIPPED,
                                  reason="not started: the run was interrupted"))
        return self._finish_run(started, self.clock() - wall)

    def _finish_run(self, started: float, wall: float) -> int:
        code = self._exit_code()
        meta = {"label": self.label, "repo": str(self.ws.root),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "wall_seconds": round(wall, 3), "parallel": self.opts.parallel,
                "drafter": self.opts.drafter, "reviewer": self.opts.reviewer}
        summary = summary_data(self.record, self.outcomes, meta, code)
        path = self.record.write_summary(summary)
        self.record.event("run-end", exit_code=code, wall_seconds=round(wall, 3))
        self.say(f"summary of run {self.record.run_id}:")
        for line in table(self.outcomes, self.ws.root):
            self.say("  " + line)
        counts = ", ".join(f"{n} {s}" for s, n in summary["counts"].items() if n)
        work = summary["worker_seconds"]
        speed = f" ({work / wall:.1f}x)" if wall > 0 else ""
        self.say(f"{counts or 'nothing run'}; wall {wall:.1f}s, worker time {work:.1f}s{speed}; "
                 f"{self._rel(path)}")
        return code

    def _exit_code(self) -> int:
        if self.stopped_by is not None:
            return EXIT_TERMINATED if self.stopped_by == signal.SIGTERM else EXIT_INTERRUPTED
        ok = (Status.DONE, Status.SKIPPED)
        return EXIT_OK if all(o.status in ok for o in self.outcomes) else EXIT_NOT_DONE

    # --- one worker ---------------------------------------------------------
    def _start(self, item: Item) -> None:
        key = slug(item.kind, item.id)
        lock = FileLock(str(self.ws.item_lock(item.kind, item.id)))
        try:
            lock.acquire(blocking=False)
        except Timeout:
            self._skip(item, "taken by another run (its item lock is held)")
            return
        if not backlog.is_pending(self.ws, item):
            lock.release()
            self._skip(item, "no longer pending (done by another run?)")
            return
        log = self.record.log_path(key)
        argv = procs.worker_argv(item.tag, self.width, log, self._worker_args(item))
        env = {**os.environ, ENV_WORKFLOW_DB: str(self.ws.checkpoint(item.kind, item.id))}
        try:
            proc = self.spawn(argv, env)
        except OSError as exc:
            lock.release()
            self._outcome(Outcome(item.kind.value, item.id, item.tag, Status.FAILED,
                                  reason=f"could not start the worker: {exc}"))
            return
        self.running[key] = _Running(item, proc, lock, self.clock(), log)
        self.record.event("start", item=item.tag, pid=proc.pid)
        procs.watch(proc, key, self.events)

    def _worker_args(self, item: Item) -> list[str]:
        o = self.opts
        return ["--kind", item.kind.value, "--id", item.id, "--repo", str(self.ws.root),
                "--run-dir", str(self.record.dir), "--drafter", o.drafter,
                "--reviewer", o.reviewer, "--max-iterations", str(o.max_iterations)]

    def _wait_one(self) -> None:
        deadline = min(self._deadline(r) for r in self.running.values())
        wait = None if deadline == float("inf") else max(0.0, deadline - self.clock())
        try:
            what, key, value = self.events.get(timeout=wait)
        except Empty:
            self._enforce_deadlines()
            return
        if what == "signal":
            self._on_signal(value)
        else:
            self._ended(key, value)

    def _deadline(self, r: _Running) -> float:
        if r.kill_at is not None:
            return r.kill_at
        return r.started + self.opts.timeout if r.ended_by is None else float("inf")

    def _enforce_deadlines(self) -> None:
        now = self.clock()
        for r in self.running.values():
            if r.kill_at is not None and now >= r.kill_at:
                procs.kill_group(r.proc.pid)
                r.kill_at = None
            elif r.ended_by is None and now >= r.started + self.opts.timeout:
                self.say(f"{r.item.tag} timed out after {self.opts.timeout:g}s; stopping it")
                self._stop(r, Status.TIMEOUT)

    def _stop(self, r: _Running, why: Status) -> None:
        r.ended_by = r.ended_by or why
        procs.terminate_group(r.proc.pid)
        r.kill_at = self.clock() + self.opts.grace

    def _abandon(self) -> None:
        """After an unexpected error in the loop: kill what still runs, record it."""
        for key, r in list(self.running.items()):
            procs.kill_group(r.proc.pid)
            r.ended_by = r.ended_by or Status.INTERRUPTED
            self._ended(key, r.proc.wait())

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stopped_by is None:
            self.stopped_by = signum
            self.say(f"{name}: stopping {len(self.running)} worker(s), up to {self.opts.grace:g}s "
                     "for their checkpoints (Ctrl+C again to kill them now)")
            for r in self.running.values():
                if r.ended_by is None:  # one already timing out keeps its SIGKILL time
                    self._stop(r, Status.INTERRUPTED)
        else:
            self.say(f"{name} again: killing {len(self.running)} worker(s) now")
            for r in self.running.values():
                procs.kill_group(r.proc.pid)

    def _ended(self, key: str, code: int) -> None:
        r = self.running.pop(key)
        r.lock.release()
        item, duration = r.item, self.clock() - r.started
        result = WorkerResult.read(self.record.result_path(key))
        status = result.status if result else status_from_exit(code)
        reason = result.reason if result and result.reason else _why(status, code)
        if r.ended_by is not None and status is not Status.DONE:
            status, reason = r.ended_by, _why(r.ended_by, code)
        self._outcome(Outcome(
            item.kind.value, item.id, item.tag, status, duration=duration,
            iterations=result.iterations if result else 0,
            model_calls=result.model_calls if result else 0, attempts=1,
            reason=reason, log=str(r.log)))
        self.record.event("end", item=item.tag, status=status.value, exit_code=code,
                          duration=round(duration, 3))
        done = len(self.outcomes)
        self.say(f"{item.tag} {status.value} in {duration:.1f}s"
                 + (f": {reason}" if status is not Status.DONE else "") + f" [{done} finished]")

    # --- helpers ------------------------------------------------------------
    def _skip(self, item: Item, reason: str) -> None:
        self.say(f"{item.tag} skipped: {reason}")
        self._outcome(Outcome(item.kind.value, item.id, item.tag, Status.SKIPPED, reason=reason))

    def _outcome(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def say(self, text: str) -> None:
        self.console.say(text)

    def _rel(self, path: Path) -> str:
        return os.path.relpath(path, self.ws.root)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """While the run lasts, SIGINT/SIGTERM become events on the queue."""

        def post(signum: int, frame: FrameType | None) -> None:
            self.events.put(("signal", "", signum))

        saved: dict[signal.Signals, Any] = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                saved[sig] = signal.signal(sig, post)
        except ValueError:  # not the main thread: leave signals alone
            pass
        try:
            yield
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)


def _why(status: Status, code: int) -> str:
    if status is Status.TIMEOUT:
        return "timed out; its process group was ended, checkpoint kept"
    if status is Status.INTERRUPTED:
        return "interrupted; checkpoint kept"
    if status is Status.DONE:
        return ""
    return f"worker exited with code {code} and no result file"
