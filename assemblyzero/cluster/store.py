"""Every key's slots, rest and budget, shared by all runs on one Dask cluster.

The same operations as the file lease store (keys/leases.py), so the pool, the gate and
the pacer need no change: a key's slots are one `distributed.Semaphore` named for it
(`max_leases` = its `max_concurrent`; a holder that dies loses its lease after Dask's
lease timeout), and its record (429 rest, backoff streak, pacing buckets) is one JSON
document in the scheduler's metadata store, read and rewritten under a `distributed.Lock`.
Every number read back is range-checked as a lease file's is (`lease_record.checked`):
another run on the cluster may be older, or hostile.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distributed import Client, Lock, Semaphore

from assemblyzero.keys.lease_record import State, checked, warn
from assemblyzero.keys.leases import Busy, Lease, LeaseStore

PREFIX = "assemblyzero-key-"  # every name this store makes on the scheduler starts so
LOCK_WAIT = 30.0  # seconds to wait for a key's record lock before the operation fails


class SlotsDiffer(RuntimeError):
    """Another run made the key's semaphore with another max_concurrent."""

    def __init__(self, name: str, limit: int, detail: str) -> None:
        super().__init__(f"key {name}: its slots on the cluster were made by another run "
                         f"with another max_concurrent than this run's {limit} ({detail})")
        self.fix = (f"give {name} the same max_concurrent in every credentials file used "
                    "with this cluster, or restart its scheduler")


class ClusterStore(LeaseStore):
    def __init__(self, client: Client, clock: Callable[[], float] = time.time) -> None:
        # Not LeaseStore.__init__: there is no folder; the file methods are never reached.
        self.client, self.clock = client, clock
        self.dir = Path("dask")  # names the record in warnings: `dask/team-a.json`
        self._slots_of: dict[str, Semaphore] = {}
        self._held: dict[str, Semaphore] = {}  # lease token -> the semaphore it holds
        self._locks: dict[str, Lock] = {}

    # --- slots ----------------------------------------------------------------
    def _semaphore(self, name: str, limit: int) -> Semaphore:
        sem = self._slots_of.get(name)
        if sem is None or sem.max_leases != limit:
            sem = Semaphore(max_leases=limit, name=f"{PREFIX}{name}",
                            scheduler_rpc=self.client.scheduler, loop=self.client.loop)
            self._slots_of[name] = sem
        return sem

    def acquire(self, name: str, limit: int, run_id: str, item: str,
                wait: bool = False) -> Lease | Busy:
        state = self.peek(name)
        if state["cooldown_until"] > self.clock():
            return Busy(name, "cooling down after a 429", state["cooldown_until"])
        sem = self._semaphore(name, limit)
        try:
            got = sem.acquire(timeout=None if wait else 0)
        except (RuntimeError, ValueError) as exc:  # the scheduler says ValueError
            if "max leases" not in str(exc):
                raise
            raise SlotsDiffer(name, limit, str(exc)) from None
        if not got:
            return Busy(name, f"all {limit} slot(s) held")
        token = uuid.uuid4().hex
        self._held[token] = sem
        return Lease(name, token, 0)

    def release(self, lease: Lease, succeeded: bool = False) -> None:
        sem = self._held.pop(lease.token, None)
        try:
            if succeeded:
                self._update(lease.name, _end_streak)
        finally:
            if sem is not None:
                sem.release()

    def heartbeat(self, leases: list[Lease]) -> None:
        """Dask refreshes its leases itself (every fifth of its lease timeout)."""

    def holders(self, name: str) -> int:
        """How many slots of `name` are held on the cluster now (every run's)."""
        value = self.client.sync(self.client.scheduler.semaphore_value, name=f"{PREFIX}{name}")
        return int(value or 0)

    # --- the record -----------------------------------------------------------
    def peek(self, name: str) -> State:
        state = self._read(name)[0]
        try:
            held = self.holders(name)
        except Exception:  # not registered yet: nobody holds it
            held = 0
        state["holders"] = [{"slot": n} for n in range(held)]  # counted only (the pacer's)
        return state

    def _update(self, name: str, change: Callable[[State], Any], held: int | None = None) -> Any:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = Lock(f"{PREFIX}{name}-record",
                                            scheduler_rpc=self.client.scheduler,
                                            loop=self.client.loop)
        if not lock.acquire(timeout=LOCK_WAIT):
            raise TimeoutError(f"the record of key {name} on the cluster stayed locked for "
                               f"{LOCK_WAIT:g}s")
        try:
            state, before = self._read(name)
            result = change(state)
            state["holders"] = []
            text = json.dumps(state, sort_keys=True)
            if text != before:
                self.client.set_metadata([PREFIX, name], text)
            return result
        finally:
            lock.release()

    def _read(self, name: str, held: int | None = None) -> tuple[State, str]:
        path = self.dir / f"{name}.json"
        stored = self.client.get_metadata([PREFIX, name], default="")  # "": a fresh key
        text = stored if isinstance(stored, str) else ""
        record: Any = {}
        if text:
            try:
                record = json.loads(text)
            except (ValueError, RecursionError) as exc:
                warn(path, f"unreadable ({type(exc).__name__}); rebuilding it")
                record = {}
        if not isinstance(record, dict):
            record = {}
        record["holders"] = []
        return checked(record, name, path, self.clock()), text


def _end_streak(state: State) -> None:
    state["streak"] = 0
