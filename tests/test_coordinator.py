"""The scheduler: a bound on workers, statuses from exit codes, and the kill paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from conftest import (
    driver,
    group_alive,
    journal,
    latest_run,
    lock_free,
    make_workspace,
    started_groups,
    summary,
    worker_id,
)

from assemblyzero.backlog import scan
from assemblyzero.ids import Kind
from assemblyzero.run.coordinator import Coordinator
from assemblyzero.run.jobs import RunOptions
from assemblyzero.ui.console import Console
from assemblyzero.workspace import Workspace


class FakeProc:
    """A finished 'worker' with a given exit code (no process is started)."""

    def __init__(self, pid: int, code: int) -> None:
        self.pid, self.code = pid, code

    def wait(self) -> int:
        return self.code


def test_the_scheduler_bounds_workers_and_maps_exit_codes(tmp_path: Path):
    codes = {"1": 0, "2": 1, "3": 3, "4": 130, "5": 143, "6": 99, "7": 0}
    ws = Workspace.at(make_workspace(tmp_path / "ws", issues=list(codes)))
    devnull = os.open(os.devnull, os.O_WRONLY)
    coordinator: Coordinator
    peak: list[int] = []

    def spawn(argv: list[str], env: Mapping[str, str], fds: tuple[int, ...]) -> FakeProc:
        peak.append(len(coordinator.running) + 1)
        item = worker_id(argv)
        assert env["ASSEMBLYZERO_WORKFLOW_DB"].endswith(f"lld-{item}.db")
        return FakeProc(pid=10**9, code=codes[item])

    coordinator = Coordinator(ws, RunOptions(parallel=2), Console(fd=devnull), spawn=spawn)
    code = coordinator.run(scan(ws, Kind.LLD).items, "lld-all")
    os.close(devnull)
    assert code == 1
    assert max(peak) == 2 and len(peak) == 7
    statuses = {i["id"]: i["status"] for i in summary(latest_run(ws.root))["items"]}
    assert statuses == {"1": "done", "2": "failed", "3": "halted", "4": "interrupted",
                        "5": "interrupted", "6": "failed", "7": "done"}


STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print(f'ready {sys.argv[1]}', flush=True)\n"
    "while True:\n"
    "    time.sleep(60)\n"
)


def _start(script: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _read_until(proc: subprocess.Popen[bytes], marker: str, count: int = 1) -> str:
    assert proc.stdout is not None
    seen = ""
    while seen.count(marker) < count:
        line = proc.stdout.readline().decode()
        assert line, f"output ended before {count} x {marker!r}: {seen}"
        seen += line
    return seen


@pytest.mark.e2e
def test_a_worker_ignoring_sigterm_is_killed_after_grace(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["1", "2"])
    proc = _start(driver(tmp_path, ws, STUBBORN, parallel=2, grace=0.5))
    _read_until(proc, "ready", 2)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 130, out
    run_dir = latest_run(ws)
    assert [i["status"] for i in summary(run_dir)["items"]] == ["interrupted"] * 2
    assert not any(group_alive(g) for g in started_groups(run_dir))


HANG_GUARD = 30.0  # how long a test waits for a coordinator before it calls it hung
LONG_GRACE = 20 * HANG_GUARD  # a grace no test outlives: no SIGKILL comes from it


@pytest.mark.e2e
def test_a_second_ctrl_c_kills_at_once_without_waiting_for_the_grace(tmp_path: Path):
    """A worker that ignores SIGTERM under a grace longer than the test can last: if it
    ends at all, the second Ctrl+C killed it; the order of the lines shows that it did."""
    ws = make_workspace(tmp_path / "ws", issues=["1"])
    proc = _start(driver(tmp_path, ws, STUBBORN, parallel=1, grace=LONG_GRACE))
    _read_until(proc, "ready")
    proc.send_signal(signal.SIGINT)
    seen = _read_until(proc, "Ctrl+C again to kill them now")
    proc.send_signal(signal.SIGINT)
    out = seen + proc.communicate(timeout=HANG_GUARD)[0].decode()
    assert proc.returncode == 130, out
    assert "SIGINT again: killing 1 worker(s) now" in out
    assert not any(group_alive(g) for g in started_groups(latest_run(ws)))
    order = [out.index(line) for line in ("Ctrl+C again to kill them now",
                                          "SIGINT again: killing 1 worker(s) now",
                                          "LLD-001 interrupted", "summary of run")]
    assert order == sorted(order), out  # stop, kill now, the worker's end, then the summary
    ends = [e for e in journal(latest_run(ws)) if e["event"] == "end"]
    assert [(e["status"], e["exit_code"]) for e in ends] == [("interrupted", -signal.SIGKILL)]


@pytest.mark.e2e
def test_a_timed_out_worker_ignoring_sigterm_is_killed_and_marked_timeout(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["1"])
    proc = _start(driver(tmp_path, ws, STUBBORN, parallel=1, grace=0.2, timeout=0.5))
    out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 1, out
    assert "LLD-001 timed out after 0.5s" in out
    run_dir = latest_run(ws)
    assert [i["status"] for i in summary(run_dir)["items"]] == ["timeout"]
    assert not any(group_alive(g) for g in started_groups(run_dir))


def test_an_item_that_cannot_start_fails_alone_and_the_run_exits_1(tmp_path: Path):
    ws = Workspace.at(make_workspace(tmp_path / "ws", issues=["1", "2", "3"]))
    devnull = os.open(os.devnull, os.O_WRONLY)

    def spawn(argv: list[str], env: Mapping[str, str], fds: tuple[int, ...]) -> FakeProc:
        if worker_id(argv) == "2":
            raise RuntimeError("no more processes")
        return FakeProc(pid=10**9, code=0)

    coordinator = Coordinator(ws, RunOptions(parallel=2), Console(fd=devnull), spawn=spawn)
    code = coordinator.run(scan(ws, Kind.LLD).items, "lld-all")
    os.close(devnull)
    assert code == 1
    items = {i["id"]: i for i in summary(latest_run(ws.root))["items"]}
    assert {k: v["status"] for k, v in items.items()} == {"1": "done", "2": "failed",
                                                          "3": "done"}
    assert "no more processes" in items["2"]["reason"]
    assert not ws.item_lock(Kind.LLD, "2").exists() or lock_free(ws.item_lock(Kind.LLD, "2"))


SLOW = (
    "import sys, time\n"
    "print(f'working on {sys.argv[1]}', flush=True)\n"
    "time.sleep(0.6)  # the work\n"
)


@pytest.mark.e2e
def test_a_long_run_reports_progress_with_counts_and_an_eta(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["1", "2", "3", "4"])
    proc = _start(driver(tmp_path, ws, SLOW, parallel=2, progress_every=0.25))
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, out
    reports = [line for line in out.splitlines() if "progress: " in line]
    assert reports, out
    assert all(line.startswith("[COORDINATOR]") for line in reports)
    assert "ETA unknown" in reports[0]  # nothing finished yet: no guess
    later = [line for line in reports if "ETA unknown" not in line]
    assert later and " done, " in later[-1] and " pending, " in later[-1]
