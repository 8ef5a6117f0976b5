"""Where everything lives inside the repository the tool works on (README, The workspace)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from assemblyzero.fileio import atomic_write, check_inside, inside
from assemblyzero.ids import Kind, check_id, display_id, slug

_STATE_GITIGNORE = ("# written by assemblyzero: per-machine state\n"
                    "checkpoints/\nlocks/\ngithub/\n")


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace. Every method taking an id validates it first."""

    root: Path

    @classmethod
    def at(cls, path: str | Path) -> Workspace:
        return cls(Path(path).resolve())

    # Inputs and outputs of the two workflows.
    @property
    def briefs(self) -> Path:
        return self.root / "ideas" / "active"

    @property
    def briefs_done(self) -> Path:
        return self.root / "ideas" / "done"

    @property
    def issues(self) -> Path:
        return self.root / "docs" / "issues" / "active"

    @property
    def llds(self) -> Path:
        return self.root / "docs" / "lld" / "active"

    @property
    def status_index(self) -> Path:
        return self.root / "docs" / "lld" / "status.json"

    def input_file(self, kind: Kind, item_id: str) -> Path:
        check_id(item_id)
        folder = self.briefs if kind is Kind.ISSUE else self.issues
        return folder / f"{item_id}.md"

    def output_file(self, kind: Kind, item_id: str) -> Path:
        check_id(item_id)
        if kind is Kind.ISSUE:
            return self.issues / f"{item_id}.md"
        return self.llds / f"LLD-{display_id(item_id)}.md"

    def lineage_dir(self, kind: Kind, item_id: str) -> Path:
        check_id(item_id)
        return self.root / "docs" / "lineage" / slug(kind, item_id)

    # Machine state (gitignored).
    @property
    def state(self) -> Path:
        return self.root / ".assemblyzero"

    def checkpoint(self, kind: Kind, item_id: str) -> Path:
        check_id(item_id)
        return self.state / "checkpoints" / f"{slug(kind, item_id)}.db"

    def item_lock(self, kind: Kind, item_id: str) -> Path:
        check_id(item_id)
        return self.state / "locks" / f"{slug(kind, item_id)}.lock"

    @property
    def status_lock(self) -> Path:
        return self.state / "locks" / "status.json.lock"

    def github_input(self, item_id: str) -> Path:
        """Where a GitHub issue's text is kept for its LLD workflow."""
        check_id(item_id)
        return self.state / "github" / f"{item_id}.md"

    def template_override(self, kind: Kind) -> Path:
        return self.state / "templates" / f"{kind.value}.md"

    @property
    def prompt_overrides(self) -> Path:
        """The folder of prompt overrides, `<name>.md` each (workflow/prompts.py)."""
        return self.state / "prompts"

    def ensure_state_dirs(self) -> None:
        """Create the state folders, and a .gitignore keeping them out of git."""
        for sub in ("checkpoints", "locks"):
            check_inside(self.root, self.state / sub)
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: an existing file, or a symlink (even a dangling one), stays as it is
            fd = os.open(self.state / ".gitignore",
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            return
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(_STATE_GITIGNORE)

    # The boundary: nothing is read or written through a symlink that leaves the root.
    def read_text(self, path: Path) -> str:
        """An input file's text, if its real path is inside the workspace."""
        check_inside(self.root, path, "read")
        return path.read_text(encoding="utf-8", errors="replace")

    def write_text(self, path: Path, text: str) -> None:
        """Replace `path` atomically, in a folder whose real path is inside the workspace."""
        atomic_write(path, text, self.root)

    def outside_outputs(self) -> list[str]:
        """Every folder (or shared file) a run writes to whose real path leaves the workspace.

        Checked before any worker starts: one such link would send every LLD,
        log or checkpoint elsewhere. Links that stay inside are fine.
        """
        problems: list[str] = []
        for path in self._outputs():
            if any(path.is_relative_to(Path(bad)) for bad in problems):
                continue  # below a folder already reported
            if os.path.lexists(path) and not inside(self.root, path):
                problems.append(str(path))
        return [f"{Path(p).relative_to(self.root)} leads outside the workspace (to "
                f"{os.path.realpath(p)})" for p in problems]

    def _outputs(self) -> list[Path]:
        docs, state = self.root / "docs", self.state
        return [docs, docs / "lld", self.llds, docs / "issues", self.issues, docs / "lineage",
                self.root / "ideas", self.briefs_done, state, state / "checkpoints",
                state / "locks", self.status_lock, state / "github", self.root / "logs",
                self.runs]

    # Runs.
    @property
    def runs(self) -> Path:
        return self.root / "logs" / "parallel"
