"""What is pending in a workspace (README, The workspace), enumerated in one scan per folder.

Ids come from file names and are validated before anything else: a file
whose name is not a safe id is reported by name and skipped; the rest run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from assemblyzero.fileio import inside
from assemblyzero.ids import Kind, is_valid_id, sort_key, tag
from assemblyzero.workspace import Workspace


@dataclass(frozen=True)
class Item:
    kind: Kind
    id: str
    source: Path | None = None  # the input, when not the workspace's own file (GitHub)
    document: str | None = field(default=None, compare=False, repr=False)  # its text, to write

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


def _md_stems(folder: Path, root: Path | None = None,
              refused: list[tuple[str, str]] | None = None) -> Iterable[tuple[str, str]]:
    """(file name, stem) of every visible `*.md` file directly in `folder`.

    With `root`, a file whose real path leaves it (a symlink out of the
    workspace, or a folder that is one) or a dangling symlink is left out and
    put on `refused` as (file name, why), never read.
    """
    try:
        entries = [e for e in os.scandir(folder)
                   if e.name.endswith(".md") and not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    folder_inside = root is None or inside(root, folder)
    for e in entries:
        if root is not None and (e.is_symlink() or not folder_inside):
            target = os.path.realpath(e.path)
            if not inside(root, Path(e.path)):
                _refuse(refused, e.name, f"it leads outside the workspace (to {target}); "
                        "not read: replace the symlink with the file itself")
                continue
            if not os.path.exists(e.path):
                _refuse(refused, e.name, f"it is a dangling symlink (to {target}); remove it "
                        "or restore its target")
                continue
        if e.is_file():
            found.append((e.name, e.name[:-3]))
    return found


def _refuse(refused: list[tuple[str, str]] | None, name: str, why: str) -> None:
    if refused is not None:
        refused.append((name, why))


def scan(ws: Workspace, kind: Kind, include_done: bool = False) -> Plan:
    """Every pending item of one kind (or every item), sorted; invalid names skipped."""
    plan = Plan()
    source = ws.briefs if kind is Kind.ISSUE else ws.issues
    done = _done_ids(ws, kind)
    outputs: dict[str, str] = {}  # output file -> the input file that claimed it
    refused: list[tuple[str, str]] = []
    found = _md_stems(source, ws.root, refused)
    plan.skipped.extend(Skipped(kind, name, why) for name, why in refused)
    for name, stem in sorted(found, key=lambda entry: sort_key(entry[1])):
        if not is_valid_id(stem):
            plan.skipped.append(Skipped(kind, name, f"file name {name!r} is not a valid id "
                                        "(letters, digits, '_' and '-', at most 64)"))
            continue
        output = ws.output_file(kind, stem).name
        if output in outputs:  # `42.md` and `042.md` -> one LLD-042.md
            plan.skipped.append(Skipped(kind, name, f"its output would be {output}, the same "
                                        f"file as {outputs[output]}'s; rename one"))
            continue
        outputs[output] = name
        if include_done or output not in done:
            plan.items.append(Item(kind, stem))
        elif kind is Kind.ISSUE:  # never overwrite an issue someone already has
            plan.skipped.append(Skipped(kind, name, f"docs/issues/active/{output} already "
                                        "exists; move the brief to ideas/done or rename it"))
    return plan


def _done_ids(ws: Workspace, kind: Kind) -> set[str]:
    """File names of the outputs that exist already."""
    folder = ws.issues if kind is Kind.ISSUE else ws.llds
    return {name for name, _ in _md_stems(folder)}


def is_pending(ws: Workspace, item: Item) -> bool:
    """Re-check one item just before it starts (another run may have done it)."""
    done = ws.output_file(item.kind, item.id).exists()
    if item.document is not None:  # a GitHub issue: its text is written once the item is ours
        return not done
    source = item.source or ws.input_file(item.kind, item.id)
    return source.is_file() and inside(ws.root, source) and not done


def input_size(ws: Workspace, item: Item) -> int:
    """The size of the item's input in characters, about (0 when it cannot be told): what
    the estimate of its cost starts from. A symlink is not followed."""
    if item.document is not None:
        return len(item.document)
    try:
        return os.lstat(item.source or ws.input_file(item.kind, item.id)).st_size
    except OSError:
        return 0


def from_github(ws: Workspace, label: str | None) -> tuple[Plan, dict[str, str]]:
    """Open GitHub issues without an approved LLD, and each one's input document.

    The documents are returned, not written: `write_input` writes each one when
    its item starts, under its lock (a dry run writes nothing).
    """
    from assemblyzero import github

    plan, documents = Plan(), {}
    local = {ws.output_file(Kind.LLD, stem).name for _, stem in _md_stems(ws.issues)
             if is_valid_id(stem)}
    for issue in github.list_issues(label=label, cwd=ws.root):
        item_id = str(issue.number)
        lld = ws.output_file(Kind.LLD, item_id).name
        if lld in local:  # GitHub #7 and docs/issues/active/7.md would share LLD-007.md
            plan.skipped.append(Skipped(Kind.LLD, f"#{item_id}", f"a local issue also maps to "
                                        f"{lld}; rename it or design #{item_id} elsewhere"))
        elif not ws.output_file(Kind.LLD, item_id).exists():
            plan.items.append(Item(Kind.LLD, item_id, ws.github_input(item_id)))
            documents[item_id] = issue.markdown()
    plan.items.sort(key=lambda item: sort_key(item.id))
    return plan, documents


def select(plan: Plan, kind: Kind, only: list[str] | None, limit: int | None) -> Plan:
    """Keep the ids of `--only` (each validated), then the first `--limit` in id order."""
    items, skipped = plan.items, list(plan.skipped)
    if only is not None:
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
        items.sort(key=lambda item: sort_key(item.id))
    if limit is not None:
        items = items[:limit]
    return Plan(items, skipped)


def write_input(ws: Workspace, item: Item) -> None:
    """Write a GitHub issue's text where its worker reads it (under the item's lock)."""
    if item.source and item.document is not None:
        ws.write_text(item.source, item.document)
