"""The key gate: which keys an item runs on, how long it waits, what a refusal costs.

Between the scheduler and the credential pool. `take` answers a grant, or
how long to wait on the run's own clock (the pool and the lease store think
in wall-clock time; the scheduler's clock is monotonic and may be a test's).
`refused` turns a worker's 429 or 401/403 into a resting or disabled key
(whether the item runs again is the scheduler's: its attempts). `charge`
counts each key's tokens and cost. A per-key rate limiter (requests and tokens per
minute) is one more reason for `take` to answer `Wait`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from assemblyzero.constants import EXIT_AUTH_FAILED, EXIT_RATE_LIMITED
from assemblyzero.keys import pacing
from assemblyzero.keys.leases import Busy
from assemblyzero.keys.pool import Grant, KeyStats, Pool
from assemblyzero.results import WorkerResult


@dataclass(frozen=True)
class Wait:
    """No key now: every one the item needs is held or resting until `until` (run clock)."""

    reason: str
    until: float


@dataclass(frozen=True)
class Refusal:
    """A worker's key was refused: rested (a 429) or disabled for the run (401/403)."""

    kind: str  # "rate_limited" or "auth"
    credential: str
    rest: float = 0.0  # seconds the key rests (a 429)
    counted: bool = False  # the worker counted this 429 in its result's key_use already
    moved: bool = False  # no 429: the worker left the key before a call (KeyMoved)

    def describe(self) -> str:
        if self.kind == "rate_limited" and self.moved:
            return (f"left {self.credential} before its call (the key rests or its budget is "
                    "spent, longer than a move costs)")
        if self.kind == "rate_limited":
            return f"got a 429 on {self.credential}, which rests {max(0.0, self.rest):.1f}s"
        return f"was refused (401/403) by {self.credential}, now disabled for this run"


