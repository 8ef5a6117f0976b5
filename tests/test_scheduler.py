"""The scheduler and the coordinator's loop, from scripted histories: no process, no sleep.

A `Timeline` is the run's inbox and its clock at once: messages are due at
given times, and a wait that nothing ends moves the clock by exactly the
time the loop asked to wait. A `ScriptedBackend` plays each worker: how long
it works, what it reports, what it does when asked to stop. The rest is
real: the Coordinator, the Scheduler, the KeyGate over a real lease store,
the run record's files.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import journal, latest_run, lock_free, make_workspace, summary

from assemblyzero.backlog import Item, scan
from assemblyzero.constants import LOOP_WAIT_MAX
from assemblyzero.cost import Spend
from assemblyzero.ids import Kind
from assemblyzero.journal import Event
from assemblyzero.keys import credentials
from assemblyzero.keys.leases import LeaseStore
from assemblyzero.keys.pool import Grant, Pool
from assemblyzero.results import Status, WorkerResult
from assemblyzero.run.backend import Finished, Inbox, Job, Message, Signalled
from assemblyzero.run.coordinator import PAUSE_MESSAGE, Coordinator
from assemblyzero.run.jobs import RunOptions
from assemblyzero.run.scheduler import Kill, Limits, Scheduler, Stop, Tick
from assemblyzero.ui.console import Console
from assemblyzero.workspace import Workspace

T0 = 1000.0
WALL0 = 1.9e9  # the fake wall clock at T0: some time in 2030
MAX_WAITS = 5000


class Timeline(Inbox):
    """Messages due at given times; `get(timeout)` returns the next one due within the
    timeout (moving the clock to it) or moves the clock by the timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self._due: list[tuple[float, int, Message]] = []
        self._order = itertools.count()
        self.cancelled: set[int] = set()
        self.waits: list[float | None] = []  # every timeout the loop asked for

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        """The same time as wall-clock time (the lease store's and the pool's clock)."""
        return WALL0 + (self.now - T0)

    def at(self, when: float, message: Message) -> int:
        n = next(self._order)
        heapq.heappush(self._due, (when, n, message))
        return n

    def put(self, message: Message) -> None:  # a signal handler or a backend, now
        self.at(self.now, message)

    def get(self, timeout: float | None) -> Message | None:
        self.waits.append(timeout)
        if len(self.waits) > MAX_WAITS:
            raise AssertionError(f"the loop waited {MAX_WAITS} times: a runaway history")
        while self._due and self._due[0][1] in self.cancelled:
            heapq.heappop(self._due)
        if self._due and (timeout is None or self._due[0][0] <= self.now + timeout):
            when, _, message = heapq.heappop(self._due)
            self.now = max(self.now, when)
            return message
        if timeout is None:
            raise AssertionError("the loop would wait forever with nothing due")
        self.now += timeout
        return None


@dataclass
class Worker:
    """How one scripted worker behaves."""

    works: float = 1.0  # seconds until it ends by itself (None: never)
    status: Status = Status.DONE
    code: int = 0
    retry: dict[str, Any] | None = None  # a 429 or 401/403 report
    tokens: tuple[int, int] = (10, 5)
    on_stop: float | None = 0.5  # seconds it takes to save and exit on a stop; None: ignores
    forever: bool = False  # never ends by itself
    retries: dict[str, int] = field(default_factory=dict)  # what its calls retried
    cost: float = 0.0  # USD its attempt spent, as its result says
    # (seconds after its start, USD spent so far): what its spend file says meanwhile
    spending: tuple[tuple[float, float], ...] = ()
    on_wind: float | None = 0.5  # seconds until its step ends, once asked to stop after it
                                 # (None: it goes on, its scripted end stands)


