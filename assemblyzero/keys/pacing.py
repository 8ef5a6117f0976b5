"""Per-key pacing: continuous-refill budgets for requests and tokens, shared by every process.

A key may be limited per minute in requests (`rpm`), input and output tokens together
(`tpm`), input tokens (`input_tpm`) and output tokens (`output_tpm`): the credentials
file sets a ceiling, and the provider's rate-limit headers tell the current limit and
level (`providers.RateInfo`). Each limited dimension is a bucket as the providers
describe theirs: it holds at most one minute's allowance and refills continuously at
limit/60 per second. A call reserves one request and its estimated tokens before it is
sent (`reserve`: granted, or the seconds until it would be), and settles with what it
really used afterwards (`settle`: the difference goes back, or becomes debt).

Pure functions over the `pace` part of a lease record (keys/leases.py keeps it under
the key's lock, so concurrent runs on one machine share it):

    {"buckets": {"requests": [level, at], "tokens": [...], "input": [...], "output": [...]},
     "learned": {"requests": 60.0, ...},        # the limits the provider's headers said
     "output_avg": {"draft": 1800.0, ...}}      # recent output tokens per role

Every number in it may come from a crash, an older release or a hand: `checked` puts
each in range first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from assemblyzero.numbers import finite
from assemblyzero.providers import RateInfo, Window

PACE_FIELDS = ("rpm", "tpm", "input_tpm", "output_tpm")  # the credential's fields
DIMENSIONS = ("requests", "tokens", "input", "output")  # the buckets, in that order
_FIELD_OF = dict(zip(DIMENSIONS, PACE_FIELDS, strict=True))
LIMIT_MAX = 1e9  # per minute: a larger limit is a typo (or a hostile record)
LIMIT_MIN = 0.01  # per minute: a smaller configured limit is a typo
LEARNED_MIN = 1.0  # per minute: a header stating less is not believed
OUTPUT_MAX = 1e6  # tokens: an average output beyond any model's is not one
WINDOW = 60.0  # seconds: a limit is per minute, and its bucket holds one minute's worth
OUTPUT_AVG_WEIGHT = 0.5  # how much one call's output moves the role's running average
# Output tokens a call is expected to write before the key has a history (cost.py's
# estimate of the usual path), per role.
DEFAULT_OUTPUT = {"draft": 2000, "revise": 2000, "review": 600}
ROLES = tuple(DEFAULT_OUTPUT)
_LIKE = {"draft": "revise", "revise": "draft"}
CHARS_PER_TOKEN = 4  # an input estimate: the prompt's characters / 4
TICK = 0.001  # seconds: a wait shorter than this is none (a clock's rounding)


@dataclass(frozen=True)
class Limits:
    """Per-minute limits of one key; None: not limited in that dimension (or unknown)."""

    rpm: float | None = None
    tpm: float | None = None
    input_tpm: float | None = None
    output_tpm: float | None = None

    def of(self, dimension: str) -> float | None:
        value: float | None = getattr(self, _FIELD_OF[dimension])
        return value

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def under(self, other: Limits) -> Limits:
        """The tighter of the two in every dimension (a configured ceiling, a learned one)."""
        merged = {}
        for name in PACE_FIELDS:
            known = [v for v in (getattr(self, name), getattr(other, name)) if v is not None]
            merged[name] = min(known) if known else None
        return Limits(**merged)

    def to_json(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}

    @classmethod
    def from_json(cls, raw: Any) -> Limits:
        """Limits as passed to a worker; a field out of range or not a number is left out."""
        if not isinstance(raw, dict):
            return cls()
        return cls(**{name: _limit(raw.get(name)) for name in PACE_FIELDS})

    def describe(self) -> str:
        """`60 rpm, 40,000 tpm` (empty when unlimited)."""
        return ", ".join(f"{_count(value)} {name.replace('_', ' ')}"
                         for name, value in self.to_json().items())


@dataclass(frozen=True)
class Need:
    """What one call takes from its key's buckets."""

    requests: float = 1.0
    input: float = 0.0
    output: float = 0.0

    def of(self, dimension: str) -> float:
        if dimension == "tokens":
            return self.input + self.output
        value: float = getattr(self, dimension)
        return value