class KeyGate:
    def __init__(self, pool: Pool | None, clock: Callable[[], float] = time.monotonic,
                 pacing: bool = True) -> None:
        """`clock`: the run's; the pool's own clock (wall time, shared with its lease
        store) is the one rests and waits are measured on. `pacing`: each worker paces its
        calls to its keys' budgets (False: `--no-pacing`, a 429 alone slows a key)."""
        self.pool, self.clock, self.pacing = pool, clock, pacing
        if pool is not None:
            pool.paced = pacing
        self.wall = pool.clock if pool else time.time
        # Per item: its totals as of its last attempt, overall and per key.
        self._seen: dict[str, list[int]] = {}
        self._seen_by_key: dict[str, dict[str, list[int]]] = {}

    def stats(self) -> list[KeyStats]:
        return list(self.pool.stats.values()) if self.pool else []

    def take(self, tag: str) -> Grant | Wait | None:
        """The item's keys, how long to wait for them, or None when it needs none.

        Raises NoCredential when a provider has no usable key left.
        """
        if self.pool is None:
            return None
        got = self.pool.take(tag)
        if isinstance(got, Busy):
            rest = max(0.0, (got.until or 0.0) - self.wall())
            return Wait(got.reason, self.clock() + rest)
        return got

    def budgets(self) -> str:
        """`team-a 12/60 requests · team-b 40/60 requests` for the keys whose calls are
        paced to a known limit, as their shared budgets stand now ('' when none is)."""
        if self.pool is None or not self.pacing:
            return ""
        now, parts = self.wall(), []
        for name in self.pool.stats:
            try:
                state = self.pool.store.peek(name)
            except OSError:
                continue
            levels = pacing.levels(state["pace"], self.pool.credential(name).limits, now)
            if levels:
                parts.append(f"{name} {pacing.shown(levels)}")
        return " · ".join(parts)

    def give_back(self, grant: Grant | None, succeeded: bool) -> None:
        if grant is not None and self.pool is not None:
            self.pool.give_back(grant, succeeded)

    def heartbeat(self, grants: list[Grant]) -> None:
        if self.pool is not None and grants:
            self.pool.heartbeat(grants)

    def refused(self, grant: Grant | None, result: WorkerResult | None,
                code: int) -> Refusal | None:
        """A 429 or 401/403 (from the result, or from the exit code alone): rest or
        disable that key, for every process; None if the attempt ended otherwise, or the
        result names a key this attempt did not hold (then no key is blamed)."""
        if grant is None or self.pool is None:
            return None
        retry = result.retry if result else None
        if retry is None and code in (EXIT_RATE_LIMITED, EXIT_AUTH_FAILED):
            kind = "rate_limited" if code == EXIT_RATE_LIMITED else "auth"
            retry = {"kind": kind, "credential": grant.names[0], "retry_after": None}
        if retry is None:
            return None
        name = retry["credential"] or grant.names[0]
        if name not in grant.names:
            return None
        if retry["kind"] == "rate_limited":
            # Rested by the worker's pacer already (and its 429 counted in its key_use).
            rested = retry.get("rested") is True
            rest = self.pool.rate_limited(name, retry["retry_after"], rested) - self.wall()
            return Refusal("rate_limited", name, rest, counted=rested,
                           moved=retry.get("moved") is True)
        self.pool.disable(name, "refused (401/403)")
        return Refusal("auth", name)

    def secrets(self, grant: Grant | None) -> dict[str, Any] | None:
        """What the worker of `grant` gets on its secrets pipe: its keys (secret, provider,
        base URL, whether to ask for structured replies), and every known secret so it can
        mask any of them in what it writes."""
        if grant is None or self.pool is None:
            return None
        keys = {name: {"secret": self.pool.creds.secrets[name],
                       "provider": self.pool.credential(name).provider,
                       "base_url": self.pool.credential(name).base_url,
                       "structured": self.pool.credential(name).structured}
                for name in grant.names}
        given: dict[str, Any] = {"keys": keys,
                                 "mask": [v for v in self.pool.creds.secrets.values() if v]}
        if self.pacing:
            given["pace"] = {name: self.pool.plan(name).to_json() for name in grant.names}
        return given

    def charge(self, item: str, grant: Grant | None, result: WorkerResult | None) -> None:
        """Charge each key of the grant the tokens and cost of its own calls in this attempt.

        The result holds the item's running totals, per key too: what grew since the
        item's previous attempt is this attempt's.
        """
        if grant and self.pool and result is None:  # no result: what it cost is unknown
            for name in grant.names:
                if name in self.pool.stats:
                    stats = self.pool.stats[name]
                    stats.cost = stats.cost.call(None)
        if not (grant and self.pool and result):
            return
        for name, spend in result.spend_by_key.items():  # this attempt's own, not cumulative
            if name in grant.names and name in self.pool.stats:
                stats = self.pool.stats[name]
                stats.cost = stats.cost.plus(spend)
        for name, use in result.key_use.items():  # this attempt's own too
            if name in grant.names and name in self.pool.stats:
                stats = self.pool.stats[name]
                stats.requests += int(use["requests"])
                stats.waited_seconds += float(use["waited"])
                stats.rate_limited += int(use["rate_limited"])
        before = self._seen.get(item, [0, 0])
        self._seen[item] = list(result.tokens)
        if result.tokens_by_key is None:
            # A result without per-key counts (an older worker): one key made every call;
            # of several keys, which made which is unknown, so none is charged rather than
            # each the whole.
            if len(grant.names) == 1:
                self._add(grant.names[0], result.tokens, before)
            return
        seen = self._seen_by_key.setdefault(item, {})
        for name, used in result.tokens_by_key.items():
            if name in grant.names:  # others are earlier attempts' (already charged) or runs'
                self._add(name, used, seen.get(name, [0, 0]))
            seen[name] = list(used)

    def _add(self, name: str, used: list[int], before: list[int]) -> None:
        if self.pool and name in self.pool.stats:
            for n in (0, 1):
                self.pool.stats[name].tokens[n] += max(0, used[n] - before[n])
