"""Stopping a run with real signals: workers save their checkpoint, nothing is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    cli,
    group_alive,
    latest_run,
    make_workspace,
    model_calls,
    started_groups,
    summary,
)

pytestmark = pytest.mark.e2e  # every test here starts real processes


def _start(ws: Path, *flags: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", "--repo", str(ws), *flags],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def _wait_for_calls(proc: subprocess.Popen[bytes], count: int) -> list[str]:
    """Read the run's output until `count` workers are inside a model call."""
    assert proc.stdout is not None
    seen: list[str] = []
    while sum(": calling " in line for line in seen) < count:
        line = proc.stdout.readline().decode()
        assert line, "run ended before its workers started: " + "".join(seen)
        seen.append(line)
    return seen


def test_sigint_stops_workers_keeps_checkpoints_and_a_rerun_finishes(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["41", "42", "43", "44"])  # one more than 3
    proc = _start(ws, "--parallel=3", env={"ASSEMBLYZERO_OFFLINE_LATENCY": "30"})
    _wait_for_calls(proc, 3)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 130, out
    run_dir = latest_run(ws)
    items = {i["id"]: i["status"] for i in summary(run_dir)["items"]}
    running = sorted(i for i, s in items.items() if s == "interrupted")
    assert len(running) == 3
    assert all(s in ("interrupted", "skipped") for s in items.values())
    assert not any(group_alive(g) for g in started_groups(run_dir))
    for item_id in running:
        assert (ws / f".assemblyzero/checkpoints/lld-{item_id}.db").exists()
    page = (run_dir / "report.html").read_text(encoding="utf-8")  # drawn after Ctrl+C too
    assert page.count('<rect class="bar') == 3 and page.count('data-outcome="interrupted"') == 3
    assert out.strip().splitlines()[-1].endswith("report.html")

    rerun = cli("lld-all", "--parallel=3", "--repo", str(ws))
    assert rerun.code == 0, rerun.out
    second = latest_run(ws)
    for item_id in running:
        log = (second / f"lld-{item_id}.log").read_text()
        assert "resuming at step 'draft'" in log
        assert len(model_calls(log)) == 4
    assert len(list((ws / "docs/lld/active").glob("LLD-*.md"))) == 4


def test_sigterm_gives_143(ws: Path):
    proc = _start(ws, "--parallel=2", env={"ASSEMBLYZERO_OFFLINE_LATENCY": "30"})
    _wait_for_calls(proc, 2)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 143, out
    assert "SIGTERM: stopping 2 worker(s)" in out
    run_dir = latest_run(ws)
    stopped = [i["id"] for i in summary(run_dir)["items"] if i["status"] == "interrupted"]
    assert len(stopped) == 2
    for item_id in stopped:
        assert (ws / f".assemblyzero/checkpoints/lld-{item_id}.db").exists()
    assert not any(group_alive(g) for g in started_groups(run_dir))


def _wait_until_gone(groups: list[int], limit: float) -> list[int]:
    """Groups still alive once `limit` seconds have passed (they are not our children)."""
    import time

    deadline = time.monotonic() + limit
    alive = [g for g in groups if group_alive(g)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [g for g in alive if group_alive(g)]
    return alive


def test_workers_of_a_killed_coordinator_stop_by_themselves_and_a_rerun_resumes(
        tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["41", "42", "43"])  # one never started
    proc = _start(ws, "--parallel=2", env={"ASSEMBLYZERO_OFFLINE_LATENCY": "30"})
    _wait_for_calls(proc, 2)
    run_dir = latest_run(ws)
    groups = started_groups(run_dir)
    proc.kill()  # kill -9: no handler, no cleanup
    proc.wait()
    assert _wait_until_gone(groups, limit=10) == []
    logs = "".join(p.read_text() for p in run_dir.glob("lld-*.log"))
    assert logs.count("interrupted by SIGHUP") == 2
    assert len(list((ws / ".assemblyzero/checkpoints").glob("*.db"))) == 2
    rerun = cli("lld-all", "--parallel=3", "--repo", str(ws))
    assert rerun.code == 0, rerun.out
    assert rerun.out.count("resuming at step 'draft'") == 2
    assert len(list((ws / "docs/lld/active").glob("LLD-*.md"))) == 3