@dataclass
class ScriptedBackend:
    timeline: Timeline
    script: dict[str, list[Worker]]  # per item id, one Worker per attempt
    log: list[tuple[float, str, str]] = field(default_factory=list)  # (time, what, item key)
    jobs: list[Job] = field(default_factory=list)
    pending: dict[str, int] = field(default_factory=dict)  # item key -> its due Finished
    broken_stop: bool = False  # stop() raises: a bug in the loop's own code

    def start(self, job: Job) -> Handle:
        item_id = job.key.split("-", 1)[1]
        attempt = sum(1 for j in self.jobs if j.key == job.key)
        worker = self.script[item_id][attempt]
        self.jobs.append(job)
        self.log.append((self.timeline.now, "start", job.key))
        if not worker.forever:
            self._end_at(job.key, self.timeline.now + worker.works, self._result(job, worker),
                         worker.code)
        return Handle(self, job, worker, self.timeline.now)

    def _result(self, job: Job, worker: Worker) -> WorkerResult:
        kind, item_id = job.key.split("-", 1)
        names = [n for n in job.env.get("ASSEMBLYZERO_CREDENTIAL", "").split(",") if n]
        by_key = {name: list(worker.tokens) for name in names}
        return WorkerResult(kind, item_id, worker.status, iterations=1, model_calls=2,
                            tokens=list(worker.tokens), tokens_by_key=by_key or None,
                            retry=worker.retry, retries=dict(worker.retries),
                            spent=[worker.cost, 0],
                            spent_by_key={name: [worker.cost, 0] for name in names})

    def _end_at(self, key: str, when: float, result: WorkerResult | None, code: int) -> None:
        if key in self.pending:
            self.timeline.cancelled.add(self.pending[key])
        self.pending[key] = self.timeline.at(when, Finished(key, result, code))

    def close(self) -> None:
        self.log.append((self.timeline.now, "close", ""))

    def events(self, what: str) -> list[tuple[float, str]]:
        return [(t, key) for t, w, key in self.log if w == what]


@dataclass
class Handle:
    backend: ScriptedBackend
    job: Job
    worker: Worker
    started: float

    @property
    def pid(self) -> int | None:
        return None

    def stop(self) -> None:
        b = self.backend
        b.log.append((b.timeline.now, "stop", self.job.key))
        if b.broken_stop:
            raise RuntimeError("a bug in stop")
        if self.worker.on_stop is not None:  # it saves its checkpoint, then exits 130
            kind, item_id = self.job.key.split("-", 1)
            b._end_at(self.job.key, b.timeline.now + self.worker.on_stop,
                      WorkerResult(kind, item_id, Status.INTERRUPTED), 130)

    def kill(self) -> None:
        b = self.backend
        b.log.append((b.timeline.now, "kill", self.job.key))
        b._end_at(self.job.key, b.timeline.now, None, -signal.SIGKILL)

    def wait(self) -> Finished:
        return Finished(self.job.key, None, -signal.SIGKILL)

    def spent(self) -> Spend | None:
        now = self.backend.timeline.now - self.started
        said = [usd for after, usd in self.worker.spending if after <= now]
        return Spend(said[-1]) if said else None

    def stop_after_step(self, reason: str) -> None:
        """It finishes its step (`on_wind`), saves, and exits 130 with what it spent."""
        b = self.backend
        b.log.append((b.timeline.now, "wind", self.job.key))
        if self.worker.on_wind is None:
            return
        kind, item_id = self.job.key.split("-", 1)
        at = b.timeline.now + self.worker.on_wind
        spent = [usd for after, usd in self.worker.spending if self.started + after <= at]
        b._end_at(self.job.key, at, WorkerResult(
            kind, item_id, Status.INTERRUPTED, reason=f"stopped after step 'review': {reason}",
            spent=[spent[-1] if spent else 0.0, 0]), 130)


@dataclass
class Run:
    code: int
    ws: Workspace
    backend: ScriptedBackend
    timeline: Timeline
    lines: list[str]

    @property
    def summary(self) -> dict[str, Any]:
        return summary(latest_run(self.ws.root))

    @property
    def statuses(self) -> dict[str, str]:
        return {i["id"]: i["status"] for i in self.summary["items"]}

    def journal(self, event: Event) -> list[dict[str, Any]]:
        return [e for e in journal(latest_run(self.ws.root)) if e["event"] == event]

    def said(self, text: str) -> int:
        return sum(text in line for line in self.lines)


