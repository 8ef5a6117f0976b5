"""procs: a worker's exit is always seen, after its output, whatever the display does,
and only once no process of its group runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from queue import SimpleQueue

import pytest
from conftest import group_alive

from assemblyzero.run import procs

pytestmark = pytest.mark.e2e  # every test here starts real processes


def _worker(code: str) -> tuple[subprocess.Popen[bytes], int]:
    read, write = procs.output_pipe()
    proc = procs.spawn([sys.executable, "-c", code], {}, (), stdout=write)
    os.close(write)
    return proc, read


def test_the_exit_comes_after_every_byte_of_output() -> None:
    proc, read = _worker("import sys; sys.stdout.write('x' * 200000 + 'end'); sys.exit(3)")
    events: SimpleQueue[int] = SimpleQueue()
    got: list[bytes] = []

    def sink(data: bytes) -> None:
        got.append(data)

    procs.watch(proc, events.put, (read, sink))
    assert events.get(timeout=30) == 3
    assert b"".join(got) == b"x" * 200000 + b"end" and got[-1] == b""  # b"" marks the end


def test_a_display_that_raises_even_systemexit_does_not_hide_the_exit() -> None:
    proc, read = _worker("print('hello')")
    events: SimpleQueue[int] = SimpleQueue()

    def broken(data: bytes) -> None:
        raise SystemExit(1)  # what rich does on a broken pipe

    procs.watch(proc, events.put, (read, broken))
    assert events.get(timeout=30) == 0


# A group leader that exits while a member of its group goes on (as a worker
# does when its tee is killed); the member saves for a while on SIGTERM.
MEMBER = """
import os, signal, sys, time
def saved(signum, frame):
    time.sleep(0.2)  # writing its checkpoint
    with open(sys.argv[1], "w") as f:
        f.write("saved")
    os._exit(0)
signal.signal(signal.SIGTERM, saved if sys.argv[2] == "saves" else signal.SIG_IGN)
print("ready", flush=True)
while True:
    signal.pause()
"""
LEADER = """
import subprocess, sys
member = subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]],
                          stdout=subprocess.PIPE)
assert member.stdout.readline() == b"ready\\n"
"""


def _leader_and_member(mark: Path, mode: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", LEADER, MEMBER, str(mark), mode]
    proc = procs.spawn(argv, {}, ())
    assert isinstance(proc, subprocess.Popen)
    return proc


def test_the_exit_waits_until_the_rest_of_the_group_saved_and_ended(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    proc = _leader_and_member(mark, "saves")
    events: SimpleQueue[int] = SimpleQueue()
    procs.watch(proc, events.put, grace=30)
    assert events.get(timeout=30) == 0
    assert not group_alive(proc.pid)
    assert mark.read_text() == "saved"  # it was asked (SIGTERM) and had the time to save


def test_a_member_ignoring_sigterm_is_killed_after_grace_before_the_exit(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    proc = _leader_and_member(mark, "ignores")
    events: SimpleQueue[int] = SimpleQueue()
    procs.watch(proc, events.put, grace=0.1)
    assert events.get(timeout=30) == 0
    assert not group_alive(proc.pid)
    assert not mark.exists()


def test_zombies_do_not_count_as_running() -> None:
    proc = procs.spawn([sys.executable, "-c", "pass"], {}, ())
    assert isinstance(proc, subprocess.Popen)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped: a zombie
    os.killpg(proc.pid, 0)  # the kernel still knows the group
    assert not procs.group_runs(proc.pid)
    procs.end_group(proc.pid, grace=600)  # returns at once: nothing to stop
    assert proc.wait() == 0
    assert not procs.group_runs(proc.pid)


def test_a_running_group_runs() -> None:
    proc = procs.spawn([sys.executable, "-c", "import time; time.sleep(60)"], {}, ())
    try:
        assert procs.group_runs(proc.pid)
    finally:
        procs.kill_group(proc.pid)
        proc.wait()
