"""The scheduling state of a run: what waits, what runs, what is due (no I/O).

Everything here is decided from the state and one injected clock (the
run's monotonic clock): which item may start next, when a running item
times out or gets its SIGKILL, when the pool pause ends, when the next
heartbeat and progress line are due, how long the loop may wait. It starts,
stops and prints nothing: the coordinator carries out what it answers.
So the same state drives local processes, cluster tasks and test doubles,
and a scripted history of events with a fake clock tests it without
processes or sleeps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from assemblyzero.backlog import Item
from assemblyzero.constants import LOOP_WAIT_MAX, SPEND_EVERY
from assemblyzero.ids import slug
from assemblyzero.results import Status
from assemblyzero.run.budget import Budget
from assemblyzero.ui.console import Active, Progress

INF = float("inf")


@dataclass(frozen=True)
class Limits:
    parallel: int  # workers at once
    timeout: float  # seconds an attempt may run
    grace: float  # seconds between a stop and the SIGKILL
    max_attempts: int  # starts per item, 429 retries included
    progress_every: float | None  # seconds between progress lines; None: never
    heartbeat_every: float | None  # seconds between lease heartbeats; None: no keys
    spend_every: float = SPEND_EVERY  # seconds between reads of the running spend (a budget)


@dataclass
class Slot:
    """A running attempt, as the scheduler sees it."""

    item: Item
    started: float
    keys: tuple[str, ...] = ()  # the credentials it holds
    hue: int = 0  # its prefix colour: no two running items share one
    ended_by: Status | None = None  # TIMEOUT or INTERRUPTED once we stopped it
    winding: bool = False  # asked to stop after its current step (the budget was reached)
    kill_at: float | None = None  # when the SIGKILL follows our stop
    queued: bool = False  # waiting in a cluster's queue: no timeout runs until it begins

    @property
    def key(self) -> str:
        return slug(self.item.kind, self.item.id)


@dataclass(frozen=True)
class Stop:
    """Ask the worker `key` to stop (SIGTERM locally); its SIGKILL is due after the grace."""

    key: str
    why: Status  # TIMEOUT or INTERRUPTED


@dataclass(frozen=True)
class Kill:
    """End the worker `key` now."""

    key: str


@dataclass(frozen=True)
class Wind:
    """Ask the worker `key` to stop once its current step is saved (no SIGKILL follows)."""

    key: str


class Tick(Enum):
    PROGRESS = "progress"  # print a progress line
    HEARTBEAT = "heartbeat"  # renew the running items' leases
    SPEND = "spend"  # read what the running items have spent (a budget)


Action = Stop | Kill | Wind | Tick


@dataclass
class Pause:
    """No new start before `until`: every key an item needs is held or resting."""

    until: float | None = None
    said: bool = False  # the pause line was printed: a resume line is owed
    granted: bool = False  # a key was granted since the pause began

    def holds(self, now: float) -> bool:
        return self.until is not None and now < self.until


@dataclass
class Scheduler:
    limits: Limits
    clock: Callable[[], float]
    queue: deque[Item] = field(default_factory=deque)
    running: dict[str, Slot] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)  # starts per item key
    limited: dict[str, int] = field(default_factory=dict)  # 429s per item key
    pause: Pause = field(default_factory=Pause)
    budget: Budget | None = None  # --budget: no start it does not admit
    stopped_by: int | None = None  # the signal that stopped the run
    total: int = 0
    began: float = 0.0
    # Items finished so far, by how (the progress line, the live area).
    tally: dict[str, int] = field(default_factory=lambda: {
        "done": 0, "failed": 0, "skipped": 0, "interrupted": 0})
    worked: float = 0.0  # summed durations of the done items, for the ETA
    next_progress: float = INF
    next_beat: float = INF
    next_spend: float = INF

    def begin(self, items: Iterable[Item]) -> None:
        self.queue.extend(items)
        self.total, self.began = len(self.queue), self.clock()
        if self.limits.progress_every:
            self.next_progress = self.began + self.limits.progress_every
        if self.limits.heartbeat_every:
            self.next_beat = self.began
        if self.budget is not None:
            self.next_spend = self.began + self.limits.spend_every

    # --- what the loop asks -------------------------------------------------
    @property
    def active(self) -> bool:
        """Is there anything left: an item waiting that may still start, or one running?
        (With nothing running, what the budget does not admit now it never will.)"""
        return bool(self.running) or (bool(self.queue) and self.stopped_by is None
                                      and (self.budget is None or self.budget.admits()))

    def next_item(self) -> Item | None:
        """The item to start now, taken off the queue; None while none may start."""
        if (self.stopped_by is not None or not self.queue or self.pause.holds(self.clock())
                or len(self.running) >= self.limits.parallel
                or (self.budget is not None and not self.budget.admits())):
            return None
        return self.queue.popleft()

    def wait_time(self) -> float | None:
        """How long the loop may wait for an event before something is due (None: forever)."""
        deadlines = [self._deadline(s) for s in self.running.values()]
        if self.queue and self.pause.until is not None and self.stopped_by is None:
            deadlines.append(self.pause.until)
        if self.running:
            deadlines += [self.next_beat, self.next_progress, self._spend_due()]
        deadline = min(deadlines, default=INF)
        if deadline == INF:
            return None
        # At most LOOP_WAIT_MAX: a queue refuses a timeout past threading.TIMEOUT_MAX, and
        # the loop asks again anyway.
        return min(LOOP_WAIT_MAX, max(0.0, deadline - self.clock()))

    def due(self) -> list[Action]:
        """What is due now; a stop or kill it returns is already marked in the slot."""
        now, actions = self.clock(), list[Action]()
        if self.running and now >= self.next_progress and self.limits.progress_every:
            actions.append(Tick.PROGRESS)
            self.next_progress = now + self.limits.progress_every
        if self.running and now >= self.next_beat and self.limits.heartbeat_every:
            actions.append(Tick.HEARTBEAT)
            self.next_beat = now + self.limits.heartbeat_every
        if self.running and now >= self._spend_due():
            actions.append(Tick.SPEND)
            self.next_spend = now + self.limits.spend_every
        for s in self.running.values():
            if s.kill_at is not None and now >= s.kill_at:
                actions.append(Kill(s.key))
                s.kill_at = None
            elif s.ended_by is None and not s.queued and now >= s.started + self.limits.timeout:
                actions.append(self._stop(s, Status.TIMEOUT))
        return actions

    def _spend_due(self) -> float:
        """When the running spend is read next: never without a budget, or once reached."""
        return INF if self.budget is None or self.budget.reached else self.next_spend

    def _deadline(self, s: Slot) -> float:
        if s.kill_at is not None:
            return s.kill_at
        return s.started + self.limits.timeout if s.ended_by is None and not s.queued else INF

    # --- what happened ------------------------------------------------------
    def free_hue(self, colours: int) -> int:
        """The first of `colours` prefix colours that no running item has."""
        return min(set(range(colours)) - {s.hue for s in self.running.values()}, default=0)

    def started(self, item: Item, keys: tuple[str, ...], hue: int) -> Slot:
        slot = Slot(item, self.clock(), keys, hue)
        self.attempts[slot.key] = self.attempts.get(slot.key, 0) + 1
        self.running[slot.key] = slot
        if self.budget is not None:
            self.budget.started(slot.key)
        return slot

    def running_now(self, key: str) -> None:
        """The attempt `key`, queued until now (on a cluster), has begun to run: its
        timeout and its duration count from here."""
        slot = self.running.get(key)
        if slot is not None and slot.ended_by is None:
            slot.started, slot.queued = self.clock(), False

    def ended(self, key: str) -> tuple[Slot, float]:
        """The attempt `key` is over: its slot and its duration. Its keys came back, so
        an item held by a pause may try again at once."""
        slot = self.running.pop(key)
        self.pause.until = None
        return slot, self.clock() - slot.started

    def hold(self, item: Item, until: float) -> bool:
        """`item` waits for a key until `until` (at the front); True if a pause began."""
        self.queue.appendleft(item)
        self.pause.until = max(until, self.clock())
        began = not self.pause.said
        if began:
            self.pause.said, self.pause.granted = True, False
        return began

    def granted(self) -> None:
        """An item got its keys: the pause (if any) no longer holds new starts back."""
        self.pause.until, self.pause.granted = None, True

    def resumed(self) -> bool:
        """Once the pause no longer holds: True if a resume line is due (a key was
        granted since the pause began, and the run was not stopped meanwhile)."""
        if not self.pause.said or self.pause.holds(self.clock()):
            return False
        self.pause.said = False
        return self.pause.granted and self.stopped_by is None

    def retry(self, item: Item) -> bool:
        """Run `item` again (first in line) if it has attempts left."""
        if self.attempts.get(slug(item.kind, item.id), 0) >= self.limits.max_attempts:
            return False
        self.queue.appendleft(item)
        return True

    def rate_limited(self, key: str, count: int = 1) -> None:
        """`count` 429s more for item `key` (its worker's waited-out ones, or the last)."""
        self.limited[key] = self.limited.get(key, 0) + count

    def finished(self, status: Status, duration: float, counted: bool = True) -> None:
        """An item is over for this run (`counted`: it was one of the run's items)."""
        if status is Status.DONE:
            self.tally["done"] += 1
            self.worked += duration
        elif status in (Status.FAILED, Status.TIMEOUT, Status.HALTED):
            self.tally["failed"] += 1
        elif counted:
            self.tally[status.value] += 1  # skipped, interrupted

    def signalled(self, signum: int) -> list[Action]:
        """SIGINT/SIGTERM: the first stops every worker (SIGKILL after the grace; one
        already timing out keeps its time), a second kills them all now."""
        if self.stopped_by is not None:
            return [Kill(key) for key in self.running]
        self.stopped_by = signum
        return [self._stop(s, Status.INTERRUPTED) for s in self.running.values()
                if s.ended_by is None]

    def budget_reached(self) -> list[Action]:
        """The spend reached the budget: nothing more starts (`admits`), and every running
        worker not already stopping finishes its current step and stops."""
        winding = [s for s in self.running.values() if s.ended_by is None and not s.winding]
        for s in winding:
            s.winding = True
        return [Wind(s.key) for s in winding]

    def stop_now(self, key: str) -> list[Action]:
        """Stop `key` as an interrupt (SIGKILL after the grace): it could not be wound down."""
        slot = self.running.get(key)
        return [self._stop(slot, Status.INTERRUPTED)] if slot and slot.ended_by is None else []

    def not_stopped(self, key: str) -> None:
        """A `Stop` for `key` was never carried out (the loop failed first): it is not
        ours to blame on a timeout or a signal, and no SIGKILL follows it."""
        slot = self.running.get(key)
        if slot is not None:
            slot.ended_by, slot.kill_at = None, None

    def abandon(self) -> list[Action]:
        """The loop failed: every running worker is killed, and counts as interrupted."""
        for s in self.running.values():
            s.ended_by = s.ended_by or Status.INTERRUPTED
        return [Kill(key) for key in self.running]

    def unstarted(self) -> list[Item]:
        """The items never started (the run was stopped first), off the queue."""
        items = list(self.queue)
        self.queue.clear()
        return items

    def _stop(self, s: Slot, why: Status) -> Stop:
        s.ended_by = s.ended_by or why
        s.kill_at = self.clock() + self.limits.grace
        return Stop(s.key, why)

    # --- how it stands ------------------------------------------------------
    def progress(self) -> Progress:
        """The run as the progress line and the live area show it."""
        now, eta = self.clock(), None
        if self.tally["done"]:  # from the done items' mean duration, over the parallel slots
            mean = self.worked / self.tally["done"]
            left = sum(max(0.0, mean - (now - s.started)) for s in self.running.values())
            slots = max(1, min(self.limits.parallel, len(self.running) + len(self.queue)))
            eta = (left + mean * len(self.queue)) / slots
        running = tuple(Active(s.item.tag, ",".join(s.keys) or "-", now - s.started, s.hue)
                        for s in self.running.values())
        return Progress(self.total, pending=len(self.queue), running=running,
                        elapsed=now - self.began, eta=eta, paused=self.pause.holds(now),
                        done=self.tally["done"], failed=self.tally["failed"],
                        skipped=self.tally["skipped"], interrupted=self.tally["interrupted"])
