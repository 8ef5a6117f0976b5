"""The per-item SQLite checkpoint: one row per completed step, resumable, corruption-aware."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from assemblyzero.workflow.checkpoint import Checkpoint, CheckpointError, CheckpointUnusable

OWNER = "lld-42"


def side_files(path: Path) -> list[Path]:
    return [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-journal")]


def filled_db(path: Path, rows: int = 50) -> Path:
    """A real, cleanly closed checkpoint with `rows` steps of ~500 bytes each."""
    with Checkpoint(path, OWNER) as cp:
        for n in range(rows):
            cp.save(f"step-{n}", {"n": n, "pad": "x" * 500})
    assert not any(p.exists() for p in side_files(path))
    return path


def test_fresh_checkpoint_loads_none(tmp_path: Path):
    with Checkpoint(tmp_path / "cp.db", OWNER) as cp:
        assert cp.load() is None
        assert cp.steps() == []


def test_creates_missing_parent_folders(tmp_path: Path):
    path = tmp_path / "a" / "b" / "cp.db"
    with Checkpoint(path, OWNER) as cp:
        cp.save("load", {})
    assert path.is_file()


def test_save_load_round_trip_returns_the_last_step(tmp_path: Path):
    state = {"next": "review", "iteration": 2, "history": [{"findings": ["a", "b"]}],
             "text": "ünïcode ✓"}
    with Checkpoint(tmp_path / "cp.db", OWNER) as cp:
        cp.save("load", {"next": "draft"})
        cp.save("draft", {"next": "validate"})
        cp.save("validate", state)
        assert cp.load() == ("validate", state)


def test_a_new_checkpoint_object_on_the_same_file_resumes(tmp_path: Path):
    path = tmp_path / "cp.db"
    first = Checkpoint(path, OWNER)
    first.save("load", {"next": "draft"})
    first.save("draft", {"next": "validate", "draft": "# Doc"})
    first.close()
    with Checkpoint(path, OWNER) as second:
        assert second.load() == ("draft", {"next": "validate", "draft": "# Doc"})
        second.save("validate", {"next": "review"})
    with Checkpoint(path, OWNER) as third:
        assert third.load() == ("validate", {"next": "review"})


def test_steps_are_listed_oldest_first(tmp_path: Path):
    names = ["load", "draft", "validate", "review", "revise", "validate", "review"]
    with Checkpoint(tmp_path / "cp.db", OWNER) as cp:
        for name in names:
            cp.save(name, {})
        assert cp.steps() == names


def test_delete_removes_the_db_and_its_wal_and_shm_files(tmp_path: Path):
    path = tmp_path / "cp.db"
    cp = Checkpoint(path, OWNER)
    cp.save("load", {"next": "draft"})
    # A second connection keeps SQLite from folding the WAL away when `cp` closes.
    other = sqlite3.connect(path)
    try:
        other.execute("SELECT count(*) FROM steps").fetchone()
        assert Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
        cp.delete()
        assert not path.exists()
        assert not any(p.exists() for p in side_files(path))
    finally:
        other.close()
    assert not path.exists() and not any(p.exists() for p in side_files(path))


def test_delete_of_a_missing_checkpoint_is_fine(tmp_path: Path):
    Checkpoint(tmp_path / "never.db", OWNER).delete()


def test_a_db_owned_by_another_item_raises(tmp_path: Path):
    path = tmp_path / "cp.db"
    with Checkpoint(path, "lld-41") as cp:
        cp.save("load", {})
    with pytest.raises(CheckpointUnusable) as caught:
        Checkpoint(path, "lld-42").load()
    message = str(caught.value)
    assert str(path) in message
    assert "'lld-41'" in message and "'lld-42'" in message
    with Checkpoint(path, "lld-41") as cp:  # the owner's data is untouched
        assert cp.load() == ("load", {})


# --- corrupt files -----------------------------------------------------------

def random_bytes_db(path: Path) -> Path:
    path.write_bytes(random.Random(1234).randbytes(16384))
    return path


def truncated_db(path: Path) -> Path:
    filled_db(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("make", [random_bytes_db, truncated_db], ids=["random", "truncated"])
@pytest.mark.parametrize("method", ["load", "steps", "save"])
def test_a_corrupt_file_raises_checkpoint_error_naming_the_path(tmp_path: Path, make, method):
    path = make(tmp_path / "cp.db")
    cp = Checkpoint(path, OWNER)
    call = {"load": cp.load, "steps": cp.steps, "save": lambda: cp.save("x", {})}[method]
    with pytest.raises(CheckpointUnusable) as caught:  # the file, not the disk: set aside
        call()
    assert str(path) in str(caught.value)
    cp.close()


@pytest.mark.parametrize("make", [random_bytes_db, truncated_db], ids=["random", "truncated"])
def test_set_aside_moves_a_corrupt_file_away_and_a_fresh_checkpoint_works(tmp_path: Path, make):
    path = make(tmp_path / "cp.db")
    original = path.read_bytes()
    Path(f"{path}-wal").write_bytes(b"stale wal")
    Path(f"{path}-shm").write_bytes(b"stale shm")
    cp = Checkpoint(path, OWNER)
    with pytest.raises(CheckpointError):
        cp.load()
    target = cp.set_aside()
    assert target == path.with_name("cp.db.unreadable")
    assert target.read_bytes() == original
    assert not Path(f"{target}-shm").exists()
    assert not path.exists() and not any(p.exists() for p in side_files(path))
    with Checkpoint(path, OWNER) as fresh:
        assert fresh.load() is None
        fresh.save("load", {"next": "draft"})
        assert fresh.load() == ("load", {"next": "draft"})


def test_a_state_that_is_not_an_object_raises(tmp_path: Path):
    path = tmp_path / "cp.db"
    with Checkpoint(path, OWNER) as cp:
        cp.save("load", {})
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO steps (step, state, saved_at) VALUES ('draft', '[1, 2]', 0)")
    db.close()
    with Checkpoint(path, OWNER) as cp, pytest.raises(CheckpointUnusable) as caught:
        cp.load()
    assert str(path) in str(caught.value) and "'draft'" in str(caught.value)


def damaged_page(path: Path, sql: str) -> Path:
    """`path` (a filled db) with the page found by `sql` overwritten with zeros."""
    with sqlite3.connect(path) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        page = db.execute(sql).fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    data[(page - 1) * page_size: page * page_size] = bytes(page_size)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("method", "sql"), [
    ("save", "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_sequence'"),
    ("steps", "SELECT min(pageno) FROM dbstat WHERE name = 'steps' AND pagetype = 'leaf'"),
])
def test_a_damaged_data_page_raises_checkpoint_error_from_every_method(tmp_path: Path,
                                                                       method: str, sql: str):
    """Not only load(): a worker sets aside only what raises CheckpointError."""
    path = damaged_page(filled_db(tmp_path / "cp.db"), sql)
    with Checkpoint(path, OWNER) as cp:
        assert cp.load() is not None  # the last row is still readable
        call = {"steps": cp.steps, "save": lambda: cp.save("x", {})}[method]
        with pytest.raises(CheckpointUnusable) as caught:
            call()
        assert str(path) in str(caught.value)


def test_a_second_set_aside_replaces_the_first_and_its_side_files(tmp_path: Path):
    """At most one aside copy per item, ever: the newest, with its own side files only."""
    (tmp_path / "cp").mkdir()
    path = tmp_path / "cp" / "cp.db"
    path.write_bytes(b"first corrupt file" * 100)
    Path(f"{path}-wal").write_bytes(b"first wal")
    first = Checkpoint(path, OWNER).set_aside()
    assert first is not None and Path(f"{first}-wal").read_bytes() == b"first wal"
    path.write_bytes(b"second corrupt file" * 100)
    second = Checkpoint(path, OWNER).set_aside()
    assert second == first == path.with_name("cp.db.unreadable")
    assert second.read_bytes() == b"second corrupt file" * 100
    assert not Path(f"{second}-wal").exists()  # the first one's WAL went with it
    assert sorted(p.name for p in path.parent.iterdir()) == ["cp.db.unreadable"]


def test_set_aside_with_nothing_there_moves_nothing(tmp_path: Path):
    path = tmp_path / "cp.db"
    path.with_name("cp.db.unreadable").write_bytes(b"an older aside")
    assert Checkpoint(path, OWNER).set_aside() is None
    assert path.with_name("cp.db.unreadable").read_bytes() == b"an older aside"


# --- a real process killed with SIGKILL ----------------------------------------

CHILD = textwrap.dedent("""
    import sqlite3, sys
    from pathlib import Path
    from assemblyzero.workflow.checkpoint import Checkpoint

    path, mode = Path(sys.argv[1]), sys.argv[2]
    cp = Checkpoint(path, "lld-42")
    cp.save("load", {"next": "draft", "n": 1})
    cp.save("draft", {"next": "validate", "n": 2})
    if mode == "mid-transaction":  # a third step begun, never committed
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO steps (step, state, saved_at) VALUES ('validate', '{}', 0)")
    print("saved", flush=True)
    sys.stdin.read()  # wait here until killed
""")


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["idle", "mid-transaction"])
def test_sigkilled_child_leaves_its_last_committed_step(tmp_path: Path, mode: str):
    path = tmp_path / "cp.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "saved\n"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    with Checkpoint(path, OWNER) as cp:
        assert cp.load() == ("draft", {"next": "validate", "n": 2})
        assert cp.steps() == ["load", "draft"]
        cp.save("validate", {"next": "review"})  # and the file is still writable
        assert cp.load() == ("validate", {"next": "review"})
