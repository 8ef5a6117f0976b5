"""A lease record as read from disk, checked before anything trusts it (docs/json.md, leases).

The state directory is shared by every run of the user, and a lease file
there may come from an older version, a crash, a bug or a hand. So every
number is range-checked (a streak that would overflow the backoff, a
cooldown that never ends or overflows a wait, a generation no counter
reaches) and every holder's fields are typed. A bad value is reset, with
one warning on stderr naming the file and the field; nothing here raises.
Whether a well-formed holder still lives is the LeaseStore's question; the
facts it asks are here: a process's start time, whether a slot is locked.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import Any, TypeGuard

from assemblyzero.constants import COOLDOWN_MAX, LEASE_GENERATION_MAX, LEASE_STREAK_MAX, LEASE_TTL
from assemblyzero.keys import pacing
from assemblyzero.numbers import finite
from assemblyzero.ui.console import printable

LEASE_VERSION = 1
PID_MAX = 2**31 - 1  # pid_t
State = dict[str, Any]
_HOLDER_TEXT = ("token", "host", "start", "run_id", "item")  # fields every holder has as text
_WARN_HOLDERS = 3  # malformed holders warned one by one; the rest in one line


_WARNED: set[tuple[str, str]] = set()  # (path, what): each said once per process


def warn(path: Path, what: str, once: bool = False) -> None:
    """`once`: once per file and problem per process (a pace problem: a record nothing
    rewrites is read again and again, by the live area's budgets every 2 s)."""
    if once and (str(path), what) in _WARNED:
        return
    _WARNED.add((str(path), what))
    print(printable(f"warning: lease file {path}: {what}"), file=sys.stderr)


def fresh(name: str) -> State:
    return {"version": LEASE_VERSION, "name": name, "generation": 0, "holders": [],
            "cooldown_until": 0.0, "streak": 0, "pace": pacing.fresh()}


def checked(record: dict[str, Any], name: str, path: Path, now: float) -> State:
    """`record` over the defaults, every top-level number in range, malformed holders out."""
    state = {**fresh(name), **record}
    state["generation"] = _count(state["generation"], "generation", LEASE_GENERATION_MAX, path)
    state["streak"] = _count(state["streak"], "streak", LEASE_STREAK_MAX, path, clamp=True)
    state["cooldown_until"] = _cooldown(state["cooldown_until"], path, now)
    state["pace"], fixed = pacing.checked(record.get("pace"), now, LEASE_TTL)
    for what in fixed[:_WARN_HOLDERS]:
        warn(path, what, once=True)
    holders, bad = [], 0
    for number, holder in enumerate(state["holders"], 1):
        problem = holder_problem(holder)
        if problem is None:
            holders.append(holder)
            continue
        bad += 1
        if bad <= _WARN_HOLDERS:
            warn(path, f"holder {number} {problem}; rebuilding the file without it")
    if bad > _WARN_HOLDERS:
        warn(path, f"{bad - _WARN_HOLDERS} more malformed holder(s); left out as well")
    state["holders"] = holders
    return state


def holder_problem(holder: Any) -> str | None:
    """Why `holder` is no holder record our code writes, or None if it is well-formed."""
    if not isinstance(holder, dict):
        return f"is {shown(holder)}, not an object"
    for field in _HOLDER_TEXT:
        if not isinstance(holder.get(field), str):
            return f"has {shown(holder.get(field))} as '{field}', not text"
    pid = holder.get("pid")
    if not _is_int(pid) or not 0 < pid <= PID_MAX:
        return f"has {shown(pid)} as 'pid', not a process id"
    beat = holder.get("heartbeat")
    if finite(beat) is None:
        return f"has {shown(beat)} as 'heartbeat', not a time"
    return None


def slot_of(holder: State) -> int | None:
    """The slot the holder says it holds; None if it does not say (or says nonsense)."""
    slot = holder.get("slot")
    return slot if _is_int(slot) and 0 <= slot <= PID_MAX else None


def process_start(pid: int) -> str | None:
    """The start time of `pid` (clock ticks since boot), None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    except OSError:
        return _alive_fallback(pid)
    return None if fields[0] == b"Z" else fields[19].decode()


def _alive_fallback(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "?"


def slot_held(path: Path) -> bool:
    """Whether some open file holds the flock of the slot file `path`.

    A fresh open file description sees our own process's lock as anyone's.
    A probe that gets the lock drops it at once (a concurrent non-waiting
    acquire of that slot may see it busy meanwhile: only for a stale record).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: the process check stands
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held
        return True
    finally:
        os.close(fd)  # closing drops a lock the probe got
    return False


def shown(value: Any) -> str:
    """A value for a warning: short numbers as they are, anything else by its kind only."""
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10**15 else "a huge number"
    kinds: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}
    return kinds.get(type(value), "a value")


def _count(value: Any, field: str, maximum: int, path: Path, clamp: bool = False) -> int:
    """A whole number in 0..maximum; else 0 (or, with `clamp`, the nearest bound), warned."""
    if _is_int(value) and 0 <= value <= maximum:
        return int(value)
    fixed = 0
    if clamp and _is_number(value) and value == value:  # not NaN
        fixed = 0 if value < 0 else maximum if value > maximum else int(value)
    warn(path, f"{field} is {shown(value)}, not a whole number in 0..{maximum}; set to {fixed}")
    return fixed


def _cooldown(value: Any, path: Path, now: float) -> float:
    """A time at most COOLDOWN_MAX ahead; else 0 (no cooldown), warned."""
    until = finite(value)
    if until is not None and until <= now + COOLDOWN_MAX:
        return until
    warn(path, f"cooldown_until is {shown(value)}, not a time within {COOLDOWN_MAX:g}s from now; "
               "reset to 0 (no cooldown)")
    return 0.0


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
