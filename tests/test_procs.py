"""procs: a worker's exit is always seen, after its output, whatever the display does."""

from __future__ import annotations

import os
import subprocess
import sys
from queue import SimpleQueue

from assemblyzero import procs


def _worker(code: str) -> tuple[subprocess.Popen[bytes], int]:
    read, write = procs.output_pipe()
    proc = procs.spawn([sys.executable, "-c", code], {}, (), stdout=write)
    os.close(write)
    return proc, read


def test_the_exit_comes_after_every_byte_of_output() -> None:
    proc, read = _worker("import sys; sys.stdout.write('x' * 200000 + 'end'); sys.exit(3)")
    events: SimpleQueue[tuple[str, str, int]] = SimpleQueue()
    got: list[bytes] = []

    def sink(data: bytes) -> None:
        got.append(data)

    procs.watch(proc, "lld-1", events, (read, sink))
    assert events.get(timeout=30) == ("exit", "lld-1", 3)
    assert b"".join(got) == b"x" * 200000 + b"end" and got[-1] == b""  # b"" marks the end


def test_a_display_that_raises_even_systemexit_does_not_hide_the_exit() -> None:
    proc, read = _worker("print('hello')")
    events: SimpleQueue[tuple[str, str, int]] = SimpleQueue()

    def broken(data: bytes) -> None:
        raise SystemExit(1)  # what rich does on a broken pipe

    procs.watch(proc, "lld-2", events, (read, broken))
    assert events.get(timeout=30) == ("exit", "lld-2", 0)
