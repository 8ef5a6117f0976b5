"""The live status area, through a real pseudo-terminal, and the plain output elsewhere."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, cli, driver, journal, latest_run, make_workspace, summary
from rich.console import Console as RichConsole
from terminal import ESCAPES, TermRun, run_in_pty

from assemblyzero.keys.redact import Redactor
from assemblyzero.ui.console import Active, Progress
from assemblyzero.ui.live import LiveConsole
from assemblyzero.ui.prefix_tee import format_prefix

IDS = [str(n) for n in range(41, 47)]
WIDTH = len("[COORDINATOR]")  # the widest tag of these runs


def _env(**extra: str) -> dict[str, str]:
    # COLUMNS/LINES (pytest-xdist sets them) would override the pty's own size.
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "CI", "COLUMNS", "LINES")}
    return {**env, "TERM": "xterm-256color", "ASSEMBLYZERO_OFFLINE_LATENCY": "0.1", **extra}


def _keys(path: Path) -> None:
    """Two offline keys (2 + 1 slots): each running item shows the one it holds."""
    entries = [{"name": "team-a", "provider": "offline", "max_concurrent": 2},
               {"name": "team-b", "provider": "offline", "max_concurrent": 1}]
    path.write_text(json.dumps({"credentials": entries}))


def _lld_all(ws: Path, **env: str) -> TermRun:
    argv = [sys.executable, "-m", "assemblyzero", "lld-all", "--parallel=3", "--repo", str(ws)]
    return run_in_pty(argv, _env(**env), cwd=str(ROOT), cols=80)


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TermRun]:
    """One run on a terminal, for the tests that only look at what it showed and left.

    Set up before any test's own home exists: it gets a home of its own.
    """
    root = tmp_path_factory.mktemp("live_run")
    home = root / "home"
    home.mkdir()
    _keys(home / "credentials.json")
    ws = make_workspace(root / "ws", issues=IDS)
    env = {k: v for k, v in _env().items() if not k.startswith("ASSEMBLYZERO_")}
    env.update(HOME=str(home), ASSEMBLYZERO_STATE_DIR=str(home / "state"),
               ASSEMBLYZERO_CREDENTIALS=str(home / "credentials.json"),
               ASSEMBLYZERO_OFFLINE_LATENCY=_env()["ASSEMBLYZERO_OFFLINE_LATENCY"])
    argv = [sys.executable, "-m", "assemblyzero", "lld-all", "--parallel=3", "--repo", str(ws)]
    run = run_in_pty(argv, env, cwd=str(ROOT), cols=80)
    assert run.code == 0, run.text[-3000:]
    return ws, run


@pytest.mark.e2e
def test_every_worker_line_arrives_whole_and_prefixed_above_the_area(
        live_run: tuple[Path, TermRun]) -> None:
    ws, run = live_run
    written = set(run.segments())
    run_dir = latest_run(ws)
    widest = max(len(line) for item in IDS
                 for line in (run_dir / f"lld-{item}.log").read_text().splitlines())
    assert WIDTH + 1 + widest > run.cols  # some lines only fit wrapped by the terminal
    for item in IDS:
        prefix = format_prefix(f"LLD-0{item}", WIDTH).decode()
        lines = (run_dir / f"lld-{item}.log").read_text().splitlines()
        assert len(lines) >= 10
        missing = [line for line in lines if prefix + line not in written]
        assert not missing, f"LLD-0{item}: lines not shown whole: {missing[:3]}"
    for segment in written:  # no line holds two workers' text
        assert len(re.findall(r"\[LLD-\d+\]", segment)) <= 1, segment


@pytest.mark.e2e
def test_items_running_side_by_side_never_share_a_prefix_colour(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=[str(n) for n in range(1, 15)])
    marks = tmp_path / "marks"
    marks.mkdir()
    # Item 1 runs until the 13 others have passed through the other two slots (each leaves
    # a mark; item 1 waits for the 13, at most a minute): more starts than colours, so
    # colours given in turn would come round to item 1's again.
    work = ("import pathlib, sys, time\n"
            f"marks = pathlib.Path({str(marks)!r})\n"
            "print('working on', sys.argv[1], flush=True)\n"
            "deadline = time.monotonic() + 60\n"
            "while sys.argv[1] == '1' and len(list(marks.iterdir())) < 13 \\\n"
            "        and time.monotonic() < deadline:\n"
            "    time.sleep(0.01)\n"
            "(marks / sys.argv[1]).touch()\n")
    run = run_in_pty([sys.executable, str(driver(tmp_path, ws, work, parallel=3,
                                                 console="for_terminal()"))], _env())
    assert run.code == 0, run.text[-2000:]
    colour: dict[str, bytes] = {}
    for code, tag in re.findall(rb"\x1b\[(\d+)m\[(LLD-\d+)\]\x1b\[0m +working", run.raw):
        assert colour.setdefault(tag.decode(), code) == code, f"{tag!r} changed colour"
    assert len(colour) == 14
    events = [(e["event"], e["item"]) for e in journal(latest_run(ws)) if "item" in e]
    starts = [n for n, e in enumerate(events) if e[0] == "start"]
    assert events.index(("end", "LLD-001")) > max(starts)  # it ran while all the others began
    running: set[str] = set()
    for event in journal(latest_run(ws)):
        if event["event"] == "start":
            assert colour[event["item"]] not in {colour[t] for t in running}, event["item"]
            running.add(event["item"])
        elif event["event"] == "end":
            running.discard(event["item"])


@pytest.mark.e2e
def test_every_line_stays_on_the_screen_in_order_and_the_area_leaves_no_trace(
        live_run: tuple[Path, TermRun]) -> None:
    ws, run = live_run
    shown = run.history()  # the whole scrollback, replayed through a terminal emulator
    run_dir = latest_run(ws)
    for item in IDS:
        prefix = format_prefix(f"LLD-0{item}", WIDTH).decode()
        want = [prefix + line for line in (run_dir / f"lld-{item}.log").read_text().splitlines()]
        got = [line for line in shown if line.startswith(prefix)]
        assert got == want, f"LLD-0{item}: lines lost, repeated or out of order on the screen"
    bars = [line for line in shown if line.startswith("━")]
    assert len(bars) == 1 and "6/6  6 done" in bars[0]  # only the final area is left over
    assert not [line for line in shown if re.match(r" +\[LLD-\d+\] +team-", line)]


@pytest.mark.e2e
def test_the_area_shows_the_final_counts_at_the_end(live_run: tuple[Path, TermRun]) -> None:
    _, run = live_run
    shown = "\n".join(run.screen())
    assert re.search(r"━+ 6/6  6 done · 0 running · 0 pending · 0 failed · "
                     r"\d+s elapsed", shown), shown[-2000:]
    assert "6 done; wall" in shown  # the summary follows the area


@pytest.mark.e2e
def test_the_area_shows_each_running_item_with_its_key_and_an_eta(
        live_run: tuple[Path, TermRun]) -> None:
    ws, run = live_run
    segments = run.segments()
    for item in summary(latest_run(ws))["items"]:
        row = re.compile(rf"^ +\[{item['tag']}\] +{item['credential']} +\d+s  \S")
        assert any(row.match(s) for s in segments), f"{item['tag']} never shown running"
    counts = re.compile(r"^━+ (\d)/6  (\d) done · (\d) running · (\d) pending")
    seen = [tuple(map(int, m.groups())) for s in segments if (m := counts.match(s))]
    assert (0, 0, 3, 3) in seen  # the first three started, three waiting
    assert all(f == d and r <= 3 and f + r + p == 6 for f, d, r, p in seen)
    assert any(re.search(r"· ETA \d+s", s) for s in segments)  # known once one is done


@pytest.mark.e2e
def test_a_run_on_a_terminal_leaves_the_cursor_visible(live_run: tuple[Path, TermRun]) -> None:
    _, run = live_run
    assert run.raw.rfind(b"\x1b[?25h") > run.raw.rfind(b"\x1b[?25l") >= 0


@pytest.mark.e2e
def test_ctrl_c_under_the_area_stops_cleanly_with_the_summary(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=IDS)
    sent: list[bool] = []

    def interrupt(raw: bytes, proc: subprocess.Popen[bytes]) -> None:
        if not sent and b"review: calling" in raw:
            sent.append(True)
            proc.send_signal(signal.SIGINT)

    argv = [sys.executable, "-m", "assemblyzero", "lld-all", "--parallel=3", "--repo", str(ws)]
    run = run_in_pty(argv, _env(ASSEMBLYZERO_OFFLINE_LATENCY="0.5"), cwd=str(ROOT),
                     on_output=interrupt)
    assert sent and run.code == 130, run.text[-2000:]
    shown = "\n".join(run.screen())
    assert "SIGINT: stopping 3 worker(s)" in shown
    assert re.search(r"━+ 6/6  0 done · 0 running · 0 pending · 0 failed · "
                     r"3 skipped · 3 interrupted", shown), shown[-1500:]
    assert run.raw.rfind(b"\x1b[?25h") > run.raw.rfind(b"\x1b[?25l")
    assert {e["status"] for e in journal(latest_run(ws)) if e["event"] == "end"} <= {
        "interrupted", "skipped", "done"}


@pytest.mark.e2e
def test_no_color_on_a_terminal_gives_plain_lines(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=IDS[:3])
    run = _lld_all(ws, NO_COLOR="1")
    assert run.code == 0, run.text[-2000:]
    assert b"\x1b" not in run.raw
    assert "[COORDINATOR] summary of run" in run.text
    log = (latest_run(ws) / "lld-41.log").read_text().splitlines()
    assert all(format_prefix("LLD-041", WIDTH).decode() + line in run.text for line in log)


@pytest.mark.e2e
def test_piped_output_has_no_escape_codes_and_every_line_prefixed(ws: Path) -> None:
    run = cli("lld-all", "--parallel=3", "--repo", str(ws),
              env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0", "TERM": "xterm-256color"})
    assert run.code == 0, run.err
    assert "\x1b" not in run.out + run.err
    assert all(re.match(r"\[(LLD-\d+|COORDINATOR)\] +\S", line) for line in run.out.splitlines())


@pytest.mark.e2e
def test_the_worker_never_imports_rich(ws: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {**os.environ, "ASSEMBLYZERO_WORKFLOW_DB": str(ws / "lld-41.db"),  # in the workspace
           "ASSEMBLYZERO_OFFLINE_LATENCY": "0"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "assemblyzero.worker", "--kind", "lld",
         "--id", "41", "--repo", str(ws), "--run-dir", str(run_dir)],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (ws / "docs/lld/active/LLD-041.md").is_file()
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")]
    assert "assemblyzero.workflow.engine" in imported  # the measurement sees the worker's imports
    assert not [name for name in imported if name.split(".")[0] == "rich"]


@pytest.mark.e2e
def test_the_area_says_when_the_run_waits_for_a_free_key(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=IDS[:3])
    entries = [{"name": "solo", "provider": "offline", "max_concurrent": 1}]
    Path(os.environ["ASSEMBLYZERO_CREDENTIALS"]).write_text(json.dumps({"credentials": entries}))
    run = _lld_all(ws)
    assert run.code == 0, run.text[-2000:]
    waiting = [s for s in run.segments() if "· 0 failed · no free key" in s]
    assert waiting and all(re.search(r"· 1 running · [12] pending", s) for s in waiting)
    assert max(len(s) for s in waiting) <= run.cols  # the area is cut to fit, never wrapped


STRESS = """
import sys, threading, time
from assemblyzero.ui.console import Active, Progress
from assemblyzero.ui.live import LiveConsole
from assemblyzero.ui.prefix_tee import format_prefix