def play(tmp_path: Path, script: dict[str, list[Worker]], *, signals: tuple[float, ...] = (),
         keys: tuple[str, ...] = (), broken_stop: bool = False,
         backend_class: type[ScriptedBackend] | None = None,
         heartbeats: list[float] | None = None, **opts: Any) -> Run:
    """Run the items of `script` (`keys`: offline credentials, one slot each, on a lease
    store that keeps the timeline's wall-clock time; `heartbeats` gets the time of each
    lease heartbeat)."""
    ws = Workspace.at(make_workspace(tmp_path / "ws", issues=list(script)))
    timeline = Timeline()
    pool = _pool(timeline, *keys) if keys else None
    if pool is not None and heartbeats is not None:
        beat = pool.heartbeat

        def counted(grants: list[Grant]) -> None:
            heartbeats.append(timeline.now - T0)
            beat(grants)

        pool.heartbeat = counted  # type: ignore[method-assign]
    backend = (backend_class or ScriptedBackend)(timeline, script, broken_stop=broken_stop)
    for when in signals:
        timeline.at(T0 + when, Signalled(signal.SIGINT))
    out = tmp_path / "out.txt"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        coordinator = Coordinator(ws, RunOptions(**opts), Console(fd=fd), pool=pool,
                                  clock=timeline.clock, backend=backend, inbox=timeline)
        code = coordinator.run(scan(ws, Kind.LLD).items, "lld-all")
    finally:
        os.close(fd)
    return Run(code, ws, backend, timeline, out.read_text().splitlines())


def at(run: Run, what: str) -> list[tuple[float, str]]:
    """(seconds into the run, item key) of each `what` (start, stop, kill)."""
    return [(round(t - T0, 6), key) for t, key in run.backend.events(what)]


# --- scheduling -----------------------------------------------------------------------------

def test_at_most_parallel_workers_run_and_each_starts_when_a_slot_frees(tmp_path: Path) -> None:
    run = play(tmp_path, {"1": [Worker(works=3)], "2": [Worker(works=1)],
                          "3": [Worker(works=1)], "4": [Worker(works=1)]}, parallel=2)
    assert run.code == 0
    assert at(run, "start") == [(0, "lld-1"), (0, "lld-2"), (1, "lld-3"), (2, "lld-4")]
    assert run.statuses == dict.fromkeys("1234", "done")
    assert run.summary["wall_seconds"] == 3.0  # the fake clock: 3 s, not a moment more
    assert at(run, "stop") == [] and at(run, "kill") == []


def test_ten_of_twelve_start_at_once_and_the_last_two_as_the_first_end(tmp_path: Path) -> None:
    script = {str(n): [Worker(works=float(n))] for n in range(1, 13)}
    run = play(tmp_path, script, parallel=10)
    assert run.code == 0
    starts = at(run, "start")
    assert [t for t, _ in starts] == [0.0] * 10 + [1.0, 2.0]
    assert sorted(key for _, key in starts) == sorted(f"lld-{n}" for n in range(1, 13))


def test_what_the_calls_retried_is_counted_per_item_and_for_the_run(tmp_path: Path) -> None:
    run = play(tmp_path, {"1": [Worker(retries={"HTTP 503": 2, "cut": 1})],
                          "2": [Worker(retries={"HTTP 503": 1})], "3": [Worker()]}, parallel=3)
    assert [i["retries"] for i in run.summary["items"]] == [
        {"HTTP 503": 2, "cut": 1}, {"HTTP 503": 1}, {}]
    assert run.summary["retries"] == {"HTTP 503": 3, "cut": 1}
    assert run.said("retried: HTTP 503 x3, cut x1") == 1


def test_a_timeout_stops_the_worker_and_kills_it_after_the_grace(tmp_path: Path) -> None:
    run = play(tmp_path, {"1": [Worker(forever=True, on_stop=None)]}, timeout=10, grace=2)
    assert run.code == 1
    assert at(run, "stop") == [(10, "lld-1")] and at(run, "kill") == [(12, "lld-1")]
    assert run.statuses == {"1": "timeout"}
    assert run.said("LLD-001 timed out after 10s; stopping it") == 1
    ends = run.journal(Event.END)
    assert [(e["status"], e["exit_code"], e["duration"]) for e in ends] == [
        ("timeout", -signal.SIGKILL, 12.0)]


def test_a_worker_that_saves_within_the_grace_is_not_killed(tmp_path: Path) -> None:
    run = play(tmp_path, {"1": [Worker(forever=True, on_stop=1.5)]}, timeout=10, grace=2)
    assert at(run, "stop") == [(10, "lld-1")] and at(run, "kill") == []
    assert run.statuses == {"1": "timeout"}  # it exited 130, but we stopped it for its time
    assert run.summary["items"][0]["duration"] == 11.5


def test_ctrl_c_stops_every_worker_and_the_waiting_items_are_not_started(
        tmp_path: Path) -> None:
    run = play(tmp_path, {"1": [Worker(forever=True)], "2": [Worker(forever=True)],
                          "3": [Worker()]}, signals=(4,), parallel=2, grace=30)
    assert run.code == 130
    assert at(run, "start") == [(0, "lld-1"), (0, "lld-2")]
    assert at(run, "stop") == [(4, "lld-1"), (4, "lld-2")] and at(run, "kill") == []
    assert run.statuses == {"1": "interrupted", "2": "interrupted", "3": "skipped"}
    assert run.summary["items"][2]["reason"] == "not started: the run was interrupted"
    assert run.said("SIGINT: stopping 2 worker(s), up to 30s for their checkpoints") == 1


