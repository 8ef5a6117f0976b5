"""What the journal keeps for the run report's timeline, from real runs: each wait for a
key's budget inside its attempt, and the rest a 429 put between two attempts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import cli, journal, latest_run, make_workspace
from test_json_schemas import assert_valid, credentials, key

from assemblyzero.report import timeline

pytestmark = pytest.mark.e2e  # every test here starts real processes


def spent_budget(name: str) -> None:
    """The key's request bucket is empty now: every call waits for its refill."""
    path = Path(os.environ["ASSEMBLYZERO_STATE_DIR"]) / "leases" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    pace = {"buckets": {"requests": [0.0, time.time()]}, "learned": {}, "output_avg": {}}
    path.write_text(json.dumps({"holders": [], "pace": pace}), encoding="utf-8")


def test_each_wait_for_a_keys_budget_is_journaled_inside_its_attempt(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["7"])
    credentials(key("key-a", rpm=120))  # 2 requests a second: each call waits 0.5 s
    spent_budget("key-a")
    run = cli("lld-all", "--repo", str(ws), env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0"})
    assert run.code == 0, run.out + run.err
    events = journal(latest_run(ws))
    start = next(e for e in events if e["event"] == "start")
    end = next(e for e in events if e["event"] == "end")
    waits = [e for e in events if e["event"] == "wait"]
    assert waits and {(w["item"], w["credential"], w["why"]) for w in waits} == {
        ("LLD-007", "key-a", "budget")}
    for wait in waits:
        assert start["ts"] - 0.01 <= wait["from"] <= wait["from"] + wait["seconds"] <= end["ts"]
        assert 0 < wait["seconds"] < 30
        assert_valid("journal-event", wait)
    assert sum(w["seconds"] for w in waits) >= 0.5  # 4 calls, 0.5 s apart
    assert events.index(waits[-1]) < events.index(end)  # journaled when the attempt ended
    drawn = timeline.build(events)
    (bar,) = drawn.bars
    assert [(w.why, w.start, w.end - w.start) for w in bar.waits] == [
        ("budget", pytest.approx(w["from"]), pytest.approx(w["seconds"], abs=1e-3))
        for w in waits]


def test_a_429_that_ends_an_attempt_journals_the_keys_rest_on_the_retry(
        tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["7"])
    credentials(key("key-a"), key("key-b"))
    run = cli("lld-all", "--repo", str(ws),
              env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0", "ASSEMBLYZERO_SIMULATE_429": "key-a:1:2"})
    assert run.code == 0, run.out + run.err
    events = journal(latest_run(ws))
    (retry,) = [e for e in events if e["event"] == "retry"]
    assert retry["kind"] == "rate_limited" and retry["credential"] == "key-a"
    assert 1.5 <= retry["rest"] <= 3  # Retry-After: 2, give or take its spread
    assert_valid("journal-event", retry)
    drawn = timeline.build(events)
    assert [bar.outcome for bar in drawn.bars] == ["retried", "done"]
    (rest,) = drawn.rests
    assert rest.credential == "key-a" and rest.start == retry["ts"]
    assert rest.end - rest.start == pytest.approx(retry["rest"], abs=1e-3)
    assert 'class="rest"' in (latest_run(ws) / "report.html").read_text(encoding="utf-8")