def estimate(prompt_chars: int, role: str, pace: dict[str, Any],
             max_output: int | None = None) -> Need:
    """The need of a call: its prompt's tokens, and the output the role wrote lately on this
    key (its default before any), never above the call's output cap."""
    averages = pace.get("output_avg", {})
    # A revision writes a whole document, as a draft does: each stands in for the other
    # until it has a history of its own (a first revision is not held to 2000 tokens).
    expected = float(averages.get(role) or averages.get(_LIKE.get(role, role))
                     or DEFAULT_OUTPUT.get(role, 2000))
    if max_output:
        expected = min(expected, float(max_output))
    return Need(1.0, float(prompt_chars // CHARS_PER_TOKEN), expected)


def fresh() -> dict[str, Any]:
    return {"buckets": {}, "learned": {}, "output_avg": {}}


def limits_of(pace: dict[str, Any], ceiling: Limits) -> Limits:
    """The limits in force: the configured ceiling, tightened by what the provider said."""
    learned = pace.get("learned", {})
    said = Limits(**{_FIELD_OF[d]: learned.get(d) for d in DIMENSIONS})
    return ceiling.under(said)


def level(pace: dict[str, Any], dimension: str, limit: float, now: float) -> float:
    """The bucket's level now: what it held, refilled since, at most `limit`; full when new."""
    stored = pace["buckets"].get(dimension)
    if stored is None:
        return limit
    held, at = stored
    return float(min(limit, held + max(0.0, now - at) * limit / WINDOW))


def wait_for(pace: dict[str, Any], ceiling: Limits, need: Need, now: float) -> float:
    """Seconds until every bucket admits `need` (0: now). Changes nothing.

    Requests and input tokens must be there before the call, as servers count them on
    admission. Output tokens are spent as the model writes them, so a call is admitted
    while its output bucket is not in debt (it needs one token), and the estimate of its
    output is taken from the bucket all the same (`reserve`): the next calls then wait
    for it. An estimate that is too high (a first draft's) thus delays nothing itself."""
    limits, wait = limits_of(pace, ceiling), 0.0
    for dimension in DIMENSIONS:
        limit = limits.of(dimension)
        if limit is None:
            continue
        wanted = {"output": min(1.0, need.output), "tokens": need.input}.get(
            dimension, need.of(dimension))
        want = min(wanted, limit)  # a call above a bucket waits for a full one
        short = want - level(pace, dimension, limit, now)
        if short > 0:
            wait = max(wait, short * WINDOW / limit)
    return wait


def reserve(pace: dict[str, Any], ceiling: Limits, need: Need, now: float) -> float:
    """Take `need` from every bucket and answer 0, or answer the seconds to wait (taking
    nothing). A dimension without a limit is not counted."""
    wait = wait_for(pace, ceiling, need, now)
    if wait > TICK:
        return wait
    limits = limits_of(pace, ceiling)
    for dimension in DIMENSIONS:
        limit = limits.of(dimension)
        if limit is not None:
            _set(pace, dimension, level(pace, dimension, limit, now) - need.of(dimension), now)
    return 0.0


def settle(pace: dict[str, Any], ceiling: Limits, reserved: Need, used: Need | None,
           role: str, now: float) -> None:
    """After the call: the tokens reserved but not used go back; those used beyond the
    reservation are taken (a bucket may go below 0: a debt the refill pays first). The
    role's average output learns from `used` (None: the call brought no counts)."""
    if used is None:
        return
    limits = limits_of(pace, ceiling)
    for dimension in ("tokens", "input", "output"):
        limit = limits.of(dimension)
        if limit is not None:
            back = reserved.of(dimension) - used.of(dimension)
            _set(pace, dimension, min(limit, level(pace, dimension, limit, now) + back), now)
    if role in ROLES and 0 <= used.output <= OUTPUT_MAX:
        averages = pace.setdefault("output_avg", {})
        before = averages.get(role)
        averages[role] = round(used.output if before is None else
                               before + OUTPUT_AVG_WEIGHT * (used.output - before), 1)


def refund(pace: dict[str, Any], ceiling: Limits, reserved: Need, now: float) -> None:
    """A call refused (429) gives its tokens back; its request stays taken."""
    limits = limits_of(pace, ceiling)
    for dimension in ("tokens", "input", "output"):
        limit = limits.of(dimension)
        if limit is not None and dimension in pace["buckets"]:
            _set(pace, dimension, min(limit, level(pace, dimension, limit, now)
                                      + reserved.of(dimension)), now)


def learn(pace: dict[str, Any], info: RateInfo | None, ceiling: Limits, now: float) -> None:
    """What the provider's headers said: its limits, and levels no higher than its own
    (taken as of the reply: a little conservative when the server wrote them at
    admission)."""
    if info is None:
        return
    windows: dict[str, Window | None] = {"requests": info.requests, "tokens": info.tokens,
                                         "input": info.input_tokens,
                                         "output": info.output_tokens}
    for dimension, window in windows.items():
        if window is None:
            continue
        said = _limit(window.limit)
        if said is not None and said >= LEARNED_MIN:  # below: a broken proxy, not a limit
            pace["learned"][dimension] = said
        limit = limits_of(pace, ceiling).of(dimension)
        said_level = _server_level(window, limit, dimension in pace["buckets"])
        if limit is not None and said_level is not None:
            _set(pace, dimension, min(level(pace, dimension, limit, now), said_level), now)


def _server_level(window: Window, limit: float | None, kept: bool) -> float | None:
    """The level of the server's bucket as its headers tell it. `remaining` is rounded
    down (whole numbers), so the level is in [remaining, remaining + 1); the time until
    the bucket is full again (`reset`) places it inside that: limit - reset x limit/60.
    Without a reset: remaining + 1 bounds a bucket we kept ourselves (`kept`), and a
    bucket started from the header starts at remaining."""
    remaining = finite(window.remaining)
    if limit is None or remaining is None or remaining < 0:
        return None
    reset = finite(window.reset)
    if reset is not None and reset >= 0:
        return min(remaining + 1.0, max(remaining, limit - reset * limit / WINDOW))
    return remaining + 1.0 if kept else remaining


def daily_reset(now: float) -> float:
    """Seconds until a per-day quota is reset: midnight Pacific time, as Google resets
    Gemini's (a day when the zone is unknown here)."""
    import zoneinfo  # here: a worker seldom needs it, and every worker imports this module
    from datetime import datetime, timedelta
    from datetime import time as dt_time

    try:
        zone = zoneinfo.ZoneInfo("America/Los_Angeles")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return 86400.0
    here = datetime.fromtimestamp(now, zone)
    midnight = datetime.combine(here.date() + timedelta(days=1), dt_time(), zone)
    return max(60.0, midnight.timestamp() - now)


def empty(pace: dict[str, Any], ceiling: Limits, now: float, until: float) -> None:
    """After a 429 that rests the key until `until`: the request bucket is to hold one
    request when the rest ends, so that the waiting calls then go through one by one at
    the refill rate, not all at once (however long the rest, jitter included)."""
    limit = limits_of(pace, ceiling).of("requests")
    if limit is not None:
        target = 1.0 - max(0.0, until - now) * limit / WINDOW
        _set(pace, "requests", min(target, level(pace, "requests", limit, now)), now)


def levels(pace: dict[str, Any], ceiling: Limits, now: float) -> dict[str, tuple[float, float]]:
    """Each limited bucket's (level, limit) now, for dry-run and the live area."""
    limits = limits_of(pace, ceiling)
    return {d: (level(pace, d, limit, now), limit) for d in DIMENSIONS
            if (limit := limits.of(d)) is not None}


NAMES = {"requests": "requests", "tokens": "tokens", "input": "input tokens",
         "output": "output tokens"}


def shown(found: dict[str, tuple[float, float]]) -> str:
    """`12/60 requests, 30,000/40,000 tokens` (what is left of each bucket now; a debt
    shows as 0)."""
    return ", ".join(f"{max(0, math.floor(held)):,}/{limit:,.0f} {NAMES[dimension]}"
                     for dimension, (held, limit) in found.items())


def _set(pace: dict[str, Any], dimension: str, value: float, now: float) -> None:
    pace["buckets"][dimension] = [round(max(-LIMIT_MAX, value), 3), now]


# --- a record read from disk ---------------------------------------------------------
def checked(raw: Any, now: float, ahead: float) -> tuple[dict[str, Any], list[str]]:
    """`raw` (a lease record's `pace`) with every value in range, and what was reset:
    a level beyond +-LIMIT_MAX or not a number, a time more than `ahead` seconds in the
    future or not a number (the bucket is dropped: it counts as full again, refilled),
    a learned limit out of range, an average that is no token count."""
    pace, problems = fresh(), list[str]()
    if raw is None:
        return pace, problems
    if not isinstance(raw, dict):
        return pace, ["pace is not an object; reset"]
    buckets = raw.get("buckets", {})
    for dimension, value in (buckets.items() if isinstance(buckets, dict) else ()):
        if dimension not in DIMENSIONS:
            problems.append("pace has an unknown bucket; dropped")
            continue
        if (isinstance(value, list) and len(value) == 2
                and (held := finite(value[0])) is not None and abs(held) <= LIMIT_MAX
                and (at := finite(value[1])) is not None and at <= now + ahead):
            pace["buckets"][dimension] = [held, at]
        else:
            problems.append(f"pace bucket '{dimension}' is not [level, time] in range; reset")
    learned = raw.get("learned", {})
    for dimension, value in (learned.items() if isinstance(learned, dict) else ()):
        if dimension in DIMENSIONS and (limit := _limit(value)) is not None:
            pace["learned"][dimension] = limit
        else:
            problems.append("pace has a learned limit out of range; dropped")
    averages = raw.get("output_avg", {})
    for role, value in (averages.items() if isinstance(averages, dict) else ()):
        number = finite(value)
        if role in ROLES and number is not None and 0 <= number <= OUTPUT_MAX:
            pace["output_avg"][role] = number
        else:
            problems.append("pace has an average output out of range; dropped")
    return pace, problems



def _limit(value: Any) -> float | None:
    number = finite(value)
    return number if number is not None and 0 < number <= LIMIT_MAX else None


def _count(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:g}"