def test_a_second_ctrl_c_kills_at_once_without_waiting_for_the_grace(tmp_path: Path) -> None:
    run = play(tmp_path, {"1": [Worker(forever=True, on_stop=None)]}, signals=(1, 2.5),
               grace=1000)
    assert run.code == 130
    assert at(run, "stop") == [(1, "lld-1")] and at(run, "kill") == [(2.5, "lld-1")]
    assert run.said("SIGINT again: killing 1 worker(s) now") == 1
    assert run.summary["wall_seconds"] == 2.5


def test_a_worker_timing_out_during_a_stop_keeps_its_first_kill_time(tmp_path: Path) -> None:
    run = play(tmp_path, {"1": [Worker(forever=True, on_stop=None)]}, signals=(11,),
               timeout=10, grace=5)
    assert at(run, "stop") == [(10, "lld-1")]  # the signal asks no second stop
    assert at(run, "kill") == [(15, "lld-1")]
    assert run.statuses == {"1": "timeout"}


def test_progress_lines_come_on_time_and_the_loop_never_sleeps_past_a_deadline(
        tmp_path: Path) -> None:
    run = play(tmp_path, {"1": [Worker(works=25)]}, progress_every=10, timeout=22, grace=1)
    progress = [line for line in run.lines if "progress: " in line]
    assert len(progress) == 2  # at 10 and 20; the item timed out at 22 and saved in 0.5 s
    assert "; 10s elapsed, ETA unknown" in progress[0] and "; 20s elapsed," in progress[1]
    assert at(run, "stop") == [(22, "lld-1")] and at(run, "kill") == []
    assert run.summary["items"][0]["duration"] == 22.5


def test_an_item_that_cannot_start_fails_alone_and_gives_back_its_lock_and_key(
        tmp_path: Path) -> None:
    class Broken(ScriptedBackend):
        def start(self, job: Job) -> Handle:
            if job.key == "lld-2":
                raise OSError(24, "Too many open files")
            return super().start(job)

    # One key with one slot, one at a time: item 3 starts only if item 2 gave the key back.
    run = play(tmp_path, {n: [Worker()] for n in "123"}, keys=("only",),
               backend_class=Broken)
    assert run.code == 1
    items = {i["id"]: (i["status"], i["reason"]) for i in run.summary["items"]}
    assert items["1"][0] == items["3"][0] == "done"
    assert items["2"] == ("failed", "could not start: OSError: [Errno 24] Too many open files")
    assert at(run, "start") == [(0, "lld-1"), (1, "lld-3")]
    assert lock_free(run.ws.item_lock(Kind.LLD, "2"))


def test_a_crash_in_the_loop_kills_every_worker_and_keeps_the_record(tmp_path: Path) -> None:
    run = play(tmp_path, {"1": [Worker(forever=True)], "2": [Worker(forever=True)]},
               parallel=2, timeout=5, broken_stop=True)
    assert run.code == 1
    assert at(run, "stop") == [(5, "lld-1")]  # raised: the loop is broken from here
    assert sorted(at(run, "kill")) == [(5, "lld-1"), (5, "lld-2")]
    # Neither stop was carried out (the first raised), so neither is blamed on the timeout.
    assert run.statuses == {"1": "interrupted", "2": "interrupted"}
    assert run.said("LLD-002 timed out") == 0
    errors = run.journal(Event.ERROR)
    assert len(errors) == 1 and "a bug in stop" in errors[0]["error"]
    assert run.backend.log[-1][1] == "close"  # after every worker had ended


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_is_remembered_for_the_exit_code(tmp_path: Path, signum: int) -> None:
    ws = Workspace.at(make_workspace(tmp_path / "ws", issues=["1"]))
    timeline = Timeline()
    backend = ScriptedBackend(timeline, {"1": [Worker(forever=True)]})
    timeline.at(T0 + 1, Signalled(signum))
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        code = Coordinator(ws, RunOptions(), Console(fd=devnull), clock=timeline.clock,
                           backend=backend, inbox=timeline).run(scan(ws, Kind.LLD).items,
                                                                "lld-all")
    finally:
        os.close(devnull)
    assert code == (130 if signum == signal.SIGINT else 143)


