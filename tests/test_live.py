"""The live status area, through a real pseudo-terminal, and the plain output elsewhere."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, cli, journal, latest_run, make_workspace, summary
from terminal import TermRun, run_in_pty

from assemblyzero.prefix_tee import format_prefix

IDS = [str(n) for n in range(41, 47)]
WIDTH = len("[COORDINATOR]")  # the widest tag of these runs


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CI")}
    return {**env, "TERM": "xterm-256color", "ASSEMBLYZERO_OFFLINE_LATENCY": "0.1", **extra}


def _keys() -> None:
    """Two offline keys (2 + 1 slots): each running item shows the one it holds."""
    entries = [{"name": "team-a", "provider": "offline", "max_concurrent": 2},
               {"name": "team-b", "provider": "offline", "max_concurrent": 1}]
    Path(os.environ["ASSEMBLYZERO_CREDENTIALS"]).write_text(json.dumps({"credentials": entries}))


def _lld_all(ws: Path, **env: str) -> TermRun:
    argv = [sys.executable, "-m", "assemblyzero", "lld-all", "--parallel=3", "--repo", str(ws)]
    return run_in_pty(argv, _env(**env), cwd=str(ROOT), cols=80)


@pytest.fixture
def live_run(tmp_path: Path) -> tuple[Path, TermRun]:
    ws = make_workspace(tmp_path / "ws", issues=IDS)
    _keys()
    run = _lld_all(ws)
    assert run.code == 0, run.text[-3000:]
    return ws, run


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


def test_worker_prefixes_are_coloured_per_item_in_turn(live_run: tuple[Path, TermRun]) -> None:
    ws, run = live_run
    starts = [e["item"] for e in journal(latest_run(ws)) if e["event"] == "start"]
    assert len(starts) == len(IDS)
    colours = set()
    for n, tag in enumerate(starts):  # the n-th worker started gets the n-th colour
        prefix = format_prefix(tag, WIDTH, color=True, hue=n)
        assert prefix in run.raw, tag
        colours.add(prefix[:prefix.index(b"m") + 1])
    assert len(colours) == len(IDS)  # no two items look alike


def test_the_area_shows_the_final_counts_at_the_end(live_run: tuple[Path, TermRun]) -> None:
    _, run = live_run
    shown = "\n".join(run.screen())
    assert re.search(r"━+ 6/6  6 done · 0 running · 0 pending · 0 failed · "
                     r"\d+s elapsed", shown), shown[-2000:]
    assert "6 done; wall" in shown  # the summary follows the area


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


def test_a_run_on_a_terminal_leaves_the_cursor_visible(live_run: tuple[Path, TermRun]) -> None:
    _, run = live_run
    assert run.raw.rfind(b"\x1b[?25h") > run.raw.rfind(b"\x1b[?25l") >= 0


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
    assert re.search(r"\d interrupted", shown)
    assert run.raw.rfind(b"\x1b[?25h") > run.raw.rfind(b"\x1b[?25l")
    assert {e["status"] for e in journal(latest_run(ws)) if e["event"] == "end"} <= {
        "interrupted", "skipped", "done"}


def test_no_color_on_a_terminal_gives_plain_lines(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=IDS[:3])
    run = _lld_all(ws, NO_COLOR="1")
    assert run.code == 0, run.text[-2000:]
    assert b"\x1b" not in run.raw
    assert "[COORDINATOR] summary of run" in run.text
    log = (latest_run(ws) / "lld-41.log").read_text().splitlines()
    assert all(format_prefix("LLD-041", WIDTH).decode() + line in run.text for line in log)


def test_piped_output_has_no_escape_codes_and_every_line_prefixed(ws: Path) -> None:
    run = cli("lld-all", "--parallel=3", "--repo", str(ws),
              env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0", "TERM": "xterm-256color"})
    assert run.code == 0, run.err
    assert "\x1b" not in run.out + run.err
    assert all(re.match(r"\[(LLD-\d+|COORDINATOR)\] +\S", line) for line in run.out.splitlines())


def test_the_worker_never_imports_rich(ws: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {**os.environ, "ASSEMBLYZERO_WORKFLOW_DB": str(tmp_path / "lld-41.db"),
           "ASSEMBLYZERO_OFFLINE_LATENCY": "0"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "assemblyzero.worker", "--kind", "lld",
         "--id", "41", "--repo", str(ws), "--run-dir", str(run_dir)],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (ws / "docs/lld/active/LLD-041.md").is_file()
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")]
    assert "assemblyzero.engine" in imported  # the measurement sees the worker's imports
    assert not [name for name in imported if name.split(".")[0] == "rich"]


def test_the_area_says_when_the_run_waits_for_a_free_key(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=IDS[:4])
    entries = [{"name": "solo", "provider": "offline", "max_concurrent": 1}]
    Path(os.environ["ASSEMBLYZERO_CREDENTIALS"]).write_text(json.dumps({"credentials": entries}))
    run = _lld_all(ws)
    assert run.code == 0, run.text[-2000:]
    waiting = [s for s in run.segments() if "· 0 failed · no free key" in s]
    assert waiting and all(re.search(r"· 1 running · [1-3] pending", s) for s in waiting)
    assert max(len(s) for s in waiting) <= run.cols  # the area is cut to fit, never wrapped
