"""Where everything lives inside the repository the tool works on (SPEC 2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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

    def ensure_state_dirs(self) -> None:
        """Create the state folders, and a .gitignore keeping them out of git."""
        for sub in ("checkpoints", "locks"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        ignore = self.state / ".gitignore"
        if not ignore.exists():
            ignore.write_text(_STATE_GITIGNORE, encoding="utf-8")

    # Runs.
    @property
    def runs(self) -> Path:
        return self.root / "logs" / "parallel"