console = LiveConsole(13, refresh=0.001)  # redraws all the time, racing the prints


def progress(n):
    running = tuple(Active(f"LLD-{i}", "-", 1.0, i) for i in range(n))
    return Progress(10, 0, 0, 0, 0, 10 - n, running, 1.0, None)


def feed(tag):
    sink = console.sink(tag)
    for i in range(400):
        sink(format_prefix(tag, 13) + f"line {i:03d} of {tag}\\n".encode())
        time.sleep(0.0005)
    sink(b"")


console.start(progress(1))
feeders = [threading.Thread(target=feed, args=(f"LLD-{k}",)) for k in range(3)]
for t in feeders:
    t.start()
n = 0
while any(t.is_alive() for t in feeders):
    n = n % 6 + 1
    console.update(progress(n))  # the area grows and shrinks between the prints
    time.sleep(0.002)
console.update(progress(0))
console.stop()
"""


@pytest.mark.e2e
def test_lines_printed_while_the_area_redraws_and_resizes_all_stay_on_the_screen(
        tmp_path: Path) -> None:
    script = tmp_path / "stress.py"
    script.write_text(STRESS)
    run = run_in_pty([sys.executable, str(script)], _env(), cols=80, rows=40)
    assert run.code == 0, run.text[-2000:]
    shown = run.history()
    for k in range(3):
        got = [line for line in shown if line.startswith(f"[LLD-{k}]")]
        prefix = format_prefix(f"LLD-{k}", 13).decode()
        assert got == [f"{prefix}line {i:03d} of LLD-{k}" for i in range(400)], k
    assert len([line for line in shown if line.startswith("━")]) == 1  # no stale area rows


@pytest.mark.e2e
def test_a_worker_cannot_clear_the_screen_move_the_cursor_or_retitle_the_terminal(
        tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["1"])
    hostile = ("import sys\n"
               "sys.stdout.write('a\\x1bc\\x1b[2J\\x1b[H\\x1b[5Ab\\x1b]0;pwned\\x07c\\x1b#8d\\x08e'\n"
               "                 ' \\x1b[31mred\\x1b[0m \\u009b2J\\u0085end\\n'\n"
               "                 'title \\x1b]0;never ended\\nnext line\\n')\n"
               "sys.exit('fatal: \\x1b[2J\\x1b[1Agone')\n")
    script = driver(tmp_path, ws, hostile, console="for_terminal()")
    run = run_in_pty([sys.executable, str(script)], _env(), cols=80)
    assert run.code == 1, run.text[-2000:]
    lines = [s for s in run.segments() if s.startswith("[LLD-001]")]
    # the text, without what it tried to do; an unended title takes no line with it
    assert lines[:3] == ["[LLD-001]     abcde red 2Jend", "[LLD-001]     title ",
                         "[LLD-001]     next line"]
    for bad in (b"\x1bc", b"\x1b[2J", b"\x1b[H", b"\x1b[5A", b"\x1b[1A", b"\x1b]0;",
                b"\x1b#8", b"\x08", "\u009b".encode(), "\u0085".encode()):
        assert bad not in run.raw, bad
    # the coordinator's own lines quote the failure (the summary's log tail): clean too
    assert any("fatal: gone" in s and s.startswith("[COORDINATOR]") for s in run.segments())
    assert b"\x1b[31mred" in run.raw  # colours are kept
    assert (latest_run(ws) / "lld-1.log").read_bytes().startswith(b"a\x1bc")  # the log is raw


def test_the_live_console_masks_known_secrets_in_worker_lines() -> None:
    secret = "correct-horse-battery-staple"
    console = LiveConsole(13)
    console.term = RichConsole(file=io.StringIO(), force_terminal=True, width=100)
    sink = console.sink("LLD-7", scrub=Redactor([secret]))
    prefix = format_prefix("LLD-7", 13)
    sink(prefix + f"token {secret} in a reply\n".encode() + prefix)
    sink(f"no newline at the end, pass={secret}".encode())
    sink(b"")
    hidden = "correct-horse-\x07battery-staple"  # an escape inside a secret hides nothing
    console.sink("LLD-8", scrub=Redactor([secret]))(f"also {hidden}\n".encode())
    out = console.term.file.getvalue()  # type: ignore[attr-defined]
    assert "battery" not in out
    assert "token *** in a reply" in out and "no newline at the end, pass=***" in out
    assert "also ***" in out


CRASH = """
import pathlib
from assemblyzero.run import scheduler as _scheduler

