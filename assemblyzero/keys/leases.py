"""Credential leases shared by every process on the machine (see docs/design.md).

One JSON file per credential, `<state>/leases/<name>.json`, read and
rewritten under an exclusive `flock` on `<name>.lock` (temp file, fsync,
`os.replace`); each lease also holds an exclusive `flock` on one slot file
`<name>.slot-<k>.lock` for as long as it lasts. The file records the live
holders, a generation counter and the key's 429 cooldown, so every worker
of every concurrent run sees them.

A holder whose process is gone (this host: pid dead, zombie, or reused by
another process) is reclaimed at the next acquire; so is a local holder
whose process runs but does not hold the slot it records (a hand-written
or hostile record naming, say, pid 1). A holder on another host is
reclaimed when its heartbeat is older than LEASE_TTL (or more than that
in the future). A live local holder is never evicted. Every number read
from the file is range-checked first (`lease_record`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assemblyzero.constants import (
    BACKOFF_CAP,
    BACKOFF_JITTER,
    BACKOFF_MAX_EXPONENT,
    BACKOFF_START,
    COOLDOWN_MAX,
    DEFAULT_STATE_DIR,
    ENV_STATE_DIR,
    LEASE_GENERATION_MAX,
    LEASE_LOCK_POLL,
    LEASE_STREAK_MAX,
    LEASE_TTL,
    LOCK_TIMEOUT,
)
from assemblyzero.keys import flock, pacing
from assemblyzero.keys.lease_record import (
    State,
    checked,
    process_start,
    slot_held,
    slot_of,
    warn,
)
from assemblyzero.keys.pacing import Limits, Need
from assemblyzero.providers import RateInfo

HOST = socket.gethostname()


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
            # Counted up to LEASE_GENERATION_MAX, then from 1 again (never out of its range).
            state["generation"] = state["generation"] % LEASE_GENERATION_MAX + 1
            token = uuid.uuid4().hex
            state["holders"].append({
                "token": token, "pid": self.pid, "host": HOST, "start": self.start,
                "run_id": run_id, "item": item, "heartbeat": now,
                "generation": state["generation"], "slot": number,
            })
            return Lease(name, token, state["generation"])

        try:  # a record claiming the slot we now hold is stale
            result: Lease | Busy = self._update(name, change, held=number)
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

    def cool_down(self, name: str, retry_after: float | None, jitter: bool = True) -> float:
        """Rest `name` for Retry-After (else 2 s doubling to 60 s) plus 0-20 %; the end time.

        The rest ends within COOLDOWN_MAX, whatever Retry-After said.
        """

        until: float = self._update(name, lambda state: self._rest(state, retry_after, jitter))
        return until

    def _rest(self, state: State, retry_after: float | None, jitter: bool = True) -> float:
        asked = retry_after  # from a server: NaN or negative means nothing, a year a day
        if asked is not None and not asked >= 0:
            asked = None
        exponent = min(state["streak"], BACKOFF_MAX_EXPONENT)
        base = min(BACKOFF_CAP, BACKOFF_START * 2 ** exponent) if asked is None else min(
            asked, COOLDOWN_MAX)
        now = self.clock()
        spread = random.uniform(0, BACKOFF_JITTER) if jitter else 0.0
        until = min(now + base * (1 + spread), now + COOLDOWN_MAX)
        state["streak"] = min(state["streak"] + 1, LEASE_STREAK_MAX)
        state["cooldown_until"] = max(state["cooldown_until"], until)
        return float(state["cooldown_until"])

    # --- pacing (keys/pacing.py): the key's shared request and token budget ---------------
    def reserve(self, name: str, ceiling: Limits, need: Need) -> float:
        """Take `need` from `name`'s budget: 0 when taken, else the seconds until it could
        be (the key's rest after a 429 included); nothing is taken then."""

        def change(state: State) -> float:
            now = self.clock()
            rest = float(state["cooldown_until"]) - now
            if rest > pacing.TICK:  # the rest, then what the bucket still lacks once it ends
                return rest + pacing.wait_for(state["pace"], ceiling, need,
                                              state["cooldown_until"])
            return pacing.reserve(state["pace"], ceiling, need, now)

        wait: float = self._update(name, change)
        return wait

    def settle(self, name: str, ceiling: Limits, reserved: Need, used: Need | None, role: str,
               info: RateInfo | None) -> None:
        """A call on `name` was answered: give back (or take) the difference between what
        it reserved and `used`, learn from the reply's rate-limit headers, end the 429
        streak."""

        def change(state: State) -> None:
            now = self.clock()
            pacing.settle(state["pace"], ceiling, reserved, used, role, now)
            pacing.learn(state["pace"], info, ceiling, now)
            state["streak"] = 0

        self._update(name, change)

    def refused(self, name: str, ceiling: Limits, info: RateInfo | None,
                retry_after: float | None, reserved: Need | None = None) -> float:
        """A 429 on `name`: rest it as `cool_down` does, empty its request bucket so the
        waiting calls go through one by one once the rest ends, learn from the 429's
        headers; the rest's end."""

        def change(state: State) -> float:
            if reserved is not None:  # the refused call's tokens were never spent
                pacing.refund(state["pace"], ceiling, reserved, self.clock())
            pacing.learn(state["pace"], info, ceiling, self.clock())
            until = self._rest(state, retry_after)
            pacing.empty(state["pace"], ceiling, self.clock(), until)
            return until

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

    def _update(self, name: str, change: Callable[[State], Any], held: int | None = None) -> Any:
        """Read, change and (if it changed) rewrite the lease file, all under its lock."""
        with self._lock(name):
            state, before = self._read(name, held)
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

    def _read(self, name: str, held: int | None = None) -> tuple[State, str]:
        """The state (bad fields reset, stale holders dropped) and the file's text.

        `held`: the slot this process has just taken for `name` (in acquire).
        """
        path = self.dir / f"{name}.json"
        text = ""
        try:
            text = path.read_text(encoding="utf-8")
            record = json.loads(text)
            if not isinstance(record, dict) or not isinstance(record.get("holders"), list):
                raise ValueError("not a lease record")
        except FileNotFoundError:
            record = {}
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: [[[[...
            warn(path, f"unreadable ({type(exc).__name__}: {str(exc)[:200]}); rebuilding it")
            record = {}
        now = self.clock()
        state = checked(record, name, path, now)
        state["holders"] = [h for n, h in enumerate(state["holders"], 1)
                            if self._alive(h, n, name, path, now, held)]
        return state, text

    def _alive(self, holder: State, number: int, name: str, path: Path, now: float,
               held: int | None) -> bool:
        """Local: its process runs (same start time) and holds its slot. Remote: fresh heartbeat."""
        beat = float(holder["heartbeat"])  # checked: a finite number
        if holder["host"] != HOST:
            if beat > now + LEASE_TTL:  # a clock far ahead, or a forged record: never stale
                warn(path, f"holder {number} (another host) has its heartbeat more than "
                           f"{LEASE_TTL:g}s in the future; reclaimed")
                return False
            return now - beat < LEASE_TTL
        if holder["token"] in self._slots:  # one of this process's own leases
            return True
        start = process_start(holder["pid"])
        if start is None:
            return False  # gone: the usual crashed holder
        if start != "?" and start != holder["start"]:  # "?": our /proc is unreadable
            if not holder["start"].isdigit():
                warn(path, f"holder {number} has no process start time ('start'); reclaimed")
            return False  # else the pid was reused by another process
        slot = slot_of(holder)
        if slot is None:  # every lease we write records its slot: a forged or foreign record
            warn(path, f"holder {number} (pid {holder['pid']}) records no slot ('slot'); "
                       "reclaimed")
            return False
        if slot == held or not slot_held(self.dir / f"{name}.slot-{slot}.lock"):
            warn(path, f"holder {number} (pid {holder['pid']}) does not hold its slot "
                       f"('slot' {slot}); reclaimed")
            return False
        return True
