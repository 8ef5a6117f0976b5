"""`docs/lld/status.json`: the LLD status of every id, shared by all workers.

Every update is read-modify-write under a FileLock plus atomic replace, so
many workers finishing at once lose no entry. A missing, corrupt or empty
index (or one whose `items` is not an object) is rebuilt from disk: every
issue whose approved LLD exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from assemblyzero import backlog
from assemblyzero.fileio import JsonDict, update_json
from assemblyzero.ids import Kind
from assemblyzero.workspace import Workspace

INDEX_VERSION = 1


def record(ws: Workspace, item_id: str, status: str, **fields: Any) -> JsonDict:
    """Set the entry of `item_id` (LLD workflow) to `status` plus `fields`."""

    def change(data: JsonDict) -> None:
        items = data.get("items")
        if not isinstance(items, dict) or not items:  # lost or emptied: what the disk says
            items = data["items"] = rebuild(ws)["items"]
        items[item_id] = {"status": status, "updated": _now(), **fields}
        data["version"] = INDEX_VERSION

    return update_json(ws.status_index, ws.status_lock, change, lambda: rebuild(ws), ws.root)


def record_or_warn(ws: Workspace, item_id: str, status: str, say: Callable[[str], None],
                   **fields: Any) -> None:
    """`record`, for the workflow and the coordinator: the index is a view, so a failure
    only warns."""
    try:
        record(ws, item_id, status, **fields)
    except Exception as exc:
        say(f"warning: could not update {ws.status_index}: {exc}")


def rebuild(ws: Workspace) -> JsonDict:
    """An index holding every issue whose approved LLD is on disk."""
    items: JsonDict = {}
    for item in backlog.scan(ws, Kind.LLD, include_done=True).items:
        lld = ws.output_file(Kind.LLD, item.id)
        if lld.exists():
            items[item.id] = {"status": "approved", "file": str(lld.relative_to(ws.root)),
                              "updated": _now(), "rebuilt": True}
    return {"version": INDEX_VERSION, "items": items}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