_due = _scheduler.Scheduler.due


_crashed = []


def _crash_once_both_work(self):  # a bug in the coordinator, once both workers are busy
    if not _crashed and len(list(pathlib.Path({marks!r}).glob("*"))) >= 2:
        _crashed.append(True)
        pathlib.Path({crashed!r}).touch()  # for the test: the crash is under way
        raise RuntimeError("injected crash")
    return _due(self)


_scheduler.Scheduler.due = _crash_once_both_work
"""


@pytest.mark.e2e
def test_a_crash_mid_run_ends_each_item_after_its_last_line_and_gives_the_cursor_back(
        tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["1", "2"])
    marks = tmp_path / "marks"
    marks.mkdir()
    work = ("import pathlib, sys, time\n"
            "for n in range(1000):\n"
            "    print(f'item {sys.argv[1]} line {n:04d}')\n"
            f"pathlib.Path({str(marks)!r}, sys.argv[1]).touch()\n"
            "time.sleep(60)\n")
    crashed = tmp_path / "crashed"
    script = driver(tmp_path, ws, work, timeout=2, console="for_terminal()",
                    prelude=CRASH.format(marks=str(marks), crashed=str(crashed)))
    stalled: list[bool] = []  # [did the crash come while the terminal was stalled]

    def stall(raw: bytes, proc: subprocess.Popen[bytes]) -> None:
        # A terminal that stops reading for a while: the lines back up in the pipes while
        # the crash happens (the stall lasts until it has, and a little longer).
        if not stalled and b"line 000" in raw:
            deadline = time.monotonic() + 30
            while not crashed.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            stalled.append(crashed.exists())
            time.sleep(0.3)  # the coordinator goes on into its cleanup, still unread

    run = run_in_pty([sys.executable, str(script)], _env(), timeout=60, on_output=stall)
    assert run.code == 1, run.text[-2000:]
    assert stalled == [True]
    shown = run.history()
    crash = next(i for i, line in enumerate(shown) if "RuntimeError: injected crash" in line)
    for n in ("1", "2"):
        lines = [i for i, line in enumerate(shown) if line.startswith(f"[LLD-00{n}]")]
        assert len(lines) == 1000
        ended = next((i for i, line in enumerate(shown)
                     if line.startswith(f"[COORDINATOR] LLD-00{n} interrupted")), None)
        assert ended is not None, "\n".join(x for x in shown if "COORDINATOR" in x)
        assert max(lines) < ended > crash  # every line of it came before its end
    errors = [e for e in journal(latest_run(ws)) if e["event"] == "error"]
    assert errors and "injected crash" in errors[0]["traceback"]
    assert run.raw.rfind(b"\x1b[?25h") > run.raw.rfind(b"\x1b[?25l")  # cursor back


@pytest.mark.parametrize("huge", [1e10, 1e308, float("inf"), float("nan")])
def test_the_area_draws_huge_and_non_finite_times_without_dying(huge: float) -> None:
    console = LiveConsole(13)
    console.term = RichConsole(file=io.StringIO(), force_terminal=True, width=100)
    running = (Active("LLD-7", "team-a", huge),)
    console.update(Progress(9, 1, 0, 0, 0, pending=2, running=running, elapsed=huge, eta=huge))
    console.term.print(console._render())
    out = ESCAPES.sub("", console.term.file.getvalue())  # type: ignore[attr-defined]
    assert "1/9" in out and "ETA " in out and "LLD-7" in out
    if huge == 1e10:
        assert "2777777h46m elapsed" in out


@pytest.mark.e2e
def test_a_huge_timeout_on_a_terminal_is_a_usage_error_not_a_crash(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    argv = [sys.executable, "-m", "assemblyzero", "lld-all", "--parallel=2", "--timeout=1e10",
            "--repo", str(ws)]
    run = run_in_pty(argv, _env(), cwd=str(ROOT), cols=200)
    assert run.code == 2, run.text
    assert "--timeout must be at most 604800 seconds (got '1e10')" in run.text
    assert "Traceback" not in run.text and "OverflowError" not in run.text
    assert not (ws / "logs").exists()
