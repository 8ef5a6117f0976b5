"""A run's journal as a timeline: one bar per attempt, packed into lanes, with the rests,
waits and pauses around them.

The journal is read as untrusted data (an edited file, a journal cut short by a crash):
an event that is not what ours look like is left out, times are kept within the run's
span, and a run without `run-end` is drawn up to its last event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from assemblyzero.constants import WAITS_MAX  # wait periods drawn per attempt
from assemblyzero.journal import Event
from assemblyzero.numbers import finite

SPAN_MAX = 31 * 86400.0  # seconds after run-start beyond which an event's time is not believed
NAME_MAX = 255  # characters of a tag, host or key name kept


@dataclass
class Wait:
    """A worker waited inside its attempt: for a key's budget, or for its 429 rest."""

    start: float
    end: float
    why: str  # "budget" or "rest"
    credential: str


@dataclass
class Bar:
    """One attempt of one item."""

    item: str
    attempt: int
    start: float  # when it began running (on a cluster: on its host, not when queued)
    end: float
    outcome: str  # done, failed, halted, timeout, interrupted, retried, unfinished
    credentials: list[str]
    host: str = ""
    queued: float | None = None  # on a cluster: when it was handed to the scheduler
    retry: str = ""  # rate_limited, auth, lost: why it ran again
    exit_code: int | None = None
    waits: list[Wait] = field(default_factory=list)
    group: str = ""  # the row group: a host on a cluster, "" on one machine
    lane: int = 0  # the row within its group
    critical: bool = False  # the attempt that ended last: the run's tail waited on it


@dataclass
class Band:
    """A span of time drawn across rows: a pool pause, or a key's rest after a 429."""

    start: float
    end: float
    label: str
    credential: str = ""  # a key's rest: which key


@dataclass
class Timeline:
    t0: float
    t1: float
    bars: list[Bar]
    pauses: list[Band]
    rests: list[Band]
    groups: list[tuple[str, int]]  # (group name, lanes), in drawing order
    finished: bool  # the journal has run-end
    parallel: int
    label: str
    budget_at: float | None = None  # the run's budget was reached here
    tail_start: float | None = None  # from here on, slots sat idle with nothing left to start
    errors: list[str] = field(default_factory=list)  # the coordinator's own errors
    settled: dict[str, str] = field(default_factory=dict)  # items ended without a worker

    @property
    def span(self) -> float:
        return max(self.t1 - self.t0, 1e-3)

    def key_names(self) -> list[str]:
        """Every key an attempt held, rested or waited on, in name order."""
        names = {c for b in self.bars for c in b.credentials}
        names |= {r.credential for r in self.rests}
        names |= {w.credential for b in self.bars for w in b.waits}
        return sorted(n for n in names if n)

    def busy_seconds(self) -> float:
        """Every attempt's running time, added up (the worker time the slots gave)."""
        return sum(b.end - b.start for b in self.bars)



def _name(value: Any) -> str:
    return value[:NAME_MAX] if isinstance(value, str) else ""


