"""Checkpoints that cannot be used: a full disk, hostile or foreign files, garbage states.

A full or failing disk leaves the checkpoint where it is (the item fails and
keeps its place); a file that is not a usable checkpoint is renamed to the
item's one aside name and the item starts over. Real SQLite, real files,
real processes; a full disk is made with RLIMIT_FSIZE (writes fail: EFBIG).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ISSUE, ROOT, Run, cli, latest_run, make_workspace, summary
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from assemblyzero import worker
from assemblyzero.ids import Kind
from assemblyzero.keys.redact import Redactor
from assemblyzero.results import Status, WorkerResult
from assemblyzero.workflow.checkpoint import Checkpoint, CheckpointUnavailable, CheckpointUnusable
from assemblyzero.workflow.checkpoint_errors import os_trouble
from assemblyzero.workflow.interrupt import Stop
from assemblyzero.workflow.state import ENDS, STEPS, state_problem
from assemblyzero.workflow.templates import load_template, render
from assemblyzero.workspace import Workspace

OWNER = "lld-41"
SIDES = ("-wal", "-shm", "-journal")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "ws", issues=["41"])


def db_of(ws: Path) -> Path:
    return ws / ".assemblyzero/checkpoints/lld-41.db"


def aside_of(ws: Path) -> Path:
    return ws / ".assemblyzero/checkpoints/lld-41.db.unreadable"


def state_at(ws: Path, step: str = "validate", **more: object) -> dict[str, object]:
    """A state the workflow really would have saved before `step` (same source text)."""
    source = Redactor()((ws / "docs/issues/active/41.md").read_text(encoding="utf-8"))
    return {"next": step, "iteration": 1, "model_calls": 1, "history": [],
            "source": source, "title": "Feature 41", "draft": "# Feature 41\n", **more}


def saved(path: Path, state: dict[str, object], step: str = "draft") -> Path:
    with Checkpoint(path, OWNER) as cp:
        cp.save(step, state)
    return path


def run_worker(ws: Path, capsys: pytest.CaptureFixture[str],
               db: Path | None = None) -> tuple[WorkerResult, str]:
    """worker.run_item in this process, as main() calls it; its output lines."""
    space = Workspace.at(ws)
    args = worker.parse_args(["--kind", "lld", "--id", "41", "--repo", str(ws),
                              "--run-dir", str(ws / "run")])
    cp = Checkpoint(db or space.checkpoint(Kind.LLD, "41"), OWNER)
    result = worker.run_item(args, space, Kind.LLD, "41", cp, Stop(), {})
    return result, capsys.readouterr().out


def leftovers(ws: Path) -> list[str]:
    folder = ws / ".assemblyzero/checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- point 4: a full disk is never mistaken for corruption -----------------------------

def limited(limit: int):  # type: ignore[no-untyped-def]
    """preexec_fn: files of the child cannot grow past `limit` bytes (EFBIG, not SIGXFSZ)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(
            resource.RLIMIT_FSIZE)[1]))
    return apply


def run_limited(argv: list[str], limit: int, db: Path | None = None) -> Run:
    env = {**os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "0"}
    if db is not None:
        env["ASSEMBLYZERO_WORKFLOW_DB"] = str(db)  # as the coordinator sets it
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          preexec_fn=limited(limit))
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.e2e
@pytest.mark.parametrize(("limit", "draft", "doing"), [
    (16384, "# Feature 41\n", "open"),  # its -shm (32 KiB) cannot be made: opening fails
    (65536, "x" * 100_000, "write"),  # opens and reads; saving the next step fails
], ids=["at-open", "at-save"])
def test_a_full_disk_leaves_the_checkpoint_in_place_and_the_item_resumes_later(
        ws: Path, limit: int, draft: str, doing: str):
    db = saved(db_of(ws), state_at(ws, draft=draft))
    before = db.read_bytes()
    run_dir = ws / "run"
    run = run_limited(["assemblyzero.worker", "--kind", "lld", "--id", "41", "--repo", str(ws),
                       "--run-dir", str(run_dir)], limit, db)
    assert run.code == 1, run.out + run.err
    assert "Traceback" not in run.out + run.err
    result = json.loads((run_dir / "results/lld-41.json").read_text())
    assert result["status"] == "failed"
    assert result["reason"].startswith(f"disk full (file size limit of {limit} bytes): "
                                       f"cannot {doing} checkpoint {db}")
    assert f"error: {result['reason']}; the checkpoint is left in place; free some space " \
           "and run retry-failed" in run.out
    assert db.read_bytes() == before  # unchanged, at its path, no aside copy
    assert not aside_of(ws).exists() and "unreadable" not in run.out
    assert not [n for n in leftovers(ws) if "unreadable" in n]
    again = run_limited(["assemblyzero.worker", "--kind", "lld", "--id", "41", "--repo",
                         str(ws), "--run-dir", str(run_dir)], resource.RLIM_INFINITY, db)
    assert again.code == 0, again.out + again.err
    assert "resuming at step 'validate'" in again.out  # it kept its place
    assert "draft: calling" not in again.out
    assert not db.exists() and leftovers(ws) == []


