"""The coordinator: at most N workers at once, each item exactly once (docs/design.md).

It joins four parts and decides nothing they can: the scheduling state
(run/scheduler.py: what may start, what is due, how long to wait), the
backend (run/backend.py; run/local.py runs processes), the key gate
(keys/gate.py) and the run record (run/record.py, run/summary.py). Its loop
blocks on one inbox, where the backend posts each attempt's end and the
signal handlers post SIGINT/SIGTERM, for as long as the scheduler says
nothing is due. No busy loop.
"""

from __future__ import annotations

import errno
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from assemblyzero import backlog, spendfiles
from assemblyzero.backlog import Item, Skipped
from assemblyzero.constants import (
    ABANDON_WAIT,
    ENV_STATE_DIR,
    EXIT_INTERRUPTED,
    EXIT_NOT_DONE,
    EXIT_OK,
    EXIT_TERMINATED,
    LEASE_HEARTBEAT,
    LIVE_KEYS_EVERY,
    SECRET_ENV_VARS,
)
from assemblyzero.cost import Spend, estimate_item, money
from assemblyzero.fileio import OutsideWorkspace
from assemblyzero.ids import Kind, slug
from assemblyzero.journal import Event
from assemblyzero.keys import flock
from assemblyzero.keys.credentials import CredentialFile
from assemblyzero.keys.gate import KeyGate, Wait
from assemblyzero.keys.lease_record import process_start
from assemblyzero.keys.leases import state_dir
from assemblyzero.keys.pool import Grant, NoCredential, Pool
from assemblyzero.keys.redact import Redactor
from assemblyzero.results import Status, WorkerResult, status_from_exit
from assemblyzero.run import procs
from assemblyzero.run.backend import Backend, Began, Finished, Handle, Inbox, Signalled
from assemblyzero.run.budget import Budget
from assemblyzero.run.jobs import RunOptions, job_for
from assemblyzero.run.local import LocalBackend
from assemblyzero.run.record import Outcome, RunRecord
from assemblyzero.run.scheduler import Action, Kill, Limits, Scheduler, Slot, Stop, Tick, Wind
from assemblyzero.run.summary import finish
from assemblyzero.ui.console import COORDINATOR_TAG, Console, Progress
from assemblyzero.ui.prefix_tee import PALETTE
from assemblyzero.workflow import lld_index
from assemblyzero.workspace import Workspace

PAUSE_MESSAGE = "Credential pool exhausted. Pausing..."
HOST_MAX = 255  # characters of a host name journaled (it comes from another machine)


@dataclass(frozen=True)
class _Attempt:
    """A started attempt: the backend's handle, and what it holds until it ends."""

    handle: Handle
    lock: int  # fd holding the item's flock
    grant: Grant | None
    log: Path
    tag: str = ""


