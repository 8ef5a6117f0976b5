"""A workspace nobody vetted: symlinks out of it, hostile names and titles, keys in specs.

Issue 12, through the real CLI: nothing is read or written outside the
workspace, no secret reaches an output, no name drives the terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, driver, latest_run, make_workspace, summary

pytestmark = pytest.mark.e2e  # every test here starts real processes

SECRET_TEXT = "root:x:0:0:the-private-key-material-nobody-may-read"
KEY = "sk-ant-api03-" + "Q" * 40  # a key shape, as a user might paste one into a spec


def _outside(tmp_path: Path) -> Path:
    """A folder beside the workspace, holding a file the workspace must never read."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "id_ed25519").write_text(SECRET_TEXT + "\n")
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _everything(ws: Path) -> str:
    """Every byte the run left in the workspace, as text (links not followed)."""
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in ws.rglob("*")
                     if p.is_file() and not p.is_symlink())


def test_an_input_symlinked_out_of_the_workspace_is_skipped_and_never_read(
        tmp_path: Path, fast: None) -> None:
    out = _outside(tmp_path)
    ws = make_workspace(tmp_path / "ws", issues=["41", "42"])
    active = ws / "docs/issues/active"
    (active / "passwd.md").symlink_to(out / "id_ed25519")
    (active / "gone.md").symlink_to("nothing-here.md")  # dangling
    (active / "alias.md").symlink_to("42.md")  # inside to inside: fine
    before = _snapshot(out)
    plan = cli("dry-run", "--kind=lld", "--repo", str(ws))
    assert plan.code == 0, plan.out + plan.err
    assert f"skipped passwd.md: it leads outside the workspace (to {out / 'id_ed25519'})" \
        in plan.out
    assert "skipped gone.md: it is a dangling symlink" in plan.out
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    assert f"skipped passwd.md: it leads outside the workspace (to {out / 'id_ed25519'})" \
        in run.out
    statuses = {i["tag"]: i["status"] for i in summary(latest_run(ws))["items"]}
    assert statuses == {"LLD-041": "done", "LLD-042": "done", "LLD-alias": "done",
                        "passwd.md": "skipped", "gone.md": "skipped"}
    assert not (ws / "docs/lld/active/LLD-passwd.md").exists()
    assert SECRET_TEXT not in _everything(ws) + run.out + run.err
    assert _snapshot(out) == before


@pytest.mark.parametrize("folder", ["docs/lld/active", "docs/lineage", "logs/parallel",
                                    ".assemblyzero/checkpoints", ".assemblyzero/locks",
                                    ".assemblyzero"])
def test_an_output_folder_symlinked_out_of_the_workspace_stops_the_run_before_any_worker(
        tmp_path: Path, folder: str) -> None:
    out = _outside(tmp_path)
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    (ws / folder).parent.mkdir(parents=True, exist_ok=True)
    (ws / folder).symlink_to(out)
    before = _snapshot(out)
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 2, run.out + run.err
    assert f"{folder} leads outside the workspace (to {out})" in run.err
    assert "replace the symlink with a real folder" in run.err and "Traceback" not in run.err
    assert run.out == ""  # no worker, no run
    plan = cli("dry-run", "--repo", str(ws))
    assert plan.code == 2 and f"{folder} leads outside the workspace" in plan.out
    assert _snapshot(out) == before
    assert not (ws / "docs/lld/active/LLD-041.md").exists()


def test_a_symlinked_item_folder_or_dangling_state_link_writes_nothing_outside(
        tmp_path: Path, fast: None) -> None:
    out = _outside(tmp_path)
    ws = make_workspace(tmp_path / "ws", issues=["41", "42", "43"])
    (ws / "docs/lineage").mkdir(parents=True)
    (ws / "docs/lineage/lld-41").symlink_to(out)  # one item's lineage folder
    (ws / ".assemblyzero/locks").mkdir(parents=True)
    (ws / ".assemblyzero/locks/lld-42.lock").symlink_to(out / "created-by-lock")
    (ws / ".assemblyzero/.gitignore").symlink_to(out / "created-by-gitignore")
    before = _snapshot(out)
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 1, run.out + run.err
    items = {i["id"]: i for i in summary(latest_run(ws))["items"]}
    assert items["43"]["status"] == "done"
    assert items["41"]["status"] == "failed"
    assert "docs/lineage/lld-41 leads outside the workspace" in items["41"]["reason"]
    assert items["41"]["model_calls"] == 0  # found before any paid call
    assert items["42"]["status"] == "failed" and "could not start" in items["42"]["reason"]
    assert "lld-42.lock is a symlink, which is never followed: remove it" in run.out
    assert _snapshot(out) == before  # no lineage, no lock file, no .gitignore out there
    assert not (out / "created-by-lock").exists() and not (out / "created-by-gitignore").exists()