@pytest.mark.e2e
def test_cli_a_full_disk_fails_the_item_and_retry_failed_resumes_it(ws: Path):
    db = saved(db_of(ws), state_at(ws, "review", draft="# Feature 41\n"))
    before = db.read_bytes()
    run = run_limited(["assemblyzero", "lld-all", "--repo", str(ws)], 16384)
    assert run.code == 1, run.out + run.err
    assert "Traceback" not in run.out + run.err
    item = summary(latest_run(ws))["items"][0]
    assert item["status"] == "failed" and item["reason"].startswith("disk full")
    assert "free some space and run retry-failed" in (latest_run(ws) / "lld-41.log").read_text()
    assert db.read_bytes() == before and not aside_of(ws).exists()
    retry = run_limited(["assemblyzero", "retry-failed", "--repo", str(ws)],
                        resource.RLIM_INFINITY)
    assert retry.code == 0, retry.out + retry.err
    log = (latest_run(ws) / "lld-41.log").read_text()
    assert "resuming at step 'review'" in log and "draft: calling" not in log
    assert summary(latest_run(ws))["items"][0]["status"] == "done"
    assert (ws / "docs/lld/active/LLD-041.md").exists() and leftovers(ws) == []


def test_a_checkpoint_folder_that_cannot_be_made_fails_the_item_without_an_aside(
        ws: Path, capsys: pytest.CaptureFixture[str]):
    (ws / ".assemblyzero").mkdir()
    (ws / ".assemblyzero/checkpoints").write_text("a file where the folder goes\n")
    result, out = run_worker(ws, capsys)
    assert result.status is Status.FAILED
    assert result.reason.startswith(f"cannot open checkpoint {db_of(ws)}: ")
    assert "the checkpoint is left in place" in out and "unreadable" not in out
    assert (ws / ".assemblyzero/checkpoints").read_text() == "a file where the folder goes\n"


def test_os_errors_are_told_apart_by_errno(tmp_path: Path):
    """Real errors: ENOSPC from /dev/full, ENOENT; never from their message text."""
    with pytest.raises(OSError) as full, open("/dev/full", "wb", buffering=0) as device:
        device.write(b"x")
    assert str(os_trouble(tmp_path / "cp.db", full.value, "write")).startswith(
        f"disk full: cannot write checkpoint {tmp_path / 'cp.db'}: No space left on device")
    with pytest.raises(OSError) as missing:
        os.rename(tmp_path / "absent", tmp_path / "other")
    trouble = os_trouble(tmp_path / "cp.db", missing.value, "set aside")
    assert isinstance(trouble, CheckpointUnavailable)
    assert str(trouble).startswith("cannot set aside checkpoint")


def corrupt(ws: Path, text: bytes) -> Path:
    db = db_of(ws)
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(text * 200)
    Path(f"{db}-wal").write_bytes(b"a stale wal")
    return db


