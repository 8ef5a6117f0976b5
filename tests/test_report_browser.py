"""The report in a real browser: Debian's headless Chromium renders it (tests/browser.py).

CI installs chromium (.ci/run); elsewhere these tests are skipped when it is missing,
saying how to install it. In CI a missing browser fails them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from browser import chromium, dump_dom, png_colours, png_facts, screenshot
from conftest import cli, latest_run, make_workspace

from assemblyzero import report
from assemblyzero.report.page import COLORS

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def need_chromium() -> None:
    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and CI must have it (.ci/run installs "
                        "it with apt-get)")
        pytest.skip("chromium is not installed: apt-get install chromium")


def rgb(hex_colour: str) -> bytes:
    return bytes.fromhex(hex_colour.lstrip("#"))


def test_a_real_runs_report_renders_to_a_full_non_blank_png_with_its_bars(
        tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["1", "2", "3", "4"])
    run = cli("lld-all", "--parallel=2", "--repo", str(ws),
              env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0.05", "ASSEMBLYZERO_SIMULATE_FAIL": "2"})
    assert run.code == 1, run.out
    page = latest_run(ws) / "report.html"
    png = tmp_path / "report.png"
    screenshot(page, png, 1280, 900)
    width, height, colours = png_colours(png)
    assert (width, height) == (1280, 900)
    _, _, distinct, inked = png_facts(png)
    assert distinct > 50 and inked > 0.05, (distinct, inked)  # text, bars, tables: not blank
    # The bars were painted in their outcome's colour (3 done, 1 failed). Every outcome has
    # a legend swatch of one size: a colour with bars has many times the pixels of one
    # without (timed out).
    legend_only = colours[rgb(COLORS["timeout"])]
    assert 0 < legend_only < 100
    assert colours[rgb(COLORS["done"])] > 10 * legend_only
    assert colours[rgb(COLORS["failed"])] > 3 * legend_only


HOSTILE = ("<script>document.title='PWNED';document.body.setAttribute('data-pwned','1')"
           "</script><img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">")


def test_a_script_in_a_title_reason_or_log_line_does_not_run(tmp_path: Path) -> None:
    # First, that the check can fail: the same markup unescaped, on a page of its own, runs.
    control = tmp_path / "control.html"
    control.write_text(f"<html><head><title>t</title></head><body>{HOSTILE}</body></html>",
                       encoding="utf-8")
    ran = dump_dom(control)
    assert re.search(r"<body[^>]*data-pwned", ran) and "<title>PWNED</title>" in ran

    run_dir = tmp_path / "logs/parallel/20261202-100000-lld-all-1"
    run_dir.mkdir(parents=True)
    log = run_dir / "lld-7.log"
    log.write_text(f"load: docs/issues/active/7.md ({HOSTILE})\nfailed\n", encoding="utf-8")
    t0 = 1_796_000_000.0
    events = [{"event": "run-start", "ts": t0, "label": "lld-all", "items": ["LLD-7"],
               "ids": ["7"], "parallel": 1, "pid": 1, "pid_start": "1"},
              {"event": "start", "ts": t0, "item": "LLD-7", "pid": 5, "attempt": 1,
               "credentials": [HOSTILE]},
              {"event": "end", "ts": t0 + 2, "item": "LLD-7", "status": "failed",
               "exit_code": 1, "duration": 2.0},
              {"event": "pause", "ts": t0 + 1, "reason": HOSTILE},
              {"event": "run-end", "ts": t0 + 2, "exit_code": 1, "wall_seconds": 2.0}]
    (run_dir / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events),
                                           encoding="utf-8")
    (run_dir / "summary.json").write_text(json.dumps({
        "version": 1, "run_id": run_dir.name, "label": HOSTILE, "drafter": HOSTILE,
        "reviewer": "offline:default", "exit_code": 1,
        "items": [{"kind": "lld", "id": "7", "tag": "LLD-7", "status": "failed",
                   "reason": f"title {HOSTILE}", "log": str(log), "credential": HOSTILE}],
        "credentials": [{"name": HOSTILE, "provider": "offline"}]}), encoding="utf-8")
    page = report.write(run_dir, tmp_path)
    # The page's own Content-Security-Policy would stop a script that slipped through: take
    # it out of a copy, so that only the escaping is tested.
    text = page.read_text(encoding="utf-8")
    bare = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
    assert bare != text
    (run_dir / "bare.html").write_text(bare, encoding="utf-8")
    assert not re.search(r"<body[^>]*data-pwned", dump_dom(run_dir / "bare.html"))
    dom = dump_dom(page)
    assert not re.search(r"<body[^>]*data-pwned", dom)
    assert "<title>assemblyzero run 20261202-100000-lld-all-1</title>" in dom
    assert "<img" not in dom
    # Shown as text: the reason, the log line, the key and the command, each escaped.
    assert dom.count("&lt;script&gt;document.title='PWNED'") >= 4
