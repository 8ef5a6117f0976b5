"""A run's record: its directory, `journal.jsonl`, `summary.json`, the table.

    logs/parallel/<run-id>/<kind>-<id>.log    raw output of one worker
    logs/parallel/<run-id>/results/*.json     what each worker reported
    logs/parallel/<run-id>/journal.jsonl      one JSON event per line
    logs/parallel/<run-id>/summary.json       the outcome of the run
    logs/parallel/latest -> <run-id>
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from assemblyzero.fileio import append_line, atomic_write
from assemblyzero.ids import sort_key
from assemblyzero.results import Status
from assemblyzero.ui.console import printable

SUMMARY_VERSION = 1


class Event(StrEnum):
    """The events of `journal.jsonl`: written by the coordinator, read by `status`,
    the benchmarks and the tests (docs/schemas/journal-event.schema.json)."""

    RUN_START = "run-start"
    START = "start"  # a worker started (an attempt of an item)
    END = "end"  # an item's attempt ended, or an item ended without a worker
    RETRY = "retry"  # a 429 or 401/403: the item runs again on another key
    PAUSE = "pause"  # every key held or resting: items wait
    RESUME = "resume"
    ERROR = "error"  # the coordinator's own error (with its traceback)
    RUN_END = "run-end"


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

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
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


def summary_data(
    record: RunRecord, outcomes: list[Outcome], keys: list[Any], meta: dict[str, Any],
    exit_code: int,
) -> dict[str, Any]:
    """The content of summary.json (schema version SUMMARY_VERSION)."""
    counts = {s.value: 0 for s in Status}
    for outcome in outcomes:
        counts[outcome.status.value] += 1
    return {
        "version": SUMMARY_VERSION,
        "run_id": record.run_id,
        **meta,
        "exit_code": exit_code,
        "counts": counts,
        "worker_seconds": round(sum(o.duration for o in outcomes), 3),
        "items": [o.to_json() for o in sorted(outcomes, key=lambda o: (o.kind, sort_key(o.id)))],
        "credentials": [{**asdict(k), "cooldown_seconds": round(k.cooldown_seconds, 3)}
                        for k in keys],
    }


def print_summary(say: Callable[[str], None], summary: dict[str, Any], outcomes: list[Outcome],
                  root: Path, path: Path | None) -> None:
    """The table, failed items' last log lines, keys and totals (`path`: summary.json, if
    it could be written)."""
    say(f"summary of run {summary['run_id']}:")
    for line in table(outcomes, root):
        say("  " + line)
    for o in outcomes:  # what a failed item last said, so nobody has to open its log first
        if o.status in (Status.FAILED, Status.TIMEOUT, Status.HALTED) and o.log:
            for line in _tail(Path(o.log), TAIL_LINES):
                say(f"  {o.tag} | {line}")
    if summary["credentials"]:
        rows = [("KEY", "PROVIDER", "STARTS", "TOKENS", "429S", "RESTED", "DISABLED")]
        rows += [(k["name"], k["provider"], str(k["attempts"]),
                  f"{k['tokens'][0]}/{k['tokens'][1]}", str(k["rate_limited"]),
                  f"{k['cooldown_seconds']:.1f}s", k["disabled"] or "-")
                 for k in summary["credentials"]]
        for line in _aligned(rows):
            say("  " + line)
    counts = ", ".join(f"{n} {s}" for s, n in summary["counts"].items() if n)
    wall, work = summary["wall_seconds"], summary["worker_seconds"]
    speed = f" ({work / wall:.1f}x)" if wall > 0 else ""
    say(f"{counts or 'nothing run'}; wall {wall:.1f}s, worker time {work:.1f}s{speed}; "
        f"{_rel(str(path), root) if path else 'summary.json not written'}")


TAIL_LINES = 3  # lines of a failed item's log shown under the summary


def _tail(path: Path, count: int) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 8192))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip()][-count:]


_ORDER = {Status.FAILED: 0, Status.TIMEOUT: 1, Status.HALTED: 2, Status.INTERRUPTED: 3,
          Status.SKIPPED: 4, Status.DONE: 5}


def table(outcomes: list[Outcome], root: Path) -> list[str]:
    """The items as aligned rows, failures first."""
    rows = [("ITEM", "STATUS", "TIME", "ITER", "CALLS", "TOKENS", "TRIES", "429S", "KEY",
             "LOG / REASON")]
    for o in sorted(outcomes, key=lambda o: (_ORDER[o.status], o.tag)):
        note = o.reason if o.status is not Status.DONE else ""
        where = _rel(o.log, root) if o.log else ""
        rows.append((o.tag, o.status.value, f"{o.duration:.1f}s", str(o.iterations),
                     str(o.model_calls), f"{o.tokens[0]}/{o.tokens[1]}", str(o.attempts),
                     str(o.rate_limited),
                     o.credential or "-", "  ".join(filter(None, (where, note)))))
    return _aligned(rows)


def _aligned(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Columns padded to their widest cell; the last column is left as it is."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
            for row in rows]


def _rel(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
