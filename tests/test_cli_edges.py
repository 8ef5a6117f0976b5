"""Bad input and broken surroundings: a clear message, no traceback, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, latest_run, make_workspace, summary

pytestmark = pytest.mark.e2e  # every test here starts real processes


def test_issue_all_never_overwrites_an_existing_issue_or_done_brief(tmp_path: Path, fast: None):
    ws = make_workspace(tmp_path / "ws", issues=["101"], briefs=["101", "photos"])
    mine = (ws / "docs/issues/active/101.md").read_text()
    (ws / "ideas/done").mkdir(parents=True)
    (ws / "ideas/done/photos.md").write_text("an older brief with the same name\n")
    run = cli("issue-all", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    assert (ws / "docs/issues/active/101.md").read_text() == mine
    assert "skipped 101.md: docs/issues/active/101.md already exists" in run.out
    assert (ws / "ideas/active/101.md").exists()
    assert (ws / "ideas/done/photos.md").read_text() == "an older brief with the same name\n"
    assert (ws / "ideas/done/photos.2.md").exists()
    assert (ws / "docs/issues/active/photos.md").exists()


def test_a_closed_terminal_does_not_orphan_workers_or_lose_the_summary(ws: Path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", "--parallel=3", "--repo", str(ws)],
        env={**os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "0.1"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    assert proc.wait(timeout=60) == 0
    data = summary(latest_run(ws))
    assert data["counts"]["done"] == 6 and data["exit_code"] == 0
    assert len(list((ws / "docs/lld/active").glob("LLD-*.md"))) == 6


def test_an_unwritable_status_index_warns_but_the_item_is_done(tmp_path: Path, fast: None):
    ws = make_workspace(tmp_path / "ws", issues=["101"])
    (ws / "docs/lld/status.json").mkdir(parents=True)
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    assert "warning: could not update" in (latest_run(ws) / "lld-101.log").read_text()
    assert [i["status"] for i in summary(latest_run(ws))["items"]] == ["done"]
    assert not (ws / ".assemblyzero/checkpoints/lld-101.db").exists()


def test_an_empty_only_is_a_usage_error_not_the_whole_backlog(ws: Path):
    for flag in ("--only=", "--only=,"):
        run = cli("lld-all", flag, "--repo", str(ws))
        assert run.code == 2 and "--only needs at least one id" in run.err
    assert not (ws / "docs/lld/active").exists()


def test_one_item_tasks_refuse_bad_ids_and_report_items_with_nothing_to_do(ws: Path, fast: None):
    bad = cli("lld", "--id=../../etc/passwd", "--repo", str(ws))
    assert bad.code == 2 and "invalid id" in bad.err
    missing = cli("lld", "--id=999", "--repo", str(ws))
    assert missing.code == 1 and "LLD-999: nothing to do" in missing.err
    assert cli("lld", "--id=41", "--repo", str(ws)).code == 0
    again = cli("lld", "--id=41", "--repo", str(ws))
    assert again.code == 1 and "docs/lld/active/LLD-041.md exists" in again.err


def test_two_runs_in_one_command_get_two_run_folders(ws: Path, fast: None):
    run = cli("lld", "--id=41", "--repo", str(ws), "lld", "--id=42", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    runs = sorted(p for p in (ws / "logs/parallel").iterdir() if not p.is_symlink())
    assert len(runs) == 2
    assert [[i["id"] for i in summary(r)["items"]] for r in runs] == [["41"], ["42"]]


def test_workspace_folders_that_are_files_give_a_clear_error(ws: Path):
    (ws / "logs").write_text("not a folder")
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 2 and run.err.startswith("error: ") and "Traceback" not in run.err


def test_a_pyproject_that_is_not_utf8_is_a_usage_error(ws: Path):
    (ws / "pyproject.toml").write_bytes(b"[tool.assemblyzero]\ndrafter = '\xff'\n")
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 2 and "pyproject.toml" in run.err and "Traceback" not in run.err


def test_an_issue_that_is_not_utf8_or_empty_still_gets_an_lld(tmp_path: Path, fast: None):
    ws = make_workspace(tmp_path / "ws")
    (ws / "docs/issues/active").mkdir(parents=True)
    (ws / "docs/issues/active/1.md").write_bytes(b"# Caf\xe9 menu\n\nLatin-1 text \xe9\n")
    (ws / "docs/issues/active/2.md").write_text("")
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    assert "Caf\ufffd menu" in (ws / "docs/lld/active/LLD-001.md").read_text()
    assert (ws / "docs/lld/active/LLD-002.md").exists()


def test_a_halted_item_keeps_its_checkpoint_and_reruns_cost_nothing_until_its_input_changes(
        ws: Path, fast: None):
    env = {"ASSEMBLYZERO_OFFLINE_APPROVE_AT": "99"}
    first = cli("lld-all", "--repo", str(ws), "--only=41", "--max-iterations=1", env=env)
    assert first.code == 1
    assert [i["status"] for i in summary(latest_run(ws))["items"]] == ["halted"]
    assert (ws / ".assemblyzero/checkpoints/lld-41.db").exists()
    index = json.loads((ws / "docs/lld/status.json").read_text())
    assert index["items"]["41"]["status"] == "halted"
    again = cli("lld-all", "--repo", str(ws), "--only=41", "--max-iterations=1", env=env)
    assert again.code == 1
    item = summary(latest_run(ws))["items"][0]
    assert item["status"] == "halted"
    assert ": calling " not in (latest_run(ws) / "lld-41.log").read_text()
    issue = ws / "docs/issues/active/41.md"
    issue.write_text(issue.read_text() + "\nClarified by a human.\n")
    fixed = cli("lld-all", "--repo", str(ws), "--only=41")
    assert fixed.code == 0, fixed.out
    assert "the input changed since the checkpoint" in (latest_run(ws) / "lld-41.log").read_text()


def test_an_unreadable_checkpoint_is_set_aside_and_its_item_restarts(ws: Path, fast: None):
    db = ws / ".assemblyzero/checkpoints/lld-41.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database" * 100)
    run = cli("lld-all", "--repo", str(ws), "--only=41")
    assert run.code == 0, run.out + run.err
    log = (latest_run(ws) / "lld-41.log").read_text()
    assert "checkpoint unusable" in log and "the item starts over" in log
    assert (ws / "docs/lld/active/LLD-041.md").exists()
    kept = list(db.parent.glob("lld-41.db.unreadable*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not")
