"""Item statuses, worker exit codes and the result a worker reports."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assemblyzero.constants import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    MAX_TIMEOUT,
    RETRY_COUNT_MAX,
    RETRY_NAME_LIMIT,
    WAITS_MAX,
)
from assemblyzero.cost import Spend
from assemblyzero.numbers import finite

if TYPE_CHECKING:
    from assemblyzero.workflow.state import WorkflowState


class Status(StrEnum):
    DONE = "done"
    FAILED = "failed"
    HALTED = "halted"  # needs a human: same finding twice, out of iterations, or DISCUSS
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"  # not run: already done, or taken by another run


# How a worker reports its status by exit code (the JSON may be missing).
WORKER_EXIT: dict[Status, int] = {
    Status.DONE: 0,
    Status.FAILED: 1,
    Status.HALTED: 3,
    Status.INTERRUPTED: EXIT_INTERRUPTED,
}


def status_from_exit(code: int) -> Status:
    """What the coordinator concludes from an exit code alone (143: killed by SIGTERM)."""
    if code == EXIT_TERMINATED:
        return Status.INTERRUPTED
    return next((s for s, value in WORKER_EXIT.items() if value == code), Status.FAILED)


@dataclass(frozen=True)
class WorkerResult:
    """What a worker writes to `<run-dir>/results/<kind>-<id>.json`."""

    kind: str
    id: str
    status: Status
    iterations: int = 0
    model_calls: int = 0
    tokens: list[int] = field(default_factory=lambda: [0, 0])  # input, output
    # The same per credential name: the calls made with that leased key (a call without a
    # key counts in `tokens` only). None: a result of an older worker, which did not say.
    tokens_by_key: dict[str, list[int]] | None = None
    resumed_from: str | None = None
    output: str | None = None
    reason: str = ""
    steps: list[str] = field(default_factory=list)
    # Set when the item should run again on another key: {"kind": "rate_limited" or
    # "auth", "credential": name, "retry_after": seconds or None}.
    retry: dict[str, Any] | None = None
    # What was retried, and how often: a provider's own retries under its label ("HTTP 503",
    # "timeout"), and the workflow's: "empty" (an empty reply asked again), "cut" (a reply
    # cut at the output-token limit continued), "re-ask" (an unreadable review asked again
    # for just the verdict). Cumulative like `tokens`; empty in results of older workers.
    retries: dict[str, int] = field(default_factory=dict)
    # What this attempt's calls cost: [USD of the calls with a known cost, calls whose cost
    # is unknown] (cost.Spend), overall and per leased key. Not cumulative: an attempt's own.
    spent: list[float | int] = field(default_factory=lambda: [0.0, 0])
    spent_by_key: dict[str, list[float | int]] = field(default_factory=dict)
    # Per leased key, what this attempt did with it: {"requests": sent, "waited": seconds
    # waited for its budget or its rest, "rate_limited": 429s} (keys/pacer.py). Not
    # cumulative; empty in results of releases up to 0.2.x.
    key_use: dict[str, dict[str, float | int]] = field(default_factory=dict)
    # Each wait of this attempt for a key: {"credential", "why": "budget" or "rest", "from":
    # wall time, "seconds"} (keys/pacer.py, at most WAITS_MAX); the coordinator journals
    # them for the report. Empty in results of releases up to 0.2.x.
    waits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def spend(self) -> Spend:
        return Spend.read(self.spent) or Spend(0.0, 1)

    @property
    def spend_by_key(self) -> dict[str, Spend]:
        return {name: Spend.read(pair) or Spend(0.0, 1)
                for name, pair in self.spent_by_key.items()}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def read(cls, path: Path) -> WorkerResult | None:
        """The result file, or None if it is missing or unreadable."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["status"] = Status(data["status"])
            data["tokens_by_key"] = _per_key(data.get("tokens_by_key"))
            data["retries"] = _counts(data.get("retries"))
            data["spent"] = _spend(data.get("spent", [0.0, 0]))
            by_key = data.get("spent_by_key", {})
            data["spent_by_key"] = {name: _spend(pair) for name, pair in by_key.items()
                                    if isinstance(name, str)} if isinstance(by_key, dict) else {}
            data["key_use"] = _key_use(data.get("key_use"))
            data["waits"] = _waits(data.get("waits"))
            return cls(**data)
        except (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError):
            return None


def tokens_by_key(state: WorkflowState) -> dict[str, list[int]]:
    """A copy of a workflow state's tokens per credential name (empty before a keyed call)."""
    counts = _per_key(state.get("tokens_by_key")) or {}
    return {name: list(used) for name, used in counts.items()}


def retries_of(state: WorkflowState) -> dict[str, int]:
    """A copy of a workflow state's retry counts (empty when nothing was retried)."""
    return _counts(state.get("retries"))


def _spend(value: Any) -> list[float | int]:
    """A stored spend as read; one that is not ours counts as one call of unknown cost."""
    return (Spend.read(value) or Spend(0.0, 1)).pair()


def _counts(value: Any) -> dict[str, int]:
    """`retries` as read: {label: count}, leaving out what is not one (a label longer than
    ours, a count out of range); {} when absent."""
    if not isinstance(value, dict):
        return {}
    return {name: n for name, n in value.items()
            if isinstance(name, str) and 0 < len(name) <= RETRY_NAME_LIMIT
            and isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= RETRY_COUNT_MAX}


def _per_key(value: Any) -> dict[str, list[int]] | None:
    """`tokens_by_key` as read, or None (unknown) when it is missing or not well formed."""
    if not isinstance(value, dict):
        return None
    counts = {name: used for name, used in value.items()
              if isinstance(used, list) and len(used) == 2
              and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in used)}
    return counts if len(counts) == len(value) else None


KEY_USE_MAX = {"requests": RETRY_COUNT_MAX, "waited": MAX_TIMEOUT, "rate_limited": RETRY_COUNT_MAX}


def _key_use(value: Any) -> dict[str, dict[str, float | int]]:
    """`key_use` as read: per key name, each count in range (what is not is left out)."""
    if not isinstance(value, dict):
        return {}
    found: dict[str, dict[str, float | int]] = {}
    for name, use in value.items():
        if not isinstance(name, str) or not isinstance(use, dict):
            continue
        fields = {what: n for what, n in use.items() if what in KEY_USE_MAX
                  and isinstance(n, (int, float)) and not isinstance(n, bool)
                  and 0 <= n <= KEY_USE_MAX[what]}  # NaN fails the comparison
        if len(fields) == len(KEY_USE_MAX):
            found[name] = fields
    return found


NAME_MAX = 200  # characters of a key name in a wait


def _waits(value: Any) -> list[dict[str, Any]]:
    """`waits` as read: the well-formed entries (a key name, a known why, a time and a
    duration in range), at most WAITS_MAX; [] when absent."""
    if not isinstance(value, list):
        return []
    found: list[dict[str, Any]] = []
    for entry in value[:WAITS_MAX]:
        if not isinstance(entry, dict):
            continue
        name, why = entry.get("credential"), entry.get("why")
        since, seconds = finite(entry.get("from")), finite(entry.get("seconds"))
        if (isinstance(name, str) and 0 < len(name) <= NAME_MAX and why in ("budget", "rest")
                and since is not None and seconds is not None
                and 0 < since < 1e12 and 0 <= seconds <= MAX_TIMEOUT):  # NaN fails these
            found.append({"credential": name, "why": why, "from": since, "seconds": seconds})
    return found


