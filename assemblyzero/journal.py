"""The events of a run's `journal.jsonl` (docs/schemas/journal-event.schema.json).

Written by the coordinator (run/record.py), read by `status` (cli/history.py),
the benchmarks and the tests; here, apart from both, so that reading a
journal imports nothing of the scheduler.
"""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    """The events of `journal.jsonl`: written by the coordinator, read by `status`,
    the benchmarks and the tests (docs/schemas/journal-event.schema.json)."""

    RUN_START = "run-start"
    START = "start"  # a worker started (an attempt of an item)
    END = "end"  # an item's attempt ended, or an item ended without a worker
    RETRY = "retry"  # a 429 or 401/403: the item runs again on another key
    BEGAN = "began"  # on a cluster: a queued attempt began on a host
    WAIT = "wait"  # an attempt's worker waited for a key's budget or rest (at its end)
    PAUSE = "pause"  # every key held or resting: items wait
    RESUME = "resume"
    BUDGET = "budget"  # the spend reached --budget: nothing more starts, running items wind down
    ERROR = "error"  # the coordinator's own error (with its traceback)
    RUN_END = "run-end"
