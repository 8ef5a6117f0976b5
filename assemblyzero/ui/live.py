"""The live console: workers' lines scroll by above a status area that stays put.

Only the coordinator imports this module (through `console.for_terminal`),
and only when stdout is a terminal: it is the one user of rich. Each worker's
tee writes to a pipe of its own; a thread per worker reads it and hands whole
lines to `LiveConsole.sink`, which prints them above the area, whole (a line
wider than the terminal is wrapped by the terminal, never cut by us).

Every print and every redraw of the area happens under one lock (`_out`):
rich positions the cursor from the area's last height, so a redraw that
slipped in between would erase a line already printed. Hence no rich
auto-refresh: our own ticker redraws under that lock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from rich.console import Console as RichConsole
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from assemblyzero.constants import LIVE_REFRESH
from assemblyzero.ui.console import Console, Progress, Sink, duration, safe
from assemblyzero.ui.prefix_tee import format_prefix


class LiveConsole(Console):
    live = True

    def __init__(self, width: int = 0, refresh: float = LIVE_REFRESH) -> None:
        super().__init__(width)
        self.refresh = refresh  # seconds between redraws
        self.term = RichConsole(highlight=False, markup=False, emoji=False, soft_wrap=True)
        self._state = threading.Lock()  # guards what the area shows (taken while rendering)
        self._out = threading.Lock()  # one print or redraw at a time (taken before _state)
        self._progress: Progress | None = None
        self._since = time.monotonic()  # when _progress was taken
        self._last: dict[str, str] = {}  # each running item's latest line
        self._live: Live | None = None
        self._ticking = threading.Event()  # set: the ticker stops
        self._dead = False

    # --- what the coordinator says -------------------------------------------
    def say(self, text: str) -> None:
        self._print(Text.assemble((self.prefix, "bold"), " ", text))

    def start(self, progress: Progress) -> None:
        self.update(progress)
        # No redirection of sys.stdout/stderr: rich would print those outside _out.
        live = Live(get_renderable=self._render, console=self.term, auto_refresh=False,
                    redirect_stdout=False, redirect_stderr=False)
        with self._out:
            self._live = live
            self._guard(lambda: live.start(refresh=True))
        threading.Thread(target=self._tick, name="live-area", daemon=True).start()

    def update(self, progress: Progress) -> None:
        with self._state:
            self._progress, self._since = progress, time.monotonic()
            running = {a.tag for a in progress.running}
            for tag in [t for t in self._last if t not in running]:
                del self._last[tag]

    def stop(self) -> None:
        self._ticking.set()
        with self._out:
            live, self._live = self._live, None
            if live is not None:
                self._guard(live.stop)  # the area's last state stays on the screen

    def _tick(self) -> None:
        while not self._ticking.wait(self.refresh):
            with self._out:
                if self._live is not None:
                    self._guard(self._live.refresh)

    # --- what the workers say ------------------------------------------------
    def sink(self, tag: str, scrub: Callable[[str], str] = str) -> Sink:
        """A feed for the bytes of `tag`'s pipe: whole lines are printed, b"" flushes.

        Each line is `scrub`bed (the run's known secrets) and made `safe`.
        """
        partial = bytearray()
        label = len(f"[{tag}]")

        def feed(data: bytes) -> None:
            partial.extend(data)
            cut = len(partial) if not data else partial.rfind(b"\n") + 1
            if not cut:
                return
            # Escapes out first: one inside a secret would hide it from the scrub.
            text = scrub(safe(partial[:cut].decode("utf-8", "replace").rstrip("\n")))
            del partial[:cut]
            lines = Text.from_ansi(text)
            last = lines.plain.rsplit("\n", 1)[-1][label:].strip()
            with self._state:
                self._last[tag] = last
            self._print(lines)

        return feed

    # --- drawing -------------------------------------------------------------
    def _print(self, text: Text) -> None:
        with self._out:
            self._guard(lambda: self.term.print(text))

    def _guard(self, draw: Callable[[], object]) -> None:
        """Draw (holding _out); once the terminal is gone, stay quiet from then on."""
        if self._dead:
            return
        try:
            draw()
        except (OSError, SystemExit):  # rich raises SystemExit on a broken pipe
            self._dead = True

    def _render(self) -> RenderableType:
        """The area: a bar with the counts, then one line per running item (cut, never wrapped)."""
        with self._state:
            p, ago, last = self._progress, time.monotonic() - self._since, dict(self._last)
        if p is None:
            return Text("")
        indent = len(self.prefix)  # the bar fills the tags' column
        lines = [Text.assemble(_bar(p.finished, p.total, indent), " ", _counts(p, ago))]
        if p.budgets:  # what each paced key may still send this minute
            lines.append(Text.assemble(" " * (indent + 1), ("budgets ", "dim"),
                                       (p.budgets, "cyan")))
        tags = max((len(a.tag) + 2 for a in p.running), default=0)
        keys = max((len(a.key) for a in p.running if a.key != "-"), default=0)
        hosts = max((len(a.host) for a in p.running), default=0)
        for a in p.running:
            line = Text(" " * (indent + 1))
            line.append_text(Text.from_ansi(format_prefix(a.tag, tags, True, a.hue).decode()))
            if keys:  # no column of dashes when nothing is leased
                line.append(a.key.ljust(keys) + "  ", style="cyan")
            if hosts:  # on a cluster: where it runs
                line.append(safe(a.host).ljust(hosts) + "  ", style="magenta")
            line.append(_span(a.age + ago).rjust(6) + "  ")
            line.append(last.get(a.tag, "starting"), style="dim")
            lines.append(line)
        for line in lines:
            line.no_wrap, line.overflow = True, "ellipsis"
        return Group(*lines)


def _bar(done: int, total: int, width: int) -> Text:
    filled = width * done // max(1, total)
    return Text.assemble(("━" * filled, "green"), ("━" * (width - filled), "grey37"))


def _counts(p: Progress, ago: float) -> Text:
    """`4/9  4 done · 3 running · 2 pending · 0 failed · ETA 14s · 41s elapsed`."""
    text = Text(f"{p.finished}/{p.total}  ")
    text.append(f"{p.done} done", style="green")
    text.append(f" · {len(p.running)} running · {p.pending} pending · ")
    text.append(f"{p.failed} failed", style="red" if p.failed else "")
    text.append(p.others().replace(", ", " · "))
    if p.paused:
        text.append(" · no free key", style="yellow")  # paused until one is
    elif p.running or p.pending:
        text.append(" · ETA " + ("unknown" if p.eta is None else _span(p.eta - ago)))
    text.append(f" · {_span(p.elapsed + ago)} elapsed")
    return text


def _span(seconds: float) -> str:
    """`duration`, safe for any float: the area must never die of an odd number."""
    return duration(seconds) if math.isfinite(seconds) else "unknown"
