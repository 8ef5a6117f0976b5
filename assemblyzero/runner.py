"""What a task does, below the invoke layer: plan, print the plan, run a kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from assemblyzero import backlog
from assemblyzero.backlog import Plan
from assemblyzero.coordinator import Console, Coordinator, RunOptions
from assemblyzero.ids import Kind
from assemblyzero.options import Parallel, UsageError
from assemblyzero.workspace import Workspace

PLAN_VERSION = 1


def workspace(repo: str | Path) -> Workspace:
    ws = Workspace.at(repo)
    if not ws.root.is_dir():
        raise UsageError(f"workspace not found: {ws.root} (pass --repo=PATH)")
    return ws


def plan(ws: Workspace, kind: Kind, only: list[str] | None, limit: int | None) -> Plan:
    return backlog.select(backlog.scan(ws, kind), kind, only, limit)


def run_kind(
    ws: Workspace, kind: Kind, settings: dict[str, Any], parallel: Parallel,
    only: list[str] | None = None, limit: int | None = None,
) -> int:
    """Run every pending item of `kind`; the exit code of the run."""
    todo = plan(ws, kind, only, limit)
    console = Console(width=len("[COORDINATOR]"))
    if parallel.warning:
        console.say(f"warning: {parallel.warning}")
    if not todo.items:
        for skipped in todo.skipped:
            console.say(f"skipped {skipped.name}: {skipped.reason}")
        console.say(f"nothing to do: no pending {kind.value} items in {ws.root}")
        return 0
    opts = RunOptions(parallel=parallel.workers, **settings)
    return Coordinator(ws, opts, console).run(todo.items, f"{kind.value}-all", todo.skipped)


def describe(
    ws: Workspace, kinds: list[Kind], settings: dict[str, Any], parallel: Parallel,
    only: list[str] | None, limit: int | None,
) -> dict[str, Any]:
    """The dry-run plan as data: nothing is written, no model called."""
    checkpoints = ws.state / "checkpoints"
    data: dict[str, Any] = {
        "version": PLAN_VERSION, "repo": str(ws.root), "parallel": parallel.workers,
        "drafter": settings["drafter"], "reviewer": settings["reviewer"],
        "max_iterations": settings["max_iterations"], "timeout": settings["timeout"],
        "credentials": [], "kinds": {},
    }
    for kind in kinds:
        todo = plan(ws, kind, only, limit)
        data["kinds"][kind.value] = {
            "pending": [{
                "id": item.id, "tag": item.tag,
                "input": str(ws.input_file(kind, item.id).relative_to(ws.root)),
                "resumes": (checkpoints / f"{kind.value}-{item.id}.db").exists(),
            } for item in todo.items],
            "skipped": [{"name": s.name, "reason": s.reason} for s in todo.skipped],
        }
    return data


def render_plan(data: dict[str, Any], warning: str = "") -> str:
    lines = [f"dry run of {data['repo']}: nothing is written, no model is called"]
    if warning:
        lines.append(f"warning: {warning}")
    workers = data["parallel"]
    lines.append(f"parallelism: {workers} worker(s)" if workers > 1 else
                 "parallelism: sequential (one at a time; add --parallel for 3)")
    lines.append(f"models: drafter {data['drafter']}, reviewer {data['reviewer']}, "
                 f"max {data['max_iterations']} revision(s), timeout {data['timeout']:g}s")
    lines.append("credentials: none configured (the offline provider needs none)")
    for kind, entry in data["kinds"].items():
        lines.append(f"{kind}: {len(entry['pending'])} pending")
        width = max((len(p["tag"]) for p in entry["pending"]), default=0)
        for p in entry["pending"]:
            note = "  (resumes from its checkpoint)" if p["resumes"] else ""
            lines.append(f"  {p['tag'].ljust(width)}  {p['input']}{note}")
        for s in entry["skipped"]:
            lines.append(f"  skipped {s['name']}: {s['reason']}")
    return "\n".join(lines)


def plan_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2)
