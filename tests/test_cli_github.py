"""`--source github` and `--publish github` end to end, with a fake `gh` on PATH."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli, latest_run, make_workspace, summary
from gh_fake import Fake

from assemblyzero.workflow.templates import split_sections

pytestmark = pytest.mark.e2e  # every test here starts real processes

FAST = {"ASSEMBLYZERO_OFFLINE_LATENCY": "0"}


def test_dry_run_lists_open_github_issues_and_writes_nothing(fake_gh: Fake, tmp_path: Path):
    ws = make_workspace(tmp_path / "ws")
    run = cli("dry-run", "--source", "github", "--kind", "lld", "--repo", str(ws))
    assert run.code == 0, run.err
    assert "LLD-007  GitHub issue #7" in run.out and "LLD-012" in run.out
    assert [p.name for p in ws.iterdir()] == []
    data = json.loads(cli("dry-run", "--source", "github", "--label", "p1", "--json",
                          "--repo", str(ws)).out)
    assert [p["id"] for p in data["kinds"]["lld"]["pending"]] == ["9"]
    assert data["source"] == "github"


def test_lld_all_designs_the_labelled_github_issues(fake_gh: Fake, tmp_path: Path):
    ws = make_workspace(tmp_path / "ws")
    run = cli("lld-all", "--source", "github", "--label", "lld", "--parallel=2",
              "--repo", str(ws), env=FAST)
    assert run.code == 0, run.out + run.err
    assert sorted(p.name for p in (ws / "docs/lld/active").iterdir()) == ["LLD-007.md",
                                                                        "LLD-009.md"]
    lld = (ws / "docs/lld/active/LLD-009.md").read_text()
    assert lld.startswith("# LLD-009: Export CSV") and "Export the ledger." in lld
    assert (ws / ".assemblyzero/github/9.md").read_text() == "# Export CSV\n\nExport the ledger.\n"
    again = cli("lld-all", "--source", "github", "--label", "lld", "--repo", str(ws), env=FAST)
    assert again.code == 0 and "nothing to do" in again.out


def test_issue_all_publishes_each_issue_once_and_records_its_number(fake_gh: Fake,
                                                                   tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", briefs=["photos"])
    run = cli("issue-all", "--publish", "github", "--repo", str(ws), env=FAST)
    assert run.code == 0, run.out + run.err
    creates = [c for c in fake_gh.calls() if c["argv"][:2] == ["issue", "create"]]
    assert len(creates) == 1 and creates[0]["argv"][3] == "Idea photos"
    assert "## User Story" in creates[0]["stdin"]
    lineage = json.loads((ws / "docs/lineage/issue-photos/published.json").read_text())
    assert lineage == {"github_issue": 13}
    issue = (ws / "docs/issues/active/photos.md").read_text()
    assert "**GitHub:** #13" in issue and split_sections(issue)["Objective"]
    assert (ws / "ideas/done/photos.md").exists()


def test_a_failed_publish_leaves_the_brief_pending_and_a_rerun_publishes_it(
        fake_gh: Fake, tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", briefs=["photos"])
    fake_gh.mark("stdout", "something went wrong, no URL here\n")
    run = cli("issue-all", "--publish", "github", "--repo", str(ws), env=FAST)
    assert run.code == 1, run.out + run.err
    assert "no issue URL" in summary(latest_run(ws))["items"][0]["reason"]
    assert (ws / "ideas/active/photos.md").exists()
    assert not (ws / "docs/issues/active/photos.md").exists()
    (fake_gh.state / "stdout").unlink()
    rerun = cli("issue-all", "--publish", "github", "--repo", str(ws), env=FAST)
    assert rerun.code == 0, rerun.out + rerun.err
    assert "resuming at step 'finalize'" in (latest_run(ws) / "issue-photos.log").read_text()
    assert (ws / "docs/issues/active/photos.md").exists()


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "https://cli.github.com"),
    ("logged out", "gh auth login"),
])
def test_a_missing_or_logged_out_gh_is_a_clear_error(fake_gh: Fake, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     setup: str, message: str):
    ws = make_workspace(tmp_path / "ws", issues=["1"])
    if setup == "missing":
        (fake_gh.bin / "gh").unlink()  # and no real gh on this machine's PATH either
    else:
        fake_gh.mark("auth", "logged out")
    run = cli("lld-all", "--source", "github", "--repo", str(ws))
    assert run.code == 2 and message in run.err and "Traceback" not in run.err
    assert not (ws / "logs").exists()


def test_source_github_is_for_lld_all_only(fake_gh: Fake, tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", briefs=["x"])
    run = cli("issue-all", "--source", "github", "--repo", str(ws))
    assert run.code != 0 and "--source" in run.err  # issue-all has no such flag
    label = cli("lld-all", "--label", "p1", "--repo", str(ws))
    assert label.code == 2 and "add --source github" in label.err


def test_retry_failed_reruns_from_github_too(fake_gh: Fake, tmp_path: Path):
    ws = make_workspace(tmp_path / "ws")
    first = cli("lld-all", "--source", "github", "--label", "lld", "--repo", str(ws),
                env={"ASSEMBLYZERO_SIMULATE_FAIL": "9"})
    assert first.code == 1
    retry = cli("retry-failed", "--repo", str(ws), env=FAST)
    assert retry.code == 0, retry.out + retry.err
    assert "retrying 1 lld item(s): 9" in retry.out
    assert "Export the ledger." in (ws / "docs/lld/active/LLD-009.md").read_text()


def test_a_github_issue_and_a_local_issue_with_one_lld_name_are_refused(fake_gh: Fake,
                                                                      tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["007"])
    run = cli("dry-run", "--source", "github", "--kind", "lld", "--repo", str(ws))
    assert run.code == 0, run.err
    assert "skipped #7: a local issue also maps to LLD-007.md" in run.out
    assert "LLD-009" in run.out


def test_github_flag_misuse_is_a_usage_error(fake_gh: Fake, tmp_path: Path):
    ws = make_workspace(tmp_path / "ws")
    kind_issue = cli("dry-run", "--kind", "issue", "--source", "github", "--repo", str(ws))
    assert kind_issue.code == 2 and "use it with lld-all" in kind_issue.err
    empty = cli("lld-all", "--source", "github", "--label=", "--repo", str(ws))
    assert empty.code == 2 and "--label needs a label name" in empty.err


def test_a_dry_run_says_that_issues_will_be_published(fake_gh: Fake, tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", briefs=["x"])
    run = cli("issue-all", "--dry-run", "--publish", "github", "--repo", str(ws))
    assert run.code == 0 and "publish: each finished issue is also created on github" in run.out
    plan = cli("dry-run", "--kind=issue", "--publish=github", "--json", "--repo", str(ws))
    assert plan.code == 0, plan.err
    assert json.loads(plan.out)["publish"] == "github"
    assert not [c for c in fake_gh.calls() if c["argv"][:2] == ["issue", "create"]]
