"""A run's record: its directory, `journal.jsonl`, the outcomes, `summary.json`.

    logs/parallel/<run-id>/<kind>-<id>.log    raw output of one worker
    logs/parallel/<run-id>/results/*.json     what each worker reported
    logs/parallel/<run-id>/spend/*.json       a running worker's spend (with a budget)
    logs/parallel/<run-id>/stop/<kind>-<id>   "stop after your current step" (budget reached)
    logs/parallel/<run-id>/journal.jsonl      one JSON event per line
    logs/parallel/<run-id>/summary.json       the outcome of the run
    logs/parallel/latest -> <run-id>
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assemblyzero.cost import Spend
from assemblyzero.fileio import append_line, atomic_write
from assemblyzero.journal import Event
from assemblyzero.results import Status
from assemblyzero.ui.console import printable


@dataclass(frozen=True)
class Outcome:
    """How one item ended in this run."""

    kind: str
    id: str
    tag: str
    status: Status
    duration: float = 0.0
    iterations: int = 0
    model_calls: int = 0
    tokens: tuple[int, int] = (0, 0)  # input, output
    attempts: int = 0
    rate_limited: int = 0
    credential: str | None = None
    reason: str = ""
    log: str | None = None
    # What was retried within the item's calls ({"HTTP 503": 1, "empty": 1, "cut": 2,
    # "re-ask": 1}), cumulative for the item like its tokens.
    retries: dict[str, int] = field(default_factory=dict)
    cost: Spend = field(default_factory=Spend)  # what its attempts spent in this run
    stopped_by_budget: bool = False  # stopped after a step: the run's budget was reached
    host: str | None = None  # on a cluster: the host its last attempt ran on

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["cost"] = self.cost.to_json()
        data["duration"] = round(self.duration, 3)
        return data


class RunRecord:
    """The files of one run, under `logs/parallel/<run-id>/`."""

    def __init__(self, runs: Path, label: str) -> None:
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{label}-{os.getpid()}"
        runs.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):  # two runs of one process in one second get two folders
            self.run_id = stamp if n == 1 else f"{stamp}-{n}"
            self.dir = runs / self.run_id
            try:
                self.dir.mkdir()
                break
            except FileExistsError:
                continue
        self.journal = self.dir / "journal.jsonl"
        self.broken = ""  # why the journal could not be written (a full disk...), once it failed
        _point_latest(runs, self.run_id)

    def log_path(self, slug: str) -> Path:
        return self.dir / f"{slug}.log"

    def result_path(self, slug: str) -> Path:
        return self.dir / "results" / f"{slug}.json"

    def spend_path(self, slug: str) -> Path:
        """Where a running worker keeps its attempt's spend current (with a budget)."""
        return self.dir / "spend" / f"{slug}.json"

    def stop_path(self, slug: str) -> Path:
        """The file that asks a worker to stop after its current step (budget reached)."""
        return self.dir / "stop" / slug

    def clear_result(self, slug: str) -> None:
        """Remove an earlier attempt's result, spend and stop files, before the next
        attempt starts."""
        for path in (self.result_path(slug), self.spend_path(slug), self.stop_path(slug)):
            path.unlink(missing_ok=True)

    def event(self, event: Event, **fields: Any) -> None:
        """Append one event; a journal that cannot be written never stops the run.

        The first failure (ENOSPC, EIO, ...) is kept in `broken`: the run goes
        on, its summary is still printed, and it exits 1 saying why.
        """
        if self.broken:
            return
        record = {"ts": round(time.time(), 3), "event": event, **fields}
        try:
            append_line(self.journal, json.dumps(record, sort_keys=True))
        except OSError as exc:
            self.broken = f"cannot write {self.journal}: {exc.strerror or exc}"

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """Write summary.json; raises OSError (the caller says it and exits 1)."""
        path = self.dir / "summary.json"
        atomic_write(path, json.dumps(summary, indent=2) + "\n")
        return path


def _point_latest(runs: Path, run_id: str) -> None:
    """Replace `runs/latest` atomically with a symlink to `run_id`."""
    tmp = runs / f".latest.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_id)
        os.replace(tmp, runs / "latest")
    except OSError as exc:  # `latest` is a convenience: warn, never fail the run
        tmp.unlink(missing_ok=True)
        real = os.path.isdir(runs / "latest") and not os.path.islink(runs / "latest")
        fix = ("it is a real folder: rename or delete it; until then status and retry-failed "
               "use the newest run folder" if real else exc.strerror)
        print(printable(f"warning: could not point {runs / 'latest'} at {run_id}: {fix}"),
              file=sys.stderr)
