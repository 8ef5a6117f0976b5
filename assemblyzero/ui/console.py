"""What the coordinator shows: plain `[COORDINATOR]` lines, or a live status area.

`Console` writes whole lines to the shared stdout and leaves the workers'
tees writing there directly (CI logs, pipes, `NO_COLOR`). On a terminal,
`for_terminal` returns the live console of `assemblyzero.ui.live` instead: the
tees then write to a pipe each, and the coordinator relays their lines above
a status area. rich is imported only then, and only by the coordinator.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from assemblyzero.ui.prefix_tee import color_ok

COORDINATOR_TAG = "COORDINATOR"
# Escape sequences and control characters in text for the terminal: colours
# (SGR) are group 1; the rest (cursor moves, a full reset `ESC c`, titles,
# 8-bit controls such as CSI U+009B) could break the screen. Tab and newline
# are text.
_SEQUENCES = (r"(\x1b\[[0-9;]*m)|\x1b\[[0-?]*[ -/]*[@-~]"
              r"|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]?")
ESCAPES = re.compile(_SEQUENCES + r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SEQUENCES = re.compile(_SEQUENCES)


def safe(text: str, colours: bool = True) -> str:
    """`text` without what could move the cursor or clear the screen (colours kept or not)."""
    return ESCAPES.sub(lambda m: (m.group(1) or "") if colours else "", text)


# Control characters (C0, DEL, C1), the line and paragraph separators, and the
# bidirectional overrides and isolates (which reorder what a line seems to say).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHOWN = {"\n": "\\n", "\r": "\\r", "\t": " "}


def printable(text: str) -> str:
    """Text from outside (a file name, a title, a reason, model output) as one safe line.

    The one sanitizer of every line we print that carries such text, in every
    output mode: escape sequences are removed (colours too) and every other
    control character is shown as an escape (`\\n`, `\\x07`, `\\u202e`), so
    nothing can move the cursor, retitle the terminal, reorder the line or
    start a line of its own (a forged `[COORDINATOR]` line). A tab becomes a
    space.
    """
    if _CONTROLS.search(text) is None:  # the common case: nothing to do
        return text
    return _CONTROLS.sub(_show, SEQUENCES.sub("", text))


def printable_lines(text: str) -> str:
    """A message of several lines (an error quoting a tool's stderr), each made printable."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _show(match: re.Match[str]) -> str:
    char = match.group(0)
    return _SHOWN.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100
                                else f"\\u{ord(char):04x}")


# The worker's lines for the console: called from the thread that reads its pipe.
Sink = Callable[[bytes], None]


@dataclass(frozen=True)
class Active:
    """A running item as the status area shows it."""

    tag: str
    key: str  # the credential(s) it holds, "-" if none
    age: float  # seconds since it started
    hue: int = 0  # the colour of its prefix
    host: str = ""  # on a cluster: the host its worker runs on


@dataclass(frozen=True)
class Progress:
    """The run at one moment: counts, elapsed time, ETA from finished items."""

    total: int
    done: int
    failed: int  # failed, halted, timed out
    skipped: int
    interrupted: int
    pending: int
    running: tuple[Active, ...]
    elapsed: float
    eta: float | None  # seconds; None until an item has finished
    paused: bool = False
    budgets: str = ""  # the paced keys' budgets now: `team-a 12/60 requests · team-b ...`

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped + self.interrupted

    def others(self) -> str:
        """`, 1 skipped, 2 interrupted` (only the ones that happened)."""
        return "".join(f", {n} {what}" for n, what in (
            (self.skipped, "skipped"), (self.interrupted, "interrupted")) if n)

    def line(self) -> str:
        """`progress: 3 done, 2 running, 4 pending, 0 failed; 41s elapsed, ETA 30s`."""
        eta = "unknown" if self.eta is None else duration(self.eta)
        return (f"progress: {self.done} done, {len(self.running)} running, "
                f"{self.pending} pending, {self.failed} failed{self.others()}; "
                f"{duration(self.elapsed)} elapsed, ETA {eta}"
                + (f"; budgets now {self.budgets}" if self.budgets else ""))


def duration(seconds: float) -> str:
    """`41s`, `3m05s`, `1h02m`: whole seconds, never negative."""
    n = max(0, round(seconds))
    if n < 60:
        return f"{n}s"
    if n < 3600:
        return f"{n // 60}m{n % 60:02d}s"
    return f"{n // 3600}h{n % 3600 // 60:02d}m"


class Console:
    """`[COORDINATOR] text` lines, each one whole write to the shared stdout."""

    live = False  # a live console relays the workers' lines (coloured) itself

    def __init__(self, width: int = 0, fd: int = 1) -> None:
        self.width, self.fd = width, fd

    @property
    def prefix(self) -> str:
        """`[COORDINATOR]` padded to the tags' width."""
        return f"[{COORDINATOR_TAG}]".ljust(self.width)

    def say(self, text: str) -> None:
        """Write one line; once the terminal is gone (EPIPE, ...), stay quiet."""
        if self.fd < 0:
            return
        try:
            os.write(self.fd, f"{self.prefix} {text}\n".encode("utf-8", "replace"))
        except OSError:
            self.fd = -1

    def start(self, progress: Progress) -> None:
        """The run begins (a live console shows its status area from here)."""

    def update(self, progress: Progress) -> None:
        """The run changed: an item started or ended, a pause began or ended."""

    def stop(self) -> None:
        """The run's workers are all gone; what follows is the summary."""

    def sink(self, tag: str, scrub: Callable[[str], str] = str) -> Sink | None:
        """Where the worker `tag`'s output goes (`scrub` masks secrets in it); None: the
        tee writes stdout itself."""
        return None


def for_terminal(width: int = 0) -> Console:
    """The live console where the tees would colour (a terminal, no NO_COLOR, TERM not
    dumb: `prefix_tee.color_ok`), plain lines elsewhere."""
    if not color_ok():
        return Console(width)
    from assemblyzero.ui.live import LiveConsole  # rich: the coordinator on a terminal only

    return LiveConsole(width)
