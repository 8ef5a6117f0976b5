"""`docs/lld/status.json`: updated under a lock by many workers, rebuilt when corrupt."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from assemblyzero.ids import Kind
from assemblyzero.workflow.lld_index import INDEX_VERSION, rebuild, record
from assemblyzero.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    return Workspace.at(root)


def approved_lld(ws: Workspace, item_id: str) -> Path:
    """The issue `item_id` and its approved LLD, as a finished LLD workflow leaves them."""
    issue = ws.issues / f"{item_id}.md"
    issue.parent.mkdir(parents=True, exist_ok=True)
    issue.write_text(f"# Issue {item_id}\n", encoding="utf-8")
    path = ws.output_file(Kind.LLD, item_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {path.stem}\n", encoding="utf-8")
    return path


def on_disk(ws: Workspace) -> dict:  # type: ignore[type-arg]
    return json.loads(ws.status_index.read_text(encoding="utf-8"))


def test_record_creates_the_index(ws: Workspace):
    assert not ws.status_index.exists()
    returned = record(ws, "42", "approved", iterations=2, file="docs/lld/active/LLD-042.md")
    data = on_disk(ws)
    assert data == returned
    assert data["version"] == INDEX_VERSION
    entry = data["items"]["42"]
    assert entry["status"] == "approved"
    assert entry["iterations"] == 2 and entry["file"] == "docs/lld/active/LLD-042.md"
    assert entry["updated"]


def test_record_keeps_other_entries_and_replaces_its_own(ws: Workspace):
    record(ws, "41", "failed", reason="boom")
    record(ws, "42", "halted")
    record(ws, "41", "approved", iterations=3)
    items = on_disk(ws)["items"]
    assert sorted(items) == ["41", "42"]
    assert items["41"]["status"] == "approved" and "reason" not in items["41"]
    assert items["42"]["status"] == "halted"


def test_a_missing_index_starts_from_the_llds_on_disk_without_a_warning(
        ws: Workspace, capsys: pytest.CaptureFixture[str]):
    approved_lld(ws, "7")
    record(ws, "8", "failed")
    items = on_disk(ws)["items"]
    assert items["7"]["status"] == "approved" and items["7"]["rebuilt"] is True
    assert items["8"]["status"] == "failed"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("content", ['{"version": 1, "items": {"4', "", "\x00\x00\x00",
                                     "[1, 2, 3]", '"just a string"'])
def test_a_corrupt_index_is_rebuilt_from_the_lld_files_with_a_warning(
        ws: Workspace, capsys: pytest.CaptureFixture[str], content: str):
    approved_lld(ws, "41")
    approved_lld(ws, "auth")
    ws.status_index.write_text(content, encoding="utf-8")
    record(ws, "43", "failed", reason="simulated")
    items = on_disk(ws)["items"]
    assert sorted(items) == ["41", "43", "auth"]
    assert items["41"] == {**items["41"], "status": "approved",
                           "file": "docs/lld/active/LLD-041.md", "rebuilt": True}
    assert items["auth"]["file"] == "docs/lld/active/LLD-auth.md"
    assert items["43"]["status"] == "failed"
    err = capsys.readouterr().err
    assert f"warning: {ws.status_index}" in err
    assert "rebuilding it" in err


def test_rebuild_lists_every_approved_lld(ws: Workspace):
    approved_lld(ws, "42")
    approved_lld(ws, "1234")
    approved_lld(ws, "receipt-photos")
    (ws.llds / "notes.md").write_text("not an LLD\n")
    (ws.issues / "43.md").write_text("# Issue 43, no LLD yet\n")
    data = rebuild(ws)
    assert data["version"] == INDEX_VERSION
    assert sorted(data["items"]) == ["1234", "42", "receipt-photos"]
    assert {e["status"] for e in data["items"].values()} == {"approved"}
    assert data["items"]["42"]["file"] == "docs/lld/active/LLD-042.md"


def test_rebuild_of_a_workspace_without_llds_is_empty(ws: Workspace):
    assert rebuild(ws) == {"version": INDEX_VERSION, "items": {}}


# --- a real concurrency test: 8 processes, one index --------------------------------

WRITER = textwrap.dedent("""
    import fcntl, sys
    from assemblyzero.workflow.lld_index import record
    from assemblyzero.workspace import Workspace

    root, start, worker, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ws = Workspace.at(root)
    with open(start) as gate:
        print("ready", flush=True)
        fcntl.flock(gate, fcntl.LOCK_SH)  # blocks while the parent holds LOCK_EX
        fcntl.flock(gate, fcntl.LOCK_UN)
    for n in range(count):
        record(ws, f"w{worker}-{n}", "approved", worker=worker)
""")

WORKERS, PER_WORKER = 8, 25


@pytest.mark.e2e
def test_concurrent_writers_lose_no_update(ws: Workspace, tmp_path: Path):
    start = tmp_path / "start"
    start.touch()
    with open(start) as gate:
        fcntl.flock(gate, fcntl.LOCK_EX)  # the common start: released once all are ready
        children = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(ws.root), str(start), str(k),
                 str(PER_WORKER)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )
            for k in range(WORKERS)
        ]
        try:
            for child in children:
                assert child.stdout is not None
                line = child.stdout.readline()
                assert line == "ready\n", child.communicate(timeout=60)[1]
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
    errors = []
    for child in children:
        _, err = child.communicate(timeout=60)
        if child.returncode != 0 or err:
            errors.append((child.returncode, err))
    assert errors == []
    items = on_disk(ws)["items"]
    expected = {f"w{k}-{n}" for k in range(WORKERS) for n in range(PER_WORKER)}
    assert len(expected) == 200
    assert set(items) == expected
    assert all(items[f"w{k}-{n}"]["worker"] == str(k)
               for k in range(WORKERS) for n in range(PER_WORKER))
    assert not list(ws.status_index.parent.glob(".status.json.*.tmp"))


@pytest.mark.parametrize("items", [{}, [], "x", None])
def test_an_emptied_or_mistyped_items_list_is_rebuilt_from_disk(ws: Workspace, items: object):
    approved_lld(ws, "41")
    ws.status_index.parent.mkdir(parents=True, exist_ok=True)
    ws.status_index.write_text(json.dumps({"version": INDEX_VERSION, "items": items}))
    record(ws, "42", "failed", reason="boom")
    entries = on_disk(ws)["items"]
    assert entries["41"]["status"] == "approved" and entries["41"]["rebuilt"] is True
    assert entries["42"]["status"] == "failed"


def test_a_status_index_symlinked_out_of_the_workspace_is_not_read(ws: Workspace,
                                                                  tmp_path: Path):
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"items": {"41": {"status": "approved", "secret": "x"}}}))
    ws.status_index.parent.mkdir(parents=True, exist_ok=True)
    ws.status_index.symlink_to(outside)
    record(ws, "42", "failed")
    assert "41" not in on_disk(ws)["items"]  # the outside file was not taken in
    assert not ws.status_index.is_symlink()  # replaced by a real file, the target untouched
    assert json.loads(outside.read_text())["items"]["41"]["secret"] == "x"
