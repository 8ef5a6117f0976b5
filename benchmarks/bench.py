"""The figures of README's Benchmarks table, measured in one run: `invoke bench`.

    python benchmarks/bench.py [--quick] [--only NAME,...] [--repeat N] [--json-out PATH]

Each figure is a ratio or a count against a peer measured in the same run
(parallel against sequential, the coordinator against `xargs -P` running the
very same worker command, the time to the first worker against the bare
interpreter's start, our lease rate against a bare file-lock floor, ...),
repeated `--repeat` times (default 3); the median counts, so the table holds
on a noisy 2-core machine. Prints a table (figure, seed target, our goal,
measured, PASS/FAIL) and writes every raw sample, the machine and the date
to `logs/bench/<timestamp>.json` (relative to the repository root) or
`--json-out`.

Everything runs in a temp dir, with HOME, ASSEMBLYZERO_STATE_DIR and
ASSEMBLYZERO_CREDENTIALS pointed into it, on generated workspaces, with the
offline provider: the real home is never touched.

Figures (`--only` takes these group names, or the row names of the table):

  speedup       6 items at 1 s per model call: `lld-all --parallel=3` wall time
                against `lld-all` (one at a time), in %
  overhead      zero-latency items: `lld-all --parallel=4` against `xargs -P 4`
                running the same worker command line (prefix-tee included)
  first_worker  from launching `python -m assemblyzero lld-all` to the first
                worker started (its journal event), as a multiple of the
                interpreter's own start (`python -c pass`, same python and
                environment as the workers, timed just before and after each run;
                the seconds beside it), and to that worker's first line
                ("load: ..."), with a breakdown of startup costs and
                `-X importtime` of the worker and the CLI in the JSON
  rss           peak RSS of one worker running one item, and of the coordinator
                (itself only) during a 6-item parallel run
  lease         benchmarks/lease_rate.py: acquire+release per second, 10
                processes contending, as a % of the bare floor measured the
                same way (`lease_rate.py --floor`: flock, small JSON temp file,
                fsync, os.replace, unlock; ours and the floor in ABBA order,
                each run half as long; the rate per second beside it), and
                the double leases it saw
  ctrl_c        SIGINT to a `lld-all --parallel=3` whose 3 workers are waiting on
                a model call: seconds until it exits (with code 130)
  dry_run       `dry-run` of 1000 pending items
  scaling       cost per item (wall / items) of `lld-all --parallel=4` at three
                sizes; linear when the largest is within 1.5x of the middle one
  pacing        benchmarks/pacing.py: 12 items on 2 keys against a loopback server that
                enforces per-key rpm/tpm limits (OpenAI and Anthropic wire formats, real
                headers and 429s): paced, --no-pacing and two concurrent runs; wall against
                the floor the limits set, calls answered 429, items lost
  cluster       benchmarks/cluster.py: 48 items at 1 s per model call, `lld-all
                --cluster=tcp://...` on a LocalCluster of 2 worker processes x 3 threads
                (started once by the bench, its start-up beside, not counted) against
                local `lld-all --parallel=6`, fresh copies of one workspace, as a ratio;
                for information: one zero-latency item on each (the per-attempt
                overhead), the scheduler's rate for tasks submitted one by one
                (pure=False), client.log_event from a task (round trip, events/s);
                runs once (about 100 s)
  report        benchmarks/report.py: `assemblyzero report` drawing report.html of a
                made-up 1000-item run (10 slots, waits, 429 retries, failures with logs,
                pauses), timed as a process, and report.write in process beside it
  live          the overhead items, `lld-all --parallel=4` with stdout on a
                pseudo-terminal (the live status area) against stdout piped
  sdk_start     for information, per real provider (openai, anthropic, gemini):
                one worker (`python -m assemblyzero.worker`, its credential on
                the secrets pipe as the coordinator passes it, base_url a
                loopback server, benchmarks/sdk_server.py), from its launch to
                its first model call arriving at that server, and its peak RSS
                over the item (draft, review); `-X importtime` of each SDK in
                the JSON. Alone: `--only sdk_start`.

Why two goals are ratios. "First worker < 0.3 s" and "leases >= 500/s" were
absolute and failed on a slow day for the machine's sake (a loaded host, a
slow disk), not the code's. Each is now judged against a floor measured in
the same run, with the same repeats (per repeat: our figure over that
repeat's floor; the median counts); the absolute figure stands beside it in
the table and the JSON keeps every raw sample of both.
  first_worker <= 12x `python -c pass`: on a normal day on the 2-core VM of
    README's table, `python -c pass` takes 22-27 ms (median of 15: 26.7 ms;
    9 runs of the bench: 24-40 ms, median 26 ms) and the first worker came at
    0.18-0.25 s, i.e. 7-9x. The old goal of 0.3 s over a 25 ms interpreter
    start is 12x: the same goal on a normal day, and a day on which the
    interpreter itself starts twice as slowly asks for 0.6 s.
  lease_rate >= 24 % of the floor: the floor (10 processes, each cycle one
    locked, fsynced record rewrite) ran at 1940-2280/s (median ~2170/s) where
    ours ran at 630-770/s, i.e. 31-34 %. The old goal of 500/s over a
    ~2100/s floor is 24 %. One cycle of ours (acquire + release) rewrites the
    record twice, plus a slot lock, so about 50 % is the ceiling of any
    store that records both.

Sizes are tuned so that the default run fits in 5 minutes on 2 cores (it
took 200 s there; one zero-latency item costs about 0.1 s of wall time at
--parallel=4): the speedup runs at 1 s per call with 2 repeats (35 s each),
the overhead on 100 items rather than 200 (the middle scaling size reuses
those runs), the largest scaling size is 500 items rather than 1000 and runs
once (over a minute, it averages over its own items); every other figure runs
`--repeat` times (sdk_start too: about 25 s). `--full` uses the goals' own
sizes (overhead on 200 items, scaling 10/100/1000; about 6 minutes).
`--repeat N` repeats everything N times, the slow figures too. `--quick`:
tiny sizes, one repeat, well under a minute. Before each timed run the disk
is synced, so that the writes of one run (or of a generated workspace) do
not slow the next.

Exit status: 0 when every measurement ran (even if a figure misses its goal:
the table says FAIL), 1 when a measurement itself broke (a run exited with
an unexpected code, an output is missing, ...), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import platform
import pty
import re
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # lease_rate.py, next to this file
    sys.path.insert(0, str(HERE))

import lease_rate  # noqa: E402
import sdk_server  # noqa: E402
from journals import latest_events  # noqa: E402 - next to this file

from assemblyzero.constants import (  # noqa: E402
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MODEL,
    ENV_CREDENTIAL,
    ENV_DRAFTER,
    ENV_LIFELINE_FD,
    ENV_OFFLINE_LATENCY,
    ENV_REVIEWER,
    ENV_RUN_DIR,
    ENV_SECRET_FD,
    ENV_WORKFLOW_DB,
    EXIT_INTERRUPTED,
)
from assemblyzero.ids import Kind, slug, tag  # noqa: E402
from assemblyzero.journal import Event  # noqa: E402
from assemblyzero.run import procs  # noqa: E402
from assemblyzero.workspace import Workspace  # noqa: E402

PY = sys.executable
COORDINATOR_TAG = "[COORDINATOR]"
RUN_TIMEOUT = 900.0  # seconds any single run may take before it counts as broken
# The goals judged against a floor of the same run (the module docstring derives them).
FIRST_WORKER_GOAL_X = 12.0  # first worker started, in multiples of `python -c pass`
LEASE_GOAL_PCT = 24.0  # lease acquire+release rate, in % of the bare flock+fsync floor
SDK_CALL_TIMEOUT = "30"  # seconds a worker waits for the loopback server's reply
SDK_ENV_PREFIXES = ("OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_")  # kept from its workers

# Issue text as in tests/conftest.py: a title and the sections of a real issue.
ISSUE = """# {title}

