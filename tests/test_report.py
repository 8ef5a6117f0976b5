"""The HTML report: drawn from journals written by hand (unit tier), and from real runs.

The page is parsed with html.parser, as a browser would read its elements: one bar per
attempt, its colour by outcome, its place by time and slot. Real rendering in Chromium
is tests/test_report_browser.py.
"""

from __future__ import annotations

import json
import os
import stat
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import cli, journal, latest_run, make_workspace

from assemblyzero import report
from assemblyzero.report.page import COLORS, LEFT, RIGHT, WIDTH
from assemblyzero.run.summary import draw_report

T0 = 1_796_000_000.0


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text outside tags."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def of(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and cls in a.get("class", "").split()]


def run_folder(root: Path, events: list[dict[str, Any]], summary: dict[str, Any] | None = None,
               name: str = "20261202-100000-lld-all-1") -> Path:
    run_dir = root / "logs/parallel" / name
    run_dir.mkdir(parents=True)
    (run_dir / "journal.jsonl").write_text(
        "".join(json.dumps(e, sort_keys=True) + "\n" for e in events), encoding="utf-8")
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run_dir


def ev(name: str, at: float, **fields: Any) -> dict[str, Any]:
    return {"event": name, "ts": T0 + at, **fields}


def start(tag: str, at: float, attempt: int = 1, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    return ev("start", at, item=tag, pid=100, attempt=attempt, credentials=list(keys))


def end(tag: str, at: float, status: str, code: int = 0, since: float = 0.0) -> dict[str, Any]:
    return ev("end", at, item=tag, status=status, exit_code=code, duration=at - since)


def three_items() -> list[dict[str, Any]]:
    """LLD-1 done (0-4 s, waits 1-2 s for its key's budget); LLD-2 gets a 429 at 2 s, its
    key rests 3 s, and it runs again 5-9 s; LLD-3 fails (4-6 s); a pause 2-5 s."""
    return [
        ev("run-start", 0, label="lld-all", items=["LLD-1", "LLD-2", "LLD-3"],
           ids=["1", "2", "3"], parallel=2, pid=1, pid_start="1"),
        start("LLD-1", 0, keys=("key-a",)), start("LLD-2", 0, keys=("key-b",)),
        ev("end", 2, item="LLD-2", status="failed", exit_code=75, duration=2),
        ev("retry", 2, item="LLD-2", credential="key-b", kind="rate_limited", rest=3.0),
        ev("pause", 2, reason="every offline credential is held or cooling down"),
        ev("wait", 4, item="LLD-1", credential="key-a", why="budget", **{"from": T0 + 1},
           seconds=1.0),
        end("LLD-1", 4, "done"),
        start("LLD-3", 4, keys=("key-a",)),
        ev("resume", 5), start("LLD-2", 5, attempt=2, keys=("key-b",)),
        end("LLD-3", 6, "failed", code=1, since=4),
        end("LLD-2", 9, "done", since=5),
        ev("run-end", 9, exit_code=1, wall_seconds=9.0),
    ]


def bars_of(page: Elements) -> list[dict[str, str]]:
    return page.of("rect", "bar")


def test_one_bar_per_attempt_coloured_by_outcome_and_placed_by_time_and_slot(
        tmp_path: Path) -> None:
    page = Elements(report.render(run_folder(tmp_path, three_items()), tmp_path))
    bars = bars_of(page)
    assert sorted((b["data-item"], b["data-attempt"], b["data-outcome"]) for b in bars) == [
        ("LLD-1", "1", "done"), ("LLD-2", "1", "retried"), ("LLD-2", "2", "done"),
        ("LLD-3", "1", "failed")]
    for bar in bars:
        assert bar["fill"] == COLORS[bar["data-outcome"]]
    scale = (WIDTH - LEFT - RIGHT) / 9.0  # the run spans 9 s
    by = {(b["data-item"], b["data-attempt"]): b for b in bars}
    for key, (begin, finish) in {("LLD-1", "1"): (0, 4), ("LLD-2", "1"): (0, 2),
                                 ("LLD-3", "1"): (4, 6), ("LLD-2", "2"): (5, 9)}.items():
        assert float(by[key]["x"]) == pytest.approx(LEFT + begin * scale, abs=0.01)
        assert float(by[key]["width"]) == pytest.approx((finish - begin) * scale, abs=0.01)
    # Two slots: LLD-1 then LLD-3 in one, LLD-2's attempts in the other.
    rows = {key: float(bar["y"]) for key, bar in by.items()}
    assert rows[("LLD-1", "1")] == rows[("LLD-3", "1")]
    assert rows[("LLD-2", "1")] == rows[("LLD-2", "2")] != rows[("LLD-1", "1")]
    assert len({float(b["y"]) for b in bars}) == 2


def test_waits_rests_pauses_and_the_tail_are_drawn_where_they_happened(tmp_path: Path) -> None:
    page = Elements(report.render(run_folder(tmp_path, three_items()), tmp_path))
    scale = (WIDTH - LEFT - RIGHT) / 9.0

    def span(attrs: dict[str, str]) -> tuple[float, float]:
        x = (float(attrs["x"]) - LEFT) / scale
        return round(x, 2), round(x + float(attrs["width"]) / scale, 2)

    assert [span(w) for w in page.of("rect", "wait")] == [(1.0, 2.0)]  # in LLD-1's bar
    assert "wait-budget" in page.of("rect", "wait")[0]["class"]
    assert [span(w) for w in page.of("rect", "keywait")] == [(1.0, 2.0)]  # on key-a's row
    assert [span(r) for r in page.of("rect", "rest")] == [(2.0, 5.0)]  # key-b, after its 429
    assert [span(p) for p in page.of("rect", "pause")] == [(2.0, 5.0)]
    # The tail: LLD-2's second attempt started last (5 s); LLD-3 ended at 6 s and its slot
    # had nothing left; LLD-2, ending last, is the one the run waited on.
    assert [span(t) for t in page.of("rect", "tail")] == [(6.0, 9.0)]
    critical = page.of("rect", "critical")
    assert [(c["data-item"], c["data-attempt"]) for c in critical] == [("LLD-2", "2")]
    assert {"key-a", "key-b"} <= set(page.text)  # a row of its own for each key


def test_the_tail_starts_when_a_slot_falls_idle_for_good_even_before_a_later_retry(
        tmp_path: Path) -> None:
    # LLD-1 ends at 3 s and its slot runs nothing more; LLD-2 is retried at 5 s in its own
    # slot, after a first attempt on a key that moved it; the tail is 3-8 s, not 8-8 s.
    events = [ev("run-start", 0, label="lld-all", items=["LLD-1", "LLD-2"], ids=["1", "2"],
                 parallel=2, pid=1, pid_start="1"),
              start("LLD-1", 0), start("LLD-2", 0),
              end("LLD-1", 3, "done"), end("LLD-2", 5, "failed", 75),
              ev("retry", 5, item="LLD-2", credential="key-a", kind="rate_limited", rest=None),
              start("LLD-2", 5, attempt=2), end("LLD-2", 8, "done", since=5),
              ev("run-end", 8, exit_code=0, counts={"done": 2})]
    page = Elements(report.render(run_folder(tmp_path, events), tmp_path))
    scale = (WIDTH - LEFT - RIGHT) / 8.0
    (tail,) = page.of("rect", "tail")
    assert (float(tail["x"]) - LEFT) / scale == pytest.approx(3.0, abs=0.01)
    assert "5.0s with slots idle, waiting on LLD-2" in " ".join(page.text)
    # One slot all along: no tail to show.
    alone = [e for e in events if e.get("item") != "LLD-1"]
    one = Elements(report.render(run_folder(tmp_path / "one", alone), tmp_path / "one"))
    assert one.of("rect", "tail") == [] and "with slots idle" not in " ".join(one.text)


def test_a_1000_item_run_keeps_its_slots_as_rows_and_labels_only_bars_they_fit(
        tmp_path: Path) -> None:
    events = [ev("run-start", 0, label="lld-all", items=[], ids=[], parallel=10, pid=1,
                 pid_start="1")]
    cursor = [slot * 0.01 for slot in range(10)]
    for n in range(1000):  # 10 slots of 100 items; every 50th is long enough for its label
        slot = n % 10
        length = 20.0 if n % 50 == 0 else 0.5
        events.append(start(f"LLD-{n}", cursor[slot]))
        events.append(end(f"LLD-{n}", cursor[slot] + length, "done", since=cursor[slot]))
        cursor[slot] += length
    events.sort(key=lambda e: (e["ts"], e["event"] == "start"))
    events.append(ev("run-end", max(cursor), exit_code=0, wall_seconds=max(cursor)))
    text = report.render(run_folder(tmp_path, events), tmp_path)  # its time: invoke bench
    page = Elements(text)
    bars = bars_of(page)
    assert len(bars) == 1000
    assert len({b["y"] for b in bars}) == 10  # one row per slot, however many items
    labels = page.of("text", "tag")
    assert 0 < len(labels) <= 20  # a 0.5 s bar is ~6 px wide: no room for "LLD-123"
    assert len(text) < 1_500_000, len(text)


def test_a_cluster_run_has_one_row_group_per_host_and_bars_start_when_they_began(
        tmp_path: Path) -> None:
    events = [ev("run-start", 0, label="lld-all", items=[], ids=[], parallel=4, pid=1,
                 pid_start="1"),
              ev("start", 0, item="LLD-1", pid=None, attempt=1, credentials=[]),
              ev("start", 0, item="LLD-2", pid=None, attempt=1, credentials=[]),
              ev("began", 1, item="LLD-1", host="host-a"),
              ev("began", 2, item="LLD-2", host="host-b"),
              ev("end", 5, item="LLD-1", status="done", exit_code=0, duration=4,
                 host="host-a"),
              ev("end", 6, item="LLD-2", status="done", exit_code=0, duration=4,
                 host="host-b"),
              ev("run-end", 6, exit_code=0, wall_seconds=6)]
    page = Elements(report.render(run_folder(tmp_path, events), tmp_path))
    scale = (WIDTH - LEFT - RIGHT) / 6.0
    by = {b["data-item"]: b for b in bars_of(page)}
    assert float(by["LLD-1"]["x"]) == pytest.approx(LEFT + 1 * scale, abs=0.01)
    assert float(by["LLD-2"]["x"]) == pytest.approx(LEFT + 2 * scale, abs=0.01)
    assert by["LLD-1"]["y"] != by["LLD-2"]["y"]
    labels = [t for t in page.text if "host-" in t]
    assert "host-a · 1" in labels and "host-b · 1" in labels


HOSTILE = ('<script>document.body.setAttribute("data-pwned","1")</script>'
           '<img src=x onerror=alert(1)>')


def test_names_titles_reasons_and_log_lines_from_outside_are_shown_as_text(
        tmp_path: Path) -> None:
    root = tmp_path
    run_dir = root / "logs/parallel/20261202-100000-lld-all-1"
    log = run_dir / "lld-7.log"
    events = [ev("run-start", 0, label="lld-all", items=["LLD-7"], ids=["7"], parallel=1,
                 pid=1, pid_start="1"),
              start("LLD-7", 0, keys=(HOSTILE,)),
              ev("end", 1, item="LLD-7", status="failed", exit_code=1, duration=1,
                 host=HOSTILE),
              ev("run-end", 1, exit_code=1, wall_seconds=1)]
    summary = {"version": 1, "run_id": run_dir.name, "label": HOSTILE, "drafter": HOSTILE,
               "exit_code": 1, "items": [
                   {"kind": "lld", "id": "7", "tag": "LLD-7", "status": "failed",
                    "reason": f"title {HOSTILE}\x1b]0;retitled\x07", "log": str(log),
                    "credential": HOSTILE, "host": HOSTILE}],
               "credentials": [{"name": HOSTILE, "provider": HOSTILE}]}
    run_folder(root, events, summary)
    log.write_text(f"draft: {HOSTILE}\n\x1b[2J cleared\n", encoding="utf-8")
    text = report.render(run_dir, root)
    assert "<script" not in text  # no tag of ours either
    assert "<img" not in text and "\x1b" not in text and "\x07" not in text
    assert text.count("&lt;script&gt;") >= 6  # label, drafter, reason, key, host, log line
    assert "script-src" not in text and "default-src 'none'" in text  # the page's own CSP
    page = Elements(text)
    assert any(HOSTILE in chunk for chunk in page.text)  # the text itself, readable


def test_a_journal_cut_short_draws_the_running_attempts_up_to_its_last_event(
        tmp_path: Path) -> None:
    events = three_items()[:8]  # up to LLD-1's end: LLD-2 is retried, nothing running...
    events.append(start("LLD-3", 4.5))  # ...and LLD-3 started, then the coordinator died
    events.append(ev("pause", 5, reason="x"))
    run_dir = run_folder(tmp_path, events)
    with (run_dir / "journal.jsonl").open("a") as handle:
        handle.write('{"event": "end", "item": "LLD-3", "ts": 17960')  # cut by the crash
    text = report.render(run_dir, tmp_path)
    page = Elements(text)
    outcomes = {(b["data-item"], b["data-outcome"]) for b in bars_of(page)}
    assert ("LLD-3", "unfinished") in outcomes
    assert "no run-end in its journal" in text
    assert "1 line(s) of" in text  # the cut line, said


@pytest.mark.parametrize("bad", [
    {"event": "start", "item": "LLD-9", "ts": 1e308},
    {"event": "start", "item": "LLD-9", "ts": "soon"},
    {"event": "start", "item": ["LLD-9"], "ts": T0 + 1},
    {"event": "end", "item": "LLD-1", "ts": -5},
    {"event": "wait", "item": "LLD-1", "ts": T0 + 1, "from": float("inf"), "seconds": 1e300},
    {"event": "wait", "item": "LLD-1", "ts": T0 + 1, "from": T0, "seconds": True,
     "why": "budget"},
    {"event": "retry", "item": "LLD-1", "ts": T0 + 1, "rest": 1e300, "credential": "k"},
    {"event": "start", "item": "LLD-9", "ts": 10**400},  # valid JSON, too big for a float
    {"event": "wait", "item": "LLD-1", "ts": T0 + 1, "from": 10**400, "seconds": 10**400,
     "why": "budget"},
    {"event": "end", "item": "LLD-1", "ts": T0 + 1, "status": "done", "duration": 10**400},
    [1, 2, 3],
    "just a string",
])
def test_hostile_journal_lines_are_left_out_or_bounded(tmp_path: Path, bad: Any) -> None:
    events = three_items()
    events.insert(2, bad)
    run_dir = run_folder(tmp_path, [e for e in events if isinstance(e, dict)])
    if not isinstance(bad, dict):
        with (run_dir / "journal.jsonl").open("a") as handle:
            handle.write(json.dumps(bad) + "\n")
    page = Elements(report.render(run_dir, tmp_path))
    for attrs in page.of("rect", "bar") + page.of("rect", "rest") + page.of("rect", "wait"):
        assert LEFT <= float(attrs["x"]) <= WIDTH - RIGHT + 1
        assert float(attrs["x"]) + float(attrs["width"]) <= WIDTH - RIGHT + 1
    svg = page.of("svg", "timeline")[0]
    assert float(svg["height"]) < 2000


@pytest.mark.parametrize("first", [
    {"event": "run-start", "ts": T0, "label": "lld-all", "parallel": 10**12},
    {"event": "run-start", "ts": 10**400, "label": "lld-all", "parallel": 2},
    {"event": "run-start", "ts": T0, "label": "x" * 100_000, "parallel": -3},
])
def test_a_hostile_run_start_is_bounded_and_the_run_still_drawn(tmp_path: Path,
                                                              first: dict[str, Any]) -> None:
    events = [first, *three_items()[1:]]
    text = report.render(run_folder(tmp_path, events), tmp_path)
    assert len(text) < 200_000
    assert len(bars_of(Elements(text))) == 4  # a run-start not believed: timed by the rest


def test_out_of_order_and_duplicate_events_never_draw_a_negative_bar(tmp_path: Path) -> None:
    events = [ev("run-start", 0, label="lld-all", items=["LLD-1", "LLD-2"], parallel=2,
                 pid=1, pid_start="1"),
              start("LLD-1", 0), start("LLD-1", 2),  # started again without an end
              start("LLD-2", 3), ev("began", 1, item="LLD-2", host="h"),  # began before
              end("LLD-2", 2, "done"),  # ended before it started: a clock stepped back
              end("LLD-1", 5, "done"), ev("run-end", 5, exit_code=0)]
    page = Elements(report.render(run_folder(tmp_path, events), tmp_path))
    bars = bars_of(page)
    assert sorted((b["data-item"], b["data-attempt"]) for b in bars) == [
        ("LLD-1", "1"), ("LLD-1", "1"), ("LLD-2", "1")]  # the first LLD-1 is kept
    assert all(float(b["width"]) >= 0 for b in bars)
    assert "-" not in page.text[page.text.index("worker time") + 1]  # no negative time


def test_absurd_numbers_nul_paths_long_texts_and_many_keys_in_a_summary_are_bounded(
        tmp_path: Path) -> None:
    run_dir = tmp_path / "logs/parallel/20261202-100000-lld-all-1"
    keys = [f"key-{n}" for n in range(300)]
    events = [ev("run-start", 0, label="lld-all", items=[], parallel=2, pid=1,
                 pid_start="1")]
    for n, name in enumerate(keys):
        events += [start(f"LLD-{n}", n * 0.01, keys=(name,)),
                   ev("wait", n * 0.01, item=f"LLD-{n}", credential=name, why="budget",
                      **{"from": T0 + n * 0.01, "seconds": 0.005}),
                   end(f"LLD-{n}", n * 0.01 + 0.01, "failed", 1)]
    summary = {"wall_seconds": 10**400, "cost": {"usd": 10**400, "priced_usd": 10**400,
                                                 "unpriced_calls": 10**400},
               "items": [{"kind": "lld", "id": "1", "tag": "LLD-1", "status": "failed",
                          "reason": "r" * 1_000_000, "duration": 10**400,
                          "cost": {"usd": 10**400, "priced_usd": 1e308},
                          "log": str(run_dir / "lld-1\0.log")}],
               "credentials": [{"name": k, "requests": 10**400, "waited_seconds": 10**400}
                               for k in keys]}
    run_folder(tmp_path, events, summary)
    text = report.render(run_dir, tmp_path)
    page = Elements(text)
    assert len(text) < 3_000_000
    assert "r" * 2000 + "…" in text and "r" * 2001 not in text  # a reason of 1 MB: cut
    svg = page.of("svg", "timeline")[0]
    assert float(svg["height"]) < 1500  # 50 key rows, then "+250 keys"
    assert "+250 keys" in page.text
    assert sum(1 for k in keys if f"<td>{k}</td>" in text) == 300  # the table: all of them


def test_log_tails_are_never_read_through_a_symlink_or_outside_the_run(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("SECRET-LINE\n", encoding="utf-8")
    run_dir = tmp_path / "logs/parallel/20261202-100000-lld-all-1"
    events = three_items()
    summary = {"items": [{"kind": "lld", "id": "3", "tag": "LLD-3", "status": "failed",
                          "reason": "boom", "log": str(run_dir / "lld-3.log")}]}
    run_folder(tmp_path, events, summary)
    (run_dir / "lld-3.log").symlink_to(secret)
    text = report.render(run_dir, tmp_path)
    assert "boom" in text and "SECRET-LINE" not in text
    # A log named outside the run folder (an edited summary) is neither linked nor read.
    summary["items"][0]["log"] = str(secret)
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    text = report.render(run_dir, tmp_path)
    assert "boom" in text and "SECRET-LINE" not in text and "elsewhere.txt" not in text
    # A run folder moved since: its logs are found by name in it, linked and read.
    (run_dir / "lld-3.log").unlink()
    (run_dir / "lld-3.log").write_text("the last line\n", encoding="utf-8")
    moved = tmp_path / "elsewhere/logs/parallel" / run_dir.name
    moved.parent.mkdir(parents=True)
    run_dir.rename(moved)
    summary["items"][0]["log"] = str(run_dir / "lld-3.log")  # where it was written
    (moved / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    text = report.render(moved, tmp_path / "elsewhere")
    assert 'href="lld-3.log"' in text and "the last line" in text


def test_a_summary_that_is_not_ours_is_said_and_the_journal_drawn(tmp_path: Path) -> None:
    run_dir = run_folder(tmp_path, three_items())
    (run_dir / "summary.json").write_text("[1, 2", encoding="utf-8")
    text = report.render(run_dir, tmp_path)
    assert "cannot read" in text and "summary.json" in text
    assert len(bars_of(Elements(text))) == 4


# ------------------------------------------------------------------ real runs

@pytest.mark.e2e
def test_every_run_writes_its_report_and_the_summary_names_it(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["1", "2", "3"])
    result = cli("lld-all", "--parallel=2", "--repo", str(ws),
                 env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0.05",
                      "ASSEMBLYZERO_SIMULATE_FAIL": "2"})
    assert result.code == 1, result.err
    run_dir = latest_run(ws)
    page_path = run_dir / "report.html"
    last = result.out.strip().splitlines()[-1]
    assert last.endswith(f"report {os.path.relpath(page_path, ws)}"), last
    page = Elements(page_path.read_text(encoding="utf-8"))
    starts = [e for e in journal(run_dir) if e["event"] == "start"]
    assert len(bars_of(page)) == len(starts) == 3
    outcomes = {b["data-item"]: b["data-outcome"] for b in bars_of(page)}
    assert outcomes == {"LLD-001": "done", "LLD-002": "failed", "LLD-003": "done"}
    hrefs = [a["href"] for t, a in page.tags if t == "a"]
    assert "lld-2.log" in hrefs  # the log, beside the page
    assert all((run_dir / h).exists() for h in hrefs), hrefs
    assert any("lineage" in h for h in hrefs)


@pytest.mark.e2e
def test_report_redraws_a_run_and_says_what_is_wrong(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["1"])
    assert cli("lld-all", "--repo", str(ws), env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0"}).code == 0
    run_dir = latest_run(ws)
    (run_dir / "report.html").unlink()
    (run_dir / "summary.json").unlink()  # as after a kill -9: only the journal
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(f"#!/bin/sh\necho \"$1\" > {opened}\n", encoding="utf-8")
    browser.chmod(browser.stat().st_mode | stat.S_IEXEC)
    result = cli("report", "--repo", str(ws), "--open",
                 env={"BROWSER": f"{browser} %s", "DISPLAY": ""})
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == str(run_dir / "report.html")
    assert opened.read_text().strip() == (run_dir / "report.html").as_uri()
    assert len(bars_of(Elements((run_dir / "report.html").read_text()))) == 1
    again = cli("report", "--repo", str(ws), f"--run={run_dir.name}")
    assert again.code == 0 and again.out.strip() == str(run_dir / "report.html")
    bad = cli("report", "--repo", str(ws), "--run=../../etc")
    assert bad.code == 2 and "no run '../../etc'" in bad.err and run_dir.name in bad.err
    none = cli("report", "--repo", str(make_workspace(tmp_path / "empty")))
    assert none.code == 2 and "no run yet" in none.err
    (run_dir / "report.html").unlink()
    (run_dir / "report.html").mkdir()  # a folder where the page goes
    blocked = cli("report", "--repo", str(ws))
    assert blocked.code == 2 and "report.html" in blocked.err, blocked.err
    assert "Traceback" not in blocked.err


def test_a_report_that_cannot_be_written_is_said_and_the_run_goes_on(tmp_path: Path) -> None:
    run_dir = run_folder(tmp_path, three_items())
    (run_dir / "report.html").mkdir()  # a folder where the page goes
    said: list[str] = []
    assert draw_report(run_dir, tmp_path, said.append) is None
    assert len(said) == 1 and said[0].startswith(f"warning: cannot write {run_dir}/report.html")
    assert "assemblyzero report --run=" in said[0]
