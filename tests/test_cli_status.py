"""`status` and `retry-failed`: what the latest run did, and running what it did not finish."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, latest_run, make_workspace, model_calls, summary

pytestmark = pytest.mark.e2e  # every test here starts real processes


def test_status_shows_the_latest_run_and_retry_failed_reruns_only_its_failures(
        tmp_path: Path, fast: None):
    ws = make_workspace(tmp_path / "ws", issues=["41", "42", "45"])
    first = cli("lld-all", "--parallel=3", "--repo", str(ws),
                env={"ASSEMBLYZERO_SIMULATE_FAIL": "42,45"})
    assert first.code == 1
    text = cli("status", "--repo", str(ws))
    assert text.code == 0, text.err
    assert "(finished, exit 1): 1 done, 2 failed" in text.out
    assert "LLD-042  failed  simulated failure of the review call" in text.out
    data = json.loads(cli("status", "--repo", str(ws), "--json").out)
    assert data["version"] == 1 and data["in_progress"] == []
    assert {i["id"]: i["status"] for i in data["latest"]["items"]}["45"] == "failed"

    retry = cli("retry-failed", "--repo", str(ws), "--parallel=2")
    assert retry.code == 0, retry.out + retry.err
    assert "retrying 2 lld item(s): 42, 45" in retry.out
    run_dir = latest_run(ws)
    assert sorted(i["id"] for i in summary(run_dir)["items"]) == ["42", "45"]
    for item_id in ("42", "45"):
        log = (run_dir / f"lld-{item_id}.log").read_text()
        assert "resuming at step 'review'" in log
        assert "draft" not in [c.split(":")[0] for c in model_calls(log)]
    again = cli("retry-failed", "--repo", str(ws))
    assert again.code == 0 and "nothing to retry" in again.out


def test_status_lists_a_run_in_progress_with_its_running_items(ws: Path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", "--parallel=2", "--repo", str(ws)],
        env={**os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "30"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    calls = 0
    while calls < 2:
        line = proc.stdout.readline().decode()
        assert line
        calls += ": calling " in line
    data = json.loads(cli("status", "--repo", str(ws), "--json").out)
    try:
        assert data["latest"]["state"] == "running"
        assert data["in_progress"] == []  # the latest run is not listed twice
        statuses = [i["status"] for i in data["latest"]["items"]]
        assert statuses.count("running") == 2 and statuses.count("pending") == 4
        refused = cli("retry-failed", "--repo", str(ws))
        assert refused.code == 2 and "still in progress" in refused.err
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_after_a_killed_coordinator_status_says_abandoned_and_retry_failed_finishes(
        tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["41", "42", "43"])  # one never started
    proc = subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", "--parallel=2", "--repo", str(ws)],
        env={**os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "30"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    while ": calling " not in proc.stdout.readline().decode():
        pass
    proc.kill()
    proc.wait()
    data = json.loads(cli("status", "--repo", str(ws), "--json").out)
    assert data["latest"]["state"] == "abandoned"
    assert {i["status"] for i in data["latest"]["items"]} == {"interrupted"}
    retry = cli("retry-failed", "--repo", str(ws), "--parallel=3",
                env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0"})
    assert retry.code == 0, retry.out + retry.err
    assert "retrying 3 lld item(s)" in retry.out
    assert len(list((ws / "docs/lld/active").glob("LLD-*.md"))) == 3


def test_status_with_no_run_or_a_missing_run_folder_is_clear(ws: Path, fast: None):
    assert "no run yet" in cli("status", "--repo", str(ws)).out
    none = cli("retry-failed", "--repo", str(ws))
    assert none.code == 2 and "no run to retry" in none.err
    assert cli("lld-all", "--repo", str(ws), "--limit=1").code == 0
    shutil.rmtree(latest_run(ws))
    gone = cli("status", "--repo", str(ws))
    assert gone.code == 0 and "points at a run folder that is gone" in gone.out
    assert "Traceback" not in gone.err