# --- keys -----------------------------------------------------------------------------------

def _pool(timeline: Timeline, *names: str) -> Pool:
    path = Path(os.environ["ASSEMBLYZERO_CREDENTIALS"])
    path.write_text(json.dumps({"credentials": [
        {"name": n, "provider": "offline", "max_concurrent": 1} for n in names]}))
    path.chmod(0o600)
    store = LeaseStore(clock=timeline.wall)
    pool = Pool.for_models(("offline:draft", "offline:review"), store=store,
                           creds=credentials.load())
    assert pool is not None
    pool.clock = timeline.wall
    return pool


def test_a_429_rests_that_key_and_the_item_resumes_at_once_on_the_other(
        tmp_path: Path) -> None:
    limited = Worker(works=2, status=Status.FAILED, code=4,
                     retry={"kind": "rate_limited", "credential": None, "retry_after": 60})
    run = play(tmp_path, {"1": [limited, Worker(works=3)]}, keys=("key-a", "key-b"),
               max_attempts=3)
    assert run.code == 0
    assert at(run, "start") == [(0, "lld-1"), (2, "lld-1")]
    assert [j.env["ASSEMBLYZERO_CREDENTIAL"] for j in run.backend.jobs] == ["key-a", "key-b"]
    assert [e["credential"] for e in run.journal(Event.RETRY)] == ["key-a"]
    item = run.summary["items"][0]
    assert (item["status"], item["attempts"], item["rate_limited"]) == ("done", 2, 1)
    keys = {k["name"]: k for k in run.summary["credentials"]}
    assert keys["key-a"]["rate_limited"] == 1 and keys["key-b"]["rate_limited"] == 0
    assert 60 <= keys["key-a"]["cooldown_seconds"] <= 72  # its Retry-After plus 0-20 %
    assert keys["key-a"]["tokens"] == keys["key-b"]["tokens"] == [10, 5]  # each its own calls


def test_a_429_with_no_attempts_left_fails_the_item(tmp_path: Path) -> None:
    limited = Worker(status=Status.FAILED, code=4,
                     retry={"kind": "rate_limited", "credential": "key-a", "retry_after": 5})
    run = play(tmp_path, {"1": [limited]}, keys=("key-a", "key-b"), max_attempts=1)
    assert run.code == 1 and run.statuses == {"1": "failed"}
    assert run.said("no attempts left (1)") == 1 and run.journal(Event.RETRY) == []


def test_a_refused_key_is_disabled_and_the_item_runs_on_the_next(tmp_path: Path) -> None:
    refused = Worker(status=Status.FAILED, code=5,
                     retry={"kind": "auth", "credential": "key-a", "retry_after": None})
    run = play(tmp_path, {"1": [refused, Worker()]}, keys=("key-a", "key-b"))
    assert run.code == 0
    assert [j.env["ASSEMBLYZERO_CREDENTIAL"] for j in run.backend.jobs] == ["key-a", "key-b"]
    keys = {k["name"]: k for k in run.summary["credentials"]}
    assert keys["key-a"]["disabled"] == "refused (401/403)" and not keys["key-b"]["disabled"]


def test_every_key_held_pauses_new_starts_until_a_lease_comes_back(tmp_path: Path) -> None:
    run = play(tmp_path, {"1": [Worker(works=5)], "2": [Worker(works=1)]},
               keys=("only",), parallel=2)
    assert run.code == 0
    assert at(run, "start") == [(0, "lld-1"), (5, "lld-2")]  # the moment the lease came back
    assert run.said(PAUSE_MESSAGE) == 1  # once, however often item 2 looked for a key
    assert run.said("a credential is free again; resuming") == 1
    assert [e["event"] for e in journal(latest_run(run.ws.root))
            if e["event"] in (Event.PAUSE, Event.RESUME)] == ["pause", "resume"]
    assert run.summary["wall_seconds"] == 6.0


def test_a_429_on_the_only_key_pauses_until_its_rest_is_over_then_resumes_on_it(
        tmp_path: Path) -> None:
    limited = Worker(works=2, status=Status.FAILED, code=4,
                     retry={"kind": "rate_limited", "credential": "only", "retry_after": 60})
    run = play(tmp_path, {"1": [limited, Worker(works=1)]}, keys=("only",), max_attempts=2)
    assert run.code == 0
    rested = run.summary["credentials"][0]["cooldown_seconds"]
    assert 60 <= rested <= 72
    (first, _), (again, _) = at(run, "start")
    assert first == 0 and again == pytest.approx(2 + rested, abs=1e-3)  # no sooner, no later
    assert run.said(PAUSE_MESSAGE) == 1 and run.said("a credential is free again") == 1