def test_a_key_in_a_model_spec_reaches_no_output_and_no_worker_argv(
        tmp_path: Path, fast: None) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    seen = tmp_path / "worker-argv.txt"
    reviewer = tmp_path / "reviewer.py"
    reviewer.write_text(
        "import os, sys\n"
        "sys.stdin.read()\n"
        f"with open({str(seen)!r}, 'ab') as out:\n"
        "    out.write(open(f'/proc/{os.getppid()}/cmdline', 'rb').read() + b'\\n')\n"
        "print('VERDICT: APPROVED')\n")
    spec = f"cmd:{sys.executable} {reviewer} --key {KEY}"
    run = cli("lld-all", "--repo", str(ws), f"--reviewer={spec}")
    assert run.code == 0, run.out + run.err
    lld = (ws / "docs/lld/active/LLD-041.md").read_text()
    assert "**Reviewer:** `cmd:" in lld and "--key ***" in lld
    data = summary(latest_run(ws))
    assert data["reviewer"].endswith("--key ***")
    assert KEY not in _everything(ws) + run.out + run.err
    plan = cli("dry-run", "--repo", str(ws), f"--reviewer={spec}", "--json")
    assert KEY not in plan.out + plan.err and json.loads(plan.out)["reviewer"].endswith("***")
    argv = seen.read_bytes()
    assert b"assemblyzero.worker" in argv and KEY.encode() not in argv


def test_ids_that_look_like_options_run_like_any_other(tmp_path: Path, fast: None) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["-foo", "--help", "-x"])
    run = cli("lld-all", "--repo", str(ws), "--parallel=3")
    assert run.code == 0, run.out + run.err
    for item in ("-foo", "--help", "-x"):
        assert (ws / f"docs/lld/active/LLD-{item}.md").exists(), item
    one = cli("lld", "--id=--help", "--repo", str(ws))
    assert one.code == 1 and "LLD---help.md exists" in one.err


def test_names_and_titles_cannot_drive_the_terminal_or_forge_a_line(
        tmp_path: Path, fast: None) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    active = ws / "docs/issues/active"
    (active / "evil\x1b]0;PWNED\x07\x1b[2J.md").write_text("# x\n")
    (active / "x\n[COORDINATOR] 6 done.md").write_text("# x\n")
    (active / "42.md").write_text("# Title \x1b]0;PWNED\x07\x1b[2J\x9b2J with escapes\n\n"
                                  + (active / "41.md").read_text().split("\n", 1)[1])
    outputs = []
    for args in (["lld-all"], ["dry-run"], ["status"]):
        run = cli(*args, "--repo", str(ws))
        assert run.code == 0, (args, run.out + run.err)
        outputs.append(run.out + run.err)
    for text in outputs:
        assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
        assert not any(line.startswith("[COORDINATOR] 6 done") for line in text.splitlines())
        assert not any(line.startswith("[COORDINATOR]") and line.split()[1:3] == ["6", "done"]
                       for line in text.splitlines())
    assert "Title \\x9b2J with escapes" in outputs[0]  # the title: sequences gone, C1 shown
    assert "x\\n[COORDINATOR] 6 done.md" in outputs[0]  # the name, shown for what it is


def test_a_real_latest_folder_hides_no_failure_from_status_or_retry(
        tmp_path: Path, fast: None) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["41", "42"])
    old = ws / "logs/parallel/latest"
    old.mkdir(parents=True)
    (old / "summary.json").write_text(json.dumps({
        "run_id": "old", "label": "lld-all", "exit_code": 0, "counts": {"done": 1},
        "items": [{"tag": "LLD-041", "id": "41", "status": "done"}]}))
    run = cli("lld-all", "--repo", str(ws), env={"ASSEMBLYZERO_SIMULATE_FAIL": "42"})
    assert run.code == 1, run.out + run.err
    assert "logs/parallel/latest at " in run.err and "it is a real folder: rename or" in run.err
    status = cli("status", "--repo", str(ws))
    assert "is a real folder, not the link each run points at itself" in status.out
    assert "LLD-042  failed" in status.out and "latest run: old" not in status.out
    retry = cli("retry-failed", "--repo", str(ws))
    assert "retrying 1 lld item(s): 42" in retry.out, retry.out + retry.err
    assert retry.code == 0 and (ws / "docs/lld/active/LLD-042.md").exists()


