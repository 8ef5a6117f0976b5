"""The local backend's promises that need no process: what it does when it cannot watch a
worker it started, and that an attempt's end is posted whatever its result file holds."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from assemblyzero.results import Status
from assemblyzero.run import local, procs
from assemblyzero.run.backend import Finished, Job
from assemblyzero.run.local import LocalBackend
from assemblyzero.ui.console import Console


class FakeProc:
    def __init__(self) -> None:
        self.pid, self.waited = 10**9, False

    def wait(self) -> int:
        self.waited = True
        return -9


def _job(tmp_path: Path) -> Job:
    return Job("lld-1", "LLD-001", ("--kind=lld", "--id=1"), {}, None, tmp_path / "lld-1.log",
               tmp_path / "results" / "lld-1.json")


def test_a_worker_that_cannot_be_watched_is_killed_and_reaped_before_start_raises(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc, killed = FakeProc(), []

    def spawn(argv: list[str], env: Mapping[str, str], fds: tuple[int, ...],
              stdout: int | None = None) -> FakeProc:
        return proc

    def no_thread(*args: object, **kwargs: object) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(procs, "watch", no_thread)
    monkeypatch.setattr(procs, "kill_group", killed.append)
    devnull = os.open(os.devnull, os.O_WRONLY)
    backend = LocalBackend(lambda message: None, Console(fd=devnull), str, (), 1.0, spawn)
    try:
        with pytest.raises(RuntimeError, match="new thread"):
            backend.start(_job(tmp_path))
    finally:
        backend.close()
        os.close(devnull)
    assert killed == [proc.pid] and proc.waited  # nothing of it runs on, unwatched


@pytest.mark.parametrize("content", ["[" * 100_000, "{not json", '{"status": "odd"}', ""])
def test_the_end_is_posted_whatever_the_result_file_holds(tmp_path: Path, content: str) -> None:
    job = _job(tmp_path)
    job.result.parent.mkdir()
    job.result.write_text(content)
    assert local.finished(job, 1) == Finished("lld-1", None, 1)


def test_a_readable_result_comes_with_the_end(tmp_path: Path) -> None:
    job = _job(tmp_path)
    job.result.parent.mkdir()
    job.result.write_text('{"kind": "lld", "id": "1", "status": "done"}')
    end = local.finished(job, 0)
    assert end.result is not None and end.result.status is Status.DONE and end.code == 0