def test_held_leases_get_a_heartbeat_every_30_seconds(tmp_path: Path) -> None:
    beats: list[float] = []
    run = play(tmp_path, {"1": [Worker(works=70)]}, keys=("only",), heartbeats=beats)
    assert run.code == 0
    assert beats == [0.0, 30.0, 60.0]  # while it runs; none after it ended at 70


def test_a_429_naming_a_key_the_attempt_did_not_hold_blames_no_key(tmp_path: Path) -> None:
    stale = Worker(status=Status.FAILED, code=1,
                   retry={"kind": "rate_limited", "credential": "key-b", "retry_after": 60})
    run = play(tmp_path, {"1": [stale]}, keys=("key-a", "key-b"))
    assert run.code == 1 and run.statuses == {"1": "failed"}
    assert [k["rate_limited"] for k in run.summary["credentials"]] == [0, 0]
    assert run.journal(Event.RETRY) == []


def test_an_earlier_attempts_result_file_is_gone_before_the_next_starts(
        tmp_path: Path) -> None:
    seen: list[bool] = []

    class Writing(ScriptedBackend):
        def start(self, job: Job) -> Handle:
            seen.append(job.result.exists())
            job.result.parent.mkdir(parents=True, exist_ok=True)
            job.result.write_text('{"kind": "lld", "id": "1", "status": "failed"}')
            return super().start(job)

    limited = Worker(status=Status.FAILED, code=4,
                     retry={"kind": "rate_limited", "credential": "key-a", "retry_after": 1})
    run = play(tmp_path, {"1": [limited, Worker()]}, keys=("key-a", "key-b"),
               backend_class=Writing)
    assert run.code == 0 and seen == [False, False]


def test_ctrl_c_during_a_pause_starts_nothing_more(tmp_path: Path) -> None:
    run = play(tmp_path, {"1": [Worker(works=50)], "2": [Worker()]}, keys=("only",),
               parallel=2, signals=(3,))
    assert run.code == 130
    assert at(run, "start") == [(0, "lld-1")]
    assert run.statuses == {"1": "interrupted", "2": "skipped"}
    assert run.said("a credential is free again") == 0  # stopped, not resumed


# --- the pure state -------------------------------------------------------------------------

def _scheduler(clock: list[float], **limits: Any) -> Scheduler:
    base: dict[str, Any] = {"parallel": 2, "timeout": 10.0, "grace": 2.0, "max_attempts": 2,
                            "progress_every": None, "heartbeat_every": None}
    return Scheduler(Limits(**{**base, **limits}), lambda: clock[0])


def _items(*ids: str) -> Iterator[Item]:
    return (Item(Kind.LLD, i) for i in ids)


def test_nothing_due_means_waiting_for_events_only_and_far_deadlines_are_capped() -> None:
    clock = [0.0]
    sched = _scheduler(clock, timeout=1e9)
    sched.begin(_items("1"))
    assert sched.wait_time() is None  # nothing runs: only an event can change anything
    item = sched.next_item()
    assert item is not None
    sched.started(item, (), sched.free_hue(10))
    assert sched.wait_time() == LOOP_WAIT_MAX


def test_due_returns_each_deadline_once() -> None:
    clock = [0.0]
    sched = _scheduler(clock, progress_every=4.0, heartbeat_every=3.0)
    sched.begin(_items("1"))
    item = sched.next_item()
    assert item is not None
    sched.started(item, ("k",), 0)
    assert sched.due() == [Tick.HEARTBEAT]  # the first heartbeat at once
    clock[0] = 4.0
    assert sched.due() == [Tick.PROGRESS, Tick.HEARTBEAT]
    assert sched.due() == []
    clock[0] = 10.0
    assert sched.due() == [Tick.PROGRESS, Tick.HEARTBEAT, Stop("lld-1", Status.TIMEOUT)]
    clock[0] = 12.0
    assert sched.due() == [Kill("lld-1")]
    assert sched.due() == []


