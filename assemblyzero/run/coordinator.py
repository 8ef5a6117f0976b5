"""The coordinator: at most N workers at once, each item exactly once (docs/design.md).

One thread per running worker waits on its process and posts the exit on a
queue; signal handlers post on the same queue; the loop blocks on it with a
timeout set by the nearest deadline (a `--timeout`, a SIGKILL after
`--grace`, the end of a credential pause, a lease heartbeat). No busy loop.
"""

from __future__ import annotations

import errno
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

from assemblyzero import backlog
from assemblyzero.backlog import Item, Skipped
from assemblyzero.constants import (
    ABANDON_WAIT,
    DEFAULT_GRACE,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    ENV_CREDENTIAL,
    ENV_DRAFTER,
    ENV_LIFELINE_FD,
    ENV_REVIEWER,
    ENV_RUN_DIR,
    ENV_SECRET_FD,
    ENV_STATE_DIR,
    ENV_WORKFLOW_DB,
    EXIT_AUTH_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_DONE,
    EXIT_OK,
    EXIT_RATE_LIMITED,
    EXIT_TERMINATED,
    LEASE_HEARTBEAT,
    LOOP_WAIT_MAX,
    PROGRESS_EVERY,
    SECRET_ENV_VARS,
)
from assemblyzero.fileio import OutsideWorkspace
from assemblyzero.ids import Kind, slug
from assemblyzero.keys import flock
from assemblyzero.keys.credentials import CredentialFile
from assemblyzero.keys.lease_record import process_start
from assemblyzero.keys.leases import Busy, state_dir
from assemblyzero.keys.pool import Grant, NoCredential, Pool
from assemblyzero.keys.redact import Redactor
from assemblyzero.results import Status, WorkerResult, status_from_exit
from assemblyzero.run import procs
from assemblyzero.run.record import Event, Outcome, RunRecord, print_summary, summary_data
from assemblyzero.ui.console import COORDINATOR_TAG, Active, Console, Progress
from assemblyzero.ui.prefix_tee import PALETTE
from assemblyzero.workspace import Workspace

PAUSE_MESSAGE = "Credential pool exhausted. Pausing..."


@dataclass(frozen=True)
class RunOptions:
    parallel: int = 1
    drafter: str = DEFAULT_MODEL
    reviewer: str = DEFAULT_MODEL
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    timeout: float = DEFAULT_TIMEOUT
    grace: float = DEFAULT_GRACE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    publish: str | None = None  # "github": the issue workflow also creates the issue there
    source: str = "files"  # recorded so that retry-failed reruns from the same place
    label: str | None = None
    progress_every: float = PROGRESS_EVERY  # seconds between progress lines


@dataclass
class _Running:
    item: Item
    proc: procs.Proc
    lock: int  # fd holding the item's flock
    started: float
    log: Path
    grant: Grant | None = None
    hue: int = 0  # the colour of its prefix
    ended_by: Status | None = None  # TIMEOUT or INTERRUPTED when we stopped it
    kill_at: float | None = None  # when SIGKILL follows our SIGTERM


