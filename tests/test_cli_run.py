"""The seed scenarios, run as a user runs them: `assemblyzero ...` in a temp workspace."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    cli,
    driver,
    journal,
    latest_run,
    make_workspace,
    max_concurrency,
    model_calls,
    overlapped,
    summary,
)

from assemblyzero.workflow.templates import split_sections

pytestmark = pytest.mark.e2e  # every test here starts real processes

LLD_SECTIONS = ("Context & Goal", "Proposed Changes", "Data Structures", "Interfaces",
                "Alternatives Considered", "Security", "Performance", "Risks", "Testing",
                "Rollout", "Open Questions", "Definition of Done")
ISSUE_SECTIONS = ("User Story", "Objective", "Requirements", "Out of Scope",
                  "Acceptance Criteria", "Risks")
IDS = [str(n) for n in range(41, 47)]


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


def test_010_happy_path_writes_every_lld_with_all_sections_and_lineage(ws: Path, fast: None):
    run = cli("lld-all", "--parallel=3", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    for item_id in IDS:
        lld = ws / f"docs/lld/active/LLD-0{item_id}.md"
        sections = split_sections(lld.read_text())
        assert all(sections.get(name, "").strip() for name in LLD_SECTIONS), lld
        lineage = ws / f"docs/lineage/lld-{item_id}"
        names = sorted(p.name for p in lineage.iterdir())
        assert names == ["001-draft.md", "001-review.md", "001-verdict.md", "002-draft.md",
                         "002-review.md", "002-verdict.md", "final.md"]
        assert (lineage / "final.md").read_text() == lld.read_text()
    assert not list((ws / ".assemblyzero/checkpoints").iterdir()), "success deletes checkpoints"
    index = json.loads((ws / "docs/lld/status.json").read_text())
    assert sorted(index["items"]) == IDS
    assert {entry["status"] for entry in index["items"].values()} == {"approved"}
    data = summary(latest_run(ws))
    assert data["exit_code"] == 0 and data["counts"]["done"] == 6
    assert [i["status"] for i in data["items"]] == ["done"] * 6
    assert "summary of run" in run.out


def test_010_issue_all_turns_briefs_into_issues_then_lld_all_designs_them(tmp_path: Path,
                                                                          fast: None):
    ws = make_workspace(tmp_path / "ws", briefs=["receipt-photos", "weekly_digest"])
    run = cli("issue-all", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    for item_id in ("receipt-photos", "weekly_digest"):
        issue = ws / f"docs/issues/active/{item_id}.md"
        sections = split_sections(issue.read_text())
        assert all(sections.get(name, "").strip() for name in ISSUE_SECTIONS)
        assert not (ws / f"ideas/active/{item_id}.md").exists()
        assert (ws / f"ideas/done/{item_id}.md").exists()
    run = cli("lld-all", "--parallel=2", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    assert (ws / "docs/lld/active/LLD-receipt-photos.md").exists()
    assert (ws / "docs/lld/active/LLD-weekly_digest.md").exists()


def test_020_dry_run_writes_nothing_and_lists_what_would_run(ws: Path):
    (ws / "docs/issues/active/bad id.md").write_text("# x\n")
    before = tree(ws)
    run = cli("dry-run", "--repo", str(ws), "--parallel")
    assert run.code == 0, run.err
    assert tree(ws) == before
    for item_id in IDS:
        assert f"LLD-0{item_id}" in run.out
    assert "parallelism: 3 worker(s)" in run.out
    assert "skipped bad id.md" in run.out
    as_json = cli("dry-run", "--repo", str(ws), "--json", "--kind=lld")
    plan = json.loads(as_json.out)
    assert [p["id"] for p in plan["kinds"]["lld"]["pending"]] == IDS
    assert plan["kinds"]["lld"]["skipped"][0]["name"] == "bad id.md"
    assert tree(ws) == before
    flag = cli("lld-all", "--dry-run", "--repo", str(ws))
    assert flag.code == 0 and "LLD-041" in flag.out and tree(ws) == before


def test_030_path_traversal_ids_are_refused_and_nothing_is_written_outside(tmp_path: Path,
                                                                          fast: None):
    ws = make_workspace(tmp_path / "ws", issues=["7"])
    hostile = ["..", "a b", "x" * 65, "caf\u00e9", "\uff11\uff12", "a.b"]
    for name in hostile:
        (ws / "docs/issues/active" / f"{name}.md").write_text("# hostile\n")
    outside = {p for p in tmp_path.rglob("*") if not p.is_relative_to(ws)}
    run = cli("lld-all", "--repo", str(ws), "--parallel=2")
    assert run.code == 0, run.out + run.err
    assert (ws / "docs/lld/active/LLD-007.md").exists()
    for name in hostile[1:]:  # "...md" is a hidden file: ignored like editor droppings
        assert f"skipped {name}.md" in run.out
    only = cli("lld-all", "--repo", str(ws), "--only=../../etc/passwd,7")
    assert "skipped ../../etc/passwd: --only: not a valid id" in only.out
    direct = subprocess.run(
        [sys.executable, "-m", "assemblyzero.worker", "--kind", "lld", "--id", "../../../evil",
         "--repo", str(ws), "--run-dir", str(ws / "run")], capture_output=True, text=True)
    assert direct.returncode == 2 and "invalid id" in direct.stdout
    assert {p for p in tmp_path.rglob("*") if not p.is_relative_to(ws)} == outside
    assert not list(ws.rglob("*evil*")) and not list(ws.rglob("*passwd*"))


def test_060_one_failure_is_isolated_its_checkpoint_kept_and_a_rerun_resumes_it(ws: Path,
                                                                             fast: None):
    run = cli("lld-all", "--parallel=3", "--repo", str(ws),
              env={"ASSEMBLYZERO_SIMULATE_FAIL": "43"})
    assert run.code == 1, run.out + run.err
    first = latest_run(ws)
    statuses = {i["id"]: i["status"] for i in summary(first)["items"]}
    assert statuses == {**{i: "done" for i in IDS}, "43": "failed"}
    assert (ws / ".assemblyzero/checkpoints/lld-43.db").exists()
    assert not (ws / "docs/lld/active/LLD-043.md").exists()
    first_calls = model_calls((first / "lld-43.log").read_text())
    assert [c.split(":")[0] for c in first_calls] == ["draft", "review"]

    rerun = cli("lld-all", "--parallel=3", "--repo", str(ws))
    assert rerun.code == 0, rerun.out + rerun.err
    second = latest_run(ws)
    assert second != first
    assert [i["id"] for i in summary(second)["items"]] == ["43"]
    log = (second / "lld-43.log").read_text()
    assert "resuming at step 'review'" in log
    assert [c.split(":")[0] for c in model_calls(log)] == ["review", "revise", "review"]
    assert (ws / "docs/lld/active/LLD-043.md").exists()
    assert not (ws / ".assemblyzero/checkpoints/lld-43.db").exists()


def test_resume_repeats_no_completed_model_call(ws: Path, fast: None):
    """Failing at the revise call, then rerunning, makes exactly the calls of one clean run."""
    failed = cli("lld-all", "--repo", str(ws), "--only=44",
                 env={"ASSEMBLYZERO_SIMULATE_FAIL": "44:revise"})
    assert failed.code == 1
    first_log = (latest_run(ws) / "lld-44.log").read_text()
    draft_before = (ws / "docs/lineage/lld-44/001-draft.md").stat().st_mtime_ns
    assert cli("lld-all", "--repo", str(ws), "--only=44").code == 0
    second_log = (latest_run(ws) / "lld-44.log").read_text()
    calls = model_calls(first_log) + model_calls(second_log)
    clean = cli("lld-all", "--repo", str(ws), "--only=45")
    assert clean.code == 0
    clean_calls = model_calls((latest_run(ws) / "lld-45.log").read_text())
    # the failed call was attempted once and then made once more; nothing else repeats
    assert len(calls) == len(clean_calls) + 1
    assert [c.split(":")[0] for c in model_calls(second_log)] == ["revise", "review"]
    assert (ws / "docs/lineage/lld-44/001-draft.md").stat().st_mtime_ns == draft_before


def test_080_many_fast_lines_stay_whole_prefixed_and_in_the_right_log(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=[str(n) for n in range(1, 7)])
    chatty = (
        "import sys\n"
        "me = sys.argv[1]\n"
        "for n in range(3000):\n"
        "    tail = 'x' * (n % 7 * 300)\n"
        "    print(f'item={me} line={n:05d} {tail}', flush=(n % 3 == 0))\n"
    )
    script = driver(tmp_path, ws, chatty, parallel=6)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=120)
    out = proc.stdout.decode()
    worker_lines = [line for line in out.splitlines() if not line.startswith("[COORDINATOR]")]
    pattern = re.compile(r"^\[LLD-00(\d)\] +item=(\d) line=(\d{5}) x*$")
    seen: dict[str, list[int]] = {}
    for line in worker_lines:
        match = pattern.match(line)
        assert match, f"broken or mixed line: {line[:120]!r}"
        assert match.group(1) == match.group(2), f"wrong prefix: {line[:80]!r}"
        seen.setdefault(match.group(1), []).append(int(match.group(3)))
    assert seen == {str(n): list(range(3000)) for n in range(1, 7)}
    run_dir = latest_run(ws)
    for n in range(1, 7):
        log_lines = (run_dir / f"lld-{n}.log").read_text().splitlines()
        assert len(log_lines) == 3000
        assert all(line.startswith(f"item={n} line=") for line in log_lines)


def test_100_parallel_20_is_capped_at_10_with_a_warning(tmp_path: Path):
    """The cap reaches the scheduler; that the scheduler keeps to it (10 of 12 at once) is
    test_scheduler's, without starting 12 processes on 2 cores."""
    ws = make_workspace(tmp_path / "ws", issues=["1", "2"])
    run = cli("lld-all", "--parallel=20", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    assert "warning: --parallel=20 is above the cap; running 10 workers at most" in run.out
    run_dir = latest_run(ws)
    assert journal(run_dir)[0]["parallel"] == 10 and summary(run_dir)["parallel"] == 10


def test_110_parallel_alone_runs_3(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["41", "42", "43", "44"])  # one more than 3
    run = cli("lld-all", "--parallel", "--repo", str(ws),
              env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0.1"})
    assert run.code == 0, run.out + run.err
    run_dir = latest_run(ws)
    assert journal(run_dir)[0]["parallel"] == 3
    assert max_concurrency(run_dir) == 3
    assert summary(run_dir)["parallel"] == 3


def test_without_parallel_items_run_one_at_a_time(ws: Path, fast: None):
    run = cli("lld-all", "--repo", str(ws), "--limit=3")
    assert run.code == 0, run.out + run.err
    assert max_concurrency(latest_run(ws)) == 1
    assert len(list((ws / "docs/lld/active").iterdir())) == 3


def test_parallel_below_1_is_a_usage_error(ws: Path):
    run = cli("lld-all", "--parallel=0", "--repo", str(ws))
    assert run.code == 2
    assert "--parallel must be at least 1" in run.err
    assert not (ws / "logs").exists()


# A reviewer that meets the other run: it marks that its run has a worker in review, then
# waits (on the other run's mark, for at most a minute) before it approves. So each run keeps
# a worker going until the other has one going too: the runs cannot run one after the other.
MEET_THE_OTHER_RUN = """import os, sys, time
from pathlib import Path
sys.stdin.read()
gate = Path(os.environ["GATE"])
(gate / os.environ["GATE_SELF"]).touch()
deadline = time.monotonic() + 60
while not (gate / os.environ["GATE_OTHER"]).exists() and time.monotonic() < deadline:
    time.sleep(0.01)
print("VERDICT: APPROVED")
print("Looks complete.")
"""


def test_two_concurrent_runs_process_every_item_exactly_once(tmp_path: Path):
    ids = [str(n) for n in range(1, 11)]
    ws = make_workspace(tmp_path / "ws", issues=ids)
    gate = tmp_path / "gate"
    gate.mkdir()
    reviewer = tmp_path / "meet.py"
    reviewer.write_text(MEET_THE_OTHER_RUN)
    argv = [sys.executable, "-m", "assemblyzero", "lld-all", "--parallel=3", "--repo", str(ws),
            f"--reviewer=cmd:{sys.executable} {reviewer}"]
    runs = [subprocess.Popen(argv, env={
        **os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "0", "GATE": str(gate),
        "GATE_SELF": me, "GATE_OTHER": other}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        for me, other in (("a", "b"), ("b", "a"))]
    outputs = [proc.communicate(timeout=120)[0].decode() for proc in runs]
    assert [proc.returncode for proc in runs] == [0, 0], outputs
    run_a, run_b = (d for d in (ws / "logs/parallel").iterdir() if not d.is_symlink())
    assert overlapped(journal(run_a), journal(run_b)), outputs  # a worker of each at once
    finalized: dict[str, int] = {}
    for run_dir in (ws / "logs/parallel").iterdir():
        if run_dir.is_symlink():
            continue
        for log in run_dir.glob("lld-*.log"):
            if "finalize: wrote" in log.read_text():
                finalized[log.stem] = finalized.get(log.stem, 0) + 1
    assert finalized == {f"lld-{i}": 1 for i in ids}
    done = [item for run_dir in (ws / "logs/parallel").iterdir() if not run_dir.is_symlink()
            for item in summary(run_dir)["items"] if item["status"] == "done"]
    assert sorted(item["id"] for item in done) == sorted(ids)
    index = json.loads((ws / "docs/lld/status.json").read_text())
    assert sorted(index["items"]) == sorted(ids)


def test_a_hung_worker_hits_timeout_and_the_others_finish(ws: Path):
    run = cli("lld-all", "--repo", str(ws), "--parallel=2", "--only=41,42", "--timeout=1",
              "--grace=1", env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0.01",
                                "ASSEMBLYZERO_SIMULATE_HANG": "41"})
    assert run.code == 1, run.out + run.err
    statuses = {i["id"]: i["status"] for i in summary(latest_run(ws))["items"]}
    assert statuses == {"41": "timeout", "42": "done"}
    assert (ws / ".assemblyzero/checkpoints/lld-41.db").exists()
    index = json.loads((ws / "docs/lld/status.json").read_text())
    assert index["items"]["41"]["status"] == "timeout"


def test_nothing_pending_is_not_an_error(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws")
    (ws / "docs/issues/active").mkdir(parents=True)
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 0 and "nothing to do" in run.out


def test_a_folder_with_neither_ideas_nor_docs_is_not_a_workspace(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws")
    (ws / "src").mkdir()
    for args in (["lld-all"], ["issue-all"], ["dry-run"], ["lld", "--id=1"], ["issue", "--id=1"]):
        run = cli(*args, "--repo", str(ws))
        assert run.code == 2, (args, run.out + run.err)
        assert "is not an assemblyzero workspace: it has neither ideas/ nor docs/" in run.err
        assert "Traceback" not in run.err
    assert not (ws / "logs").exists() and not (ws / ".assemblyzero").exists()


def test_missing_workspace_is_a_clear_usage_error(tmp_path: Path):
    run = cli("lld-all", "--repo", str(tmp_path / "nope"))
    assert run.code == 2 and "workspace not found" in run.err
    assert "Traceback" not in run.err


def test_bad_model_spec_is_a_clear_usage_error(ws: Path):
    run = cli("lld-all", "--repo", str(ws), "--drafter=gpt5")
    assert run.code == 2 and "must look like 'provider:model'" in run.err
    run = cli("lld-all", "--repo", str(ws), "--drafter=nosuch:model")
    assert run.code == 2 and "unknown provider 'nosuch'" in run.err


def test_the_summary_shows_the_last_lines_of_a_failed_items_log(ws: Path, fast: None):
    run = cli("lld-all", "--repo", str(ws), "--only=41,42",
              env={"ASSEMBLYZERO_SIMULATE_FAIL": "42"})
    assert run.code == 1
    tail = [line for line in run.out.splitlines() if "LLD-042 | " in line]
    assert tail and any("simulated failure of the review call" in line for line in tail)
    assert not [line for line in run.out.splitlines() if "LLD-041 | " in line]