def test_running_items_never_share_a_colour() -> None:
    clock = [0.0]
    sched = _scheduler(clock, parallel=3)
    sched.begin(_items("1", "2", "3", "4"))
    hues = []
    for _ in range(3):
        item = sched.next_item()
        assert item is not None
        hues.append(sched.started(item, (), sched.free_hue(10)).hue)
    assert hues == [0, 1, 2] and sched.next_item() is None  # full
    sched.ended("lld-2")
    item = sched.next_item()
    assert item is not None and sched.free_hue(10) == 1  # the one that came free
    assert sched.free_hue(2) == 1 and sched.free_hue(1) == 0  # more items than colours


def test_a_retry_goes_first_in_line_and_only_while_attempts_remain() -> None:
    clock = [0.0]
    sched = _scheduler(clock, parallel=1, max_attempts=2)
    sched.begin(_items("1", "2"))
    first = sched.next_item()
    assert first is not None
    for attempt in (1, 2):
        sched.started(first, (), 0)
        sched.ended("lld-1")
        assert sched.retry(first) is (attempt < 2)
        if attempt < 2:
            assert sched.next_item() == first
    assert sched.next_item() == Item(Kind.LLD, "2")


def test_retry_counts_out_of_range_in_a_result_file_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "lld-1.json"
    path.write_text(json.dumps({"kind": "lld", "id": "1", "status": "done", "retries": {
        "HTTP 503": 2, "cut": 10**30, "empty": -1, "x" * 500: 1, "re-ask": True}}))
    result = WorkerResult.read(path)
    assert result is not None and result.retries == {"HTTP 503": 2}


# --- the budget -----------------------------------------------------------------------------

def test_no_item_starts_once_the_spend_and_the_running_estimate_reach_the_budget(
        tmp_path: Path) -> None:
    # No prior estimate (no prices): all three start. Once LLD-1 is done at $4, each running
    # item is expected to cost $4 too: 4 + 4 + 4 >= 10, so LLD-4 waits; at 12 spent the
    # budget is reached and LLD-4 and LLD-5 never start.
    script = {"1": [Worker(works=1, cost=4)], "2": [Worker(works=2, cost=4)],
              "3": [Worker(works=3, cost=4)], "4": [Worker()], "5": [Worker()]}
    run = play(tmp_path, script, parallel=3, budget=10.0)
    assert at(run, "start") == [(0, "lld-1"), (0, "lld-2"), (0, "lld-3")]
    assert run.code == 1
    assert run.statuses == {"1": "done", "2": "done", "3": "done", "4": "skipped",
                            "5": "skipped"}
    items = {i["id"]: i for i in run.summary["items"]}
    assert items["4"]["reason"] == "not started: the budget was reached"
    assert run.summary["budget"] == {"usd": 10.0, "spent_usd": 12.0, "reached": True,
                                     "not_started": 2, "stopped": 0}
    assert run.summary["cost"] == {"usd": 12.0, "priced_usd": 12.0, "unpriced_calls": 0}
    assert [e["spent"] for e in run.journal(Event.BUDGET)] == [12.0]
    assert run.said("budget reached: $12.00 of $10.00 spent") == 2  # as it happens, and after


def test_a_slot_freed_under_the_budget_starts_the_next_item(tmp_path: Path) -> None:
    # $1 per item against $10: the estimate never blocks a start; every item runs, exit 0.
    script = {str(n): [Worker(works=1, cost=1)] for n in range(1, 6)}
    run = play(tmp_path, script, parallel=2, budget=10.0)
    assert run.code == 0
    assert [t for t, _ in at(run, "start")] == [0, 0, 1, 1, 2]
    assert run.summary["budget"]["reached"] is False
    assert run.summary["budget"]["spent_usd"] == 5.0
    assert run.said("budget $10.00: $5.00 spent") == 1


def test_the_running_spend_reaching_the_budget_winds_every_worker_down(tmp_path: Path) -> None:
    # LLD-1 says $6 spent at 1.5 s; the spend is read each second, so at 2 s the budget is
    # reached: LLD-1 and LLD-2 finish their step (0.5 s) and stop; LLD-3 never starts.
    script = {"1": [Worker(works=10, spending=((0.5, 2.0), (1.5, 6.0)))],
              "2": [Worker(works=10, spending=((1.0, 1.0),))], "3": [Worker()]}
    run = play(tmp_path, script, parallel=2, budget=5.0)
    assert at(run, "wind") == [(2, "lld-1"), (2, "lld-2")]
    assert at(run, "stop") == [] and at(run, "kill") == []  # nothing is cut short
    assert run.code == 1
    assert run.statuses == {"1": "interrupted", "2": "interrupted", "3": "skipped"}
    items = {i["id"]: i for i in run.summary["items"]}
    assert items["1"]["stopped_by_budget"] is True
    assert items["1"]["reason"] == ("stopped after step 'review': the run's budget ($5.00) "
                                    "was reached")
    assert items["1"]["cost"]["usd"] == 6.0 and items["2"]["cost"]["usd"] == 1.0
    assert run.summary["budget"] == {"usd": 5.0, "spent_usd": 7.0, "reached": True,
                                     "not_started": 1, "stopped": 2}
    assert run.summary["wall_seconds"] == 2.5


