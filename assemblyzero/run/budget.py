"""A run's budget (`--budget=USD`): what was spent, what the running items are expected to
spend, whether another item may start, and when the run must wind down. No I/O: the
coordinator tells it what each attempt spent (its result) and is spending (its spend file).

    spent      the ended attempts' spend in this run
    committed  spent, plus each running item's expected spend beyond what it already has
               (at least its estimate: the mean spend of the items done in this run, or,
               before any is done, the dry-run's estimate from its input's size)

An item starts only while committed < limit; once spent plus what the running attempts
have spent so far reaches the limit, the budget is *reached*: nothing more starts, and
every running item stops after its current step. A run with a budget refuses models
without a price (cli/options.py); a call whose cost is still unknown (its reply had no
token counts, or it was cut short) counts as a quarter of the costliest item's estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from assemblyzero.cost import Spend

CALLS_PER_ITEM = 4  # the estimate's path: draft, review, revise, review


@dataclass
class Budget:
    limit: float  # USD
    priors: dict[str, float] = field(default_factory=dict)  # per item key, before it ran
    default_prior: float = 0.0  # an item without its own estimate
    spent: float = 0.0  # by the ended attempts of this run
    live: dict[str, float] = field(default_factory=dict)  # running attempts' spend so far
    by_item: dict[str, float] = field(default_factory=dict)  # ended attempts', per item
    done: list[float] = field(default_factory=list)  # what each item done in this run cost
    reached_at: float | None = None  # the spend when the budget was reached

    def counted(self, spend: Spend) -> float:
        """What `spend` weighs against the limit: unknown calls at a call's estimate."""
        per_call = max(self.priors.values(), default=self.default_prior) / CALLS_PER_ITEM
        return spend.usd + spend.unpriced * per_call

    @property
    def reached(self) -> bool:
        return self.reached_at is not None

    def estimate(self, key: str) -> float:
        """What item `key` is expected to spend in this run, in all."""
        if self.done:
            return sum(self.done) / len(self.done)
        return self.priors.get(key, self.default_prior)

    def committed(self) -> float:
        """Spent, plus what the running items are still expected to spend."""
        return self.spent + sum(max(now, self.estimate(key) - self.by_item.get(key, 0.0))
                                for key, now in self.live.items())

    def admits(self) -> bool:
        """May another item start?"""
        return not self.reached and self.committed() < self.limit

    def total(self) -> float:
        """Spent so far: the ended attempts', and the running ones' as last told."""
        return self.spent + sum(self.live.values())

    # --- what happened ------------------------------------------------------
    def started(self, key: str) -> None:
        self.live[key] = 0.0

    def spending(self, key: str, spend: Spend) -> None:
        """A running attempt says what it has spent so far (never less than before)."""
        if key in self.live:
            self.live[key] = max(self.live[key], self.counted(spend))

    def ended(self, key: str, spend: Spend, done: bool) -> None:
        """The attempt `key` is over, having spent `spend` (`done`: the item is finished)."""
        usd = self.counted(spend)
        self.live.pop(key, None)
        self.spent += usd
        self.by_item[key] = self.by_item.get(key, 0.0) + usd
        if done:
            self.done.append(self.by_item[key])

    def check(self) -> bool:
        """True once, when the spend first reaches the limit."""
        if self.reached or self.total() < self.limit:
            return False
        self.reached_at = self.total()
        return True
