"""`invoke status` and `invoke retry-failed`: what the latest run (or a running one) did.

A finished run has `summary.json`. A run without it is either still going
(its coordinator, recorded in the journal's run-start event, is alive) or
was cut short (`kill -9`, power loss); its journal tells which items ended.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from assemblyzero.cli.options import UsageError
from assemblyzero.cli.origin import Origin
from assemblyzero.fileio import inside, read_record
from assemblyzero.ids import Kind
from assemblyzero.journal import Event
from assemblyzero.keys.lease_record import process_start
from assemblyzero.ui.console import printable
from assemblyzero.workspace import Workspace

STATUS_VERSION = 1
UNFINISHED = {"failed", "halted", "timeout", "interrupted"}


def read_run(run_dir: Path) -> dict[str, Any]:
    """One run as data: `state` is finished, running or abandoned.

    Its files are read only as plain files: never through a symlink, never a FIFO or device.
    """
    summary = run_dir / "summary.json"
    if summary.exists() or summary.is_symlink():
        try:
            data: dict[str, Any] = json.loads(read_record(summary))
            return {"run_id": run_dir.name, "state": "finished", "label": data.get("label"),
                    "exit_code": data.get("exit_code"), "counts": data.get("counts", {}),
                    "items": [{"tag": str(i["tag"]), "id": str(i["id"]),
                               "status": str(i["status"]), "reason": str(i.get("reason", ""))}
                              for i in data["items"]]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            raise UsageError(f"cannot read {summary} ({why}); delete it, and the run is read "
                             "from its journal instead") from None
    events = _journal(run_dir)
    start = events[0] if events and events[0].get("event") == Event.RUN_START else {}
    pid = start.get("pid")
    alive = (start.get("pid_start") is not None and type(pid) is int and 0 < pid < 1 << 22
             and process_start(pid) == start.get("pid_start"))
    tags = [t for t in _list(start.get("items")) if isinstance(t, str)]
    ids = dict(zip(tags, [str(i) for i in _list(start.get("ids"))], strict=False))
    status = {tag: "pending" for tag in tags}
    changes = {Event.START: "running", Event.END: None, Event.RETRY: "pending"}
    for event in events:
        item, what = event.get("item"), event.get("event")
        if isinstance(item, str) and what in changes:
            status[item] = changes[what] or str(event.get("status", "failed"))
    if not alive:  # the coordinator died: what was running or pending did not finish
        cut = ("running", "pending")
        status = {t: ("interrupted" if s in cut else s) for t, s in status.items()}
    return {"run_id": run_dir.name, "state": "running" if alive else "abandoned",
            "label": start.get("label"), "exit_code": None,
            "items": [{"tag": t, "id": ids.get(t, t), "status": s, "reason": ""}
                      for t, s in status.items()]}


def _journal(run_dir: Path) -> list[dict[str, Any]]:
    try:
        raw = read_record(run_dir / "journal.jsonl")
    except OSError:  # missing, a symlink, not a plain file: no journal to read
        return []
    lines = raw.decode("utf-8", "replace").splitlines()
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(event, dict):
            events.append(event)
    return events


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def latest_run(ws: Workspace) -> tuple[Path | None, list[str]]:
    """The latest run's folder (None: no run yet), and what was wrong with `latest`.

    `logs/parallel/latest` is the link each run points at itself. When it is
    missing, dangling, a real folder, or leads out of logs/parallel, the
    newest run folder is the latest run instead (a real folder named latest
    must not hide the runs after it), and the problem is said.
    """
    latest, problems = ws.runs / "latest", []
    if latest.is_symlink():
        if not latest.exists():
            problems.append(f"{latest} points at a run folder that is gone; delete it (the "
                            "next run makes a new one)")
        elif not inside(ws.runs, latest) or not latest.is_dir():
            problems.append(f"{latest} leads outside {ws.runs} (to {os.path.realpath(latest)});"
                            " it is not read: delete it (the next run makes a new one)")
        else:
            return latest.resolve(), problems
    elif os.path.lexists(latest):
        problems.append(f"{latest} is a real {'folder' if latest.is_dir() else 'file'}, not "
                        "the link each run points at itself; rename or delete it (the newest "
                        "run is shown instead)")
    newest = _newest(_run_dirs(ws))
    if newest and problems:
        problems[-1] += f"; the newest run folder is {newest.name}"
    return newest, problems


def _latest(ws: Workspace, none: str, hint: str) -> Path:
    """The latest run's folder, its problems said as warnings; UsageError `none` + `hint`
    when there is no run."""
    latest, problems = latest_run(ws)
    for problem in problems:
        print(printable(f"warning: {problem}"), file=sys.stderr)
    if latest is None:
        raise UsageError(f"{none} in {ws.root} ({ws.runs} holds none){hint}")
    return latest


def find_run(ws: Workspace, run_id: str | None) -> Path:
    """The folder of run `run_id` (a folder name under logs/parallel), or of the latest run;
    UsageError naming what is wrong (no such run, a name that is not one)."""
    if run_id is None:
        return _latest(ws, "no run yet", ": run lld-all or issue-all first")
    runs = _run_dirs(ws)
    for run in runs:
        if run.name == run_id:
            return run
    shown = ", ".join(r.name for r in runs[-3:])
    raise UsageError(f"no run {run_id!r} in {ws.runs}: pass a run folder's name"
                     + (f" (the latest: {shown})" if shown else "; no run there yet"))


def _run_dirs(ws: Workspace) -> list[Path]:
    """The run folders (real folders only, never `latest`), by name."""
    try:
        return sorted(p for p in ws.runs.iterdir()
                      if p.name != "latest" and p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def _newest(runs: list[Path]) -> Path | None:
    """The run that started last: its id begins with the second it started
    (`20261202-101500-...`); runs of one second are told apart by their journals.
    Only those few journals are read, not every run's (cron keeps months of them).
    """
    if not runs:
        return None
    second = max(run.name[:15] for run in runs)
    return max((run for run in runs if run.name[:15] == second), key=_started)


def _started(run_dir: Path) -> tuple[float, str]:
    try:
        first = read_record(run_dir / "journal.jsonl", 1 << 16).split(b"\n", 1)[0]
        ts = float(json.loads(first or b"{}").get("ts", 0.0))
    except (OSError, ValueError, TypeError, AttributeError):
        ts = 0.0
    return (ts if math.isfinite(ts) else 0.0, run_dir.name)


def overview(ws: Workspace) -> dict[str, Any]:
    """The latest run and every run still in progress."""
    data: dict[str, Any] = {"version": STATUS_VERSION, "repo": str(ws.root), "latest": None,
                            "in_progress": [], "problems": []}
    latest, data["problems"] = latest_run(ws)
    if latest is not None:
        try:
            data["latest"] = read_run(latest)
        except UsageError as exc:
            data["problems"].append(str(exc))
    if ws.runs.is_dir():
        for run_dir in _run_dirs(ws):
            latest_id = data["latest"]["run_id"] if data["latest"] else None
            if not (run_dir / "summary.json").exists() and run_dir.name != latest_id:
                run = read_run(run_dir)
                if run["state"] == "running":
                    data["in_progress"].append(run)
    return data


def render(data: dict[str, Any]) -> str:
    lines = [f"problem: {p}" for p in data["problems"]]
    if cluster := data.get("cluster"):
        lines.append(f"cluster {cluster['address']}: {cluster['workers']} worker(s) on "
                     f"{', '.join(cluster['hosts']) or 'no host'}, {cluster['slots']} slot(s)")
        for key in cluster["keys"]:
            rest = (f", rests {key['rests_seconds']:g}s more" if key["rests_seconds"]
                    else "")
            lines.append(f"  {key['name']}: {key['held']}/{key['max_concurrent']} slot(s) "
                         f"held on the cluster{rest}")
    runs = ([("latest run", data["latest"])] if data["latest"] else []) + [
        ("in progress", run) for run in data["in_progress"]]
    if not runs:
        lines.append(f"no run yet in {data['repo']}")
    for title, run in runs:
        counts: dict[str, int] = {}
        for item in run["items"]:
            counts[item["status"]] = counts.get(item["status"], 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        code = f", exit {run['exit_code']}" if run["exit_code"] is not None else ""
        lines.append(f"{title}: {run['run_id']} ({run['state']}{code}): {summary or 'no items'}")
        width = max((len(i["tag"]) for i in run["items"]), default=0)
        for item in run["items"]:
            note = f"  {item['reason']}" if item["reason"] and item["status"] != "done" else ""
            lines.append(f"  {item['tag'].ljust(width)}  {item['status']}{note}")
    return "\n".join(printable(line) for line in lines)  # tags, reasons: from outside


def unfinished(ws: Workspace) -> tuple[Kind, list[str], Origin]:
    """The kind, ids and origin (source, label, publish) the latest run did not finish."""
    latest = _latest(ws, "no run to retry", "; run lld-all or issue-all, which resume "
                     "every item that has a checkpoint")
    run = read_run(latest)
    if run["state"] == "running":
        pid = run["run_id"].rpartition("-")[2]
        how = f"kill {pid}" if pid.isdigit() else "Ctrl+C in its terminal"
        raise UsageError(f"run {run['run_id']} is still in progress; wait for it to end or "
                         f"stop it ({how}), then retry")
    kind = Kind.ISSUE if str(run.get("label", "")).startswith("issue") else Kind.LLD
    ids = [i["id"] for i in run["items"] if i["status"] in UNFINISHED
           or (i["status"] == "skipped" and i["reason"].startswith("not started"))]
    start = next((e for e in _journal(latest) if e.get("event") == Event.RUN_START), {})
    origin = Origin(start.get("source", "files"), start.get("label_filter"),
                    start.get("publish"))
    return kind, ids, origin
