"""The GitHub source and publisher: open issues in, new issues out, through the `gh` CLI.

Every call is an argv list (never a shell) with a timeout, in the unchanged environment
(gh authenticates with GH_TOKEN or its own config). Every failure is a GitHubError naming
the command, its exit code and the tail of its stderr, with tokens masked.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assemblyzero.keys.redact import Redactor

GH_TIMEOUT = 60.0  # seconds for one gh call
_FIELDS = "number,title,body,labels"
_TOKENS = ("GH_TOKEN", "GITHUB_TOKEN", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN")
_ARG_SHOWN = 60  # longer arguments (titles) are shortened in messages
_ISSUE_URL = re.compile(r"https?://\S+/issues/(\d+)\b")
_MISSING = ("the gh CLI is not on PATH (GitHub issues go through it): install it from "
            "https://cli.github.com, then run `gh auth login`")


class GitHubError(Exception):
    """A gh call failed; the message says what to do. returncode: gh's, if it ran."""

    def __init__(self, message: str, returncode: int | None = None, stderr_tail: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


@dataclass(frozen=True)
class GitHubIssue:
    number: int
    title: str
    body: str
    labels: tuple[str, ...] = ()

    def markdown(self) -> str:
        """The input document the LLD workflow reads."""
        return f"# {self.title}\n\n{self.body}\n"


def _redactor() -> Redactor:
    return Redactor(os.environ.get(name, "") for name in _TOKENS)


def _describe(argv: list[str]) -> str:
    """The command for a message: long arguments shortened, one line, no secrets."""
    shown = [a if len(a) <= _ARG_SHOWN else a[: _ARG_SHOWN - 3] + "..." for a in argv]
    text = shlex.join(s.replace("\r", "\\r").replace("\n", "\\n") for s in shown)
    return _redactor()(text)


def _tail(stderr: str) -> str:
    kept = [line.rstrip() for line in stderr.splitlines() if line.strip()][-5:]
    return _redactor()("\n".join(kept))


_CHECK_REPO = "check that `gh repo view` works in the workspace"


def _run(argv: list[str], stdin: str, timeout: float, cwd: Path | None,
         hint: str = _CHECK_REPO) -> str:
    """Run gh (stdin: a closed pipe if empty) and return its stdout, or raise GitHubError.

    `hint` is the next step a failure message suggests; gh's own words follow it.
    """
    command = _describe(argv)
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, encoding="utf-8",
                              errors="replace", timeout=timeout, cwd=cwd, check=False)
    except subprocess.TimeoutExpired:
        raise GitHubError(f"`{command}` did not finish within {timeout:g} s; check the network "
                          "and https://www.githubstatus.com, then run again") from None
    except OSError as exc:  # FileNotFoundError: gh (or cwd) is missing
        missing = isinstance(exc, FileNotFoundError) and shutil.which(argv[0]) is None
        raise GitHubError(_MISSING if missing else f"`{command}` could not start ({exc}); "
                          "check that `gh --version` runs") from None
    if proc.returncode != 0:
        tail = _tail(proc.stderr)  # a negative exit code: killed by that signal
        how = f"`{command}` failed with exit code {proc.returncode}; {hint}"
        raise GitHubError(how + (f"; gh said:\n{tail}" if tail else " (gh printed no error)"),
                          proc.returncode, tail)
    return proc.stdout


def check_gh(gh: str = "gh", timeout: float = GH_TIMEOUT) -> None:
    """Raise GitHubError unless gh is installed and logged in."""
    if shutil.which(gh) is None:
        raise GitHubError(_MISSING)
    try:
        _run([gh, "auth", "status"], "", timeout, None)
    except GitHubError as exc:
        if exc.returncode is None:  # did not start or timed out: not a login problem
            raise
        last = exc.stderr_tail.splitlines()[-1] if exc.stderr_tail else "no stderr"
        raise GitHubError(f"gh is not logged in: run `gh auth login`, or set GH_TOKEN ({last})",
                          exc.returncode, exc.stderr_tail) from None


def _issue(item: Any) -> GitHubIssue:
    """One issue of `gh issue list --json`; ValueError when it has another shape."""
    if not isinstance(item, dict):
        raise ValueError("an issue is not an object")
    number, title, body = item.get("number"), item.get("title"), item.get("body") or ""
    labels = [lab.get("name") if isinstance(lab, dict) else None
              for lab in item.get("labels") or []]
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"bad issue number {number!r}")
    names = tuple(name for name in labels if isinstance(name, str))
    if not isinstance(title, str) or not isinstance(body, str) or len(names) != len(labels):
        raise ValueError(f"issue {number}: bad title, body or labels")
    return GitHubIssue(number, title, body, names)


def _unexpected(argv: list[str], out: str, why: str) -> GitHubError:
    shown = _redactor()(out.strip()[:200])
    return GitHubError(f"`{_describe(argv)}` printed {why}: {shown!r}; update gh "
                       "(https://cli.github.com) and run again")


def list_issues(label: str | None = None, repo: str | None = None, limit: int = 500,
                gh: str = "gh", cwd: Path | None = None,
                timeout: float = GH_TIMEOUT) -> list[GitHubIssue]:
    """The open issues (with `label`, if given) of `repo` or of the repository at `cwd`."""
    if limit < 1:
        raise GitHubError(f"the issue limit must be at least 1, not {limit}")
    argv = [gh, "issue", "list", "--state", "open", "--json", _FIELDS, "--limit", str(limit)]
    argv += ["--label", label] if label is not None else []
    argv += ["--repo", repo] if repo is not None else []
    out = _run(argv, "", timeout, cwd)
    try:
        data = json.loads(out)
        if not isinstance(data, list):
            raise ValueError("not a list of issues")
        return [_issue(item) for item in data]
    except (ValueError, TypeError) as exc:
        raise _unexpected(argv, out, f"unexpected output ({exc})") from None


def create_issue(title: str, body: str, labels: tuple[str, ...] = (), repo: str | None = None,
                 gh: str = "gh", cwd: Path | None = None, timeout: float = GH_TIMEOUT) -> int:
    """Open a new issue (body through stdin) and return its number."""
    if not title.strip():
        raise GitHubError("a GitHub issue needs a non-empty title")
    argv = [gh, "issue", "create", "--title", title, "--body-file", "-"]
    argv += [arg for label in labels for arg in ("--label", label)]
    argv += ["--repo", repo] if repo is not None else []
    out = _run(argv, body, timeout, cwd, hint="check that you may create issues in the "
               "repository of `gh repo view`, with those labels")
    found = _ISSUE_URL.findall(out)
    if not found:
        raise _unexpected(argv, out, "no issue URL")
    return int(found[-1])
