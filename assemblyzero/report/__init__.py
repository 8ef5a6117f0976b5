"""A run's HTML report, `logs/parallel/<run-id>/report.html`: drawn from its journal
(and its summary.json, when the run wrote one), at the end of every run and by
`assemblyzero report`.

Only the run's own files are read, as plain files (never through a symlink, never a
FIFO); what cannot be read is said on the page, and the rest is drawn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from assemblyzero.fileio import atomic_write, read_record
from assemblyzero.report.page import Page
from assemblyzero.report.timeline import Timeline, build

REPORT_NAME = "report.html"

__all__ = ["REPORT_NAME", "Timeline", "build", "journal_events", "render", "write"]


def journal_events(run_dir: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The run's journal events, and what was wrong with reading it (None: nothing)."""
    path = run_dir / "journal.jsonl"
    try:
        raw = read_record(path)
    except OSError as exc:
        return [], f"cannot read {path}: {exc.strerror or exc}"
    events: list[dict[str, Any]] = []
    bad = 0
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if isinstance(event, dict):
            events.append(event)
    return events, (f"{bad} line(s) of {path} could not be read and are left out" if bad
                    else None)


def _summary(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    path = run_dir / "summary.json"
    if not (path.exists() or path.is_symlink()):
        return None, None
    try:
        data = json.loads(read_record(path))
    except (OSError, ValueError, RecursionError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}"
        return None, f"cannot read {path} ({why}); the page is drawn from the journal alone"
    if not isinstance(data, dict):
        return None, f"{path} is not a JSON object; the page is drawn from the journal alone"
    return data, None


def render(run_dir: Path, root: Path) -> str:
    """The report of the run in `run_dir` (a folder of `root`'s logs/parallel) as HTML."""
    events, journal_problem = journal_events(run_dir)
    summary, summary_problem = _summary(run_dir)
    problems = [p for p in (journal_problem, summary_problem) if p]
    return Page(build(events), summary, run_dir, root, run_dir.name, problems).html()


def write(run_dir: Path, root: Path) -> Path:
    """(Re)draw `run_dir/report.html` (replaced whole: a reader never sees half of it);
    OSError when it cannot be written."""
    path = run_dir / REPORT_NAME
    atomic_write(path, render(run_dir, root), fsync=False)
    return path
