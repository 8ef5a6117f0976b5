"""Run a command on a pseudo-terminal and look at what a user would see.

`run_in_pty` gives the child a real pty of a set size (so rich sees a
terminal), collects every byte it writes, and can act on the output as it
arrives (send Ctrl+C once a line shows up, take a snapshot of the screen).
`screen` replays bytes through pyte, a terminal emulator.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyte

# CSI (colours, cursor moves, erase) and OSC sequences: everything rich emits.
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


@dataclass
class TermRun:
    code: int
    raw: bytes
    cols: int
    rows: int

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")

    def segments(self) -> list[str]:
        """The output without escape codes, cut at every CR and LF: lines as written."""
        return re.split(r"[\r\n]", ESCAPES.sub("", self.text))

    def screen(self) -> list[str]:
        """The terminal's screen at the end, as pyte renders it (trailing blanks cut)."""
        return screen(self.raw, self.cols, self.rows)

    def history(self) -> list[str]:
        """Every line the terminal holds at the end, scrollback first.

        Replayed on a screen wide enough that no line wraps (cursor moves are
        line-wise, so the replay is faithful): one line written, one line here.
        """
        # As wide as the longest line written (plus room), not wider: pyte's cost grows
        # with the screen's width.
        width = max((len(segment) for segment in self.segments()), default=0) + 8
        term = _ScrollbackScreen(max(width, self.cols), self.rows, history=100_000)
        pyte.ByteStream(term).feed(self.raw)
        old = ["".join(line[x].data for x in range(term.columns)) for line in term.top]
        return [line.rstrip() for line in old + list(term.display)]


class _ScrollbackScreen(pyte.Screen):
    """The lines scrolled off the top, kept as pyte.HistoryScreen keeps them in
    `history.top`, without its paging: HistoryScreen wraps every attribute access
    of the screen (for pages never turned here), which makes a long replay slow."""

    def __init__(self, columns: int, lines: int, history: int) -> None:
        self.top: deque[Any] = deque(maxlen=history)
        super().__init__(columns, lines)

    def reset(self) -> None:
        super().reset()
        self.top.clear()

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        super().erase_in_display(how, *args, **kwargs)
        if how == 3:  # the scrollback too
            self.top.clear()

    def index(self) -> None:
        top, bottom = self.margins or pyte.screens.Margins(0, self.lines - 1)
        if self.cursor.y == bottom:
            self.top.append(self.buffer[top])
        super().index()


def screen(raw: bytes, cols: int, rows: int) -> list[str]:
    term = pyte.Screen(cols, rows)
    pyte.ByteStream(term).feed(raw)
    return [line.rstrip() for line in term.display]


def run_in_pty(argv: Sequence[str], env: dict[str, str], cwd: str | None = None,
               cols: int = 120, rows: int = 200, timeout: float = 120.0,
               on_output: Callable[[bytes, subprocess.Popen[bytes]], None] | None = None,
               ) -> TermRun:
    """Run `argv` with stdout and stderr on a new pty of `cols` x `rows`; stdin closed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            env=env, cwd=cwd)
    os.close(slave)
    raw = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the pty's other end is gone
                break
            if not chunk:
                break
            raw += chunk
            if on_output:
                on_output(bytes(raw), proc)
        else:
            proc.kill()
            raise TimeoutError(f"{argv} still ran after {timeout}s")
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
    return TermRun(code, bytes(raw), cols, rows)
