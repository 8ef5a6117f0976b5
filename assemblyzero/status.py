"""`invoke status` and `invoke retry-failed`: what the latest run (or a running one) did.

A finished run has `summary.json`. A run without it is either still going
(its coordinator, recorded in the journal's run-start event, is alive) or
was cut short (`kill -9`, power loss); its journal tells which items ended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from assemblyzero.ids import Kind
from assemblyzero.leases import process_start
from assemblyzero.options import UsageError
from assemblyzero.runner import Origin
from assemblyzero.workspace import Workspace

STATUS_VERSION = 1
UNFINISHED = {"failed", "halted", "timeout", "interrupted"}


def read_run(run_dir: Path) -> dict[str, Any]:
    """One run as data: `state` is finished, running or abandoned."""
    summary = run_dir / "summary.json"
    if summary.exists():
        try:
            data: dict[str, Any] = json.loads(summary.read_text(encoding="utf-8"))
            return {"run_id": run_dir.name, "state": "finished", "label": data.get("label"),
                    "exit_code": data.get("exit_code"), "counts": data.get("counts", {}),
                    "items": [{"tag": i["tag"], "id": i["id"], "status": i["status"],
                               "reason": i.get("reason", "")} for i in data.get("items", [])]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            raise UsageError(f"cannot read {summary} ({why}); delete it, and the run is read "
                             "from its journal instead") from None
    events = _journal(run_dir)
    start = events[0] if events and events[0].get("event") == "run-start" else {}
    alive = (start.get("pid_start") is not None
             and process_start(int(start.get("pid", 0))) == start.get("pid_start"))
    ids = dict(zip(start.get("items", []), start.get("ids", []), strict=False))
    status = {tag: "pending" for tag in start.get("items", [])}
    for event in events:
        if event.get("event") == "start":
            status[event["item"]] = "running"
        elif event.get("event") == "end":
            status[event["item"]] = event.get("status", "failed")
        elif event.get("event") == "retry":
            status[event["item"]] = "pending"
    if not alive:  # the coordinator died: what was running or pending did not finish
        cut = ("running", "pending")
        status = {t: ("interrupted" if s in cut else s) for t, s in status.items()}
    return {"run_id": run_dir.name, "state": "running" if alive else "abandoned",
            "label": start.get("label"), "exit_code": None,
            "items": [{"tag": t, "id": ids.get(t, t), "status": s, "reason": ""}
                      for t, s in status.items()]}


def _journal(run_dir: Path) -> list[dict[str, Any]]:
    try:
        lines = (run_dir / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a crash
    return events


def overview(ws: Workspace) -> dict[str, Any]:
    """The latest run and every run still in progress."""
    latest = ws.runs / "latest"
    data: dict[str, Any] = {"version": STATUS_VERSION, "repo": str(ws.root), "latest": None,
                            "in_progress": [], "problems": []}
    if latest.is_symlink() and not latest.exists():
        data["problems"].append(f"{latest} points at a run folder that is gone; delete it "
                                "(the next run makes a new one)")
    elif latest.exists():
        try:
            data["latest"] = read_run(latest.resolve())
        except UsageError as exc:
            data["problems"].append(str(exc))
    if ws.runs.is_dir():
        for run_dir in sorted(p for p in ws.runs.iterdir() if p.is_dir() and not p.is_symlink()):
            latest_id = data["latest"]["run_id"] if data["latest"] else None
            if not (run_dir / "summary.json").exists() and run_dir.name != latest_id:
                run = read_run(run_dir)
                if run["state"] == "running":
                    data["in_progress"].append(run)
    return data


def render(data: dict[str, Any]) -> str:
    lines = [f"problem: {p}" for p in data["problems"]]
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
    return "\n".join(lines)


def unfinished(ws: Workspace) -> tuple[Kind, list[str], Origin]:
    """The kind, ids and origin (source, label, publish) the latest run did not finish."""
    latest = ws.runs / "latest"
    if not latest.exists():
        why = "points at a run folder that is gone" if latest.is_symlink() else "not found"
        raise UsageError(f"no run to retry in {ws.root} ({latest} {why}); run lld-all or "
                         "issue-all, which resume every item that has a checkpoint")
    run = read_run(latest.resolve())
    if run["state"] == "running":
        pid = run["run_id"].rpartition("-")[2]
        how = f"kill {pid}" if pid.isdigit() else "Ctrl+C in its terminal"
        raise UsageError(f"run {run['run_id']} is still in progress; wait for it to end or "
                         f"stop it ({how}), then retry")
    kind = Kind.ISSUE if str(run.get("label", "")).startswith("issue") else Kind.LLD
    ids = [i["id"] for i in run["items"] if i["status"] in UNFINISHED
           or (i["status"] == "skipped" and i["reason"].startswith("not started"))]
    start = next((e for e in _journal(latest.resolve()) if e.get("event") == "run-start"), {})
    origin = Origin(start.get("source", "files"), start.get("label_filter"),
                    start.get("publish"))
    return kind, ids, origin