def test_a_template_that_is_not_utf8_stops_the_run_before_any_worker(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    template = ws / ".assemblyzero/templates/lld.md"
    template.parent.mkdir(parents=True)
    template.write_bytes(b"## Context \xff Goal\n")
    for args in (["lld-all"], ["dry-run", "--kind=lld"]):
        run = cli(*args, "--repo", str(ws))
        assert run.code == 2, (args, run.out + run.err)
        assert f"template {template} is not UTF-8 text" in run.out + run.err
        assert "Traceback" not in run.out + run.err
    assert not (ws / "logs/parallel").exists()


def test_a_lease_folder_problem_names_the_lease_folder(tmp_path: Path, fast: None) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    creds = Path(os.environ["ASSEMBLYZERO_CREDENTIALS"])
    creds.write_text('{"credentials": [{"name": "demo", "provider": "offline"}]}')
    state = tmp_path / "state-is-a-file"
    state.write_text("")
    run = cli("lld-all", "--repo", str(ws), env={"ASSEMBLYZERO_STATE_DIR": str(state)})
    assert run.code == 1, run.out + run.err
    assert f"check that the lease folder {state / 'leases'} is writable" in run.out
    assert "workspace's .assemblyzero/" not in run.out


def test_an_unparseable_cmd_spec_is_a_usage_error_before_any_item(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    run = cli("lld-all", "--repo", str(ws), "--reviewer=cmd:'unterminated")
    assert run.code == 2 and "cannot parse the command line" in run.err
    assert not (ws / "logs").exists()


JOURNAL_FULL = """
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (700, resource.RLIM_INFINITY))
"""


def test_a_coordinator_that_cannot_write_its_journal_prints_the_summary_and_exits_1(
        tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=[str(n) for n in range(1, 7)])
    script = driver(tmp_path, ws, "print('working')\n", parallel=2, prelude=JOURNAL_FULL)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "summary of run" in run.stdout
    assert sum(" done " in line for line in run.stdout.splitlines()) >= 6  # every item shown
    assert "journal.jsonl: File too large" in run.stdout
    assert "this run's record is incomplete (exit 1)" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    first = (latest_run(ws) / "journal.jsonl").read_text().splitlines()[0]
    assert json.loads(first)["event"] == "run-start"  # what fitted is kept


def test_a_pyproject_symlinked_out_of_the_workspace_is_not_read(tmp_path: Path) -> None:
    out = _outside(tmp_path)
    (out / "pyproject.toml").write_text('[tool.assemblyzero]\ndrafter = "cmd:steal"\n')
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    (ws / "pyproject.toml").symlink_to(out / "pyproject.toml")
    run = cli("dry-run", "--repo", str(ws))
    assert run.code == 2 and "pyproject.toml leads outside the workspace" in run.err
    assert "cmd:steal" not in run.out + run.err


def test_a_workspace_pyproject_cannot_choose_a_command_to_run(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    marker = tmp_path / "PWNED"
    (ws / "pyproject.toml").write_text(
        f'[tool.assemblyzero]\ndrafter = "cmd:sh -c \'touch {marker}; cat\'"\n')
    for args in (["lld-all"], ["dry-run"]):
        run = cli(*args, "--repo", str(ws))
        assert run.code == 2, (args, run.out + run.err)
        assert "a cmd: model runs a command, and a workspace's pyproject.toml may not" in run.err
        assert "pass it yourself as --drafter=cmd:... or ASSEMBLYZERO_DRAFTER=cmd:..." in run.err
    assert not marker.exists()


def test_a_key_right_after_a_newline_in_a_failure_reaches_no_output(
        tmp_path: Path, fast: None) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    tool = tmp_path / "tool.py"
    tool.write_text("import sys\nsys.stdin.read()\n"
                    f"sys.stderr.write('bad request:\\nsk-proj-{'K' * 24} is not valid\\n')\n"
                    "sys.exit(3)\n")
    run = cli("lld-all", "--repo", str(ws), f"--drafter=cmd:{sys.executable} {tool}")
    assert run.code == 1, run.out + run.err
    assert "K" * 24 not in run.out + run.err + _everything(ws)
    assert "***" in run.out


def test_status_reads_no_journal_or_summary_that_is_not_a_plain_file(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    run_dir = ws / "logs/parallel/20200101-000000-lld-all-1"
    run_dir.mkdir(parents=True)
    (run_dir / "journal.jsonl").symlink_to("/dev/zero")  # would never end
    other = ws / "logs/parallel/20200101-000001-lld-all-2"
    other.mkdir()
    os.mkfifo(other / "journal.jsonl")  # would hang
    for args in (["status"], ["retry-failed"]):
        run = cli(*args, "--repo", str(ws), timeout=30)
        assert "Traceback" not in run.out + run.err, args
        assert run.code in (0, 2), (args, run.out + run.err)
