"""The GitHub source and publisher against a fake `gh` on PATH (no network, no real gh)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gh_fake import HOSTILE, ISSUES, Fake  # noqa: F401

from assemblyzero.github import GitHubError, GitHubIssue, check_gh, create_issue, list_issues

# The fake answers from STATE/issues.json and records each call in STATE/calls.jsonl.
# Marker files in STATE change its behaviour: `auth` ("logged out"), `fail` (its text
# goes to stderr, exit 1), `stdout` (printed instead of the normal answer), `hang`.


@pytest.mark.e2e
def test_list_all_open_issues(fake_gh: Fake) -> None:
    issues = list_issues()
    assert issues == [
        GitHubIssue(7, "Split bills", "Let people split a bill.", ("lld",)),
        GitHubIssue(9, "Export CSV", "Export the ledger.", ("lld", "p1")),
        GitHubIssue(12, "Dark mode", "", ()),
    ]
    [call] = fake_gh.calls()
    assert call["argv"] == ["issue", "list", "--state", "open", "--json",
                            "number,title,body,labels", "--limit", "500"]


@pytest.mark.e2e
def test_list_by_label_and_repo(fake_gh: Fake) -> None:
    assert [i.number for i in list_issues(label="p1", repo="acme/widgets", limit=20)] == [9]
    assert [i.number for i in list_issues(label="lld")] == [7, 9]
    assert list_issues(label="nothing-has-this") == []
    first = fake_gh.calls()[0]["argv"]
    assert first[-6:] == ["--limit", "20", "--label", "p1", "--repo", "acme/widgets"]


@pytest.mark.e2e
def test_list_runs_in_cwd_and_passes_environment(fake_gh: Fake, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GH_TOKEN", "tok-from-env")
    list_issues(cwd=tmp_path)
    [call] = fake_gh.calls()
    assert Path(call["cwd"]) == tmp_path
    assert call["gh_token"] == "tok-from-env"


def test_markdown_is_the_lld_input_document() -> None:
    issue = GitHubIssue(9, "Export CSV", "Export the ledger.\n\n## Details\nAll of it.", ("p1",))
    assert issue.markdown() == "# Export CSV\n\nExport the ledger.\n\n## Details\nAll of it.\n"
    with pytest.raises(AttributeError):
        issue.title = "changed"  # type: ignore[misc]


@pytest.mark.e2e
def test_create_returns_the_number_and_gh_saw_everything(fake_gh: Fake) -> None:
    body = "## User Story\nAs a member I want to split bills.\n"
    number = create_issue("Split bills", body, labels=("lld", "needs review"),
                          repo="acme/widgets")
    assert number == 13
    call = fake_gh.calls()[-1]
    assert call["argv"] == ["issue", "create", "--title", "Split bills", "--body-file", "-",
                            "--label", "lld", "--label", "needs review",
                            "--repo", "acme/widgets"]
    assert call["stdin"] == body
    created = list_issues(label="needs review")
    assert created == [GitHubIssue(13, "Split bills", body, ("lld", "needs review"))]


@pytest.mark.e2e
def test_hostile_title_and_body_reach_gh_verbatim(fake_gh: Fake, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    title = HOSTILE + f" $(touch {canary}) `touch {canary}`"
    body = HOSTILE + "\n--label\n-rf\n'; DROP TABLE issues; --\n\u00e9\u2603\n"
    number = create_issue(title, body, labels=("a b; rm -rf /", "--repo"))
    call = fake_gh.calls()[-1]
    assert call["argv"][3] == title
    assert call["argv"][6:] == ["--label", "a b; rm -rf /", "--label", "--repo"]
    assert call["stdin"] == body
    [issue] = [i for i in list_issues() if i.number == number]
    assert (issue.title, issue.body) == (title, body)
    assert not canary.exists()


def test_empty_title_is_refused_before_gh_runs(fake_gh: Fake) -> None:
    with pytest.raises(GitHubError, match="title"):
        create_issue("  ", "body")
    assert fake_gh.calls() == []


@pytest.mark.e2e
def test_create_without_an_issue_url_is_an_error(fake_gh: Fake) -> None:
    fake_gh.mark("stdout", "something else entirely\n")
    with pytest.raises(GitHubError, match="no issue URL"):
        create_issue("Split bills", "body")


@pytest.mark.e2e
def test_check_gh_passes_when_logged_in(fake_gh: Fake) -> None:
    check_gh()
    assert fake_gh.calls()[-1]["argv"] == ["auth", "status"]


@pytest.mark.e2e
def test_missing_gh_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for call in (check_gh, list_issues, lambda: create_issue("t", "b")):
        with pytest.raises(GitHubError, match=r"cli\.github\.com") as info:
            call()
        assert "gh auth login" in str(info.value)
    with pytest.raises(GitHubError, match=r"cli\.github\.com"):
        check_gh(gh=str(tmp_path / "no" / "gh"))


@pytest.mark.e2e
def test_logged_out_is_a_clear_error(fake_gh: Fake) -> None:
    fake_gh.mark("auth", "logged out\n")
    with pytest.raises(GitHubError) as info:
        check_gh()
    message = str(info.value)
    assert message.startswith("gh is not logged in: run `gh auth login`")
    assert "To log in, run: gh auth login" in message  # the last line of gh's stderr
    assert info.value.returncode == 1


@pytest.mark.e2e
def test_gh_failure_carries_command_exit_code_and_stderr_tail(fake_gh: Fake,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    token = "ghp_" + "A1b2C3d4" * 5
    monkeypatch.setenv("GH_TOKEN", "s3cret-token-value")
    noise = "".join(f"noise {n}\n" for n in range(20))
    fake_gh.mark("fail", noise + f"HTTP 404: Not Found (token {token} s3cret-token-value)\n"
                 "GraphQL: Could not resolve to a Repository with the name 'acme/nope'.\n")
    with pytest.raises(GitHubError) as info:
        list_issues(repo="acme/nope")
    message = str(info.value)
    assert "gh issue list --state open" in message and "--repo acme/nope" in message
    assert "exit code 1" in message
    assert "Could not resolve to a Repository" in message and "HTTP 404" in message
    assert "noise 0" not in message  # only the tail
    assert token not in message and "s3cret-token-value" not in message
    assert info.value.returncode == 1
    assert info.value.stderr_tail.endswith("name 'acme/nope'.")


@pytest.mark.e2e
def test_create_failure_names_a_shortened_one_line_command(fake_gh: Fake) -> None:
    fake_gh.mark("fail", "could not add label: 'nope' not found\n")
    with pytest.raises(GitHubError) as info:
        create_issue("T" * 500 + "\nsecond line", "body", labels=("nope",))
    first_line, stderr_line = str(info.value).split("\n")
    assert "gh issue create --title" in first_line and "T" * 500 not in first_line
    assert stderr_line == "could not add label: 'nope' not found"


@pytest.mark.e2e
@pytest.mark.parametrize("output", [
    "this is not json",
    "",
    '{"number": 1}',
    '[{"number": "1", "title": "x", "body": "", "labels": []}]',
    '[{"number": 1, "title": null, "body": "", "labels": []}]',
    '[{"number": 1, "title": "x", "body": "", "labels": 5}]',
    '[{"number": 1, "title": "x", "body": "", "labels": [{"color": "red"}]}]',
])
def test_unexpected_json_is_an_error(fake_gh: Fake, output: str) -> None:
    fake_gh.mark("stdout", output)
    with pytest.raises(GitHubError, match="unexpected output"):
        list_issues()


@pytest.mark.e2e
def test_null_body_is_empty(fake_gh: Fake) -> None:
    fake_gh.mark("stdout", '[{"number": 3, "title": "x", "body": null, "labels": []}]')
    assert list_issues() == [GitHubIssue(3, "x", "", ())]


@pytest.mark.e2e
def test_timeout_is_an_error(fake_gh: Fake) -> None:
    fake_gh.mark("hang", "")
    with pytest.raises(GitHubError, match=r"did not finish within 0\.3 s"):
        list_issues(timeout=0.3)
    with pytest.raises(GitHubError, match="did not finish") as info:
        check_gh(timeout=0.3)
    assert "not logged in" not in str(info.value)


def test_limit_must_be_positive(fake_gh: Fake) -> None:
    with pytest.raises(GitHubError, match="limit"):
        list_issues(limit=0)
    assert fake_gh.calls() == []