class Coordinator:
    def __init__(
        self, ws: Workspace, opts: RunOptions, console: Console | None = None,
        spawn: procs.Spawn = procs.spawn, clock: Callable[[], float] = time.monotonic,
        pool: Pool | None = None, creds: CredentialFile | None = None,
    ) -> None:
        self.ws, self.opts, self.spawn, self.clock, self.pool = ws, opts, spawn, clock, pool
        self.console = console or Console()
        # Every credential listed, leased or not: its variable is hidden from workers and
        # its value masked in everything the coordinator prints or writes.
        creds = creds or (pool.creds if pool else None)
        self.hidden_env = set(SECRET_ENV_VARS) | {
            c.key_env for c in (creds.entries if creds else ()) if c.key_env}
        self.scrub = Redactor(creds.secrets.values() if creds else ())
        self.crashed = False
        self.events: SimpleQueue[tuple[str, str, int]] = SimpleQueue()
        self.queue: deque[Item] = deque()
        self.running: dict[str, _Running] = {}
        self.outcomes: list[Outcome] = []
        self.attempts: dict[str, int] = {}
        self.limited: dict[str, int] = {}  # 429s per item
        self.tokens_seen: dict[str, list[int]] = {}  # per item, as of its last attempt
        self.key_tokens_seen: dict[str, dict[str, list[int]]] = {}  # per item and key, likewise
        self.stopped_by: int | None = None  # the signal that stopped the run
        self.paused = False  # items wait for a key (ends once none has to wait any more)
        self.granted = False  # a key was granted since the pause began
        self.pause_at: float | None = None  # no new worker before this (pool exhausted)
        self.next_beat = 0.0
        self.next_progress = float("inf")  # set when the run starts
        self.total, self.began = 0, 0.0
        # Items finished so far, by how (for the progress line and the live area).
        self.tally = {"done": 0, "failed": 0, "skipped": 0, "interrupted": 0}
        self.worked = 0.0  # summed durations of the done items, for the ETA

    # --- the run ------------------------------------------------------------
    def run(self, items: list[Item], label: str, skipped: Sequence[Skipped] = ()) -> int:
        """Run `items`; print and record the summary; return the exit code.

        `skipped` are the items refused while planning (bad file names):
        reported here and in the summary, never run.
        """
        self.ws.ensure_state_dirs()
        self.record = RunRecord(self.ws.runs, label)
        if self.pool:
            self.pool.run_id = self.record.run_id
        self.width = max(len(f"[{t}]") for t in [COORDINATOR_TAG, *(i.tag for i in items)])
        self.console.width = self.width
        started, wall = time.time(), self.clock()
        self.record.event(Event.RUN_START, label=label, items=[i.tag for i in items],
                          ids=[i.id for i in items], parallel=self.opts.parallel,
                          source=self.opts.source, label_filter=self.opts.label,
                          publish=self.opts.publish,
                          pid=os.getpid(), pid_start=process_start(os.getpid()))
        how = f"{self.opts.parallel} at a time" if self.opts.parallel > 1 else "one at a time"
        self.say(f"run {self.record.run_id}: {len(items)} item(s), {how}; "
                 f"logs in {os.path.relpath(self.record.dir, self.ws.root)}")
        for refused in skipped:
            self.say(f"skipped {refused.name}: {refused.reason}")
            self._outcome(Item(refused.kind, refused.name), Status.SKIPPED, refused.reason,
                          tag=refused.name)
        self.queue.extend(items)
        self.total, self.began = len(items), self.clock()
        if not self.console.live:  # a live console shows progress all the time
            self.next_progress = self.began + self.opts.progress_every
        self.lifeline, keep_alive = procs.lifeline()
        with self._signals():
            try:
                self.console.start(self._progress(self.began))
                self._loop()
            except Exception as exc:  # a bug or a broken disk: stop cleanly, keep the record
                self.crashed = True
                journal = os.path.relpath(self.record.journal, self.ws.root)
                self.say(f"error: {type(exc).__name__}: {exc}; stopping every worker (the "
                         f"traceback is in {journal}); a rerun resumes each item from its "
                         "checkpoint")
                self.record.event(Event.ERROR, error=self.scrub(repr(exc)),
                                  traceback=self.scrub(traceback.format_exc()))
            finally:  # whatever happened, no worker outlives its supervisor
                try:
                    self._abandon()
                    os.close(self.lifeline)
                    os.close(keep_alive)
                    while self.queue:  # never started: the run was stopped first
                        self._outcome(self.queue.popleft(), Status.SKIPPED,
                                      "not started: the run was interrupted")
                    self._show()
                finally:  # the terminal gets its cursor back
                    self.console.stop()
        code = self._exit_code()
        if self.record.broken and code == EXIT_OK:  # done, but the record is not whole
            code = EXIT_NOT_DONE
        meta = {"label": label, "repo": str(self.ws.root),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "wall_seconds": round(self.clock() - wall, 3), "parallel": self.opts.parallel,
                "drafter": self.scrub(self.opts.drafter),
                "reviewer": self.scrub(self.opts.reviewer)}
        keys = list(self.pool.stats.values()) if self.pool else []
        summary = summary_data(self.record, self.outcomes, keys, meta, code)
        path: Path | None = None
        try:
            path = self.record.write_summary(summary)
        except OSError as exc:  # a full disk: the summary is still shown, the exit says so
            self.record.broken = self.record.broken or (
                f"cannot write {self.record.dir / 'summary.json'}: {exc.strerror or exc}")
            code = code if code != EXIT_OK else EXIT_NOT_DONE
        self.record.event(Event.RUN_END, exit_code=code, wall_seconds=meta["wall_seconds"])
        print_summary(self.say, summary, self.outcomes, self.ws.root, path)
        if self.record.broken:
            self.say(f"error: {self.record.broken}; this run's record is incomplete (exit "
                     f"{code}): free some space, then run retry-failed (every unfinished item "
                     "resumes from its checkpoint)")
        return code

    def _loop(self) -> None:
        while self.queue or self.running:
            while (self.stopped_by is None and self.queue and not self._paused()
                   and len(self.running) < self.opts.parallel):
                item = self.queue.popleft()
                try:
                    self._start(item)
                except Exception as exc:  # this item cannot start (disk, lock, ...): the rest go on
                    self._cannot_start(item, exc)
                self._show()
            if self.paused and not self._paused():  # no item waits for a key any more
                self.paused = False
                if self.granted and self.stopped_by is None:  # not just stopped or refused
                    self.say("a credential is free again; resuming")
                    self.record.event(Event.RESUME)
            self._show()
            if self.running or (self.queue and self._paused() and self.stopped_by is None):
                self._wait_one()
            elif self.stopped_by is not None:
                break

    def _exit_code(self) -> int:
        if self.stopped_by is not None:
            return EXIT_TERMINATED if self.stopped_by == signal.SIGTERM else EXIT_INTERRUPTED
        if self.crashed:
            return EXIT_NOT_DONE
        ok = (Status.DONE, Status.SKIPPED)
        return EXIT_OK if all(o.status in ok for o in self.outcomes) else EXIT_NOT_DONE

    # --- one worker ---------------------------------------------------------
    def _start(self, item: Item) -> None:
        key = slug(item.kind, item.id)
        lock = flock.try_lock(self.ws.item_lock(item.kind, item.id))
        if lock is None:
            self._skip(item, "taken by another run (its item lock is held)")
            return
        try:
            pending = backlog.is_pending(self.ws, item)
            ready, grant = self._lease(item, lock) if pending else (False, None)
        except BaseException:
            flock.unlock(lock)
            raise
        if not pending:
            flock.unlock(lock)
            self._skip(item, "no longer pending (done by another run?)")
            return
        if not ready:
            return
        try:
            if item.source and item.document is not None:  # a GitHub issue's text, under the lock
                self.ws.write_text(item.source, item.document)
            log = self.record.log_path(key)
            hue = min(set(range(len(PALETTE))) - {r.hue for r in self.running.values()},
                      default=0)  # the first colour no running worker has
            argv = procs.worker_argv(item.tag, self.width, log, self._worker_args(item),
                                     color=self.console.live, hue=hue)
            env, fds = self._worker_env(item, grant)
            sink = self.console.sink(item.tag, self.scrub)
            output = procs.output_pipe() if sink else None
            try:
                if output:
                    proc = self.spawn(argv, env, fds, stdout=output[1])
                else:
                    proc = self.spawn(argv, env, fds)
            except BaseException:
                if output:
                    os.close(output[0])
                raise
            finally:
                # The secrets pipe and the output's write end are the child's alone now.
                for fd in (*fds[1:], *(output[1:] if output else ())):
                    os.close(fd)
        except BaseException:  # no worker: nothing may stay held
            self._release(grant, lock, succeeded=False)
            raise
        # First: whatever fails next, its exit (after its last line) is seen.
        procs.watch(proc, key, self.events, (output[0], sink) if output and sink else None,
                    grace=self.opts.grace)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.running[key] = _Running(item, proc, lock, self.clock(), log, grant, hue)
        self.record.event(Event.START, item=item.tag, pid=proc.pid, attempt=self.attempts[key],
                          credentials=list(grant.names) if grant else [])

    def _cannot_start(self, item: Item, exc: Exception) -> None:
        key = slug(item.kind, item.id)
        r = self.running.pop(key, None)
        if r is not None:  # started after all: it is watched, leave it to _ended
            self.running[key] = r
            return
        self._outcome(item, Status.FAILED, f"could not start: {type(exc).__name__}: {exc}")
        self.say(f"{item.tag} could not start: {self.scrub(str(exc))}; {_start_fix(exc)}, "
                 "then run retry-failed")

    def _lease(self, item: Item, lock: int) -> tuple[bool, Grant | None]:
        """(can start now, the item's credentials or None if it needs none)."""
        if self.pool is None:
            return True, None
        try:
            got = self.pool.take(item.tag)
        except NoCredential as exc:
            flock.unlock(lock)
            self._outcome(item, Status.FAILED, str(exc))
            self.say(f"{item.tag} failed: {exc}")
            return False, None
        if isinstance(got, Busy):
            flock.unlock(lock)
            self.queue.appendleft(item)
            if not self.paused:  # once per pause: while items keep waiting, it goes on
                self.paused, self.granted = True, False
                self.say(PAUSE_MESSAGE)
                self.record.event(Event.PAUSE, reason=got.reason)
            self.pause_at = self.clock() + max(0.0, (got.until or 0.0) - time.time())
            return False, None
        self.pause_at, self.granted = None, True
        return True, got

    def _worker_env(
        self, item: Item, grant: Grant | None
    ) -> tuple[dict[str, str], tuple[int, ...]]:
        """The worker's environment (no secret in it) and the fd its secrets come on."""
        env = {k: v for k, v in os.environ.items() if k not in self.hidden_env}
        env[ENV_WORKFLOW_DB] = str(self.ws.checkpoint(item.kind, item.id))
        env[ENV_RUN_DIR] = str(self.record.dir)
        env[ENV_LIFELINE_FD] = str(self.lifeline)
        env[ENV_DRAFTER], env[ENV_REVIEWER] = self.opts.drafter, self.opts.reviewer
        if grant is None or self.pool is None:
            return env, (self.lifeline,)
        env[ENV_CREDENTIAL] = ",".join(grant.names)
        keys = {name: {"secret": self.pool.creds.secrets[name],
                       "provider": self.pool.credential(name).provider,
                       "base_url": self.pool.credential(name).base_url} for name in grant.names}
        # Every known secret, so the worker can mask any of them in what it writes.
        mask = [v for v in self.pool.creds.secrets.values() if v]
        fd = procs.secret_pipe({"keys": keys, "mask": mask})
        env[ENV_SECRET_FD] = str(fd)
        return env, (self.lifeline, fd)

    def _worker_args(self, item: Item) -> list[str]:
        """Every value as `--opt=value`: an id such as `--help` or `-x` stays a value.

        The model specs go in the environment instead (ENV_DRAFTER/ENV_REVIEWER):
        a spec may carry a key (`cmd:tool --key ...`), and argv is public.
        """
        o = self.opts
        args = [f"--kind={item.kind.value}", f"--id={item.id}", f"--repo={self.ws.root}",
                f"--run-dir={self.record.dir}", f"--max-iterations={o.max_iterations}"]
        if item.source:
            args.append(f"--input={item.source}")
        if o.publish and item.kind is Kind.ISSUE:
            args.append(f"--publish={o.publish}")
        return args

    def _ended(self, key: str, code: int) -> None:
        r = self.running.pop(key)
        item, duration = r.item, self.clock() - r.started
        result = WorkerResult.read(self.record.result_path(key))
        status = result.status if result else status_from_exit(code)
        reason = result.reason if result and result.reason else _why(status, code)
        if r.ended_by is not None and status is not Status.DONE:
            status, reason = r.ended_by, _why(r.ended_by, code)
        self._release(r.grant, r.lock, succeeded=status is Status.DONE)
        self._count_tokens(key, r.grant, result)
        self.record.event(Event.END, item=item.tag, status=status.value, exit_code=code,
                          duration=round(duration, 3))
        self.pause_at = None  # a lease came back: try again now
        if r.ended_by is None and self._retry(r, result, code):
            return
        self._outcome(item, status, reason, duration, result, r)
        if status is Status.TIMEOUT and item.kind is Kind.LLD:  # the worker only saw a SIGTERM
            from assemblyzero.workflow.lld_index import record_or_warn

            record_or_warn(self.ws, item.id, status.value, self.say, reason=reason)
        self.say(f"{item.tag} {status.value} in {duration:.1f}s"
                 + (f": {self.scrub(reason)}" if status is not Status.DONE else "")
                 + f" [{len(self.outcomes)} finished]")

    def _retry(self, r: _Running, result: WorkerResult | None, code: int) -> bool:
        """A 429 or 401/403: rest or disable that key, run the item again if attempts remain."""
        retry = result.retry if result else None
        if retry is None and code in (EXIT_RATE_LIMITED, EXIT_AUTH_FAILED) and r.grant:
            kind = "rate_limited" if code == EXIT_RATE_LIMITED else "auth"
            retry = {"kind": kind, "credential": r.grant.names[0], "retry_after": None}
        if retry is None or self.pool is None or r.grant is None:
            return False
        key, name = slug(r.item.kind, r.item.id), retry["credential"] or r.grant.names[0]
        if retry["kind"] == "rate_limited":
            self.limited[key] = self.limited.get(key, 0) + 1
            rest = self.pool.rate_limited(name, retry["retry_after"]) - time.time()
            what = f"got a 429 on {name}, which rests {rest:.1f}s"
        else:
            self.pool.disable(name, "refused (401/403)")
            what = f"was refused (401/403) by {name}, now disabled for this run"
        if self.attempts[key] >= self.opts.max_attempts:
            self.say(f"{r.item.tag} {what}; no attempts left ({self.opts.max_attempts}): "
                     "run retry-failed once the key has rested, or raise --max-attempts")
            return False
        self.record.event(Event.RETRY, item=r.item.tag, credential=name, kind=retry["kind"])
        self.say(f"{r.item.tag} {what}; resuming from its checkpoint "
                 f"(attempt {self.attempts[key] + 1} of {self.opts.max_attempts})")
        self.queue.appendleft(r.item)
        return True

    def _count_tokens(self, key: str, grant: Grant | None, result: WorkerResult | None) -> None:
        """Charge each key of the grant the tokens its own calls used in this attempt.

        The result holds the item's running totals, per key too: what grew since the
        item's previous attempt is this attempt's.
        """
        if not (grant and self.pool and result):
            return
        before = self.tokens_seen.get(key, [0, 0])
        self.tokens_seen[key] = list(result.tokens)
        if result.tokens_by_key is None:
            # A result without per-key counts (an older worker): one key made every call;
            # of several keys, which made which is unknown, so none is charged rather than
            # each the whole.
            if len(grant.names) == 1:
                self._charge(grant.names[0], result.tokens, before)
            return
        seen = self.key_tokens_seen.setdefault(key, {})
        for name, used in result.tokens_by_key.items():
            if name in grant.names:  # others are earlier attempts' (already charged) or runs'
                self._charge(name, used, seen.get(name, [0, 0]))
            seen[name] = list(used)

    def _charge(self, name: str, used: list[int], before: list[int]) -> None:
        if self.pool and name in self.pool.stats:
            for n in (0, 1):
                self.pool.stats[name].tokens[n] += max(0, used[n] - before[n])

    def _release(self, grant: Grant | None, lock: int, succeeded: bool) -> None:
        try:
            if grant and self.pool:
                self.pool.give_back(grant, succeeded)
        finally:
            flock.unlock(lock)

    # --- waiting ------------------------------------------------------------
    def _paused(self) -> bool:
        return self.pause_at is not None and self.clock() < self.pause_at

    def _wait_one(self) -> None:
        deadlines = [self._deadline(r) for r in self.running.values()]
        if self.queue and self.pause_at is not None:
            deadlines.append(self.pause_at)
        if self.pool and self.running:
            deadlines.append(self.next_beat)
        if self.running:
            deadlines.append(self.next_progress)
        deadline = min(deadlines, default=float("inf"))
        # At most LOOP_WAIT_MAX: the queue refuses a timeout past threading.TIMEOUT_MAX, and
        # the loop computes its deadlines again anyway.
        wait = None if deadline == float("inf") else min(LOOP_WAIT_MAX,
                                                         max(0.0, deadline - self.clock()))
        try:
            what, key, value = self.events.get(timeout=wait)
        except Empty:
            self._enforce_deadlines()
            return
        if what == "signal":
            self._on_signal(value)
        else:
            self._ended(key, value)
        self._enforce_deadlines()  # a steady stream of exits must not postpone a deadline

    def _deadline(self, r: _Running) -> float:
        if r.kill_at is not None:
            return r.kill_at
        return r.started + self.opts.timeout if r.ended_by is None else float("inf")

    def _enforce_deadlines(self) -> None:
        now = self.clock()
        if self.running and now >= self.next_progress:
            self.say(self._progress(now).line())
            self.next_progress = now + self.opts.progress_every
        if self.pool and self.running and now >= self.next_beat:
            self.pool.heartbeat([r.grant for r in self.running.values() if r.grant])
            self.next_beat = now + LEASE_HEARTBEAT
        for r in self.running.values():
            if r.kill_at is not None and now >= r.kill_at:
                procs.kill_group(r.proc.pid)
                r.kill_at = None
            elif r.ended_by is None and now >= r.started + self.opts.timeout:
                self.say(f"{r.item.tag} timed out after {self.opts.timeout:g}s; stopping it "
                         "(raise --timeout if the model is only slow)")
                self._stop(r, Status.TIMEOUT)

    def _progress(self, now: float) -> Progress:
        """The run as the progress line and the live area show it."""
        eta = None
        if self.tally["done"]:  # from the done items' mean duration, over the parallel slots
            mean = self.worked / self.tally["done"]
            left = sum(max(0.0, mean - (now - r.started)) for r in self.running.values())
            slots = max(1, min(self.opts.parallel, len(self.running) + len(self.queue)))
            eta = (left + mean * len(self.queue)) / slots
        running = tuple(Active(r.item.tag, ",".join(r.grant.names) if r.grant else "-",
                               now - r.started, r.hue) for r in self.running.values())
        return Progress(self.total, pending=len(self.queue), running=running,
                        elapsed=now - self.began, eta=eta, paused=self._paused(), **self.tally)

    def _stop(self, r: _Running, why: Status) -> None:
        r.ended_by = r.ended_by or why
        procs.terminate_group(r.proc.pid)
        r.kill_at = self.clock() + self.opts.grace

    def _abandon(self) -> None:
        """After an unexpected error in the loop: kill what still runs, record it.

        Their exits are taken from the queue, where each comes after the
        worker's last line was shown; a thread that never reports is skipped
        after ABANDON_WAIT and its process asked directly.
        """
        for r in self.running.values():
            procs.kill_group(r.proc.pid)
            r.ended_by = r.ended_by or Status.INTERRUPTED
        until = self.clock() + ABANDON_WAIT
        while self.running and (left := until - self.clock()) > 0:
            try:
                what, key, code = self.events.get(timeout=left)
            except Empty:
                break
            if what == "exit" and key in self.running:
                self._end_abandoned(key, code)
            elif what == "signal":  # the exit code says the user stopped it
                self.stopped_by = self.stopped_by or code
        for key, r in list(self.running.items()):
            self._end_abandoned(key, r.proc.wait())

    def _end_abandoned(self, key: str, code: int) -> None:
        try:
            self._ended(key, code)
        except Exception as exc:  # keep going: every other worker must be ended too
            self.record.event(Event.ERROR, error=self.scrub(repr(exc)),
                              traceback=self.scrub(traceback.format_exc()))

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

    # --- helpers ------------------------------------------------------------
    def _skip(self, item: Item, reason: str) -> None:
        self.say(f"{item.tag} skipped: {reason}")
        self._outcome(item, Status.SKIPPED, reason)

    def _outcome(self, item: Item, status: Status, reason: str, duration: float = 0.0,
                 result: WorkerResult | None = None, r: _Running | None = None,
                 tag: str | None = None) -> None:
        key = slug(item.kind, item.id)
        if status is Status.DONE:
            self.tally["done"] += 1
            self.worked += duration
        elif status in (Status.FAILED, Status.TIMEOUT, Status.HALTED):
            self.tally["failed"] += 1
        elif tag is None:  # not a file refused while planning (those are not run items)
            self.tally[status.value] += 1  # skipped, interrupted
        self.outcomes.append(Outcome(
            item.kind.value, item.id, tag or item.tag, status, duration=duration,
            iterations=result.iterations if result else 0,
            model_calls=result.model_calls if result else 0,
            tokens=(result.tokens[0], result.tokens[1]) if result else (0, 0),
            attempts=self.attempts.get(key, 0), rate_limited=self.limited.get(key, 0),
            credential=",".join(r.grant.names) if r and r.grant else None,
            reason=" ".join(self.scrub(reason).split()), log=str(r.log) if r else None))
        if r is None:  # no worker ran (skipped, no credential, ...): the journal says so
            self.record.event(Event.END, item=tag or item.tag, status=status.value)

    def say(self, text: str) -> None:
        """A line of ours; a reason quoting a model's stderr may hold escapes: none pass."""
        self.console.say(self.scrub.line(text))

    def _show(self) -> None:
        """Tell the console how the run stands (the live area redraws from it)."""
        self.console.update(self._progress(self.clock()))

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


def _start_fix(exc: Exception) -> str:
    """What to check when an item could not start: the lease folder, or the workspace's."""
    where = str(getattr(exc, "filename", None) or "")
    leases = state_dir() / "leases"
    if where and Path(where).is_relative_to(leases):
        return (f"check that the lease folder {leases} is writable (or point {ENV_STATE_DIR} "
                "at one that is)")
    if isinstance(exc, OutsideWorkspace):
        return "replace that symlink with a real file or folder"
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
        return f"{where or 'that file'} is a symlink, which is never followed: remove it"
    return "check that the workspace's .assemblyzero/ and logs/ are writable"


def _why(status: Status, code: int) -> str:
    if status is Status.TIMEOUT:
        return "timed out; its process group was ended, checkpoint kept"
    if status is Status.INTERRUPTED:
        return "interrupted; checkpoint kept"
    if status is Status.DONE:
        return ""
    return f"worker exited with code {code} and no result file"