def test_three_runs_with_a_corrupt_checkpoint_leave_one_aside_copy(
        ws: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ASSEMBLYZERO_OFFLINE_LATENCY", "0")
    for n in range(3):
        corrupt(ws, f"corrupt checkpoint number {n} ".encode())
        result, out = run_worker(ws, capsys)
        assert result.status is Status.DONE, out
        assert "moved to lld-41.db.unreadable; the item starts over" in out
        assert leftovers(ws) == ["lld-41.db.unreadable"]
        assert aside_of(ws).read_bytes().startswith(f"corrupt checkpoint number {n}".encode())


@pytest.mark.e2e
def test_cli_two_runs_with_a_corrupt_checkpoint_leave_one_aside_copy(ws: Path, fast: None):
    for n in range(2):
        (ws / "docs/lld/active/LLD-041.md").unlink(missing_ok=True)  # pending again
        corrupt(ws, f"not a database, run {n} ".encode())
        run = cli("lld-all", "--repo", str(ws))
        assert run.code == 0, run.out + run.err
        log = (latest_run(ws) / "lld-41.log").read_text()
        assert f"warning: checkpoint unusable: {db_of(ws)}: " in log
        assert "moved to lld-41.db.unreadable; the item starts over" in log
        assert leftovers(ws) == ["lld-41.db.unreadable"]
        assert aside_of(ws).read_bytes().startswith(f"not a database, run {n}".encode())


# --- point 9: a checkpoint it can never use -------------------------------------------

@pytest.mark.e2e
def test_cli_an_unknown_next_step_is_set_aside_and_the_item_is_done(ws: Path, fast: None):
    saved(db_of(ws), {"next": "explode", "iteration": 1, "model_calls": 1, "history": []})
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    assert summary(latest_run(ws))["items"][0]["status"] == "done"
    log = (latest_run(ws) / "lld-41.log").read_text()
    assert (f"warning: checkpoint unusable: {db_of(ws)}: the state after step 'draft' cannot "
            "be resumed: unknown next step 'explode'") in log
    assert "moved to lld-41.db.unreadable; the item starts over" in log
    assert "KeyError" not in run.out + log
    assert leftovers(ws) == ["lld-41.db.unreadable"]
    with Checkpoint(aside_of(ws), OWNER) as kept:  # kept whole, for inspection
        assert kept.load() == ("draft", {"next": "explode", "iteration": 1, "model_calls": 1,
                                         "history": []})


BAD_STATES = {
    "unknown-step": ({"next": "explode"}, "unknown next step 'explode'"),
    "step-not-text": ({"next": ["load"]}, "unknown next step ['load']"),
    "no-next": ({"next": None}, "unknown next step None"),
    "iteration-text": ({"iteration": "2"}, "iteration is '2', not a whole number from 0"),
    "iteration-negative": ({"iteration": -1}, "iteration is -1"),
    "iteration-huge": ({"iteration": 10**30}, "iteration is 1000000000000000000000000000000"),
    "iteration-bool": ({"iteration": True}, "iteration is True"),
    "model-calls-float": ({"model_calls": 1.5}, "model_calls is 1.5, not a whole number >= 0"),
    "history-dict": ({"history": {}}, "history is not a list"),
    "history-items": ({"history": [{"findings": [3]}]}, "history is not a list"),
    "draft-missing": ({"draft": None}, "step 'validate' needs draft, missing from the state"),
    "draft-not-text": ({"draft": 5}, "not UTF-8 text: draft"),
    "surrogate": ({"source": "\ud800"}, "not UTF-8 text: source"),
    "findings": ({"findings": "Risks: more"}, "findings is not a list of text"),
    "tokens": ({"tokens": [1]}, "tokens is [1], not [input, output] counts"),
    "published": ({"published": "#3"}, "published is '#3', not a GitHub issue number"),
    "halted-no-reason": ({"next": "halted"}, "step 'halted' needs halt_reason"),
}


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_a_state_the_workflow_cannot_run_from_is_set_aside_naming_what_is_wrong(
        ws: Path, case: str, capsys: pytest.CaptureFixture[str]):
    change, why = BAD_STATES[case]
    state = {k: v for k, v in {**state_at(ws), **change}.items() if v is not None or k == "next"}
    saved(db_of(ws), state)
    assert worker._load_state(Checkpoint(db_of(ws), OWNER)) is None
    out = capsys.readouterr().out
    assert f"warning: checkpoint unusable: {db_of(ws)}: the state after step 'draft'" in out
    assert why in out and "moved to lld-41.db.unreadable; the item starts over" in out
    assert leftovers(ws) == ["lld-41.db.unreadable"]


@pytest.mark.parametrize("step", STEPS + ENDS)
def test_every_state_the_workflow_saves_passes_the_check(ws: Path, step: str):
    assert state_problem(state_at(ws, step, halt_reason="x", findings=["a"], tokens=[1, 2],
                                  published=7)) is None


def test_a_checkpoint_of_another_schema_version_is_neither_used_nor_modified(
        ws: Path, capsys: pytest.CaptureFixture[str]):
    db = saved(db_of(ws), state_at(ws))
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE meta SET value = '2' WHERE key = 'version'")
    raw.close()
    before = db.read_bytes()
    with pytest.raises(CheckpointUnusable) as caught:
        Checkpoint(db, OWNER).load()
    assert str(caught.value) == (f"{db} has checkpoint schema version '2'; this release uses 1 "
                                 "(not used, not modified)")
    assert db.read_bytes() == before
    assert worker._load_state(Checkpoint(db, OWNER)) is None
    assert "schema version '2'; this release uses 1" in capsys.readouterr().out
    assert aside_of(ws).read_bytes() == before and not db.exists()


FOREIGN = {
    "other-tables": ["CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)",
                     "INSERT INTO users VALUES (1, 'a@example.com')"],
    "meta-without-owner": [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE steps (seq INTEGER PRIMARY KEY AUTOINCREMENT, step TEXT NOT NULL, "
        "state TEXT NOT NULL, saved_at REAL NOT NULL)",
        "INSERT INTO meta VALUES ('app', 'something else')",
        "INSERT INTO steps (step, state, saved_at) VALUES ('draft', '{}', 0)"],
    "steps-other-columns": ["CREATE TABLE steps (id INTEGER, name TEXT)",
                            "INSERT INTO steps VALUES (1, 'x')"],
    "ours-plus-a-trigger": [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE steps (seq INTEGER PRIMARY KEY AUTOINCREMENT, step TEXT NOT NULL, "
        "state TEXT NOT NULL, saved_at REAL NOT NULL)",
        "INSERT INTO meta VALUES ('owner', 'lld-41'), ('version', '1')",
        "CREATE TRIGGER t AFTER INSERT ON steps BEGIN DELETE FROM meta; END"],
}


def foreign_db(path: Path, statements: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(path)  # a rollback-journal database: WAL would change its header
    with raw:
        for sql in statements:
            raw.execute(sql)
    raw.close()
    return path


@pytest.mark.parametrize("case", list(FOREIGN))
def test_a_foreign_sqlite_file_is_refused_untouched_and_renamed_never_deleted(
        ws: Path, case: str, capsys: pytest.CaptureFixture[str]):
    db = foreign_db(db_of(ws), FOREIGN[case])
    before = db.read_bytes()
    cp = Checkpoint(db, OWNER)
    with pytest.raises(CheckpointUnusable) as caught:
        cp.load()
    cp.close()
    assert str(caught.value).startswith(f"{db} is not an assemblyzero checkpoint")
    assert db.read_bytes() == before  # no table added, not switched to WAL
    assert not any(Path(f"{db}{s}").exists() for s in SIDES)
    result, out = run_worker(ws, capsys)
    assert result.status is Status.DONE, out
    assert "is not an assemblyzero checkpoint" in out and "moved to lld-41.db.unreadable" in out
    assert aside_of(ws).read_bytes() == before and leftovers(ws) == ["lld-41.db.unreadable"]


@pytest.mark.e2e
def test_cli_a_foreign_sqlite_file_survives_a_successful_run(ws: Path, fast: None):
    before = foreign_db(db_of(ws), FOREIGN["other-tables"]).read_bytes()
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    assert "is not an assemblyzero checkpoint (it holds users)" in (
        latest_run(ws) / "lld-41.log").read_text()
    assert aside_of(ws).read_bytes() == before and leftovers(ws) == ["lld-41.db.unreadable"]


# --- point 1 part: symlinks and the checkpoint folder ------------------------------------

def precious(tmp_path: Path, content: bytes = b"precious, outside the workspace\n") -> Path:
    target = tmp_path / "outside" / "precious.db"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(content)
    return target


@pytest.mark.parametrize("points_at", ["dangling", "a-file", "a-checkpoint"])
def test_a_symlinked_checkpoint_is_renamed_and_its_target_never_opened(
        ws: Path, tmp_path: Path, points_at: str, capsys: pytest.CaptureFixture[str]):
    target = tmp_path / "outside" / "precious.db"
    target.parent.mkdir()
    if points_at == "a-file":
        precious(tmp_path)
    elif points_at == "a-checkpoint":  # ours, same owner: following it would resume it
        saved(target, state_at(ws, "finalize"))
    before = target.read_bytes() if target.exists() else None
    mtime = target.stat().st_mtime_ns if target.exists() else None
    db = db_of(ws)
    db.parent.mkdir(parents=True)
    db.symlink_to(target)
    assert worker._load_state(Checkpoint(db, OWNER)) is None
    out = capsys.readouterr().out
    assert f"{db} is a symlink (to {target})" in out and "moved to lld-41.db.unreadable" in out
    assert os.readlink(aside_of(ws)) == str(target) and not os.path.lexists(db)
    if before is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == before and target.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in target.parent.iterdir()) == (
        [] if before is None else ["precious.db"])  # no -wal/-shm made next to it


@pytest.mark.e2e
def test_cli_a_symlinked_checkpoint_is_set_aside_and_the_item_is_done(
        ws: Path, tmp_path: Path, fast: None):
    target = precious(tmp_path)
    db_of(ws).parent.mkdir(parents=True)
    db_of(ws).symlink_to(target)
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    assert "is a symlink" in (latest_run(ws) / "lld-41.log").read_text()
    assert target.read_bytes() == b"precious, outside the workspace\n"
    assert leftovers(ws) == ["lld-41.db.unreadable"] and aside_of(ws).is_symlink()


@pytest.mark.parametrize("side", SIDES)
def test_a_symlinked_side_file_is_removed_never_followed(ws: Path, tmp_path: Path, side: str):
    db = saved(db_of(ws), state_at(ws))
    target = precious(tmp_path)
    Path(f"{db}{side}").symlink_to(target)
    with Checkpoint(db, OWNER) as cp:
        assert cp.load() is not None
        cp.save("validate", state_at(ws, "review"))
    assert not os.path.lexists(f"{db}{side}")
    assert target.read_bytes() == b"precious, outside the workspace\n"
    with Checkpoint(db, OWNER) as cp:
        assert cp.steps() == ["draft", "validate"]


def test_set_aside_renames_the_link_not_its_target(ws: Path, tmp_path: Path):
    target = precious(tmp_path)
    db = db_of(ws)
    db.parent.mkdir(parents=True)
    db.symlink_to(target)
    Path(f"{db}-wal").symlink_to(target)
    aside = Checkpoint(db, OWNER).set_aside()
    assert aside == aside_of(ws) and os.readlink(aside) == str(target)
    assert target.read_bytes() == b"precious, outside the workspace\n"
    assert leftovers(ws) == ["lld-41.db.unreadable"]


@pytest.mark.parametrize("what", ["directory", "hard-link", "side-directory"])
def test_a_checkpoint_that_is_not_one_plain_file_is_set_aside(
        ws: Path, tmp_path: Path, what: str, capsys: pytest.CaptureFixture[str]):
    db = db_of(ws)
    db.parent.mkdir(parents=True)
    if what == "directory":
        db.mkdir()
        (db / "inside.txt").write_text("x")
    elif what == "hard-link":
        other = saved(precious(tmp_path).with_name("other.db"), state_at(ws))
        kept = other.read_bytes()
        os.link(other, db)
    else:
        saved(db, state_at(ws))
        Path(f"{db}-wal").mkdir()
    result, out = run_worker(ws, capsys)
    assert result.status is Status.DONE, out
    assert "warning: checkpoint unusable" in out and "moved to lld-41.db.unreadable" in out
    assert not os.path.lexists(db) and not os.path.lexists(f"{db}-wal")
    if what == "hard-link":
        assert other.read_bytes() == kept  # never written through the other name


def test_a_checkpoint_folder_leading_outside_the_workspace_is_refused(
        ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (ws / ".assemblyzero").mkdir()
    (ws / ".assemblyzero/checkpoints").symlink_to(outside)
    result, out = run_worker(ws, capsys)
    assert result.status is Status.FAILED
    assert result.reason == (f"cannot open checkpoint {db_of(ws)}: its folder leads outside "
                             f"the workspace (to {outside})")
    assert "the checkpoint is left in place; make it a real folder" in out
    assert list(outside.iterdir()) == []  # nothing created, opened or moved there


def test_a_workflow_db_outside_the_workspace_is_refused(
        ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    elsewhere = tmp_path / "elsewhere" / "lld-41.db"
    result, _ = run_worker(ws, capsys, db=elsewhere)
    assert result.status is Status.FAILED and "leads outside the workspace" in result.reason
    assert not elsewhere.parent.exists()


# --- property: garbage states either resume or are set aside, cleanly ---------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)
TEXT = st.text(max_size=30) | JSON
NEAR_VALID = st.fixed_dictionaries({}, optional={
    "next": st.sampled_from(STEPS + ENDS + ("explode", "")) | JSON,
    "iteration": st.integers(-1, 5) | JSON, "model_calls": st.integers(-1, 9) | JSON,
    "history": st.lists(st.fixed_dictionaries({"findings": st.lists(TEXT, max_size=2)}),
                        max_size=2) | JSON,
    "source": TEXT, "title": TEXT, "draft": TEXT, "halt_reason": TEXT,
    "findings": st.lists(TEXT, max_size=2) | JSON,
    "tokens": st.lists(st.integers(-1, 9), max_size=3) | JSON, "published": JSON,
})
ROW = (st.builds(json.dumps, NEAR_VALID | JSON) | st.text(max_size=20) | st.binary(max_size=20)
       | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False))
QUICK = settings(deadline=None, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def with_last_row(ws: Path, row: object) -> None:
    """A real checkpoint of the item whose last step's state column holds `row`."""
    for name in leftovers(ws):
        os.unlink(ws / ".assemblyzero/checkpoints" / name)
    saved(db_of(ws), state_at(ws))
    with sqlite3.connect(db_of(ws)) as raw:
        raw.execute("INSERT INTO steps (step, state, saved_at) VALUES ('x', ?, 0)", (row,))
    raw.close()


@settings(QUICK, max_examples=50)
@given(row=ROW)
def test_garbage_states_are_resumed_or_set_aside_and_nothing_else(
        ws: Path, capsys: pytest.CaptureFixture[str], row: object):
    with_last_row(ws, row)
    try:
        parsed = json.loads(row)  # type: ignore[arg-type]
    except (TypeError, ValueError, RecursionError):
        parsed = None
    state = worker._load_state(Checkpoint(db_of(ws), OWNER))  # raises nothing
    out = capsys.readouterr().out
    if state_problem(parsed) is None:
        assert state == parsed and out == "" and leftovers(ws) == ["lld-41.db"]
    else:
        assert state is None
        assert out.startswith(f"warning: checkpoint unusable: {db_of(ws)}: ")
        assert out.endswith("; moved to lld-41.db.unreadable; the item starts over\n")
        assert leftovers(ws) == ["lld-41.db.unreadable"]


SOURCE = Redactor()(ISSUE.format(title="Feature 41", what="feature 41", noun="entry"))
LLD_SECTIONS = load_template(Kind.LLD).sections
FULL_DRAFT = render("Feature 41", {name: f"{name} text." for name in LLD_SECTIONS}, LLD_SECTIONS)
ANY_TEXT = st.text(max_size=20)
RESUMABLE = st.fixed_dictionaries({
    "next": st.sampled_from(STEPS + ENDS), "iteration": st.integers(0, 12),
    "model_calls": st.integers(0, 30),
    "history": st.lists(st.fixed_dictionaries({"findings": st.lists(ANY_TEXT, max_size=2)}),
                        max_size=2),
    "title": ANY_TEXT, "draft": st.sampled_from([FULL_DRAFT, "# Feature 41\n"]) | ANY_TEXT,
    "halt_reason": ANY_TEXT,
}, optional={
    "source": st.just(SOURCE) | ANY_TEXT,
    "findings": st.lists(ANY_TEXT, max_size=2),
    "tokens": st.lists(st.integers(0, 10**6), min_size=2, max_size=2),
    "published": st.integers(1, 10**6),
})


@settings(QUICK, max_examples=15)
@given(state=RESUMABLE)
def test_every_state_that_passes_the_check_runs_to_an_end(
        ws: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        state: dict[str, object]):
    """What the check lets through never fails the item (no KeyError, no TypeError)."""
    assume(state_problem(state) is None)  # without a source, only load and draft can run
    monkeypatch.setenv("ASSEMBLYZERO_OFFLINE_LATENCY", "0")
    with_last_row(ws, json.dumps(state))
    result, out = run_worker(ws, capsys)
    assert result.status in (Status.DONE, Status.HALTED), (state, out)
    assert "checkpoint unusable" not in out
    assert "resuming at step" in out or "the input changed since the checkpoint" in out
