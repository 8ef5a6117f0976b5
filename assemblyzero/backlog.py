"""What is pending in a workspace (SPEC 2), enumerated in one scan per folder.

Ids come from file names and are validated before anything else: a file
whose name is not a safe id is reported by name and skipped; the rest run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from assemblyzero.ids import Kind, display_id, is_valid_id, sort_key, tag


@dataclass(frozen=True)
class Item:
    kind: Kind
    id: str

    @property
    def tag(self) -> str:
        return tag(self.kind, self.id)


@dataclass(frozen=True)
class Skipped:
    kind: Kind
    name: str  # the file name or the raw id, as the user wrote it
    reason: str


@dataclass
class Plan:
    items: list[Item] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _md_stems(folder: Path) -> Iterable[tuple[str, str]]:
    """(file name, stem) of every visible `*.md` file directly in `folder`."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    return [
        (e.name, e.name[:-3]) for e in entries
        if e.name.endswith(".md") and not e.name.startswith(".") and e.is_file()
    ]


def scan(root: Path, kind: Kind, include_done: bool = False) -> Plan:
    """Every pending item of one kind (or every item), sorted; invalid names skipped."""
    plan = Plan()
    source = root / ("ideas/active" if kind is Kind.ISSUE else "docs/issues/active")
    done = _done_ids(root) if kind is Kind.LLD else set()
    outputs: dict[str, str] = {}  # LLD display id -> the file that claimed it
    for name, stem in sorted(_md_stems(source), key=lambda entry: sort_key(entry[1])):
        if not is_valid_id(stem):
            plan.skipped.append(Skipped(kind, name, f"file name {name!r} is not a valid id "
                                        "(letters, digits, '_' and '-', at most 64)"))
            continue
        shown = display_id(stem)
        if kind is Kind.LLD and shown in outputs:  # `42.md` and `042.md` -> one LLD-042.md
            plan.skipped.append(Skipped(kind, name, f"its LLD would be LLD-{shown}.md, "
                                        f"the same file as {outputs[shown]}'s; rename one"))
            continue
        outputs[shown] = name
        if include_done or shown not in done:
            plan.items.append(Item(kind, stem))
    return plan


def _done_ids(root: Path) -> set[str]:
    """Display ids (`042`, `auth`) of the approved LLDs on disk."""
    return {stem[4:] for _, stem in _md_stems(root / "docs/lld/active") if stem.startswith("LLD-")}


def is_pending(root: Path, item: Item) -> bool:
    """Re-check one item just before it starts (another run may have done it)."""
    if item.kind is Kind.ISSUE:
        return (root / "ideas/active" / f"{item.id}.md").is_file()
    return (root / "docs/issues/active" / f"{item.id}.md").is_file() and not (
        root / "docs/lld/active" / f"LLD-{display_id(item.id)}.md"
    ).exists()


def select(plan: Plan, kind: Kind, only: list[str] | None, limit: int | None) -> Plan:
    """Keep the ids of `--only` (each validated) and the first `--limit`."""
    items, skipped = plan.items, list(plan.skipped)
    if only:
        by_id = {item.id: item for item in items}
        items = []
        for raw in dict.fromkeys(only):
            if not is_valid_id(raw):
                skipped.append(Skipped(kind, raw, "--only: not a valid id (letters, digits, "
                                               "'_' and '-', at most 64)"))
            elif raw in by_id:
                items.append(by_id[raw])
            else:
                skipped.append(Skipped(kind, raw, "--only: not pending (no input file, "
                                               "or already done)"))
    if limit is not None:
        items = items[:limit]
    return Plan(items, skipped)