## User Story
As a house-share member I want {what} so that settling up takes minutes, not an evening.

## Objective
Ship {what} behind the existing group page.

## Requirements
1. Store each {noun} in SQLite with its group id and amount in integer cents.
2. Expose `GET /api/groups/<id>/{noun}s` returning JSON.
3. Reject amounts above 1,000,000 cents with HTTP 400.

## Out of Scope
- Mobile apps.

## Acceptance Criteria
- A {noun} created through the API appears in the list within one request.
- Invalid amounts are refused with a clear message.

## Risks
- Rounding errors when amounts are split three ways.
"""


@dataclass(frozen=True)
class Sizes:
    speedup_items: int
    speedup_latency: float
    speedup_repeat: int | None  # None: --repeat
    overhead_items: int
    overhead_repeat: int | None
    rss_run_items: int
    first_worker_items: int
    startup_runs: int  # inner runs of each startup breakdown command, per repeat
    lease_procs: int
    lease_seconds: float
    ctrl_c_items: int
    ctrl_c_latency: float
    dry_run_items: int
    scaling: tuple[int, int, int]
    scaling_largest_repeat: int | None  # None: --repeat


DEFAULT = Sizes(speedup_items=6, speedup_latency=1.0, speedup_repeat=2, overhead_items=100,
                overhead_repeat=None, rss_run_items=6, first_worker_items=6, startup_runs=3,
                lease_procs=10, lease_seconds=2.0, ctrl_c_items=6, ctrl_c_latency=30.0,
                dry_run_items=1000, scaling=(10, 100, 500), scaling_largest_repeat=1)
FULL = dataclasses.replace(DEFAULT, overhead_items=200, scaling=(10, 100, 1000))
QUICK = Sizes(speedup_items=6, speedup_latency=0.2, speedup_repeat=None, overhead_items=20,
              overhead_repeat=None, rss_run_items=6, first_worker_items=3, startup_runs=2,
              lease_procs=10, lease_seconds=1.0, ctrl_c_items=6, ctrl_c_latency=30.0,
              dry_run_items=1000, scaling=(10, 50, 100), scaling_largest_repeat=None)


class Broken(Exception):
    """A measurement could not be taken (a run failed): not a missed goal."""


# --- the figures as rows of the table -----------------------------------------------------

@dataclass
class Row:
    name: str
    title: str
    unit: str  # "%", "x", "s", "MB", "/s", "ms", "count"
    seed: str = "-"
    goal: tuple[str, float] | None = None  # (operator, bound); None: for information
    samples: list[float] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    value: float | None = None  # the median unless set otherwise
    error: str | None = None
    # A ratio's own figure (the seconds, the rate), shown beside it: samples and unit.
    absolute: list[float] = field(default_factory=list)
    absolute_unit: str = ""

    def measured(self) -> float | None:
        if self.value is not None:
            return self.value
        return statistics.median(self.samples) if self.samples else None

    def passed(self) -> bool | None:
        value = self.measured()
        if self.goal is None or value is None:
            return None
        op, bound = self.goal
        return {"<": value < bound, "<=": value <= bound, ">=": value >= bound,
                ">": value > bound, "==": value == bound}[op]

    def result(self) -> str:
        if self.error:
            return "ERROR"
        ok = self.passed()
        return "info" if ok is None else ("PASS" if ok else "FAIL")

    def shown(self) -> str:
        """The measured column: the value, and a ratio's own figure beside it."""
        text = fmt(self.measured(), self.unit)
        if self.absolute:
            text += f" ({fmt(statistics.median(self.absolute), self.absolute_unit)})"
        return text

    def to_json(self) -> dict[str, Any]:
        value = self.measured()
        data = {"title": self.title, "unit": self.unit, "seed": self.seed,
                "goal": None if self.goal is None else f"{self.goal[0]} {self.goal[1]:g}",
                "measured": None if value is None else round(value, 4),
                "pass": self.passed(), "result": self.result(),
                "samples": [round(s, 6) for s in self.samples],
                "details": self.details, "error": self.error}
        if self.absolute:
            data["absolute"] = {"unit": self.absolute_unit,
                                "measured": round(statistics.median(self.absolute), 4),
                                "samples": [round(s, 6) for s in self.absolute]}
        return data


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "x":
        return f"{value:.3f}x"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "/s":
        return f"{value:.0f} /s"
    if unit == "ms":
        return f"{value:.1f} ms"
    return f"{value:g}"


def goal_text(row: Row) -> str:
    if row.goal is None:
        return "-"
    op, bound = row.goal
    return f"{op} {fmt(bound, row.unit)}"


# --- the sandbox and generated workspaces ------------------------------------------------

