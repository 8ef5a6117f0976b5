"""Shared fixtures: an isolated home, temp workspaces, and running the CLI."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gh_fake import fake_gh  # noqa: F401  (a fixture for every test module)

from assemblyzero.journal import Event

ROOT = Path(__file__).resolve().parent.parent

# The tests start hundreds of Python processes (the CLI, its workers, scripts). Where
# PYTHONDONTWRITEBYTECODE is set, each of them compiles every module of assemblyzero it
# imports again, a fifth of a short run's CPU: they share the bytecode in .pytest_cache
# instead (PYTHONPYCACHEPREFIX: nothing is written next to the sources).
if os.environ.get("PYTHONDONTWRITEBYTECODE") and "PYTHONPYCACHEPREFIX" not in os.environ:
    _PYCACHE = ROOT / ".pytest_cache" / "pycache"
    try:
        _PYCACHE.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    else:
        os.environ["PYTHONPYCACHEPREFIX"] = str(_PYCACHE)
        del os.environ["PYTHONDONTWRITEBYTECODE"]

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

BRIEF = """# {title}

People keep asking for {what}. We could add it to the group page, with a limit of 20 per
group so the page stays fast. It should work without a new service.
"""


# ------------------------------------------------------------------ test tiers
# A test that starts a process (the CLI, a coordinator script, a worker, a tee, a
# pty, `gh`, a helper child) is marked `e2e`: `pytest -m "not e2e"` is the fast
# unit tier. The rule is checked, not trusted: while an unmarked test runs, an
# audit hook refuses every process start and the test fails naming what it started.

PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn",
                            "os.spawn", "os.system"})
_unit_test: list[str] = []  # the unmarked test running in this process (empty: none)
_started: list[str] = []  # what it tried to start


class ProcessInUnitTest(RuntimeError):
    """An unmarked test tried to start a process."""


def _refuse_processes_in_unit_tests(event: str, args: tuple[object, ...]) -> None:
    if _unit_test and event in PROCESS_EVENTS:
        what = f"{event} {args[1] if event == 'subprocess.Popen' else args[:1]!r}"[:300]
        _started.append(what)
        raise ProcessInUnitTest(f"{_unit_test[0]} is not marked e2e but started {what}")


# The SDKs ask `platform.processor()` for their user agent, which runs `uname -p` once per
# process: asked here first, whichever test makes the first client starts no process.
platform.processor()
sys.addaudithook(_refuse_processes_in_unit_tests)


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
        item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture(autouse=True)
def unit_tests_start_no_process(request: pytest.FixtureRequest) -> Iterator[None]:
    """An unmarked test may not start a process (even if the code under test hides the error)."""
    if request.node.get_closest_marker("e2e"):
        yield
        return
    _unit_test[:], _started[:] = [request.node.nodeid], []
    try:
        yield
    finally:
        _unit_test.clear()
    if _started and not request.node.stash.get(FAILED, False):  # else the test said so itself
        pytest.fail(f"started a process without @pytest.mark.e2e: {_started[0]}", pytrace=False)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the real home: HOME, state dir and credentials in tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ASSEMBLYZERO_STATE_DIR", str(home / "state"))
    monkeypatch.setenv("ASSEMBLYZERO_CREDENTIALS", str(home / "credentials.json"))
    for name in list(os.environ):
        if name.startswith("ASSEMBLYZERO_") and name not in (
            "ASSEMBLYZERO_STATE_DIR", "ASSEMBLYZERO_CREDENTIALS"
        ):
            monkeypatch.delenv(name)
    monkeypatch.delenv("NO_COLOR", raising=False)
    return home


def make_workspace(root: Path, issues: list[str] = (), briefs: list[str] = ()) -> Path:  # type: ignore[assignment]
    """A workspace with the given issue and brief ids."""
    for item_id in issues:
        path = root / "docs/issues/active" / f"{item_id}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ISSUE.format(title=f"Feature {item_id}", what=f"feature {item_id}",
                                     noun="entry"), encoding="utf-8")
    for item_id in briefs:
        path = root / "ideas/active" / f"{item_id}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(BRIEF.format(title=f"Idea {item_id}", what=f"idea {item_id}"),
                        encoding="utf-8")
    root.mkdir(parents=True, exist_ok=True)
    return root


T0 = 1_000_000.0  # the fake clock's start: any time far from 0 and from now


class Clock:
    """A clock the test moves by hand (`clock.now += 5`)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """Six pending issues, no briefs."""
    return make_workspace(tmp_path / "ws", issues=[str(n) for n in range(41, 47)])