def test_an_attempt_that_left_no_result_has_an_unknown_cost(tmp_path: Path) -> None:
    # Killed after its timeout: what its last call cost is unknown, never $0.
    run = play(tmp_path, {"1": [Worker(forever=True, on_stop=None)], "2": [Worker(cost=0.25)]},
               parallel=2, timeout=3.0, grace=1.0)
    items = {i["id"]: i for i in run.summary["items"]}
    assert items["1"]["cost"] == {"usd": None, "priced_usd": 0.0, "unpriced_calls": 1}
    assert run.summary["cost"] == {"usd": None, "priced_usd": 0.25, "unpriced_calls": 1}
    assert run.said("cost $0.25+unknown") == 1
    assert any("LLD-001  timeout" in line and " unknown " in line for line in run.lines)


def test_each_key_is_charged_the_cost_of_its_own_calls(tmp_path: Path) -> None:
    run = play(tmp_path, {"1": [Worker(cost=0.5)], "2": [Worker(cost=0.25)]},
               keys=("k1", "k2"), parallel=2)
    costs = {k["name"]: k["cost"]["usd"] for k in run.summary["credentials"]}
    assert costs == {"k1": 0.5, "k2": 0.25} or costs == {"k1": 0.25, "k2": 0.5}
    assert run.summary["cost"]["usd"] == 0.75


def test_a_429_while_the_budget_winds_down_rests_the_key_and_restarts_nothing(tmp_path: Path):
    # LLD-1 spends the budget; LLD-2's call in flight is then refused with a 429.
    script = {"1": [Worker(works=1, cost=10)],
              "2": [Worker(works=1.2, status=Status.FAILED, code=75, on_wind=None,
                           retry={"kind": "rate_limited", "credential": None,
                                  "retry_after": 5})],
              "3": [Worker()]}
    run = play(tmp_path, script, keys=("k1", "k2"), parallel=2, budget=5.0, max_attempts=3)
    assert at(run, "start") == [(0, "lld-1"), (0, "lld-2")]  # LLD-2 never restarts
    assert run.said("not retried: the run's budget was reached") == 1
    assert run.said("resuming from its checkpoint") == 0
    items = {i["id"]: i for i in run.summary["items"]}
    assert items["2"]["status"] == "failed" and items["2"]["attempts"] == 1
    assert items["3"]["reason"] == "not started: the budget was reached"
    assert {k["name"]: k["rate_limited"] for k in run.summary["credentials"]}[
        items["2"]["credential"]] == 1  # the key rests all the same
    assert run.code == 1


def test_a_killed_attempt_leaves_its_keys_cost_unknown_never_zero(tmp_path: Path):
    run = play(tmp_path, {"1": [Worker(forever=True, on_stop=None)]}, keys=("k1",),
               timeout=2.0, grace=1.0)
    assert run.summary["credentials"][0]["cost"] == {"usd": None, "priced_usd": 0.0,
                                                     "unpriced_calls": 1}


def test_a_queued_attempt_times_out_only_after_it_begins() -> None:
    """On a cluster a submitted task may wait for a free Dask thread: that wait is not run
    time, so its --timeout counts from when it begins (running_now)."""
    clock = [0.0]
    sched = _scheduler(clock, timeout=10.0)
    sched.begin(_items("1"))
    item = sched.next_item()
    assert item is not None
    slot = sched.started(item, (), 0)
    slot.queued = True
    clock[0] = 25.0  # queued far past its timeout
    assert sched.due() == []  # no timeout while it waits in the queue
    sched.running_now(slot.key)
    clock[0] = 34.0
    assert sched.due() == []  # 9 s of run time
    clock[0] = 35.5
    assert [type(a).__name__ for a in sched.due()] == ["Stop"]  # 10.5 s: timed out
    assert sched.ended(slot.key)[1] == pytest.approx(10.5)  # its duration: run time only