class Sandbox:
    """A temp dir with its own home; every process of the bench runs with its environment."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="az-bench-"))
        self.home = self.dir / "home"
        self.home.mkdir()
        self._n = 0
        for name in [n for n in os.environ if n.startswith("ASSEMBLYZERO_")]:
            del os.environ[name]  # no setting of the user's leaks into a figure
        os.environ.update({"HOME": str(self.home),
                           "ASSEMBLYZERO_STATE_DIR": str(self.home / "state"),
                           "ASSEMBLYZERO_CREDENTIALS": str(self.home / "credentials.json")})
        os.environ.pop("NO_COLOR", None)

    def fresh(self, name: str) -> Path:
        self._n += 1
        path = self.dir / f"{self._n:03d}-{name}"
        path.mkdir()
        return path

    def workspace(self, name: str, items: int) -> Path:
        """A fresh workspace holding issues 1..items, none designed yet."""
        root = self.fresh(name)
        issues = root / "docs" / "issues" / "active"
        issues.mkdir(parents=True)
        for n in range(1, items + 1):
            (issues / f"{n}.md").write_text(
                ISSUE.format(title=f"Feature {n}", what=f"feature {n}", noun=f"entry{n}"),
                encoding="utf-8")
        return root

    def env(self, latency: float = 0.0, **extra: str) -> dict[str, str]:
        return {**os.environ, ENV_OFFLINE_LATENCY: f"{latency:g}", **extra}

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def az(*args: str) -> list[str]:
    return [PY, "-m", "assemblyzero", *args]


def llds(ws: Path) -> int:
    folder = ws / "docs" / "lld" / "active"
    return len(list(folder.glob("LLD-*.md"))) if folder.is_dir() else 0


def _kill(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def on_pty(argv: Sequence[str], env: dict[str, str], cwd: Path, what: str,
           timeout: float = RUN_TIMEOUT) -> float:
    """Wall seconds of one run whose stdout and stderr are a pty (read and discarded)."""
    os.sync()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    began = time.perf_counter()
    proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        while time.perf_counter() - began < timeout:
            if select.select([master], [], [], 1.0)[0]:
                try:
                    if not os.read(master, 65536):
                        break
                except OSError:  # EIO: the run and its workers are gone
                    break
        else:
            _kill(proc)
            raise Broken(f"{what}: still running after {timeout:g}s")
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
    took = time.perf_counter() - began
    if code != 0:
        raise Broken(f"{what}: exit {code}")
    return took


def timed(argv: Sequence[str], env: dict[str, str], cwd: Path, what: str,
          expect: tuple[int, ...] = (0,), stdin: Any = subprocess.DEVNULL,
          timeout: float = RUN_TIMEOUT, pass_fds: tuple[int, ...] = ()) -> float:
    """Wall seconds of one run (output discarded); Broken unless it exits with `expect`."""
    os.sync()
    began = time.perf_counter()
    proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdin=stdin,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, pass_fds=pass_fds)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise Broken(f"{what}: still running after {timeout:g}s") from None
    took = time.perf_counter() - began
    if proc.returncode not in expect:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise Broken(f"{what}: exit code {proc.returncode}" + (f" ({' | '.join(tail)})"
                                                                if tail else ""))
    return took


class Lines:
    """A child's stdout, line by line, each stamped with perf_counter() when read."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.queue: SimpleQueue[tuple[float, str] | None] = SimpleQueue()
        self.seen: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.queue.put((time.perf_counter(), raw.decode("utf-8", "replace").rstrip("\n")))
        self.queue.put(None)

    def until(self, match: Callable[[str], bool], timeout: float) -> float | None:
        """The time of the first line (from now on) that matches, None at EOF or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                return None
            if got is None:
                self.queue.put(None)  # stay at EOF
                return None
            self.seen.append(got)
            if match(got[1]):
                return got[0]

    def drain(self, timeout: float) -> None:
        self.until(lambda _: False, timeout)


def journal_breakdown(ws: Path, launched: float, wall: float, slots: int) -> dict[str, Any]:
    """Where the wall time of a run went, from its journal (timestamps in epoch seconds).

    startup: launch to the first worker started; refill: a worker's end to the next
    start (mean); busy: worker time / (wall * slots); tail: the last end to the exit.
    """
    events = latest_events(ws)
    if events is None:
        return {}
    starts = [e["ts"] for e in events if e.get("event") == Event.START]
    ends = [e["ts"] for e in events if e.get("event") == Event.END and "duration" in e]
    if not starts or not ends:
        return {}
    refill = []
    for end in ends:
        later = [t for t in starts if t >= end]
        if later:
            refill.append(min(later) - end)
    work = sum(e["duration"] for e in events if e.get("event") == Event.END and "duration" in e)
    return {"startup_s": round(min(starts) - launched, 4),
            "refill_ms_mean": round(1000 * statistics.fmean(refill), 2) if refill else None,
            "worker_s_mean": round(work / len(ends), 4),
            "busy": round(work / (wall * slots), 4),
            "tail_s": round(launched + wall - max(ends), 4)}


def line_body(line: str) -> tuple[str, str]:
    """`[LLD-001]     load: ...` -> ("LLD-001", "load: ...")."""
    m = re.match(r"\[([^\]]+)\]\s*(.*)", line)
    return (m.group(1), m.group(2)) if m else ("", line)


def worker_args(ws: Path, item_id: str, run_dir: Path) -> list[str]:
    """The worker arguments the coordinator would build for an LLD item of `ws`."""
    try:  # the coordinator's own function, so the comparison follows any change to it
        from assemblyzero.backlog import Item
        from assemblyzero.run.jobs import RunOptions
        from assemblyzero.run.jobs import worker_args as args_of

        return args_of(Item(Kind.LLD, item_id), Workspace.at(ws).root, run_dir,
                       RunOptions(parallel=4))
    except (AttributeError, TypeError, ImportError):
        return ["--kind", "lld", "--id", item_id, "--repo", str(Workspace.at(ws).root),
                "--run-dir", str(run_dir), "--drafter", DEFAULT_MODEL, "--reviewer",
                DEFAULT_MODEL, "--max-iterations", str(DEFAULT_MAX_ITERATIONS)]


def worker_command(ws: Path, item_id: str, run_dir: Path, width: int) -> tuple[list[str],
                                                                             dict[str, str]]:
    """prefix-tee + worker argv of one item, and the per-item environment it gets."""
    space = Workspace.at(ws)
    key = slug(Kind.LLD, item_id)
    argv = procs.worker_argv(tag(Kind.LLD, item_id), width, run_dir / f"{key}.log",
                             worker_args(ws, item_id, run_dir))
    env = {ENV_WORKFLOW_DB: str(space.checkpoint(Kind.LLD, item_id)),
           ENV_RUN_DIR: str(run_dir)}
    return argv, env


# --- the bench ---------------------------------------------------------------------------

class Bench:
    def __init__(self, box: Sandbox, sizes: Sizes, repeat: int, explicit_repeat: bool,
                 log: Callable[[str], None]) -> None:
        self.box, self.sizes, self.repeat, self.log = box, sizes, repeat, log
        self.explicit_repeat = explicit_repeat
        self.rows: dict[str, Row] = {}
        self.p4_walls: dict[int, list[float]] = {}  # lld-all --parallel=4, zero latency
        self.p4_journals: dict[int, list[dict[str, Any]]] = {}  # what their journals say

    def reps(self, fixed: int | None) -> int:
        return self.repeat if fixed is None or self.explicit_repeat else fixed

    def row(self, name: str, title: str, unit: str, seed: str = "-",
            goal: tuple[str, float] | None = None) -> Row:
        self.rows[name] = Row(name, title, unit, seed, goal)
        return self.rows[name]

    # 1. speedup ------------------------------------------------------------------------
    def speedup(self) -> None:
        s = self.sizes
        n, latency = s.speedup_items, s.speedup_latency
        row = self.row("speedup", f"{n} items, --parallel=3 vs sequential ({latency:g}s/call)",
                       "%", "< 50 %", ("<=", 36.0))
        env = self.box.env(latency)
        row.details.update(items=n, latency=latency, runs=[])
        for i in range(self.reps(s.speedup_repeat)):
            walls: dict[str, float] = {}
            order = ["parallel", "sequential"] if i % 2 == 0 else ["sequential", "parallel"]
            for how in order:
                ws = self.box.workspace(f"speedup-{how}", n)
                flags = ["--parallel=3"] if how == "parallel" else []
                walls[how] = timed(az("lld-all", *flags, "--repo", str(ws)), env, self.box.dir,
                                   f"lld-all ({how}, {n} items)")
                if llds(ws) != n:
                    raise Broken(f"lld-all ({how}): {llds(ws)} LLDs for {n} items")
            row.samples.append(100.0 * walls["parallel"] / walls["sequential"])
            row.details["runs"].append({k: round(v, 4) for k, v in walls.items()})
            self.log(f"speedup: parallel {walls['parallel']:.2f}s, "
                     f"sequential {walls['sequential']:.2f}s")

    # 2b. the live status area: a pty against a pipe ----------------------------------------
    def live(self) -> None:
        s = self.sizes
        n = s.overhead_items
        row = self.row("live", f"{n} items, --parallel=4 on a pty (live area) vs piped", "x")
        env = self.box.env(0, TERM="xterm-256color")
        row.details.update(items=n, runs=[])
        for i in range(self.reps(s.overhead_repeat)):
            walls: dict[str, float] = {}
            for how in (["pty", "pipe"] if i % 2 == 0 else ["pipe", "pty"]):
                ws = self.box.workspace(f"live-{how}", n)
                argv = az("lld-all", "--parallel=4", "--repo", str(ws))
                what = f"lld-all --parallel=4 ({n} items, {how})"
                walls[how] = (on_pty(argv, env, self.box.dir, what) if how == "pty"
                              else timed(argv, env, self.box.dir, what))
                if llds(ws) != n:
                    raise Broken(f"{what}: {llds(ws)} LLDs for {n} items")
            row.samples.append(walls["pty"] / walls["pipe"])
            row.details["runs"].append({k: round(v, 4) for k, v in walls.items()})
            self.log(f"live: pty {walls['pty']:.2f}s, pipe {walls['pipe']:.2f}s")

    # 2. coordination overhead against xargs ---------------------------------------------
    def overhead(self) -> None:
        s = self.sizes
        n = s.overhead_items
        row = self.row("overhead", f"{n} items, --parallel=4 vs xargs -P 4 (same worker argv)",
                       "x", "< 1.15x", ("<=", 1.15))
        xargs = shutil.which("xargs")
        if xargs is None:
            raise Broken("xargs not found")
        env = self.box.env(0)
        row.details.update(items=n, runs=[])
        for i in range(self.reps(s.overhead_repeat)):
            walls: dict[str, float] = {}
            for how in (["ours", "xargs"] if i % 2 == 0 else ["xargs", "ours"]):
                ws = self.box.workspace(f"overhead-{how}", n)
                if how == "ours":
                    walls[how] = self._p4(ws, n, env)
                else:
                    walls[how] = self._xargs(xargs, ws, n, env)
                if llds(ws) != n:
                    raise Broken(f"{how}: {llds(ws)} LLDs for {n} items")
            row.samples.append(walls["ours"] / walls["xargs"])
            row.details["runs"].append({**{k: round(v, 4) for k, v in walls.items()},
                                        "ours_journal": self.p4_journals[n][-1]})
            self.log(f"overhead: ours {walls['ours']:.2f}s, xargs {walls['xargs']:.2f}s")

    def _p4(self, ws: Path, n: int, env: dict[str, str]) -> float:
        launched = time.time()
        wall = timed(az("lld-all", "--parallel=4", "--repo", str(ws)), env, self.box.dir,
                     f"lld-all --parallel=4 ({n} items)")
        self.p4_walls.setdefault(n, []).append(wall)
        self.p4_journals.setdefault(n, []).append(journal_breakdown(ws, launched, wall, 4))
        return wall

    def _xargs(self, xargs: str, ws: Path, n: int, env: dict[str, str]) -> float:
        """`xargs -P 4` over the worker command of every item (tee included): its wall time."""
        space = Workspace.at(ws)
        space.ensure_state_dirs()  # what the coordinator does before its first worker
        run_dir = ws / "logs" / "xargs-run"
        (run_dir / "results").mkdir(parents=True)
        width = max(len(COORDINATOR_TAG), *(len(f"[{tag(Kind.LLD, str(k))}]")
                                            for k in range(1, n + 1)))
        args: list[str] = []
        per_item = 0
        for k in range(1, n + 1):
            argv, item_env = worker_command(ws, str(k), run_dir, width)
            words = [f"{name}={value}" for name, value in item_env.items()] + argv
            if per_item and len(words) != per_item:
                raise Broken("worker command lines differ in length; cannot feed xargs -n")
            per_item = len(words)
            args += words
        listing = self.box.fresh("xargs-input") / "commands"
        listing.write_bytes(b"".join(a.encode() + b"\0" for a in args))
        with listing.open("rb") as feed:
            return timed([xargs, "-0", "-n", str(per_item), "-P", "4", "env"], env,
                         self.box.dir, f"xargs -P 4 ({n} items)", stdin=feed)

    # 3. time to the first worker, and where it goes ---------------------------------------
    def first_worker(self) -> None:
        s = self.sizes
        row = self.row("first_worker", "invocation to first worker started (journal), "
                       "x python -c pass", "x", "< 2 s", ("<=", FIRST_WORKER_GOAL_X))
        row.absolute_unit = "s"
        line_row = self.row("first_worker.line", "  invocation to its first line (load: ...)",
                            "s")
        parts = {
            "first_worker.python_bare": ("  startup: python -c pass", [PY, "-c", "pass"]),
            "first_worker.import_cli": ("  startup: python -c 'import assemblyzero.cli.tasks'",
                                        [PY, "-c", "import assemblyzero.cli.tasks"]),
            "first_worker.worker_help": ("  startup: python -m assemblyzero.worker --help",
                                         [PY, "-m", "assemblyzero.worker", "--help"]),
        }
        tee_log = self.box.fresh("tee") / "tee.log"
        script = next(a for a in procs.worker_argv("T", 0, tee_log, [])
                      if a.endswith("prefix_tee.py"))
        tee = [PY, "-I", "-S", script, "T", str(tee_log), "--", "true"]
        parts["first_worker.tee_alone"] = ("  startup: prefix-tee alone (-- true)", tee)
        part_rows = {name: self.row(name, title, "s") for name, (title, _) in parts.items()}
        env = self.box.env(0)
        bare = parts["first_worker.python_bare"][1]
        for _ in range(self.repeat):
            ws = self.box.workspace("first-worker", s.first_worker_items)
            before = [timed(bare, env, self.box.dir, "python -c pass")
                      for _ in range(s.startup_runs)]  # the floor brackets the run
            os.sync()
            began, launched = time.perf_counter(), time.time()
            proc = subprocess.Popen(az("lld-all", "--parallel=3", "--repo", str(ws)), env=env,
                                    cwd=self.box.dir, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            lines = Lines(proc)
            header = lines.until(lambda line: line.startswith(COORDINATOR_TAG), 60)
            first = lines.until(lambda line: line_body(line)[1].startswith("load: "), 60)
            lines.drain(RUN_TIMEOUT)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                _kill(proc)
                raise Broken("lld-all (first worker): did not exit") from None
            if first is None or code != 0:
                raise Broken(f"lld-all (first worker): exit code {code}, "
                             f"{'no' if first is None else 'a'} load: line")
            line_row.samples.append(first - began)
            journal = ws / "logs" / "parallel" / "latest" / "journal.jsonl"
            starts = [json.loads(x)["ts"] for x in journal.read_text().splitlines()
                      if '"event": "start"' in x]
            started = starts[0] - launched  # the worker's process (tee + worker) exists
            row.absolute.append(started)
            row.details.setdefault("coordinator_first_line", []).append(
                None if header is None else round(header - began, 4))
            for name, (_, argv) in parts.items():
                for _ in range(s.startup_runs):
                    part_rows[name].samples.append(timed(argv, env, self.box.dir, name))
            after = part_rows["first_worker.python_bare"].samples[-s.startup_runs:]
            part_rows["first_worker.python_bare"].samples[-s.startup_runs:] = before + after
            floor = statistics.median(before + after)  # this repeat's interpreter start
            row.samples.append(started / floor)
            row.details.setdefault("floor_s", []).append(round(floor, 6))
            self.log(f"first worker: started {started:.3f}s = {started / floor:.1f}x "
                     f"python -c pass ({floor:.3f}s); first line {first - began:.3f}s")
        row.details["floor"] = ("per repeat, the median of that repeat's python -c pass runs "
                                "(first_worker.python_bare: as many right before the run as "
                                "right after it), same python and environment")
        row.details["importtime_worker"] = importtime([PY, "-X", "importtime", "-m",
                                                       "assemblyzero.worker", "--help"], env)
        row.details["importtime_cli"] = importtime(
            [PY, "-X", "importtime", "-c", "import assemblyzero.cli.tasks"], env)

    # 4. peak RSS -------------------------------------------------------------------------
    # Linux charges a child the RSS its parent had when it forked (the memory it had before
    # exec), so the process measured must be started by a small one: the launcher below
    # (python -I -S, about 9 MB, less than any Python worker), never by this bench.
    def rss(self) -> None:
        s = self.sizes
        worker = self.row("rss_worker", "peak RSS, one worker running one item", "MB",
                          "100-150 MB", ("<", 40.0))
        coord = self.row("rss_coordinator",
                         f"peak RSS, coordinator itself ({s.rss_run_items} items, p3)", "MB")
        env = self.box.env(0)
        tools = self.box.fresh("rss")
        (tools / "launch.py").write_text(LAUNCH)
        (tools / "self_rss.py").write_text(SELF_RSS)
        for n in range(self.repeat):
            ws = self.box.workspace("rss-worker", 1)
            Workspace.at(ws).ensure_state_dirs()
            run_dir = ws / "logs" / "rss-run"
            (run_dir / "results").mkdir(parents=True)
            argv, item_env = worker_command(ws, "1", run_dir, len(COORDINATOR_TAG))
            argv = argv[argv.index("--") + 1:]  # the worker alone, without its tee
            out = tools / f"worker-{n}.json"
            timed([PY, "-I", "-S", str(tools / "launch.py"), str(out), *argv],
                  {**env, **item_env}, self.box.dir, "worker (rss)")
            if llds(ws) != 1:
                raise Broken("worker (rss): no LLD written")
            worker.samples.append(json.loads(out.read_text())["maxrss_kb"] / 1024)

            ws = self.box.workspace("rss-coordinator", s.rss_run_items)
            out = tools / f"coordinator-{n}.json"
            timed([PY, "-I", "-S", str(tools / "launch.py"), os.devnull, PY,
                   str(tools / "self_rss.py"), str(out), "lld-all", "--parallel=3",
                   "--repo", str(ws)], env, self.box.dir, "lld-all (rss)")
            if llds(ws) != s.rss_run_items:
                raise Broken(f"lld-all (rss): {llds(ws)} LLDs for {s.rss_run_items} items")
            coord.samples.append(json.loads(out.read_text())["hwm_kb"] / 1024)
            self.log(f"rss: worker {worker.samples[-1]:.1f} MB, coordinator "
                     f"{coord.samples[-1]:.1f} MB")
        worker.details["how"] = ("ru_maxrss from wait4 of the worker process (no tee), "
                                 "started by a python -I -S launcher")
        worker.details["importtime"] = importtime(
            [PY, "-X", "importtime", "-m", "assemblyzero.worker", "--help"], env)
        coord.details["how"] = ("VmHWM of `python -m assemblyzero lld-all` run in-process by a "
                                "wrapper (whose runpy/json imports it includes)")

    # 4b. a real provider's SDK: one worker's start to its first call, and its peak RSS --
    def sdk_start(self) -> None:
        from assemblyzero.providers import SDKS, missing_sdk
        from assemblyzero.providers._common import ENV_CALL_TIMEOUT

        env = {k: v for k, v in self.box.env(0).items() if not k.startswith(SDK_ENV_PREFIXES)}
        env[ENV_CALL_TIMEOUT] = SDK_CALL_TIMEOUT
        launch = self.box.fresh("sdk") / "launch.py"
        launch.write_text(LAUNCH)
        present = [p for p in sdk_server.PROVIDERS if missing_sdk((f"{p}:m",)) is None]
        if not present:
            raise Broken("sdk_start: no provider SDK is installed (pip install "
                         "\"assemblyzero[openai,anthropic,gemini]\")")
        rows = {}
        for p in present:
            rows[p] = (self.row(f"sdk_start.{p}", f"{p} worker: launch to its first model call "
                                "(loopback)", "s"),
                       self.row(f"sdk_start.{p}.rss", f"  {p} worker: peak RSS, one item", "MB"))
        server = sdk_server.SdkServer()
        try:
            for n in range(self.repeat):
                for p in present[n % len(present):] + present[:n % len(present)]:
                    start, rss = rows[p]
                    run = self._sdk_worker(p, server, env, launch, n)
                    start.samples.append(run.pop("first_call_s"))
                    rss.samples.append(run.pop("maxrss_kb") / 1024)
                    start.details.setdefault("runs", []).append(run)
                    self.log(f"sdk_start: {p}: first call {start.samples[-1]:.3f}s, "
                             f"peak RSS {rss.samples[-1]:.1f} MB")
        finally:
            server.close()
        for p in present:
            start, rss = rows[p]
            start.details["importtime"] = importtime([PY, "-X", "importtime", "-c",
                                                      f"import {SDKS[p]}"], env, top=15)
            start.details["how"] = ("time.monotonic() of the launcher's posix_spawn of the "
                                    "worker to the first request's headers read by the "
                                    "loopback server (benchmarks/sdk_server.py)")
            rss.details["how"] = ("ru_maxrss from wait4 of the worker process (no tee), "
                                  "started by a python -I -S launcher; draft and review")
        missing = [p for p in sdk_server.PROVIDERS if p not in present]
        if missing:
            raise Broken(f"sdk_start: SDK not installed for {', '.join(missing)}")

    def _sdk_worker(self, provider: str, server: sdk_server.SdkServer, env: dict[str, str],
                    launch: Path, n: int) -> dict[str, Any]:
        """One worker of `provider` runs one item against `server`, given its credential on
        the secrets pipe as the coordinator gives it (local.py, keys/gate.py)."""
        ws = self.box.workspace(f"sdk-{provider}", 1)
        Workspace.at(ws).ensure_state_dirs()
        run_dir = ws / "logs" / "sdk-run"
        (run_dir / "results").mkdir(parents=True)
        argv, item_env = worker_command(ws, "1", run_dir, len(COORDINATOR_TAG))
        argv = argv[argv.index("--") + 1:]  # the worker alone, without its tee
        name, secret, spec = f"bench-{provider}", f"bench-secret-{provider}-{n}-0123456789", \
            f"{provider}:bench-model"
        payload = {"keys": {name: {"provider": provider, "secret": secret, "structured": True,
                                   "base_url": server.url_for(provider)}},
                   "mask": [secret], "pace": {name: {"limits": {}, "others": []}}}
        out = launch.parent / f"{provider}-{n}.json"
        secrets = procs.secret_pipe(payload)
        life_read, life_write = procs.lifeline()
        worker_env = {**env, **item_env, ENV_DRAFTER: spec, ENV_REVIEWER: spec,
                      ENV_CREDENTIAL: name, ENV_SECRET_FD: str(secrets),
                      ENV_LIFELINE_FD: str(life_read)}
        server.reset()
        try:
            wall = timed([PY, "-I", "-S", str(launch), str(out), *argv], worker_env,
                         self.box.dir, f"{provider} worker", pass_fds=(secrets, life_read))
        except Broken as exc:
            raise Broken(f"{exc}; result: {self._result(run_dir)}") from None
        finally:
            for fd in (secrets, life_read, life_write):
                os.close(fd)
        got = json.loads(out.read_text())
        first = server.first_call()
        if first is None or llds(ws) != 1:
            raise Broken(f"{provider} worker: {'no model call' if first is None else 'no LLD'}"
                         f"; result: {self._result(run_dir)}")
        with server.lock:
            calls = list(server.calls)
        return {"first_call_s": first.arrived - got["spawned"], "maxrss_kb": got["maxrss_kb"],
                "worker_s": round(got["ended"] - got["spawned"], 4), "wall_s": round(wall, 4),
                "exit_after_last_call_s": round(got["ended"] - calls[-1].arrived, 4),
                "calls": [{"at_s": round(c.arrived - got["spawned"], 4), "method": c.method,
                           "path": c.path, "review": c.review} for c in calls]}

    @staticmethod
    def _result(run_dir: Path) -> str:
        found = sorted((run_dir / "results").glob("*.json"))
        if not found:
            return "none written"
        data = json.loads(found[0].read_text())
        return f"{data.get('status')}: {data.get('reason')}"

    # 5. leases ---------------------------------------------------------------------------
    def lease(self) -> None:
        s = self.sizes
        rate = self.row("lease_rate", f"lease acquire+release, {s.lease_procs} processes, "
                        "% of the bare floor", "%", "-", (">=", LEASE_GOAL_PCT))
        rate.absolute_unit = "/s"
        floor = self.row("lease.floor", "  floor: flock + temp file + fsync + os.replace + "
                         "unlock", "/s")
        double = self.row("lease_double", "  double leases seen", "count", "-", ("==", 0))
        for i in range(self.repeat):
            # ABBA, each run half as long: a load that drifts during the repeat falls on both
            got: dict[str, list[dict[str, Any]]] = {"ours": [], "floor": []}
            for how in (["ours", "floor", "floor", "ours"] if i % 2 == 0 else
                        ["floor", "ours", "ours", "floor"]):
                work = self.box.fresh(f"lease-{how}")
                os.sync()
                try:
                    got[how].append(lease_rate.run(s.lease_procs, s.lease_seconds / 2,
                                                   work / "state", work, floor=how == "floor"))
                except SystemExit as exc:  # how lease_rate reports a child that failed
                    raise Broken(f"lease_rate ({how}): {exc}") from None
            ours, bare = (sum(r["cycles"] for r in got[how]) / sum(r["seconds"] for r in got[how])
                          for how in ("ours", "floor"))
            if any(r["double_leases"] for r in got["floor"]) or not bare:
                raise Broken(f"lease floor: {got['floor']}")  # then flock itself is broken
            rate.absolute.append(ours)
            rate.samples.append(100.0 * ours / bare)
            floor.samples.append(bare)
            double.samples.append(float(max(r["double_leases"] for r in got["ours"])))
            rate.details.setdefault("runs", []).extend(got["ours"])
            floor.details.setdefault("runs", []).extend(got["floor"])
            self.log(f"leases: {ours:.0f}/s = {100 * ours / bare:.1f} % of the floor's "
                     f"{bare:.0f}/s, {int(double.samples[-1])} double")
        double.value = max(double.samples)  # one double lease anywhere is one too many
        rate.details["how"] = floor.details["how"] = (
            f"per repeat, ABBA: ours and the floor twice each, {s.lease_seconds / 2:g} s a run; "
            "each side's cycles over its seconds")

    # 6. Ctrl+C ---------------------------------------------------------------------------
    def ctrl_c(self) -> None:
        s = self.sizes
        row = self.row("ctrl_c", "SIGINT to exit, 3 workers mid-call", "s", "< 5 s",
                       ("<", 1.0))
        env = self.box.env(s.ctrl_c_latency)
        for _ in range(self.repeat):
            ws = self.box.workspace("ctrl-c", s.ctrl_c_items)
            os.sync()
            proc = subprocess.Popen(az("lld-all", "--parallel=3", "--repo", str(ws)), env=env,
                                    cwd=self.box.dir, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            lines = Lines(proc)
            calling: set[str] = set()

            def third_call(line: str, calling: set[str] = calling) -> bool:
                item, body = line_body(line)
                if ": calling " in body:
                    calling.add(item)
                return len(calling) >= 3

            try:
                if lines.until(third_call, 60) is None:
                    raise Broken(f"ctrl_c: only {len(calling)} worker(s) reached a model call")
                sent = time.perf_counter()
                proc.send_signal(signal.SIGINT)
                code = proc.wait(timeout=60)
                done = time.perf_counter()
            except subprocess.TimeoutExpired:
                raise Broken("ctrl_c: still running 60s after SIGINT") from None
            finally:
                if proc.poll() is None:
                    _kill(proc)
            lines.drain(5)
            after = [(t - sent, text) for t, text in lines.seen if t >= sent]
            ack = next((t for t, text in after if "SIGINT" in text), None)
            summary = next((t for t, text in after if "summary of run" in text), None)
            kept = len(list((ws / ".assemblyzero" / "checkpoints").glob("*.db")))
            row.details.setdefault("runs", []).append({
                "exit_code": code, "seconds": round(done - sent, 4),
                "coordinator_ack": None if ack is None else round(ack, 4),
                "summary_line": None if summary is None else round(summary, 4),
                "checkpoints_kept": kept})
            if code != EXIT_INTERRUPTED:
                raise Broken(f"ctrl_c: exit code {code}, expected {EXIT_INTERRUPTED}")
            row.samples.append(done - sent)
            self.log(f"ctrl_c: {done - sent:.3f}s (exit {code}, {kept} checkpoint(s) kept)")

    # 7. dry-run and scaling --------------------------------------------------------------
    def dry_run(self) -> None:
        n = self.sizes.dry_run_items
        row = self.row("dry_run_1000", f"dry-run of {n} pending items", "s", "-", ("<", 1.0))
        ws = self.box.workspace("dry-run", n)
        env = self.box.env(0)
        for _ in range(self.repeat):
            row.samples.append(timed(az("dry-run", "--repo", str(ws)), env, self.box.dir,
                                     "dry-run"))
        if llds(ws) or (ws / "logs").exists():
            raise Broken("dry-run wrote something")
        self.log(f"dry-run: {statistics.median(row.samples):.3f}s")

    def scaling(self) -> None:
        sizes = self.sizes.scaling
        _, middle, large = sizes
        row = self.row("scaling", f"cost per item at {large} vs {middle} items (p4)", "x", "-",
                       ("<=", 1.5))
        env = self.box.env(0)
        per_size: dict[int, list[float]] = {}
        for n in sizes:
            reps = self.reps(self.sizes.scaling_largest_repeat if n == large else None)
            walls = list(self.p4_walls.get(n, []))[:reps]  # the overhead runs, if the same size
            reused = len(walls)
            for _ in range(reps - reused):
                ws = self.box.workspace(f"scaling-{n}", n)
                walls.append(self._p4(ws, n, env))
                if llds(ws) != n:
                    raise Broken(f"scaling: {llds(ws)} LLDs for {n} items")
            per_size[n] = [1000.0 * w / n for w in walls]
            info = self.row(f"scaling.per_item_{n}", f"  cost per item at {n} items", "ms")
            info.samples = per_size[n]
            info.details.update(walls=[round(w, 4) for w in walls], reused_from_overhead=reused,
                                journals=self.p4_journals.get(n, [])[:reps])
            self.log(f"scaling: {n} items, {statistics.median(walls):.2f}s")
        row.value = statistics.median(per_size[large]) / statistics.median(per_size[middle])
        row.samples = [row.value]
        row.details["sizes"] = list(sizes)


LAUNCH = '''"""launch.py OUT CMD...: run CMD, write its peak RSS (KB) to OUT, exit with its code.

