"""A tee that dies takes its worker with it (and vice versa); no item lock or
lease is released while a process of that item still runs (issue 12, point 10).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    cli,
    driver,
    group_alive,
    latest_run,
    make_workspace,
    model_calls,
    started_groups,
    summary,
)

from assemblyzero.ids import Kind
from assemblyzero.workspace import Workspace

pytestmark = pytest.mark.e2e  # every test here starts real processes

TEE = ROOT / "assemblyzero" / "ui" / "prefix_tee.py"
TIMEOUT = 30


def _read_until(stream: object, marker: str) -> str:
    """Lines of `stream` (a binary pipe) up to the first one holding `marker`."""
    seen = ""
    while marker not in seen:
        line = stream.readline().decode()  # type: ignore[attr-defined]
        assert line, f"output ended before {marker!r}: {seen}"
        seen += line
    return seen


def _children(pid: int) -> list[int]:
    """The pids whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _wait_exit(pid: int, timeout: float = TIMEOUT) -> None:
    """Wait for a process that is not our child to end (a pidfd turns readable)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], timeout)[0], f"process {pid} still runs"
    finally:
        os.close(fd)


# The fake worker: on SIGTERM it takes a while to "save", then checks whether
# its item's lock is still held by the coordinator, as it must be while it runs.
SAVER = """
import fcntl, os, signal, sys, time
LOCK, OUT = {lock!r}, {out!r}

def stop(signum, frame):
    time.sleep(0.3)  # saving its checkpoint
    fd = os.open(LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        state = "released"
    except BlockingIOError:
        state = "held"
    with open(OUT + ".tmp", "w") as f:
        f.write(state + " " + signal.Signals(signum).name)
    os.replace(OUT + ".tmp", OUT)
    os._exit(0)

signal.signal(signal.SIGTERM, stop)
print(f"ready {{os.getpid()}}", flush=True)
while True:
    signal.pause()
"""


def test_a_killed_tee_ends_its_worker_before_the_item_lock_is_released(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    lock = Workspace.at(ws).item_lock(Kind.LLD, "41")
    out = tmp_path / "worker-ended"
    script = driver(tmp_path, ws, SAVER.format(lock=str(lock), out=str(out)), parallel=1)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    with proc:
        _read_until(proc.stdout, "ready ")
        (group,) = started_groups(latest_run(ws))
        os.kill(group, signal.SIGKILL)  # the tee (it leads the group)
        rest = _read_until(proc.stdout, "LLD-041 failed")  # the coordinator saw the end
        assert not group_alive(group), rest
        assert out.read_text() == "held SIGTERM", rest  # it ran to its end under the item lock
        proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 1
    assert [i["status"] for i in summary(latest_run(ws))["items"]] == ["failed"]
    assert not group_alive(group)


def test_the_real_worker_of_a_killed_tee_saves_its_checkpoint_and_a_rerun_resumes(
    tmp_path: Path,
):
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    run = subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", "--repo", str(ws)],
        env={**os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "30"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
    )
    assert run.stdout is not None
    with run:
        _read_until(run.stdout, ": calling ")  # the worker is inside a (30 s) model call
        run_dir = latest_run(ws)
        (group,) = started_groups(run_dir)
        os.kill(group, signal.SIGKILL)
        out = run.communicate(timeout=TIMEOUT)[0].decode()
    assert run.returncode == 1, out
    assert not group_alive(group)
    (item,) = summary(run_dir)["items"]
    assert item["status"] == "interrupted", out  # from the result it wrote before it exited
    assert (ws / ".assemblyzero/checkpoints/lld-41.db").exists()
    assert not list((ws / "docs/lld/active").glob("LLD-*.md"))

    rerun = cli("lld-all", "--repo", str(ws))
    assert rerun.code == 0, rerun.out
    log = (latest_run(ws) / "lld-41.log").read_text()
    assert "resuming at step 'draft'" in log
    assert len(model_calls(log)) == 4
    assert len(list((ws / "docs/lld/active").glob("LLD-*.md"))) == 1


def test_a_worker_stops_by_itself_when_its_tee_dies_without_a_coordinator(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    run_dir = tmp_path / "run"
    worker = [sys.executable, "-m", "assemblyzero.worker", "--kind", "lld", "--id", "41",
              "--repo", str(ws), "--run-dir", str(run_dir)]
    tee = subprocess.Popen(
        [sys.executable, "-I", "-S", str(TEE), "T", str(tmp_path / "t.log"), "--", *worker],
        env={**os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "30"}, stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT,
    )
    assert tee.stdout is not None
    with tee:
        _read_until(tee.stdout, ": calling ")
        (child,) = _children(tee.pid)
        pidfd = os.pidfd_open(child)
        tee.kill()  # nobody sends the worker a signal: it sees its output pipe lose its reader
        tee.wait()
        try:
            assert select.select([pidfd], [], [], TIMEOUT)[0], "the worker still runs"
        finally:
            os.close(pidfd)
    result = json.loads((run_dir / "results/lld-41.json").read_text())
    assert (result["status"], result["reason"]) == ("interrupted", "interrupted by SIGPIPE")
    assert (ws / ".assemblyzero/checkpoints/lld-41.db").exists()


# The worker: starts a grandchild in a session of its own that keeps the output
# pipe open, writes more than a pipe holds, then waits to be killed.
HOLDER = """
import os, signal, subprocess, sys
keeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
for i in range(5000):
    print(f"line {i:04d} " + "x" * 40)
print(f"ready {keeper.pid} {os.getpid()}", flush=True)
signal.pause()
"""


def test_a_killed_worker_ends_its_tee_even_if_a_grandchild_holds_the_pipe(tmp_path: Path):
    log = tmp_path / "t.log"
    tee = subprocess.Popen(
        [sys.executable, "-I", "-S", str(TEE), "T", str(log), "--", sys.executable, "-c", HOLDER],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    assert tee.stdout is not None
    keeper = 0
    try:
        head = _read_until(tee.stdout, "ready ")
        keeper, child = (int(n) for n in head.rsplit("ready ", 1)[1].split())
        os.kill(child, signal.SIGKILL)
        assert tee.wait(timeout=TIMEOUT) == 128 + signal.SIGKILL
        tail = tee.stdout.read()
        assert Path(f"/proc/{keeper}").exists()  # the grandchild still holds the pipe
    finally:
        if keeper:
            os.kill(keeper, signal.SIGKILL)
        tee.kill()
        tee.wait()
    lines = (head + tail.decode()).splitlines()
    assert lines[:5000] == [f"[T] line {i:04d} " + "x" * 40 for i in range(5000)]
    assert len(log.read_bytes().splitlines()) == 5001


def test_say_goes_quiet_when_its_output_pipe_has_no_reader(tmp_path: Path):
    """A write racing the tee's death: no traceback, no exit 120 from the last flush."""
    code = ("from assemblyzero.worker import say\n"
            "for n in range(3):\n"
            "    say(f'line {n}')\n"
            f"open({str(tmp_path / 'after')!r}, 'w').write('went on')\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the tee is gone
    try:
        proc = subprocess.run([sys.executable, "-c", code], stdout=write_end,
                              stderr=subprocess.PIPE, cwd=ROOT, timeout=TIMEOUT, check=False)
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert (tmp_path / "after").read_text() == "went on"
