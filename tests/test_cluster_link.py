"""The worker's line to its cluster task (cluster/link.py), without a cluster: the
pacing requests travel a real socket pair to a real (file) lease store, as the task
serves them from the cluster's."""

from __future__ import annotations

import json
import math
import socket
import threading
from pathlib import Path

import pytest

from assemblyzero.cluster import link
from assemblyzero.keys.leases import LeaseStore
from assemblyzero.keys.pacing import Limits, Need
from assemblyzero.providers import RateInfo, Window


def serving(store: LeaseStore) -> tuple[link.RemoteStore, socket.socket]:
    ours, theirs = socket.socketpair()

    def serve() -> None:
        stream = theirs.makefile("rwb")
        while line := stream.readline():
            try:
                reply = {"value": link.serve(store, json.loads(line))}
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            stream.write(json.dumps(reply).encode() + b"\n")
            stream.flush()

    threading.Thread(target=serve, daemon=True).start()
    return link.RemoteStore(link.Link(ours.detach())), theirs


def test_pacing_requests_reach_the_served_store_and_answer_as_it_would(tmp_path: Path):
    store = LeaseStore(tmp_path)
    remote, _ = serving(store)
    limits = Limits(rpm=2, tpm=10_000)
    assert remote.reserve("team-a", limits, Need(1, 100, 200)) == 0
    assert remote.reserve("team-a", limits, Need(1, 100, 200)) == 0
    assert remote.reserve("team-a", limits, Need(1, 100, 200)) > 0  # as the store says
    info = RateInfo(requests=Window(2, 0, 30.0), retry_after=7.5)
    until = remote.refused("team-a", limits, info, 7.5, Need(1, 100, 200))
    assert store.peek("team-a")["cooldown_until"] == pytest.approx(until)
    remote.settle("team-a", limits, Need(1, 100, 200), Need(1, 120, 180), "draft", None)
    assert remote.peek("team-a")["cooldown_until"] == pytest.approx(until)
    assert remote.cool_down("team-b", None, jitter=False) > 0


def test_a_gone_task_is_an_oserror_the_pacer_survives():
    ours, theirs = socket.socketpair()
    theirs.close()  # the task (and the Dask worker with it) is gone
    with pytest.raises(OSError, match=r"gone|does not answer"):
        link.RemoteStore(link.Link(ours.detach())).peek("team-a")


def test_a_bad_request_is_answered_with_an_error_not_a_crash(tmp_path: Path):
    remote, _ = serving(LeaseStore(tmp_path))
    with pytest.raises(OSError, match="unknown request"):
        remote.link.call("format_disk", name="team-a")
    with pytest.raises(OSError, match="no key named"):
        remote.link.call("peek", name="")
    assert remote.peek("team-a")["streak"] == 0  # still serving


@pytest.mark.parametrize(("raw", "need"), [
    (None, None), ("x", None), ([], None),
    ({}, Need()),  # nothing said: one request, no tokens (the defaults), never 0 requests
    ({"requests": "1e9", "input": 10}, Need(1.0, 10.0, 0.0)),  # not a number: the default
    ({"input": math.inf, "output": math.nan}, Need()),
    ({"requests": True, "output": -5}, Need(1.0, 0.0, 0.0)),
    ({"requests": 1e300, "input": 5e12}, Need(link.NEED_MAX, link.NEED_MAX, 0.0)),
])
def test_hostile_needs_become_harmless(raw: object, need: Need | None):
    assert link.need_of(raw) == need


def test_rate_info_survives_the_line_and_hostile_fields_are_dropped():
    info = RateInfo(Window(60, 12, 1.5), Window(None, 900, None), None, Window(1, 2, 3),
                    4.0, "GenerateRequestsPerDay")
    assert link.info_of(json.loads(json.dumps(link.info_json(info)))) == info
    hostile = link.info_of({"requests": {"limit": "NaN", "remaining": math.nan},
                            "retry_after": True, "daily_quota": "x" * 10_000})
    assert hostile is not None
    assert hostile.requests == Window(None, None, None) and hostile.retry_after is None
    assert len(hostile.daily_quota) == 200
