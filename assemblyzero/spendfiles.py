"""The spend files of a run with a budget (`logs/parallel/<run-id>/spend/`).

    spend/<kind>-<id>.json   a running attempt's spend so far: [usd, unpriced calls],
                             rewritten by its worker after every call, removed by the
                             coordinator once the attempt has ended and been counted
    spend/ended.json         what the run's ended attempts spent, by the coordinator

The coordinator reads them to tell when the budget is reached; a worker reads them
before each step that calls a model, so it stops there even before the coordinator
looks (cost.py, run/budget.py). Written whole (temp file and rename); read without
following symlinks and bounded, so a hostile or broken file is only not counted.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from assemblyzero.cost import Spend
from assemblyzero.fileio import atomic_write

ENDED = "ended.json"
FILE_LIMIT = 256  # bytes: "[usd, calls]" is far shorter
FOLDER_LIMIT = 1000  # files read at most: a run has at most MAX_PARALLEL live ones


def write(path: Path, spend: Spend) -> None:
    """Write one spend file whole (OSError to the caller)."""
    atomic_write(path, json.dumps(spend.pair()) + "\n", fsync=False)


def read(path: Path) -> Spend | None:
    """One spend file: None while it is missing or not one of ours."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO, a device: not ours
            return None
        return Spend.read(json.loads(os.read(fd, FILE_LIMIT)))
    except (OSError, ValueError, RecursionError):
        return None
    finally:
        os.close(fd)


def parse(data: bytes) -> Spend | None:
    """A spend file's bytes (as a cluster task sends them): None if not one of ours."""
    try:
        return Spend.read(json.loads(data[:FILE_LIMIT]))
    except (ValueError, RecursionError):
        return None


def total(folder: Path) -> float:
    """What the run has spent: its ended attempts' and every running one's, as written."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for _, e in zip(range(FOLDER_LIMIT), entries, strict=False)
                     if e.name.endswith(".json")]
    except OSError:
        return 0.0
    return sum(spend.usd for name in names if (spend := read(folder / name)) is not None)
