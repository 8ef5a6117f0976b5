"""The latest run's journal of a workspace, for the benchmarks that read where time went."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def latest_events(ws: Path) -> list[dict[str, Any]] | None:
    """The events of the newest run folder's journal.jsonl (None: no readable one)."""
    runs = ws / "logs" / "parallel"
    try:
        run = max((d for d in runs.iterdir() if d.is_dir() and not d.is_symlink()),
                  key=lambda d: d.stat().st_mtime)
        return [json.loads(line) for line in
                (run / "journal.jsonl").read_text(encoding="utf-8").splitlines() if line]
    except (OSError, ValueError):
        return None
