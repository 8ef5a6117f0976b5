"""Credential leases shared by every process on the machine (SPEC 5).

One JSON file per credential, `<state>/leases/<name>.json`, read and
rewritten under an exclusive `flock` on `<name>.lock` (temp file, fsync,
`os.replace`); each lease also holds an exclusive `flock` on one slot file
`<name>.slot-<k>.lock` for as long as it lasts. The file records the live
holders, a generation counter and the key's 429 cooldown, so every worker
of every concurrent run sees them.

A holder whose process is gone (this host: pid dead, zombie, or reused by
another process) is reclaimed at the next acquire; a holder on another host
is reclaimed when its heartbeat is older than LEASE_TTL. A live local holder
is never evicted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assemblyzero import flock
from assemblyzero.constants import (
    BACKOFF_CAP,
    BACKOFF_JITTER,
    BACKOFF_START,
    DEFAULT_STATE_DIR,
    ENV_STATE_DIR,
    LEASE_LOCK_POLL,
    LEASE_TTL,
    LOCK_TIMEOUT,
)

LEASE_VERSION = 1
HOST = socket.gethostname()
State = dict[str, Any]


@dataclass(frozen=True)
class Lease:
    name: str
    token: str
    generation: int


@dataclass(frozen=True)
class Busy:
    """Why a credential cannot be leased now, and until when (None: until a release)."""

    name: str
    reason: str
    until: float | None = None


def state_dir() -> Path:
    return Path(os.environ.get(ENV_STATE_DIR) or os.path.expanduser(DEFAULT_STATE_DIR))


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


class LeaseStore:
    def __init__(self, root: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.dir = (root or state_dir()) / "leases"
        self.clock = clock
        self.pid = os.getpid()
        self._lock_fds: dict[str, int] = {}  # name -> open fd of `<name>.lock`
        self._slots: dict[str, int] = {}  # lease token -> fd holding its slot's flock
        self._dir_ready = False
        self.start = process_start(self.pid) or "?"

    # --- the operations -----------------------------------------------------
    def acquire(self, name: str, limit: int, run_id: str, item: str,
                wait: bool = False) -> Lease | Busy:
        """Take one of the `limit` slots of `name`, or say why not.

        A slot is an exclusive `flock` on `<name>.slot-<k>.lock`, held for as
        long as the lease: the kernel drops it when the holder dies, and it
        keeps two holders apart even if the JSON record was lost. With `wait`,
        block (in the kernel, no polling) until a slot frees up.
        """
        slot = self._take_slot(name, limit, wait)
        if slot is None:
            return Busy(name, f"all {limit} slot(s) held")
        number, fd = slot

        def change(state: State) -> Lease | Busy:
            now = self.clock()
            if state["cooldown_until"] > now:
                return Busy(name, "cooling down after a 429", state["cooldown_until"])
            if len(state["holders"]) >= limit:  # holders on other hosts count too
                return Busy(name, f"all {limit} slot(s) held")
            state["generation"] += 1
            token = uuid.uuid4().hex
            state["holders"].append({
                "token": token, "pid": self.pid, "host": HOST, "start": self.start,
                "run_id": run_id, "item": item, "heartbeat": now,
                "generation": state["generation"], "slot": number,
            })
            return Lease(name, token, state["generation"])

        try:
            result: Lease | Busy = self._update(name, change)
        except BaseException:
            os.close(fd)  # closing drops the flock
            raise
        if isinstance(result, Lease):
            self._slots[result.token] = fd
        else:
            os.close(fd)
        return result

    def _take_slot(self, name: str, limit: int, wait: bool) -> tuple[int, int] | None:
        """(slot number, locked fd), or None when every slot is held and not `wait`."""
        self._ensure_dir()
        for number in range(limit):
            fd = os.open(self.dir / f"{name}.slot-{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return number, fd
        if not wait:
            return None
        number = self.pid % limit
        fd = os.open(self.dir / f"{name}.slot-{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return number, fd

    def release(self, lease: Lease, succeeded: bool = False) -> None:
        """Give the slot back; a success also ends the key's 429 backoff streak."""

        def change(state: State) -> None:
            state["holders"] = [h for h in state["holders"] if h["token"] != lease.token]
            if succeeded:
                state["streak"] = 0

        try:
            self._update(lease.name, change)
        finally:
            fd = self._slots.pop(lease.token, None)
            if fd is not None:
                os.close(fd)

    def heartbeat(self, leases: list[Lease]) -> None:
        for lease in leases:

            def change(state: State, token: str = lease.token) -> None:
                for holder in state["holders"]:
                    if holder["token"] == token:
                        holder["heartbeat"] = self.clock()

            self._update(lease.name, change)

    def cool_down(self, name: str, retry_after: float | None) -> float:
        """Rest `name` for Retry-After (else 2 s doubling to 60 s) plus 0-20 %; the end time."""

        def change(state: State) -> float:
            base = retry_after if retry_after is not None else min(
                BACKOFF_CAP, BACKOFF_START * 2 ** state["streak"])
            until = self.clock() + base * (1 + random.uniform(0, BACKOFF_JITTER))
            state["streak"] += 1
            state["cooldown_until"] = max(state["cooldown_until"], until)
            return float(state["cooldown_until"])

        until: float = self._update(name, change)
        return until

    def peek(self, name: str) -> State:
        """The current state of `name` (stale holders left out); takes no lock, writes nothing.

        Writers replace the file atomically, so a lock-free read is consistent.
        """
        return self._read(name)[0]

    # --- the file -----------------------------------------------------------
    def _ensure_dir(self) -> None:
        if not self._dir_ready:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._dir_ready = True

    def _lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """The lease file's lock (`<name>.lock`): held for one read and one write."""
        fd = self._lock_fds.get(name)
        if fd is None:
            self._ensure_dir()
            fd = os.open(self.dir / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._lock_fds[name] = fd
        return flock.locked(fd, f"lease file {self.dir / name}.json", LOCK_TIMEOUT,
                            LEASE_LOCK_POLL)

    def _update(self, name: str, change: Callable[[State], Any]) -> Any:
        """Read, change and (if it changed) rewrite the lease file, all under its lock."""
        with self._lock(name):
            state, before = self._read(name)
            result = change(state)
            text = json.dumps(state, sort_keys=True) + "\n"
            if text != before:
                self._write(name, text)
            return result

    def _write(self, name: str, text: str) -> None:
        """Temp file, fsync, os.replace (the lock is held: one temp name per process will do)."""
        tmp = self.dir / f".{name}.{self.pid}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.dir / f"{name}.json")

    def _read(self, name: str) -> tuple[State, str]:
        """The state (stale holders dropped, bad fields reset) and the file's text."""
        path = self.dir / f"{name}.json"
        text = ""
        try:
            text = path.read_text(encoding="utf-8")
            state = json.loads(text)
            if not isinstance(state, dict) or not isinstance(state.get("holders"), list):
                raise ValueError("not a lease record")
        except FileNotFoundError:
            state = {}
        except (OSError, ValueError) as exc:
            print(f"warning: lease file {path} is unreadable ({exc}); rebuilding it",
                  file=sys.stderr)
            state = {}
        fresh = {"version": LEASE_VERSION, "name": name, "generation": 0, "holders": [],
                 "cooldown_until": 0.0, "streak": 0}
        state = {**fresh, **state}
        for key in ("generation", "streak", "cooldown_until"):
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                print(f"warning: lease file {path}: {key} is {value!r}; reset", file=sys.stderr)
                state[key] = fresh[key]
        state["holders"] = [h for h in state["holders"] if self._alive(h, path)]
        return state, text

    def _alive(self, holder: Any, path: Path) -> bool:
        """Local holder: its process runs (same start time). Remote: fresh heartbeat."""
        try:
            if holder["host"] != HOST:
                return bool(self.clock() - float(holder["heartbeat"]) < LEASE_TTL)
            start = process_start(int(holder["pid"]))
        except (TypeError, KeyError, ValueError):
            print(f"warning: lease file {path}: holder record {holder!r} is unreadable; "
                  "rebuilding it without it", file=sys.stderr)
            return False
        return start is not None and (start == holder.get("start") or "?" in (start,
                                                                              holder.get("start")))