class Coordinator:
    def __init__(
        self, ws: Workspace, opts: RunOptions, console: Console | None = None,
        spawn: procs.Spawn = procs.spawn, clock: Callable[[], float] = time.monotonic,
        pool: Pool | None = None, creds: CredentialFile | None = None,
        backend: Backend | None = None, inbox: Inbox | None = None, cluster: Any = None,
    ) -> None:
        """`backend` runs the workers (default: local processes started with `spawn`, or
        with `cluster` (cluster/connect.py) tasks on it); `inbox` is where it posts their
        ends; `clock` serves every time decision."""
        self.ws, self.opts, self.spawn, self.clock = ws, opts, spawn, clock
        self.console = console or Console()
        self.gate = KeyGate(pool, clock, opts.pacing)
        # Every credential listed, leased or not: its variable is hidden from workers and
        # its value masked in everything the coordinator prints or writes.
        creds = creds or (pool.creds if pool else None)
        self.cluster = cluster
        # Where each key's secret is found (its variable's name), for a cluster's hosts.
        self.key_env = {c.name: c.key_env for c in (creds.entries if creds else ())}
        self.hidden_env = set(SECRET_ENV_VARS) | {
            c.key_env for c in (creds.entries if creds else ()) if c.key_env}
        self.scrub = Redactor(creds.secrets.values() if creds else ())
        self.inbox = inbox or Inbox()
        self._backend = backend
        self.crashed = False
        self.running: dict[str, _Attempt] = {}  # the started attempts, by item key
        self.outcomes: list[Outcome] = []
        live = self.console.live  # a live console shows progress all the time
        self.sched = Scheduler(Limits(
            opts.parallel, opts.timeout, opts.grace, opts.max_attempts,
            # live: no lines, but the area's key budgets are brought up to date this often
            progress_every=(LIVE_KEYS_EVERY if pool and opts.pacing else None) if live
            else opts.progress_every,
            heartbeat_every=LEASE_HEARTBEAT if pool else None), clock)
        self.budget = Budget(opts.budget) if opts.budget is not None else None
        self.sched.budget = self.budget
        self.spend: dict[str, Spend] = {}  # what each item's attempts spent in this run
        self.unstarted_by_budget = 0
        self._warned_unpriced = False

    # --- the run ------------------------------------------------------------
    def run(self, items: list[Item], label: str, skipped: Sequence[Skipped] = ()) -> int:
        """Run `items`; print and record the summary; return the exit code.

        `skipped` are the items refused while planning (bad file names):
        reported here and in the summary, never run.
        """
        self.ws.ensure_state_dirs()
        self.record = RunRecord(self.ws.runs, label)
        if pool := self.gate.pool:
            pool.run_id = self.record.run_id
        self.console.width = max(len(f"[{t}]") for t in [COORDINATOR_TAG,
                                                         *(i.tag for i in items)])
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
        self._plan_budget(items)
        self.sched.begin(items)
        self.backend = self._backend or self._new_backend()
        with self._signals():
            try:
                self.console.start(self._progress())
                self._loop()
            except Exception as exc:  # a bug or a broken disk: stop cleanly, keep the record
                self.crashed = True
                journal = os.path.relpath(self.record.journal, self.ws.root)
                self.say(f"error: {type(exc).__name__}: {exc}; stopping every worker (the "
                         f"traceback is in {journal}); a rerun resumes each item from its "
                         "checkpoint")
                self._error(exc)
            finally:  # whatever happened, no worker outlives its supervisor
                try:
                    self._abandon()
                    self.backend.close()
                    self._unstarted()
                    self._show()
                finally:  # the terminal gets its cursor back
                    self.console.stop()
        return self._finish(label, started, self.clock() - wall)

    def _new_backend(self) -> Backend:
        if self.cluster is None:
            return LocalBackend(self.inbox.put, self.console, self.scrub, self.hidden_env,
                                self.opts.grace, self.spawn)
        from assemblyzero.cluster.backend import ClusterBackend

        return ClusterBackend(self.cluster, self.inbox.put, self.console, self.scrub, self.ws,
                              self.record.run_id, self.key_env, self.opts.grace,
                              self.opts.timeout, self.say)

    def _plan_budget(self, items: list[Item]) -> None:
        """Each item's estimate, for the budget's reserve until an item is done."""
        if self.budget is None:
            return
        for item in items:
            usd = estimate_item(*self.opts.prices, backlog.input_size(self.ws, item))
            self.budget.priors[slug(item.kind, item.id)] = usd or 0.0
        mean = sum(self.budget.priors.values()) / max(1, len(self.budget.priors))
        self.say(f"budget {money(self.budget.limit, exact=True)}: about {money(mean)} per item "
                 "(an estimate); no item starts once what was spent and what the running "
                 "items are expected to spend reach it")

    def _unstarted(self) -> None:
        """The items never started: the run was stopped, or its budget reached, first."""
        reached = self.budget is not None and self.budget.reached
        items = self.sched.unstarted()
        if reached:
            self.unstarted_by_budget = len(items)
        why = "the budget was reached" if reached else "the run was interrupted"
        for item in items:
            self._outcome(item, Status.SKIPPED, f"not started: {why}")

    def _finish(self, label: str, started: float, wall: float) -> int:
        """Write summary.json, print the summary; the run's exit code."""
        meta = {"label": label, "repo": str(self.ws.root),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "wall_seconds": round(wall, 3), "parallel": self.opts.parallel,
                "drafter": self.scrub(self.opts.drafter),
                "reviewer": self.scrub(self.opts.reviewer),
                "budget": self._budget_data()}
        return finish(self.record, self.outcomes, self.gate.stats(), meta, self._exit_code(),
                      self.say, self.ws.root)

    def _budget_data(self) -> dict[str, Any] | None:
        """summary.json's `budget`: the limit, what was spent, whether it was reached."""
        if self.budget is None:
            return None
        stopped = sum(1 for o in self.outcomes if o.stopped_by_budget)
        return {"usd": self.budget.limit, "spent_usd": round(self.budget.total(), 6),
                "reached": self.budget.reached, "not_started": self.unstarted_by_budget,
                "stopped": stopped}

    def _loop(self) -> None:
        while self.sched.active:
            while (item := self.sched.next_item()) is not None:
                try:
                    self._start(item)
                except Exception as exc:  # this item cannot start (disk, lock, ...): the rest go on
                    self._cannot_start(item, exc)
                self._show()
            if self.sched.resumed():  # no item waits for a key any more
                self.say("a credential is free again; resuming")
                self.record.event(Event.RESUME)
            self._show()
            if self.sched.active:
                self._wait_one()

    def _exit_code(self) -> int:
        if self.sched.stopped_by is not None:
            return EXIT_TERMINATED if self.sched.stopped_by == signal.SIGTERM else EXIT_INTERRUPTED
        if self.crashed or self.unstarted_by_budget:
            return EXIT_NOT_DONE
        ok = (Status.DONE, Status.SKIPPED)
        return EXIT_OK if all(o.status in ok for o in self.outcomes) else EXIT_NOT_DONE

    # --- one attempt --------------------------------------------------------
    def _start(self, item: Item) -> None:
        """Under the item's lock, with its keys: start its worker. Until the worker runs,
        whatever this took is given back here; after that, when it ends (_ended)."""
        lock = flock.try_lock(self.ws.item_lock(item.kind, item.id))
        if lock is None:
            self._skip(item, "taken by another run (its item lock is held)")
            return
        grant: Grant | None = None
        handle: Handle | None = None
        later: list[Callable[[], None]] = []  # what to say once the lock is given back
        try:
            if not backlog.is_pending(self.ws, item):
                later.append(partial(self._skip, item, "no longer pending (done by another run?)"))
                return
            ready, grant = self._keys(item, later)
            if not ready:
                return
            backlog.write_input(self.ws, item)  # a GitHub issue's text, under the lock
            hue = self.sched.free_hue(len(PALETTE))
            job = job_for(item, self.ws, self.record, self.opts, grant, self.gate.secrets(grant),
                          hue)
            self.record.clear_result(job.key)  # an earlier attempt's must not pass for this one's
            handle = self.backend.start(job)
        finally:
            if handle is None:
                self._release(grant, lock, succeeded=False)
                for say in later:
                    say()
        slot = self.sched.started(item, grant.names if grant else (), hue)
        slot.queued = getattr(handle, "queued", False)  # a cluster task: until it begins
        self.running[job.key] = _Attempt(handle, lock, grant, job.log, item.tag)
        self.record.event(Event.START, item=item.tag, pid=handle.pid,
                          attempt=self.sched.attempts[job.key],
                          credentials=list(grant.names) if grant else [])

    def _keys(self, item: Item, later: list[Callable[[], None]]) -> tuple[bool, Grant | None]:
        """(can start now, the item's keys or None if it needs none). It cannot start
        while it waits for a key, or when none is usable, which fails it. What there is
        to say goes on `later`."""
        try:
            got = self.gate.take(item.tag)
        except NoCredential as exc:
            later.append(partial(self._no_credential, item, exc))
            return False, None
        if isinstance(got, Wait):
            if self.sched.hold(item, got.until):  # once per pause, however many items wait
                later.append(partial(self._paused, got.reason))
            return False, None
        if got is not None:
            self.sched.granted()
        return True, got

    def _no_credential(self, item: Item, exc: NoCredential) -> None:
        self._outcome(item, Status.FAILED, str(exc))
        self.say(f"{item.tag} failed: {exc}")

    def _paused(self, reason: str) -> None:
        self.say(PAUSE_MESSAGE)
        self.record.event(Event.PAUSE, reason=reason)

    def _cannot_start(self, item: Item, exc: Exception) -> None:
        if slug(item.kind, item.id) in self.running:  # started after all: _ended sees it
            return
        self._outcome(item, Status.FAILED, f"could not start: {type(exc).__name__}: {exc}")
        self.say(f"{item.tag} could not start: {self.scrub(str(exc))}; {_start_fix(exc)}, "
                 "then run retry-failed")

    def _ended(self, end: Finished) -> None:
        attempt = self.running.pop(end.key, None)
        if attempt is None:  # not ours (a second report of one attempt): nothing to do
            return
        slot, duration = self.sched.ended(end.key)
        item, result, code = slot.item, end.result, end.code
        status = result.status if result else status_from_exit(code)
        reason = result.reason if result and result.reason else _why(status, code)
        if slot.ended_by is not None and status is not Status.DONE:
            status, reason = slot.ended_by, _why(slot.ended_by, code)
        self._release(attempt.grant, attempt.lock, succeeded=status is Status.DONE)
        self.gate.charge(end.key, attempt.grant, result)
        for use in (result.key_use.values() if result else ()):  # 429s the worker waited out
            self.sched.rate_limited(end.key, int(use["rate_limited"]))
        for wait in (result.waits if result else ()):  # when it waited, for the report
            self.record.event(Event.WAIT, item=item.tag, **wait)
        self._spent(end.key, item.tag, attempt, result, status)
        host = getattr(attempt.handle, "host", None)  # on a cluster: where it ran
        self.record.event(Event.END, item=item.tag, status=status.value, exit_code=code,
                          duration=round(duration, 3),
                          **({"host": str(host)[:HOST_MAX]} if host else {}))
        if slot.ended_by is None and self._retry(item, attempt.grant, result, code):
            return
        self._outcome(item, status, reason, duration, result, slot, attempt)
        # The worker leaves these to us: it saw only a SIGTERM, or it expected a retry.
        if item.kind is Kind.LLD and (status is Status.TIMEOUT or (result and result.retry)):
            lld_index.record_or_warn(self.ws, item.id, status.value, self.say, reason=reason)
        self.say(f"{item.tag} {status.value} in {duration:.1f}s"
                 + (f": {self.scrub(reason)}" if status is not Status.DONE else "")
                 + f" [{len(self.outcomes)} finished]")

    def _spent(self, key: str, tag: str, attempt: _Attempt, result: WorkerResult | None,
               status: Status) -> None:
        """Count what the attempt spent: its result says; without one, what it last said
        while it ran, and one call of unknown cost (it may have been in flight)."""
        if result is not None:
            spend = result.spend
        else:
            live = attempt.handle.spent() or Spend()
            spend = Spend(live.usd, live.unpriced + 1)
        self.spend[key] = self.spend.get(key, Spend()).plus(spend)
        if self.budget is not None:
            self.budget.ended(key, spend, done=status is Status.DONE)
            self._share_spend(key)
            if spend.unpriced and not self._warned_unpriced:
                self._warned_unpriced = True
                self.say(f"warning: {tag} made {spend.unpriced} call(s) whose cost is unknown "
                         "(no token counts in the reply, or a call cut short); the budget "
                         "counts each at an estimate")
            self._check_budget()

    def _share_spend(self, key: str) -> None:
        """The ended attempt's spend moves from its own file into `ended.json`, which
        the workers add up before each model call. Its file goes first: a worker reading
        in between counts it at most once (maybe not at all, for a moment)."""
        assert self.budget is not None
        try:
            self.record.spend_path(key).unlink(missing_ok=True)
            spendfiles.write(self.record.spend_path(key).with_name(spendfiles.ENDED),
                             Spend(self.budget.spent))
        except OSError as exc:  # the workers stop when told, instead of before
            self.say(f"warning: cannot share the run's spend with its workers: "
                     f"{exc.strerror or exc}")

    def _check_budget(self) -> None:
        """Once the spend reaches the budget: say so, and wind every running item down."""
        if self.budget is None or not self.budget.check():
            return
        running = len(self.running)
        self.say(f"budget reached: {money(self.budget.total())} of "
                 f"{money(self.budget.limit, exact=True)} spent; no new item starts"
                 + (f", and {running} running item(s) are asked to stop before their next "
                    "model call" if running else ""))
        self.record.event(Event.BUDGET, spent=round(self.budget.total(), 6),
                          limit=self.budget.limit)
        self._carry_out(self.sched.budget_reached())

    def _retry(self, item: Item, grant: Grant | None, result: WorkerResult | None,
               code: int) -> bool:
        """A 429 or 401/403: the gate rests or disables that key; the item runs again if
        it has attempts left. So does an item whose cluster host was lost."""
        if result is not None and result.retry and result.retry.get("kind") == "lost":
            return self._resume_lost(item, result)
        refusal = self.gate.refused(grant, result, code)
        if refusal is None:
            return False
        if self.budget is not None and self.budget.reached:  # the key rests; nothing restarts
            self.say(f"{item.tag} {refusal.describe()}; not retried: the run's budget was "
                     "reached")
            return False
        key = slug(item.kind, item.id)
        if refusal.kind == "rate_limited" and not refusal.counted:
            self.sched.rate_limited(key)
        most = self.opts.max_attempts
        if not self.sched.retry(item):
            self.say(f"{item.tag} {refusal.describe()}; no attempts left ({most}): "
                     "run retry-failed once the key has rested, or raise --max-attempts")
            return False
        rests = refusal.kind == "rate_limited" and not refusal.moved
        self.record.event(Event.RETRY, item=item.tag, credential=refusal.credential,
                          kind=refusal.kind,
                          rest=round(max(0.0, refusal.rest), 3) if rests else None)
        self.say(f"{item.tag} {refusal.describe()}; resuming from its checkpoint "
                 f"(attempt {self.sched.attempts[key] + 1} of {most})")
        return True

    def _resume_lost(self, item: Item, result: WorkerResult) -> bool:
        """Its Dask worker died mid-item: resume it from the steps that reached us."""
        key, most = slug(item.kind, item.id), self.opts.max_attempts
        if not self.sched.retry(item):
            self.say(f"{item.tag} {result.reason}; no attempts left ({most}): run "
                     "retry-failed")
            return False
        self.record.event(Event.RETRY, item=item.tag, credential=None, kind="lost", rest=None)
        self.say(f"{item.tag} {result.reason}; resuming from its checkpoint "
                 f"(attempt {self.sched.attempts[key] + 1} of {most})")
        return True

    def _release(self, grant: Grant | None, lock: int, succeeded: bool) -> None:
        """The one place an item's keys and lock are given back."""
        try:
            self.gate.give_back(grant, succeeded)
        finally:
            flock.unlock(lock)

    # --- waiting ------------------------------------------------------------
    def _wait_one(self) -> None:
        message = self.inbox.get(self.sched.wait_time())
        if isinstance(message, Signalled):
            self._on_signal(message.signum)
        elif isinstance(message, Finished):
            self._ended(message)
        elif isinstance(message, Began):  # it waited in the cluster's queue until now
            self.sched.running_now(message.key)
            if began := self.running.get(message.key):
                self.record.event(Event.BEGAN, item=began.tag, host=message.host[:HOST_MAX])
            self._show()
        self._carry_out(self.sched.due())  # a steady stream of ends must not postpone one

    def _carry_out(self, actions: list[Action]) -> None:
        pending = list(actions)
        try:
            while pending:
                self._do(pending[0])
                pending.pop(0)
        finally:  # the loop failed: a stop never carried out is not one
            for action in pending:
                if isinstance(action, Stop):
                    self.sched.not_stopped(action.key)

    def _do(self, action: Action) -> None:
        if action is Tick.PROGRESS and self.console.live:
            self._show()
        elif action is Tick.PROGRESS:
            self.say(self._progress().line())
        elif action is Tick.HEARTBEAT:
            self.gate.heartbeat([a.grant for a in self.running.values() if a.grant])
        elif action is Tick.SPEND and self.budget is not None:
            for key, attempt in self.running.items():
                if (live := attempt.handle.spent()) is not None:
                    self.budget.spending(key, live)
            self._check_budget()
        elif isinstance(action, Wind) and self.budget is not None:
            handle = self.running[action.key].handle
            try:
                handle.stop_after_step(f"the run's budget "
                                       f"({money(self.budget.limit, exact=True)}) was reached")
            except OSError as exc:  # no stop file: a plain stop keeps the checkpoint too
                self.say(f"warning: cannot ask {action.key} to stop after its step "
                         f"({exc.strerror or exc}); stopping it now")
                self.sched.running[action.key].winding = False
                self._carry_out(self.sched.stop_now(action.key))
        elif isinstance(action, Kill):
            self.running[action.key].handle.kill()
        elif isinstance(action, Stop):
            if action.why is Status.TIMEOUT:
                tag = self.sched.running[action.key].item.tag
                self.say(f"{tag} timed out after {self.opts.timeout:g}s; stopping it "
                         "(raise --timeout if the model is only slow)")
            self.running[action.key].handle.stop()

    def _on_signal(self, signum: int) -> None:
        name, first = signal.Signals(signum).name, self.sched.stopped_by is None
        count = len(self.running)
        if first:
            self.say(f"{name}: stopping {count} worker(s), up to {self.opts.grace:g}s "
                     "for their checkpoints (Ctrl+C again to kill them now)")
        else:
            self.say(f"{name} again: killing {count} worker(s) now")
        self._carry_out(self.sched.signalled(signum))

    def _abandon(self) -> None:
        """After an unexpected error in the loop: kill what still runs, record it.

        Their ends are taken from the inbox, where each comes after the
        worker's last line was shown; an end that is not posted within
        ABANDON_WAIT is asked of its handle directly.
        """
        for action in self.sched.abandon():
            try:
                self._do(action)
            except Exception as exc:  # every other worker must be killed too
                self._error(exc)
        until = self.clock() + ABANDON_WAIT
        while self.running and (left := until - self.clock()) > 0:
            message = self.inbox.get(left)
            if message is None:
                break
            if isinstance(message, Finished):
                self._end_abandoned(message)
            elif isinstance(message, Signalled) and self.sched.stopped_by is None:
                # the exit code says the user stopped it
                self.sched.stopped_by = message.signum
        for attempt in list(self.running.values()):
            self._end_abandoned(attempt.handle.wait())

    def _end_abandoned(self, end: Finished) -> None:
        try:
            self._ended(end)
        except Exception as exc:  # keep going: every other worker must be ended too
            self.running.pop(end.key, None)
            self._error(exc)

    def _error(self, exc: Exception) -> None:
        """Our own error, with its traceback, into the journal."""
        self.record.event(Event.ERROR, error=self.scrub(repr(exc)),
                          traceback=self.scrub(traceback.format_exc()))

    # --- helpers ------------------------------------------------------------
    def _skip(self, item: Item, reason: str) -> None:
        self.say(f"{item.tag} skipped: {reason}")
        self._outcome(item, Status.SKIPPED, reason)

    def _outcome(self, item: Item, status: Status, reason: str, duration: float = 0.0,
                 result: WorkerResult | None = None, slot: Slot | None = None,
                 attempt: _Attempt | None = None, tag: str | None = None) -> None:
        """`tag`: a file refused while planning (not one of the run's items)."""
        key = slug(item.kind, item.id)
        self.sched.finished(status, duration, counted=tag is None)
        grant = attempt.grant if attempt else None
        self.outcomes.append(Outcome(
            item.kind.value, item.id, tag or item.tag, status, duration=duration,
            iterations=result.iterations if result else 0,
            model_calls=result.model_calls if result else 0,
            tokens=(result.tokens[0], result.tokens[1]) if result else (0, 0),
            attempts=self.sched.attempts.get(key, 0),
            rate_limited=self.sched.limited.get(key, 0),
            credential=",".join(grant.names) if grant else None,
            reason=" ".join(self.scrub(reason).split()),
            log=str(attempt.log) if attempt else None,
            retries=dict(result.retries) if result else {},
            cost=self.spend.get(key, Spend()),
            # Stopped after a step, not by a signal or a timeout: asked to (winding), or by
            # itself, having added up the run's spend files.
            stopped_by_budget=bool(slot and slot.ended_by is None and self.budget is not None
                                   and self.budget.reached and status is Status.INTERRUPTED),
            host=getattr(attempt.handle, "host", None) if attempt else None))
        if slot is None:  # no worker ran (skipped, no credential, ...): the journal says so
            self.record.event(Event.END, item=tag or item.tag, status=status.value)

    def say(self, text: str) -> None:
        """A line of ours; a reason quoting a model's stderr may hold escapes: none pass."""
        self.console.say(self.scrub.line(text))

    def _show(self) -> None:
        """Tell the console how the run stands (the live area redraws from it)."""
        self.console.update(self._progress())

    def _progress(self) -> Progress:
        """The scheduler's view, with the keys' budgets as they stand now."""
        progress = replace(self.sched.progress(), budgets=self.gate.budgets())
        if self.cluster is None:
            return progress
        hosts = {a.tag: getattr(a.handle, "host", None) or "queued"
                 for a in self.running.values()}
        return replace(progress, running=tuple(replace(a, host=hosts.get(a.tag, ""))
                                               for a in progress.running))

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """While the run lasts, SIGINT/SIGTERM become messages in the inbox."""

        def post(signum: int, frame: FrameType | None) -> None:
            self.inbox.put(Signalled(signum))

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
    if isinstance(fix := getattr(exc, "fix", None), str):  # it knows its own fix
        return fix
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