Also writes when it spawned CMD and when CMD ended, on time.monotonic()."""
import json, os, sys, time

spawned = time.monotonic()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
ended = time.monotonic()
with open(sys.argv[1], "w") as f:
    json.dump({"maxrss_kb": usage.ru_maxrss, "spawned": spawned, "ended": ended}, f)
sys.exit(os.waitstatus_to_exitcode(status))
'''

SELF_RSS = '''"""self_rss.py OUT ARGS...: run `python -m assemblyzero ARGS` here; its peak RSS."""
import json, resource, runpy, sys

out, sys.argv = sys.argv[1], ["assemblyzero", *sys.argv[2:]]
code = 0
try:
    runpy.run_module("assemblyzero", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
finally:
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:  # this process's own high-water mark, from its exec on
        with open("/proc/self/status") as status:
            hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        pass
    with open(out, "w") as f:
        json.dump({"hwm_kb": hwm}, f)
sys.exit(code)
'''


def importtime(argv: list[str], env: dict[str, str], top: int = 25) -> dict[str, Any]:
    """`-X importtime` of `argv`: total import time and the heaviest imports (microseconds)."""
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append({"module": m.group(4), "self_us": int(m.group(1)),
                         "cumulative_us": int(m.group(2)), "depth": len(m.group(3)) // 2})
    total = sum(r["self_us"] for r in rows)
    rows.sort(key=lambda r: -r["cumulative_us"])
    return {"argv": argv[1:], "total_us": total, "modules": len(rows), "top": rows[:top]}


def heaviest(profile: dict[str, Any], n: int = 8) -> str:
    return f"{profile.get('total_us', 0) / 1000:.0f} ms in {profile.get('modules', 0)} " \
        "modules; heaviest (cumulative): " + ", ".join(
            f"{r['module']} {r['cumulative_us'] / 1000:.0f}" for r in profile.get("top", [])[:n])


def pacing_rows(bench: Bench) -> None:
    """benchmarks/pacing.py: the real CLI against rate_server.py under enforced per-key
    limits, each wire format paced, with --no-pacing, and as two runs sharing the keys
    (measured once: each scenario is a 20-40 s run, its own median of many calls)."""
    import pacing

    quick = bench.sizes is QUICK
    result = pacing.measure(bench.box.fresh("pacing"), quick, bench.log)
    for r in result["scenarios"]:
        name = f"pacing.{r['wire']}.{r['scenario'].split()[-1]}"
        paced = r["pacing"]
        bound = "+".join(f"{k}" for k in r["limits"])
        ratio = bench.row(name, f"{r['scenario']}: {r['items']} items, 2 keys ({bound}), "
                          "from the 1st call / the limits' floor", "x", "-",
                          ("<=", 1.15) if paced else None)
        share = bench.row(f"{name}.429", "  calls answered 429", "%", "-",
                          ("<=", 2.0) if paced else None)
        lost = bench.row(f"{name}.lost", "  items lost, or a limit exceeded",
                         "count", "-", ("==", 0) if paced else None)
        if r["skipped"]:
            for row in (ratio, share, lost):
                row.error = f"skipped: {r['skipped']}"
            continue
        ratio.samples.append(r["wall_over_floor"])
        ratio.absolute, ratio.absolute_unit = [r["from_first_call_s"]], "s"
        share.samples.append(r["rate_limited_pct"])
        lost.samples.append(float(r["items_lost"] + (1 if r["exceeded"] else 0)))
        for row in (ratio, share, lost):
            row.details.update(r)


def cluster_rows(bench: Bench) -> None:
    """benchmarks/cluster.py: the cluster backend on a LocalCluster against local workers,
    and what the scheduler costs (measured once: each run averages over its 48 items)."""
    import cluster

    quick = bench.sizes is QUICK
    sizes = cluster.QUICK if quick else cluster.DEFAULT
    ratio = bench.row("cluster", f"{sizes.items} items at {sizes.latency:g}s/call, "
                      f"--cluster (LocalCluster {cluster.WORKERS}x{cluster.THREADS} threads) "
                      f"vs --parallel={cluster.PARALLEL}", "x", "-", ("<=", cluster.GOAL_X))
    ratio.absolute_unit = "s"
    floor = -(-sizes.items // cluster.PARALLEL) * cluster.CALLS_PER_ITEM * sizes.latency
    local = bench.row("cluster.local", f"  local --parallel={cluster.PARALLEL} wall "
                      f"(floor {floor:g}s)", "s")
    startup = bench.row("cluster.startup", "  LocalCluster start-up (not counted)", "s")
    attempt = bench.row("cluster.attempt", "  one zero-latency item, cluster vs local wall", "x")
    attempt.absolute_unit = "ms"
    item = bench.row("cluster.attempt_item", "  the same, the item's own time (journal), "
                     "cluster minus local", "ms")
    tasks = bench.row("cluster.tasks", "  scheduler: trivial tasks, one submit(pure=False) "
                      "each", "/s")
    event_ms = bench.row("cluster.log_event", "  client.log_event from a task, ~100 B message, "
                         "round trip (median)", "ms")
    event_rate = bench.row("cluster.log_event_rate", "  log_event calls/s of one task's "
                           "client, a subscriber attached", "/s")
    try:
        result = cluster.measure(bench.box.fresh("cluster"), quick, bench.log,
                                 bench.box.env(0))
    except cluster.Broken as exc:
        raise Broken(f"cluster: {exc}") from None
    ratio.samples = [result["ratio"]]
    ratio.absolute = [result["cluster"]["wall_s"]]
    local.samples = [result["local"]["wall_s"]]
    startup.samples = [result["startup_s"]]
    a = result["attempt"]
    attempt.samples = [a["ratio"]]
    attempt.absolute = [a["extra_ms"]]
    item.samples = [a["item_extra_ms"]]
    tasks.samples = [r["per_s"] for r in result["tasks"]["runs"]]
    event_ms.samples = [result["events"]["round_trip_ms_median"]]
    event_rate.samples = [result["events"]["pushed_per_s"]]
    details = cluster.rounded(result)
    ratio.details.update({k: v for k, v in details.items()
                          if k not in ("attempt", "tasks", "events")})
    attempt.details.update(details["attempt"])
    tasks.details.update(details["tasks"])
    event_ms.details.update(details["events"])
    if not result["outputs"]["identical"]:
        raise Broken(f"cluster: the cluster run's LLDs differ from the local run's: "
                     f"{result['outputs']['differing']}")


def report_rows(bench: Bench) -> None:
    """benchmarks/report.py: report.html drawn for a made-up run of 1000 items."""
    import report

    quick = bench.sizes is QUICK
    items = 100 if quick else 1000
    row = bench.row("report", f"report.html of {items} items: `assemblyzero report` "
                    "(a process, its start included)", "s", "-", ("<", 1.0))
    inner = bench.row("report.in_process", "  the same, drawn in the coordinator "
                      "(report.write)", "ms")
    result = report.measure(items, 1 if quick else bench.repeat)
    row.samples = result["command_s"]
    inner.samples = [s * 1000 for s in result["in_process_s"]]
    row.details.update({"bytes": result["bytes"], "bars": result["bars"]})
    bench.log(f"report: {items} items, {result['bytes'] // 1024} KB, "
              f"{statistics.median(result['command_s']):.3f}s")


GROUPS: dict[str, Callable[[Bench], None]] = {
    "speedup": Bench.speedup, "overhead": Bench.overhead, "first_worker": Bench.first_worker,
    "rss": Bench.rss, "lease": Bench.lease, "ctrl_c": Bench.ctrl_c, "dry_run": Bench.dry_run,
    "scaling": Bench.scaling, "live": Bench.live, "sdk_start": Bench.sdk_start,
    "pacing": pacing_rows, "cluster": cluster_rows, "report": report_rows,
}
ORDER = ["first_worker", "rss", "dry_run", "lease", "ctrl_c", "speedup", "overhead", "scaling",
         "live", "sdk_start", "pacing", "cluster", "report"]
ALIASES = {"dry_run_1000": "dry_run", "rss_worker": "rss", "rss_coordinator": "rss",
           "lease_rate": "lease", "lease_double": "lease"}


def parse_only(text: str | None) -> list[str]:
    if not text:
        return list(ORDER)
    chosen = set()
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        group = ALIASES.get(name, name.split(".")[0])
        if group not in GROUPS:
            raise argparse.ArgumentTypeError(
                f"unknown figure {name!r}; choose from {', '.join(ORDER)}")
        chosen.add(group)
    return [g for g in ORDER if g in chosen]


def machine() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cores": os.cpu_count(), "usable_cores": usable,
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "executable": sys.executable, "platform": platform.platform(),
            "machine": platform.machine(), "load_average": list(os.getloadavg())}


def table(rows: Sequence[Row]) -> str:
    head = ("figure", "seed target", "our goal", "measured", "result")
    body = [(f"{r.name}  {r.title}" if not r.title.startswith("  ") else
             f"  {r.name}  {r.title.strip()}", r.seed, goal_text(r),
             r.shown(), r.result()) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip()
              for b in body]
    return "\n".join(lines)


def notes(rows: dict[str, Row]) -> list[str]:
    """What the breakdowns say about each figure that missed its goal."""
    out: list[str] = []
    first = rows.get("first_worker")
    if first and first.result() == "FAIL":
        header = [t for t in first.details.get("coordinator_first_line", []) if t is not None]
        if header:
            out.append(f"first_worker: in the run, the first [COORDINATOR] line came after "
                       f"{statistics.median(header):.3f} s, the first worker started after "
                       f"{statistics.median(first.absolute):.3f} s")
        parts = {n: rows[n].measured() for n in rows if n.startswith("first_worker.")}
        out.append("  startup alone (median s): " + ", ".join(
            f"{n.split('.', 1)[1]} {v:.3f}" for n, v in parts.items() if v is not None))
        for key in ("importtime_cli", "importtime_worker"):
            if key in first.details:
                out.append(f"  {key}: {heaviest(first.details[key])}")
    worker = rows.get("rss_worker")
    if worker and worker.result() == "FAIL" and "importtime" in worker.details:
        out.append(f"rss_worker: imports of the worker: {heaviest(worker.details['importtime'])}")
    ctrl = rows.get("ctrl_c")
    if ctrl and ctrl.result() == "FAIL":
        for run in ctrl.details.get("runs", []):
            out.append(f"ctrl_c: ack {run['coordinator_ack']}s, summary {run['summary_line']}s,"
                       f" exit {run['seconds']}s after SIGINT")
    over = rows.get("overhead")
    if over and over.result() == "FAIL":
        for run in over.details.get("runs", []):
            j = run.get("ours_journal") or {}
            out.append(f"overhead: ours {run['ours']:.2f}s, xargs {run['xargs']:.2f}s; ours: "
                       f"first worker after {j.get('startup_s')}s, a slot refilled in "
                       f"{j.get('refill_ms_mean')}ms, worker {j.get('worker_s_mean')}s each, "
                       f"slots busy {j.get('busy')}, exit {j.get('tail_s')}s after the last")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=f"figures: {', '.join(ORDER)}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="tiny sizes and one repeat (smoke test, a fast look)")
    size.add_argument("--full", action="store_true",
                      help="the goals' own sizes: overhead on 200 items, scaling up to 1000 "
                           "(about 6 minutes on 2 cores)")
    parser.add_argument("--only", type=parse_only, default=None, metavar="NAME,...",
                        help="measure just these figures")
    parser.add_argument("--repeat", type=int, default=None, metavar="N",
                        help="repeats of each figure, the median counts (default 3; 1 with "
                             "--quick)")
    parser.add_argument("--json-out", type=Path, default=None, metavar="PATH",
                        help="where the JSON goes (default logs/bench/<timestamp>.json)")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be >= 1")
    groups = args.only or list(ORDER)
    repeat = args.repeat or (1 if args.quick else 3)
    sizes = QUICK if args.quick else FULL if args.full else DEFAULT
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.json_out or ROOT / "logs" / "bench" / f"{stamp}.json"

    def log(text: str) -> None:
        print(f"  ... {text}", file=sys.stderr, flush=True)

    started, began = time.time(), time.perf_counter()
    box = Sandbox()
    bench = Bench(box, sizes, repeat, args.repeat is not None, log)
    errors: dict[str, str] = {}
    timings: dict[str, float] = {}
    try:
        for group in groups:
            log(f"{group} ...")
            t0 = time.perf_counter()
            before = set(bench.rows)
            try:
                GROUPS[group](bench)
            except Broken as exc:
                errors[group] = str(exc)
            except Exception as exc:  # a bug of the bench itself: report it, go on
                errors[group] = f"{type(exc).__name__}: {exc}"
            timings[group] = round(time.perf_counter() - t0, 2)
            if group in errors:
                log(f"{group}: ERROR: {errors[group]}")
                new = [bench.rows[n] for n in bench.rows if n not in before] or [
                    bench.row(group, "(no measurement)", "count")]
                for row in new:
                    row.error = errors[group]
    finally:
        box.remove()
    total = time.perf_counter() - began
    rows = list(bench.rows.values())
    print(table(rows))
    for line in notes(bench.rows):
        print(line)
    for group, error in errors.items():
        print(f"ERROR {group}: {error}")
    print(f"total {total:.1f}s on {machine()['usable_cores']} core(s); json: {out}")
    record = {
        "version": 1, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "argv": sys.argv[1:] if argv is None else argv, "quick": args.quick,
        "full": args.full, "repeat": repeat,
        "groups": groups, "sizes": sizes.__dict__, "machine": machine(),
        "total_seconds": round(total, 2), "group_seconds": timings,
        "figures": {r.name: r.to_json() for r in rows}, "errors": errors,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
