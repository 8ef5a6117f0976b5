"""What is pending in a workspace: one scan per folder, bad file names skipped by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_workspace

from assemblyzero.backlog import Item, Plan, Skipped, is_pending, scan, select
from assemblyzero.ids import Kind
from assemblyzero.workspace import Workspace


def ids(plan: Plan) -> list[str]:
    return [item.id for item in plan.items]


def approve(root: Path, display: str) -> None:
    path = root / "docs/lld/active" / f"LLD-{display}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# LLD-{display}\n", encoding="utf-8")


def touch(path: Path, text: str = "# x\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_scan_lld_lists_issues_without_an_approved_lld(tmp_path: Path):
    root = make_workspace(tmp_path / "ws", issues=["41", "42", "43", "auth"])
    approve(root, "042")
    approve(root, "auth")
    plan = scan(Workspace.at(root), Kind.LLD)
    assert ids(plan) == ["41", "43"]
    assert all(item.kind is Kind.LLD for item in plan.items)
    assert plan.skipped == []


def test_scan_lld_ignores_an_lld_that_is_not_zero_padded_like_the_id(tmp_path: Path):
    """Only `LLD-042.md` marks issue 42 as done; `LLD-42.md` is not its output file."""
    root = make_workspace(tmp_path / "ws", issues=["42"])
    approve(root, "42")
    assert ids(scan(Workspace.at(root), Kind.LLD)) == ["42"]


def test_scan_issue_lists_every_brief(tmp_path: Path):
    root = make_workspace(tmp_path / "ws", issues=["1"], briefs=["weekly-digest", "offline-pwa"])
    plan = scan(Workspace.at(root), Kind.ISSUE)
    assert ids(plan) == ["offline-pwa", "weekly-digest"]
    assert {item.kind for item in plan.items} == {Kind.ISSUE}


@pytest.mark.parametrize(("kind", "folder"), [(Kind.LLD, "docs/issues/active"),
                                              (Kind.ISSUE, "ideas/active")])
def test_invalid_file_names_are_skipped_with_the_file_name(tmp_path: Path, kind: Kind,
                                                           folder: str):
    root = make_workspace(tmp_path / "ws", **{"issues" if kind is Kind.LLD else "briefs": ["5"]})
    bad = ["a b.md", "café.md", "a.b.md", "x" * 65 + ".md", "１２.md"]
    for name in bad:
        touch(root / folder / name)
    plan = scan(Workspace.at(root), kind)
    assert ids(plan) == ["5"]
    assert sorted(s.name for s in plan.skipped) == sorted(bad)
    for skipped in plan.skipped:
        assert skipped.kind is kind
        assert repr(skipped.name) in skipped.reason


@pytest.mark.parametrize(("kind", "folder"), [(Kind.LLD, "docs/issues/active"),
                                              (Kind.ISSUE, "ideas/active")])
def test_hidden_files_non_md_files_and_folders_are_ignored(tmp_path: Path, kind: Kind,
                                                           folder: str):
    root = make_workspace(tmp_path / "ws", **{"issues" if kind is Kind.LLD else "briefs": ["7"]})
    source = root / folder
    touch(source / ".8.md")
    touch(source / ".hidden.md")
    touch(source / "9.txt")
    touch(source / "10.md.bak")
    touch(source / "README")
    (source / "11.md").mkdir()
    plan = scan(Workspace.at(root), kind)
    assert ids(plan) == ["7"]
    assert plan.skipped == []


def test_a_brief_whose_issue_exists_is_skipped_not_overwritten(tmp_path: Path):
    root = make_workspace(tmp_path / "ws", issues=["101"], briefs=["101", "fresh"])
    plan = scan(Workspace.at(root), Kind.ISSUE)
    assert ids(plan) == ["fresh"]
    assert [s.name for s in plan.skipped] == ["101.md"]
    assert "docs/issues/active/101.md already exists" in plan.skipped[0].reason


def test_numeric_ids_sort_numerically_before_the_others(tmp_path: Path):
    root = make_workspace(tmp_path / "ws",
                          issues=["zeta", "100", "9", "alpha", "10", "2", "B-side"])
    expected = ["2", "9", "10", "100", "B-side", "alpha", "zeta"]
    assert ids(scan(Workspace.at(root), Kind.LLD)) == expected


@pytest.mark.parametrize("kind", list(Kind))
def test_missing_folders_give_an_empty_plan(tmp_path: Path, kind: Kind):
    root = tmp_path / "empty"
    root.mkdir()
    plan = scan(Workspace.at(root), kind)
    assert plan.items == [] and plan.skipped == []


def test_missing_workspace_root_gives_an_empty_plan(tmp_path: Path):
    plan = scan(Workspace.at(tmp_path / "does-not-exist"), Kind.LLD)
    assert plan.items == [] and plan.skipped == []


# --- select ------------------------------------------------------------------

@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    root = make_workspace(tmp_path / "ws", issues=["41", "42", "43", "44", "45"])
    touch(root / "docs/issues/active/bad name.md")
    approve(root, "045")
    return scan(Workspace.at(root), Kind.LLD)


def test_select_without_only_or_limit_keeps_the_plan(plan: Plan):
    chosen = select(plan, Kind.LLD, None, None)
    assert ids(chosen) == ["41", "42", "43", "44"]
    assert chosen.skipped == plan.skipped


def test_select_only_keeps_valid_pending_ids_once_in_id_order(plan: Plan):
    chosen = select(plan, Kind.LLD, ["43", "41", "43"], None)
    assert ids(chosen) == ["41", "43"]
    assert [s.name for s in chosen.skipped] == ["bad name.md"]


def test_select_only_reports_an_invalid_id_by_name(plan: Plan):
    chosen = select(plan, Kind.LLD, ["42", "../../etc/passwd"], None)
    assert ids(chosen) == ["42"]
    reported = [s for s in chosen.skipped if s.name == "../../etc/passwd"]
    assert len(reported) == 1
    assert reported[0].kind is Kind.LLD
    assert "not a valid id" in reported[0].reason


@pytest.mark.parametrize("raw", ["45", "99"])
def test_select_only_reports_an_id_that_is_not_pending(plan: Plan, raw: str):
    """45 has an approved LLD, 99 has no issue file: neither runs, both are named."""
    chosen = select(plan, Kind.LLD, ["41", raw], None)
    assert ids(chosen) == ["41"]
    reported = [s for s in chosen.skipped if s.name == raw]
    assert len(reported) == 1
    assert "not pending" in reported[0].reason


def test_select_limit_keeps_the_first_n_in_id_order(plan: Plan):
    assert ids(select(plan, Kind.LLD, None, 2)) == ["41", "42"]
    assert ids(select(plan, Kind.LLD, None, 10)) == ["41", "42", "43", "44"]


def test_select_limit_applies_after_only(plan: Plan):
    assert ids(select(plan, Kind.LLD, ["44", "42", "41"], 2)) == ["41", "42"]


def test_select_does_not_change_the_plan_it_is_given(plan: Plan):
    before_items, before_skipped = list(plan.items), list(plan.skipped)
    select(plan, Kind.LLD, ["nope", "41"], 1)
    assert plan.items == before_items and plan.skipped == before_skipped


# --- is_pending ----------------------------------------------------------------

def test_is_pending_lld_until_its_lld_is_approved(tmp_path: Path):
    root = make_workspace(tmp_path / "ws", issues=["42"])
    item = Item(Kind.LLD, "42")
    assert is_pending(Workspace.at(root), item)
    approve(root, "042")
    assert not is_pending(Workspace.at(root), item)


def test_is_pending_lld_false_without_its_issue_file(tmp_path: Path):
    root = make_workspace(tmp_path / "ws", issues=["42"])
    assert not is_pending(Workspace.at(root), Item(Kind.LLD, "43"))


def test_is_pending_issue_while_the_brief_is_active(tmp_path: Path):
    root = make_workspace(tmp_path / "ws", briefs=["digest"])
    item = Item(Kind.ISSUE, "digest")
    assert is_pending(Workspace.at(root), item)
    done = root / "ideas/done/digest.md"
    done.parent.mkdir(parents=True)
    (root / "ideas/active/digest.md").replace(done)
    assert not is_pending(Workspace.at(root), item)


def test_item_tag_uses_the_display_id():
    assert Item(Kind.LLD, "42").tag == "LLD-042"
    assert Skipped(Kind.LLD, "a b.md", "r").name == "a b.md"


def test_two_issue_files_sharing_one_lld_file_are_not_both_pending(tmp_path: Path):
    """`42.md` and `042.md` would both write LLD-042.md: one runs, the other is named."""
    root = make_workspace(tmp_path / "ws", issues=["42", "042"])
    plan = scan(Workspace.at(root), Kind.LLD)
    assert len(plan.items) == 1
    assert [s.name for s in plan.skipped] in (["42.md"], ["042.md"])
    assert "LLD-042.md" in plan.skipped[0].reason