@dataclass
class Run:
    code: int
    out: str
    err: str


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> Run:
    """Run `python -m assemblyzero ARGS` as a user would; stdin closed."""
    proc = subprocess.run(
        [sys.executable, "-m", "assemblyzero", *args], cwd=cwd or ROOT,
        env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def latest_run(ws: Path) -> Path:
    return (ws / "logs/parallel/latest").resolve()


def summary(run_dir: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((run_dir / "summary.json").read_text())


def journal(run_dir: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]


def max_concurrency(run_dir: Path) -> int:
    """Most workers running at once, from the start/end events of the journal."""
    running = peak = 0
    for event in journal(run_dir):
        if event["event"] == Event.START:
            running += 1
            peak = max(peak, running)
        elif event["event"] == Event.END:
            running -= 1
    return peak


def worker_spans(events: list[dict]) -> list[tuple[float, float]]:  # type: ignore[type-arg]
    """(start, end) time of every worker a run started, from its journal's events."""
    started: dict[str, float] = {}
    spans = []
    for event in events:
        if event["event"] == Event.START:
            started[event["item"]] = event["ts"]
        elif event["event"] == Event.END and event["item"] in started:
            spans.append((started.pop(event["item"]), event["ts"]))
    return spans


def overlapped(a: list[dict], b: list[dict]) -> bool:  # type: ignore[type-arg]
    """Did a worker of run `a` run while a worker of run `b` ran? (Two runs' journals.)"""
    return any(a0 < b1 and b0 < a1 for a0, a1 in worker_spans(a) for b0, b1 in worker_spans(b))


def model_calls(log_text: str) -> list[str]:
    """The model-call lines of a worker log (`draft: calling ...`)."""
    return [line for line in log_text.splitlines() if ": calling " in line]


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ASSEMBLYZERO_OFFLINE_LATENCY", "0")
    yield


def driver(tmp_path: Path, ws: Path, worker_code: str, parallel: int = 2,
           grace: float = 5.0, timeout: float = 1800.0, name: str = "driver",
           progress_every: float = 1800.0, console: str = "Console()",
           prelude: str = "") -> Path:
    """A script running a real Coordinator on `ws` whose workers run `worker_code`.

    Everything is real (processes, prefix-tee, signals); only the worker
    command is swapped for a small script, which gets the item id as argv[1].
    `console`: the coordinator's console, e.g. "for_terminal()" for the live one;
    `prelude`: code run before the coordinator (to inject a fault, say).
    """
    fake = tmp_path / f"{name}_worker.py"
    fake.write_text(worker_code)
    script = tmp_path / f"{name}.py"
    script.write_text(
        "import sys\n"
        "from assemblyzero.run import procs\n"
        "from assemblyzero.backlog import scan\n"
        "from assemblyzero.ui.console import Console, for_terminal\n"
        "from assemblyzero.run.coordinator import Coordinator\n"
        "from assemblyzero.run.jobs import RunOptions\n"
        "from assemblyzero.ids import Kind\n"
        "from assemblyzero.keys.pool import Pool\n"
        "from assemblyzero.workspace import Workspace\n"
        "def spawn(argv, env, fds, stdout=None):\n"
        "    cut = argv.index('--') + 1\n"
        "    item = next(a[len('--id='):] for a in argv if a.startswith('--id='))\n"
        f"    argv = argv[:cut] + [sys.executable, {str(fake)!r}, item]\n"
        "    return procs.spawn(argv, env, fds, stdout=stdout)\n"
        f"{prelude}\n"
        f"ws = Workspace.at({str(ws)!r})\n"
        f"opts = RunOptions(parallel={parallel}, grace={grace}, timeout={timeout}, "
        f"progress_every={progress_every})\n"
        "pool = Pool.for_models(('offline:x',))  # leases if the credentials file lists keys\n"
        f"code = Coordinator(ws, opts, {console}, spawn=spawn, pool=pool).run("
        "scan(ws, Kind.LLD).items, 'lld-all')\n"
        "sys.exit(code)\n"
    )
    return script


def worker_id(argv: list[str]) -> str:
    """The item id in a worker's argv (every value is passed as `--opt=value`)."""
    return next(a[len("--id="):] for a in argv if a.startswith("--id="))


def group_alive(pgid: int) -> bool:
    """Does any process of group `pgid` still run? (Zombies awaiting reaping do not.)"""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def started_groups(run_dir: Path) -> list[int]:
    """Process group ids of the run's workers (each tee leads its group)."""
    return [e["pid"] for e in journal(run_dir) if e["event"] == Event.START]


def lock_free(path: Path) -> bool:
    """Is nobody holding the flock on `path` (an item lock)?"""
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True
