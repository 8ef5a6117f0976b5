"""Prompts as files a team can own: the built-ins render today's texts, and overrides."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from assemblyzero.ids import Kind
from assemblyzero.workflow.prompts import (
    PLACEHOLDERS,
    Prompts,
    build_prompt,
    build_request,
    builtin_prompts,
    continued,
    load_prompts,
    reask_request,
    system_message,
)
from assemblyzero.workflow.state import WorkflowState
from assemblyzero.workflow.templates import Template, load_template
from assemblyzero.workspace import Workspace

SOURCE = "# Feature 7\n\nCharge $5 per ${seat}; keep {braces} and %s and $$ as they are.\n"
DRAFT = "# Feature 7\n\n## Context & Goal\n\nUses $source and ${draft} literally.\n"
FINDINGS = ["Security: say who may call it.", "Testing: name the $edge case."]
CUSTOM = Template(Kind.LLD, "custom", ("A & B", "No Guidance"), {"A & B": "guide with $x {y}"})


def state(findings: list[str] = FINDINGS) -> WorkflowState:
    return {"next": "draft", "iteration": 2, "model_calls": 0, "history": [],
            "title": "Feature 7", "source": SOURCE, "draft": DRAFT, "findings": findings}


def rendered(prompts: Prompts | None = None) -> dict[str, str]:
    """Every prompt text the workflow sends, keyed as in EXPECTED."""
    out: dict[str, str] = {}
    for kind in Kind:
        template = load_template(kind)
        for role in ("draft", "revise", "review"):
            request = build_request(role, kind, "7", template, state(), prompts)
            out[f"{kind.value}-{role}"] = request.prompt
            out[f"{kind.value}-{role}-system"] = request.system or ""
        out[f"{kind.value}-revise-nofindings"] = build_prompt("revise", template, state([]),
                                                              prompts)
    for role in ("draft", "revise", "review"):
        out[f"custom-{role}"] = build_prompt(role, CUSTOM, state(), prompts)
    review = build_request("review", Kind.LLD, "7", load_template(Kind.LLD), state(), prompts)
    out["reask"] = reask_request(review, "Looks fine, $ship it ${now}!", prompts).prompt
    out["continued-review"] = continued(review, '{"verdict": "APP', prompts).prompt
    draft = build_request("draft", Kind.ISSUE, "7", load_template(Kind.ISSUE), state(), prompts)
    out["continued-draft"] = continued(draft, "## User Story\nAs a $user", prompts).prompt
    return out


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    (tmp_path / "ws").mkdir()
    return Workspace.at(tmp_path / "ws")


# What prompts.py sent for these inputs before its texts became files, captured by running
# that code (commit c824eaa) on exactly `rendered()`'s calls.
EXPECTED: dict[str, str] = json.loads(
    (Path(__file__).parent / "prompts_before.json").read_text(encoding="utf-8"))


def test_the_built_in_prompts_are_the_texts_sent_before_they_were_files():
    got = rendered()
    assert got.keys() == EXPECTED.keys()
    for key, text in EXPECTED.items():
        assert got[key] == text, key


def test_no_override_folder_or_an_empty_one_is_the_built_ins(ws: Workspace):
    assert load_prompts(ws.prompt_overrides, ws.root) == builtin_prompts()
    ws.prompt_overrides.mkdir(parents=True)
    assert rendered(load_prompts(ws.prompt_overrides, ws.root)) == EXPECTED


def test_every_built_in_prompt_is_a_file_with_a_note_that_is_not_sent():
    prompts = builtin_prompts()
    assert set(prompts.texts) == set(PLACEHOLDERS) and set(prompts.sources.values()) == {
        "built-in"}
    assert not any("<!--" in text for text in prompts.texts.values())


def test_the_templates_guidance_reaches_the_drafter(ws: Workspace):
    override = ws.template_override(Kind.LLD)
    override.parent.mkdir(parents=True)
    override.write_text("# {title}\n\n## Scope\n<!-- Name every\n   endpoint touched. -->\n",
                        encoding="utf-8")
    template = load_template(Kind.LLD, override, ws.root)
    for role in ("draft", "revise"):
        assert "## Scope\nName every endpoint touched.\n" in build_prompt(role, template,
                                                                          state())


def write(ws: Workspace, name: str, text: str) -> Path:
    path = ws.prompt_overrides / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_an_override_changes_that_prompt_only_and_missing_ones_are_built_in(ws: Workspace):
    write(ws, "draft", "<!-- ours -->\nDraft the $kind \"$title\" in ${sections}, $$5:\n"
          "$outline\n---\n$source\n")
    write(ws, "system-reviewer", "You are our architecture board.\n")
    write(ws, "rubric", "Blocking: no rollback plan.")
    prompts = load_prompts(ws.prompt_overrides, ws.root)
    assert prompts.sources["draft"] == str(ws.prompt_overrides / "draft.md")
    assert prompts.sources["revise"] == "built-in"
    template = load_template(Kind.ISSUE)
    draft = build_prompt("draft", template, state(), prompts)
    assert draft.startswith('Draft the issue "Feature 7" in ["User Story", "Objective", ')
    assert ", $5:\n## User Story\nAs a <who>" in draft and draft.endswith(f"---\n{SOURCE}")
    revise = build_prompt("revise", template, state(), prompts)  # built-in, around ours
    assert revise.startswith(draft + "\n\n# Previous draft\n" + DRAFT)
    assert system_message("review", Kind.ISSUE, prompts) == "You are our architecture board."
    assert system_message("draft", Kind.ISSUE, prompts) == EXPECTED["issue-draft-system"]
    review = build_prompt("review", template, state(), prompts)
    assert "\n\nBlocking: no rollback plan.\nThe sections are" in review
    other = Workspace.at(ws.root / "elsewhere")  # another workspace keeps the built-ins
    assert load_prompts(other.prompt_overrides, other.root) == builtin_prompts()


def test_a_known_placeholder_may_be_left_out(ws: Workspace):
    write(ws, "continue", "Go on from: $so_far")
    prompts = load_prompts(ws.prompt_overrides, ws.root)
    request = build_request("draft", Kind.LLD, "7", load_template(Kind.LLD), state(), prompts)
    assert continued(request, "half a", prompts).prompt == "Go on from: half a"


@pytest.mark.parametrize("text, named", [
    ("Write a $kind for $audience.", "$audience"),
    ("Write it for ${team}.", "$team"),
    ("Write a $Kind.", "$Kind"),
])
def test_an_unknown_placeholder_is_an_error_naming_file_and_placeholder(
        ws: Workspace, text: str, named: str):
    path = write(ws, "draft", text)
    with pytest.raises(ValueError) as caught:
        load_prompts(ws.prompt_overrides, ws.root)
    message = str(caught.value)
    assert str(path) in message and f"unknown placeholder {named} " in message
    assert "$kind, $title, $sections, $outline, $source" in message and "$$" in message


def test_a_dollar_that_starts_no_placeholder_is_an_error_with_its_place(ws: Workspace):
    path = write(ws, "review", "<!-- note with $anything -->\nReview it.\nIt costs $5.\n")
    with pytest.raises(ValueError, match="line 3, column 10") as caught:
        load_prompts(ws.prompt_overrides, ws.root)
    assert str(path) in str(caught.value) and "write $$ for a literal $" in str(caught.value)


def test_a_file_named_like_no_prompt_is_an_error(ws: Workspace):
    path = write(ws, "drafts", "Write a $kind.")
    (ws.prompt_overrides / "notes.txt").write_text("ours", encoding="utf-8")  # not .md: fine
    with pytest.raises(ValueError, match="named like no prompt") as caught:
        load_prompts(ws.prompt_overrides, ws.root)
    assert str(path) in str(caught.value) and "draft.md" in str(caught.value)


def test_an_empty_override_is_an_error(ws: Workspace):
    write(ws, "reask", "<!-- only a note -->\n\n")
    with pytest.raises(ValueError, match=r"reask\.md is empty"):
        load_prompts(ws.prompt_overrides, ws.root)


def test_an_override_that_is_not_utf8_is_an_error(ws: Workspace):
    path = write(ws, "draft", "")
    path.write_bytes(b"Write a \xff $kind")
    with pytest.raises(ValueError, match="not UTF-8 text"):
        load_prompts(ws.prompt_overrides, ws.root)


def test_a_symlinked_override_leading_outside_is_refused(ws: Workspace, tmp_path: Path):
    secret = tmp_path / "secret.md"
    secret.write_text("the contents of a file outside", encoding="utf-8")
    ws.prompt_overrides.mkdir(parents=True)
    (ws.prompt_overrides / "draft.md").symlink_to(secret)
    with pytest.raises(ValueError, match="leads outside the workspace") as caught:
        load_prompts(ws.prompt_overrides, ws.root)
    assert str(ws.prompt_overrides / "draft.md") in str(caught.value)
    assert str(secret) in str(caught.value) and "the contents" not in str(caught.value)


def test_a_symlinked_override_inside_the_workspace_is_used(ws: Workspace):
    shared = ws.root / "team-prompts" / "draft.md"
    shared.parent.mkdir()
    shared.write_text("Our own $kind prompt.", encoding="utf-8")
    ws.prompt_overrides.mkdir(parents=True)
    (ws.prompt_overrides / "draft.md").symlink_to(shared)
    prompts = load_prompts(ws.prompt_overrides, ws.root)
    assert build_prompt("draft", CUSTOM, state(), prompts) == "Our own low-level design prompt."


def test_a_prompts_folder_leading_outside_is_refused(ws: Workspace, tmp_path: Path):
    outside = tmp_path / "outside-prompts"
    outside.mkdir()
    (outside / "draft.md").write_text("Write a $kind.", encoding="utf-8")
    ws.state.mkdir(parents=True, exist_ok=True)
    ws.prompt_overrides.symlink_to(outside)
    with pytest.raises(ValueError, match=r"prompts folder .* leads outside the workspace"):
        load_prompts(ws.prompt_overrides, ws.root)


def test_an_override_that_is_a_fifo_is_refused_not_read(ws: Workspace):
    ws.prompt_overrides.mkdir(parents=True, exist_ok=True)
    os.mkfifo(ws.prompt_overrides / "draft.md")  # a read would block for ever
    with pytest.raises(ValueError, match=r"draft\.md is not a plain file"):
        load_prompts(ws.prompt_overrides, ws.root)


def test_an_absurdly_large_override_is_refused(ws: Workspace):
    path = write(ws, "draft", "")
    path.write_text("Write the $kind. " * 20_000)  # 340 KB
    with pytest.raises(ValueError, match=r"draft\.md is over 256 KiB"):
        load_prompts(ws.prompt_overrides, ws.root)
