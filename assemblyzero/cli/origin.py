"""Where a run's items come from and where finished issues go (`--source`, `--label`,
`--publish`).

Apart from the planner so that `status` and `retry-failed`, which read it back
from a run's journal, import nothing of the scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass

from assemblyzero.cli.options import UsageError
from assemblyzero.ids import Kind


@dataclass(frozen=True)
class Origin:
    """Where items come from and where finished issues go (`--source`, `--label`, `--publish`)."""

    source: str = "files"  # or "github": open issues through the gh CLI
    label: str | None = None
    publish: str | None = None  # "github": issue-all also creates each issue there

    def check(self, kind: Kind) -> None:
        if self.source not in ("files", "github"):
            raise UsageError(f"--source must be files or github (got {self.source!r}); pass "
                             "--source=github, or leave it out for docs/issues/active")
        if self.publish not in (None, "github"):
            raise UsageError(f"--publish can only be github (got {self.publish!r}); pass "
                             "--publish=github, or leave it out")
        if self.source == "github" and kind is Kind.ISSUE:
            raise UsageError("--source github lists issues to design: use it with lld-all "
                             "or dry-run --kind=lld")
        if self.label is not None and not self.label.strip():
            raise UsageError("--label needs a label name; pass e.g. --label=needs-design, "
                             "or leave it out for every open issue")
        if self.label and self.source != "github":
            raise UsageError("--label filters GitHub issues: add --source github")
        if "github" in (self.source, self.publish):
            from assemblyzero import github  # lazy: only the GitHub source needs gh

            try:
                github.check_gh()
            except github.GitHubError as exc:
                raise UsageError(str(exc)) from None


FILES = Origin()  # the default: items from the workspace's files