def build(events: Iterable[dict[str, Any]]) -> Timeline:
    """The timeline of one run's journal events, in the order they were written."""
    events = [e for e in events if isinstance(e, dict)]
    first = events[0] if events and events[0].get("event") == Event.RUN_START else {}
    stamps = [t for e in events if (t := finite(e.get("ts"))) is not None and t > 0]
    t0 = finite(first.get("ts")) or (min(stamps) if stamps else 0.0)
    parallel = first.get("parallel")
    line = Timeline(t0, t0, [], [], [], [], False,
                    parallel if type(parallel) is int and 0 < parallel <= 100_000 else 1,
                    _name(first.get("label")))
    open_: dict[str, Bar] = {}
    last: dict[str, Bar] = {}
    paused: tuple[float, str] | None = None
    for event in events:
        ts = finite(event.get("ts"))
        if ts is None or not t0 <= ts <= t0 + SPAN_MAX:
            continue
        line.t1 = max(line.t1, ts)
        kind, item = event.get("event"), _name(event.get("item"))
        if kind == Event.START and item:
            if (earlier := open_.pop(item, None)) is not None:  # a start without its end
                earlier.end = max(ts, earlier.start)
                line.bars.append(earlier)
            attempt = event.get("attempt")
            creds = event.get("credentials")
            open_[item] = Bar(item, attempt if type(attempt) is int and attempt > 0 else 1,
                              ts, ts, "unfinished",
                              [_name(c) for c in creds if _name(c)] if isinstance(creds, list)
                              else [])
        elif kind == Event.BEGAN and item in open_:
            bar = open_[item]
            bar.queued, bar.start = bar.start, max(ts, bar.start)  # never before it was queued
            bar.host = _name(event.get("host"))
        elif kind == Event.WAIT and item in open_:
            _wait(open_[item], event, t0)
        elif kind == Event.END and item:
            ended = open_.pop(item, None)
            status = _name(event.get("status")) or "failed"
            if ended is None:  # settled without a worker: skipped, no key left
                line.settled[item] = status
                continue
            ended.end, ended.outcome = max(ts, ended.start), status  # a clock stepped back
            code = event.get("exit_code")
            ended.exit_code = code if type(code) is int else None
            ended.host = ended.host or _name(event.get("host"))
            line.bars.append(ended)
            last[item] = ended
        elif kind == Event.RETRY and item in last:
            bar = last[item]
            bar.outcome, bar.retry = "retried", _name(event.get("kind")) or "retry"
            rest, key = finite(event.get("rest")), _name(event.get("credential"))
            if rest and rest > 0 and key:
                line.rests.append(Band(ts, min(ts + rest, t0 + SPAN_MAX), f"{key} rests "
                                       f"{rest:.1f}s after a 429", key))
        elif kind == Event.PAUSE and paused is None:
            paused = (ts, _name(event.get("reason")))
        elif kind == Event.RESUME and paused is not None:
            line.pauses.append(Band(paused[0], ts, paused[1]))
            paused = None
        elif kind == Event.BUDGET and line.budget_at is None:
            line.budget_at = ts
        elif kind == Event.ERROR:
            line.errors.append(_name(event.get("error")))
        elif kind == Event.RUN_END:
            line.finished = True
    for bar in open_.values():  # still running, or its coordinator died: drawn to the end
        bar.end = line.t1
        line.bars.append(bar)
    if paused is not None:  # a pause the run ended in (stopped while items waited)
        line.pauses.append(Band(paused[0], line.t1, paused[1]))
    for bar in line.bars:
        bar.waits = [w for w in bar.waits if w.end > bar.start and w.start < bar.end]
        for wait in bar.waits:
            wait.start, wait.end = max(wait.start, bar.start), min(wait.end, bar.end)
    _pack(line)
    _tail(line)
    return line


def _wait(bar: Bar, event: dict[str, Any], t0: float) -> None:
    start, seconds = finite(event.get("from")), finite(event.get("seconds"))
    why = event.get("why")
    if (start is None or seconds is None or seconds <= 0 or why not in ("budget", "rest")
            or len(bar.waits) >= WAITS_MAX or not t0 <= start <= t0 + SPAN_MAX):
        return
    bar.waits.append(Wait(start, min(start + seconds, t0 + SPAN_MAX), str(why),
                          _name(event.get("credential"))))


def _pack(line: Timeline) -> None:
    """Each bar into a lane of its group that is free when it begins, the one freed last:
    on one machine the lanes are the run's slots (never more than --parallel at once)."""
    line.bars.sort(key=lambda b: (b.start, b.end, b.item))
    free_at: dict[str, list[float]] = {}
    for bar in line.bars:
        bar.group = bar.host
        lanes = free_at.setdefault(bar.group, [])
        free = [i for i, t in enumerate(lanes) if t <= bar.start]
        # The lane freed last: an item (or a retry) takes over the slot just given back.
        lane = max(free, key=lambda i: (lanes[i], -i)) if free else len(lanes)
        if lane == len(lanes):
            lanes.append(bar.end)
        lanes[lane] = bar.end
        bar.lane = lane
    line.groups = [(name, len(free_at[name])) for name in sorted(free_at)]


def _tail(line: Timeline) -> None:
    """The tail: from when the first slot fell idle for good (nothing left for it to run)
    to the end; the attempt that ends last is the one the run waited for. A retry that
    started later in another slot does not hide the idle one."""
    if not line.bars:
        return
    last_end: dict[tuple[str, int], float] = {}
    for bar in line.bars:
        lane = (bar.group, bar.lane)
        last_end[lane] = max(last_end.get(lane, bar.end), bar.end)
    line.tail_start = min(last_end.values()) if len(last_end) > 1 else None
    max(line.bars, key=lambda b: (b.end, b.start)).critical = True
