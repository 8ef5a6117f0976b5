"""A worker process's line to the Dask task that started it (no dask import here).

On a cluster the worker cannot reach the scheduler itself (it would have to load
distributed, and it needs no client of its own): its task passes it one end of a
socket pair (ASSEMBLYZERO_LINK_FD) and serves it, one JSON line each way per call:

    reserve / settle / refused / peek / cool_down   the key's shared budget and rest,
                                                    as the file lease store's (`RemoteStore`)
    step                                            a checkpoint step was saved: the
                                                    call returns once the scheduler has it

Any failure is an OSError: the pacer then goes unpaced, the checkpoint is only local
(it still comes back with the attempt's end), both said once in the log.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

from assemblyzero.keys.pacing import Limits, Need
from assemblyzero.numbers import finite
from assemblyzero.providers import RateInfo, Window

LINK_TIMEOUT = 60.0  # seconds one call may take (a record lock is waited for up to 30 s)
LINE_MAX = 1 << 24  # bytes of one message at most (a state holds a few drafts)


class Link:
    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)
        self._sock.settimeout(LINK_TIMEOUT)
        self._file = self._sock.makefile("rwb")
        self._lock = threading.Lock()

    def call(self, op: str, **args: Any) -> Any:
        """Send one request, wait for its answer; OSError if the task cannot serve it."""
        data = json.dumps({"op": op, **args}).encode() + b"\n"
        with self._lock:
            try:
                self._file.write(data)
                self._file.flush()
                line = self._file.readline(LINE_MAX)
            except (OSError, ValueError) as exc:  # ValueError: the file was closed
                raise OSError(f"the cluster task does not answer ({exc})") from None
        if not line:
            raise OSError("the cluster task is gone")
        reply = json.loads(line)
        if not isinstance(reply, dict) or "error" in reply:
            raise OSError(str(reply.get("error") if isinstance(reply, dict) else reply))
        return reply.get("value")


class RemoteStore:
    """The lease store's pacing operations, served by the task (cluster/store.py there)."""

    def __init__(self, link: Link, clock: Callable[[], float] = time.time) -> None:
        self.link, self.clock = link, clock

    def reserve(self, name: str, ceiling: Limits, need: Need) -> float:
        return float(self.link.call("reserve", name=name, ceiling=ceiling.to_json(),
                                    need=asdict(need)))

    def settle(self, name: str, ceiling: Limits, reserved: Need, used: Need | None, role: str,
               info: RateInfo | None) -> None:
        self.link.call("settle", name=name, ceiling=ceiling.to_json(), reserved=asdict(reserved),
                       used=asdict(used) if used else None, role=role, info=info_json(info))

    def refused(self, name: str, ceiling: Limits, info: RateInfo | None,
                retry_after: float | None, reserved: Need | None = None) -> float:
        return float(self.link.call("refused", name=name, ceiling=ceiling.to_json(),
                                    info=info_json(info), retry_after=retry_after,
                                    reserved=asdict(reserved) if reserved else None))

    def cool_down(self, name: str, retry_after: float | None, jitter: bool = True) -> float:
        return float(self.link.call("cool_down", name=name, retry_after=retry_after,
                                    jitter=jitter))

    def peek(self, name: str) -> dict[str, Any]:
        state = self.link.call("peek", name=name)
        if not isinstance(state, dict):
            raise OSError(f"the cluster sent no record for {name}")
        return state


# --- the values on the line: plain JSON, checked on the way in -----------------------

NEED_MAX = 1e9  # requests or tokens one call may take, at most (far beyond any limit)


def need_of(raw: Any) -> Need | None:
    """A Need from the line: a field missing or not a finite number is its default (one
    request, no tokens); every value within 0..NEED_MAX."""
    if not isinstance(raw, dict):
        return None
    given = {f.name: finite(raw.get(f.name)) for f in fields(Need)}
    return Need(**{name: min(NEED_MAX, max(0.0, value)) for name, value in given.items()
                   if value is not None})


def info_json(info: RateInfo | None) -> dict[str, Any] | None:
    return asdict(info) if info is not None else None


def info_of(raw: Any) -> RateInfo | None:
    if not isinstance(raw, dict):
        return None

    def window(value: Any) -> Window | None:
        if not isinstance(value, dict):
            return None
        return Window(*(finite(value.get(f.name)) for f in fields(Window)))

    quota = raw.get("daily_quota")
    return RateInfo(window(raw.get("requests")), window(raw.get("tokens")),
                    window(raw.get("input_tokens")), window(raw.get("output_tokens")),
                    finite(raw.get("retry_after")),
                    quota[:200] if isinstance(quota, str) else "")


def serve(store: Any, request: dict[str, Any]) -> Any:
    """Carry out one pacing request on `store` (the task's cluster store); its value."""
    op, name = request.get("op"), request.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("no key named")
    ceiling = Limits.from_json(request.get("ceiling"))
    if op == "reserve":
        return store.reserve(name, ceiling, need_of(request.get("need")) or Need())
    if op == "settle":
        store.settle(name, ceiling, need_of(request.get("reserved")) or Need(),
                     need_of(request.get("used")), str(request.get("role", ""))[:20],
                     info_of(request.get("info")))
        return None
    if op == "refused":
        return store.refused(name, ceiling, info_of(request.get("info")),
                             finite(request.get("retry_after")),
                             need_of(request.get("reserved")))
    if op == "cool_down":
        return store.cool_down(name, finite(request.get("retry_after")),
                               request.get("jitter") is not False)
    if op == "peek":
        return store.peek(name)
    raise ValueError(f"unknown request {op!r}")
