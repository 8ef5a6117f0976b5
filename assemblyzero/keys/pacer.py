"""The worker's side of pacing: every model call waits for its key's budget, and a 429 is
waited out on the same lease unless another key would be free sooner.

The coordinator tells each worker, on its secrets pipe, the limits of every key it holds
and the keys of the same provider it could move to (`KeyPlan`; names and numbers only).
`SharedPacer` then, around each call (workflow/engine.py):

    before(key, role, prompt chars)   reserve one request and the estimated tokens in the
                                      key's shared budget (leases.LeaseStore.reserve),
                                      sleeping (interruptibly) until it allows
    after(ticket, reply)              settle with the real usage, learn from the headers
    refused(ticket, 429)              rest the key for every process; True: wait and send
                                      the same call again on it; False: end the attempt
                                      (another key is free sooner, the rest is too long,
                                      or too many 429s in a row), the coordinator moves it

`Pacer` (the base) only counts requests, waits and 429s per key: it is what a worker gets
with `--no-pacing`, and for a call made without a key. Either way the counts go into the
worker's result (`key_use`), and the summary's key table adds them up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from assemblyzero.constants import WAITS_MAX
from assemblyzero.keys import pacing
from assemblyzero.keys.pacing import Limits, Need
from assemblyzero.providers import ModelReply, RateInfo, RateLimited

if TYPE_CHECKING:
    from assemblyzero.keys.leases import LeaseStore

# A 429 is waited out in the worker when its rest ends within this (seconds); a longer
# one ends the attempt, and the coordinator rests the key (up to a day) and moves on.
WAIT_429_MAX = 300.0
RETRIES_429_MAX = 8  # 429s in a row on one call before the attempt ends
SWITCH_COST = 1.0  # seconds a move to another key costs (a worker restart, a resume)
SAY_WAIT_AFTER = 1.0  # a wait for the budget longer than this is said in the item's log
PLAN_KEYS_MAX = 64  # other keys a plan lists at most


class PaceStore(Protocol):
    """Where a key's shared budget and rest are kept: the lease files (keys/leases.py), or on
    a cluster the task's line to the cluster's records (cluster/link.py)."""

    def reserve(self, name: str, ceiling: Limits, need: Need) -> float: ...

    def settle(self, name: str, ceiling: Limits, reserved: Need, used: Need | None, role: str,
               info: RateInfo | None) -> None: ...

    def refused(self, name: str, ceiling: Limits, info: RateInfo | None,
                retry_after: float | None, reserved: Need | None = None) -> float: ...

    def cool_down(self, name: str, retry_after: float | None, jitter: bool = True) -> float: ...

    def peek(self, name: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Other:
    """A key of the same provider the item could run on instead."""

    name: str
    max_concurrent: int
    limits: Limits


@dataclass(frozen=True)
class KeyPlan:
    """What a worker is told about one key it holds (no secret)."""

    name: str
    limits: Limits
    others: tuple[Other, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"limits": self.limits.to_json(),
                "others": [{"name": o.name, "max_concurrent": o.max_concurrent,
                            "limits": o.limits.to_json()} for o in self.others]}

    @classmethod
    def from_json(cls, name: str, raw: Any) -> KeyPlan:
        raw = raw if isinstance(raw, dict) else {}
        others = []
        for entry in (raw.get("others") or [])[:PLAN_KEYS_MAX]:
            if (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                    and isinstance(entry.get("max_concurrent"), int)):
                others.append(Other(entry["name"], max(1, entry["max_concurrent"]),
                                    Limits.from_json(entry.get("limits"))))
        return cls(name, Limits.from_json(raw.get("limits")), tuple(others))


@dataclass
class Use:
    """What one key did in this attempt: requests sent, seconds waited, 429s."""

    requests: int = 0
    waited: float = 0.0
    rate_limited: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "waited": round(self.waited, 3),
                "rate_limited": self.rate_limited}


@dataclass(frozen=True)
class Ticket:
    key: str | None
    role: str
    need: Need
    sent: float  # when the request went out (the pacer's clock)


@dataclass
class WaitPeriod:
    """One wait on a key: from when (the pacer's wall clock), how long, and why."""

    credential: str
    why: str  # "budget": its shared budget; "rest": a 429's rest, waited out here
    start: float
    seconds: float


@dataclass
class Pacer:
    """Counts only: no budget, and a 429 ends the attempt (today's reactive behaviour)."""

    use: dict[str, Use] = field(default_factory=dict)
    waits: list[WaitPeriod] = field(default_factory=list)

    def before(self, key: str | None, role: str, prompt_chars: int,
               max_output: int | None = None) -> Ticket:
        if key is not None:
            self.use.setdefault(key, Use()).requests += 1
        return Ticket(key, role, Need(), 0.0)

    def after(self, ticket: Ticket, reply: ModelReply) -> None:
        """The call was answered."""

    def refused(self, ticket: Ticket, exc: RateLimited) -> bool:
        """A 429: whether to send the same call again on the same key (after `before`).
        No: the attempt ends, and the coordinator rests the key and counts the 429."""
        return False

    def use_json(self) -> dict[str, dict[str, Any]]:
        return {name: use.to_json() for name, use in self.use.items()}

    def waits_json(self) -> list[dict[str, Any]]:
        """Each wait of this attempt: {credential, why ("budget" or "rest"), from (wall
        time), seconds}, in order; the report draws them on its timeline."""
        return [{"credential": w.credential, "why": w.why, "from": round(w.start, 3),
                 "seconds": round(w.seconds, 3)} for w in self.waits]


class KeyMoved(RateLimited):
    """The attempt ends before its call, to resume on another key: this one rests, or waits
    for its budget, longer than WAIT_429_MAX, or another is free sooner. Not a 429: it is
    not counted as one, and the key was rested (if at all) already."""


@dataclass
class SharedPacer(Pacer):
    """Paces every call on a planned key through the lease store's shared budget.

    Pacing is advisory: when the lease store cannot be read or written (a lock held by a
    stopped process, a full disk), the call goes out unpaced, said once in the log."""

    store: PaceStore = field(default_factory=lambda: _store())
    plans: dict[str, KeyPlan] = field(default_factory=dict)
    pause: Callable[[float], None] = time.sleep  # Stop.pause: a signal ends it at once
    say: Callable[[str], None] = print
    clock: Callable[[], float] = time.time  # the lease store's (wall time)
    _streak: int = 0  # 429s in a row on the current call
    rested: bool = False  # the last 429 rested its key for every process (the result says)
    _broken: bool = False  # the store failed once: said, and pacing is off from then on

    def _plan(self, key: str | None) -> KeyPlan | None:
        return None if key is None or self._broken else self.plans.get(key)

    def _failed(self, exc: Exception) -> None:
        self._broken = True
        self.say(f"warning: pacing is off for this attempt: the key's shared budget cannot "
                 f"be used ({type(exc).__name__}: {exc})")

    def before(self, key: str | None, role: str, prompt_chars: int,
               max_output: int | None = None) -> Ticket:
        plan = self._plan(key)
        if plan is None or key is None:
            return super().before(key, role, prompt_chars, max_output)
        try:
            return self._reserved(key, plan, role, prompt_chars, max_output)
        except (OSError, TimeoutError) as exc:
            self._failed(exc)
            return super().before(key, role, prompt_chars, max_output)

    def _reserved(self, key: str, plan: KeyPlan, role: str, prompt_chars: int,
                  max_output: int | None) -> Ticket:
        use = self.use.setdefault(key, Use())
        need = pacing.estimate(prompt_chars, role, self.store.peek(key)["pace"], max_output)
        said = False
        while (wait := self.store.reserve(key, plan.limits, need)) > 0:
            self._move_if_better(key, plan, need, wait)
            if not said and wait > SAY_WAIT_AFTER and not self._streak:  # a 429's rest: said
                said = True
                self.say(f"{role}: waiting {wait:.1f}s for {key}'s budget "
                         f"({self._budget(key, plan)})")
            started, since = time.monotonic(), self.clock()
            self.pause(wait)
            waited = time.monotonic() - started
            use.waited += waited
            self._waited(key, "rest" if self._streak else "budget", since, waited)
        use.requests += 1
        return Ticket(key, role, need, self.clock())

    def _waited(self, key: str, why: str, since: float, seconds: float) -> None:
        """Keep the wait period; one that goes straight on from the last is merged."""
        last = self.waits[-1] if self.waits else None
        if (last is not None and last.credential == key and last.why == why
                and abs(last.start + last.seconds - since) < 0.05):
            last.seconds = since + seconds - last.start
        elif len(self.waits) < WAITS_MAX:
            self.waits.append(WaitPeriod(key, why, since, seconds))

    def _move_if_better(self, key: str, plan: KeyPlan, need: Need, wait: float) -> None:
        """End the attempt (KeyMoved) rather than wait `wait` seconds on `key`, when that is
        longer than WAIT_429_MAX or another key is free sooner."""
        sooner = self._sooner(plan, need, wait) if wait > SWITCH_COST else None
        if wait <= WAIT_429_MAX and sooner is None:
            return
        why = (f"{sooner} is free sooner" if sooner else
               f"that is longer than {WAIT_429_MAX:.0f}s")
        self.rested = True  # nothing for the coordinator to rest: the item only moves
        moved = KeyMoved(f"{key} is not free for {wait:.0f}s (it rests, or its budget is "
                         f"spent); {why}: the item resumes from its checkpoint on a free key")
        moved.credential = key
        raise moved

    def after(self, ticket: Ticket, reply: ModelReply) -> None:
        self._streak = 0
        plan = self._plan(ticket.key)
        if plan is None or ticket.key is None:
            return
        counted = reply.input_tokens is not None and reply.output_tokens is not None
        used = Need(1.0, float(reply.input_tokens or 0),
                    float(reply.output_tokens or 0)) if counted else None
        try:
            self.store.settle(ticket.key, plan.limits, ticket.need, used, ticket.role,
                              reply.limits)
        except (OSError, TimeoutError) as exc:
            self._failed(exc)

    def refused(self, ticket: Ticket, exc: RateLimited) -> bool:
        self.rested = False
        plan = self._plan(ticket.key)
        if plan is None or ticket.key is None:
            return super().refused(ticket, exc)
        try:
            return self._refused(ticket, plan, exc)
        except (OSError, TimeoutError) as failed:
            self._failed(failed)
            self.rested = False  # the coordinator rests the key, as without pacing
            return False

    def _refused(self, ticket: Ticket, plan: KeyPlan, exc: RateLimited) -> bool:
        assert ticket.key is not None
        self.use.setdefault(ticket.key, Use()).rate_limited += 1
        self._streak += 1
        daily = exc.limits.daily_quota if exc.limits else ""
        if daily:  # out until the quota is reset: every process leaves the key alone
            rest = pacing.daily_reset(self.clock())
            self.store.cool_down(ticket.key, rest, jitter=False)  # a reset has no herd
            self.rested = True
            self.say(f"{ticket.role}: {ticket.key}'s daily quota {daily} is used up; it rests "
                     f"{rest / 3600:.1f}h, until the quota is reset (midnight Pacific time), "
                     "and the item moves to another key")
            return False
        until = self.store.refused(ticket.key, plan.limits, exc.limits, exc.retry_after,
                                   ticket.need)
        self.rested = True
        own = max(0.0, until - self.clock())
        if self._streak > RETRIES_429_MAX:
            self.say(f"{ticket.role}: {self._streak} 429s in a row on {ticket.key}; this "
                     "attempt ends, and the item resumes on a key that is free")
            return False
        if own > WAIT_429_MAX:
            self.say(f"{ticket.role}: {ticket.key} rests {own:.0f}s after a 429, longer than "
                     f"{WAIT_429_MAX:.0f}s; this attempt ends, and the item resumes from its "
                     "checkpoint once a key is free")
            return False
        sooner = self._sooner(plan, ticket.need, own)
        if sooner is not None:
            self.say(f"{ticket.role}: 429 on {ticket.key}, which rests {own:.1f}s; "
                     f"{sooner} is free sooner, so the item moves there")
            return False
        self.say(f"{ticket.role}: 429 on {ticket.key}; waiting {own:.1f}s for it, then "
                 "the same call again on it")
        return True

    def _sooner(self, plan: KeyPlan, need: Need, own: float) -> str | None:
        """Another key of the provider with a free slot and budget sooner than `own`
        (less the cost of moving), if any."""
        now = self.clock()
        for other in plan.others:
            try:
                state = self.store.peek(other.name)
            except OSError:
                continue
            if len(state["holders"]) >= other.max_concurrent:
                continue
            rest = max(0.0, float(state["cooldown_until"]) - now)
            ready = rest + pacing.wait_for(state["pace"], other.limits, need, now + rest)
            if ready + SWITCH_COST < own:
                return other.name
        return None

    def _budget(self, key: str, plan: KeyPlan) -> str:
        """`12/60 requests, 900/40,000 tokens` left now, for a line."""
        levels = pacing.levels(self.store.peek(key)["pace"], plan.limits, self.clock())
        return pacing.shown(levels) or "no limit known"


def _store() -> LeaseStore:
    """The lease store, imported only by a worker that paces (one without keys need not)."""
    from assemblyzero.keys.leases import LeaseStore

    return LeaseStore()
