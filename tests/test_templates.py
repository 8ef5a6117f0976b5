"""Templates and tolerant documents: drafts as real models write them, against the built-ins."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ISSUE

from assemblyzero.ids import Kind
from assemblyzero.workflow.templates import (
    load_template,
    missing_sections,
    render,
    split_sections,
    tidy,
    title_of,
)

LLD = load_template(Kind.LLD)
ISSUE_TEMPLATE = load_template(Kind.ISSUE)
CHATTER = "Let me know if you would like any changes to the design!"


def body(name: str) -> str:
    return f"{name} is covered here in full.\nA second line about {name.lower()}."


def draft(heading: str = "## {name}", names: tuple[str, ...] = LLD.sections,
          title: str | None = "Design: settling up") -> str:
    """A draft with every section, each heading written as `heading`."""
    parts = [f"# {title}"] if title else []
    parts += [f"{heading.format(name=name, n=n)}\n\n{body(name)}"
              for n, name in enumerate(names, 1)]
    return "\n\n".join(parts) + "\n"


CLEAN = draft()


def lines_of(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip()}


def content_lines(text: str) -> set[str]:
    """The lines that are neither headings nor fences: what must survive tidying."""
    return {line for line in lines_of(text) if not line.startswith(("#", "```", "~~~"))}


# --- clean documents ---------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    CLEAN,
    draft(title=None),
    ISSUE.format(title="Splitting bills", what="bill splitting", noun="bill"),
    "# T\n## Context & Goal\nno blank lines\n## Proposed Changes\nat all\n",
    render("LLD-041: Feature", {n: body(n) for n in LLD.sections}, LLD.sections,
           "**Status:** APPROVED (iteration 1)"),
    CLEAN.replace(body("Security"), "Tokens:\n\n```python\n## not a heading\n# nor this\n```"),
    CLEAN.replace(body("Testing"), "### Unit tests\n\nall of them\n\n#### Deeper\n\nmore"),
])
def test_a_clean_document_is_returned_unchanged(text: str) -> None:
    template = ISSUE_TEMPLATE if "## User Story" in text else LLD
    assert tidy(text, template) == text


def test_a_reply_without_any_template_section_is_left_alone() -> None:
    for text in ("", "I cannot help with that.", "# Title\n\n## Something else\n\ntext\n"):
        assert tidy(text, LLD) == text
    assert missing_sections(LLD, "") == list(LLD.sections)


# --- fences, preambles and chatter ---------------------------------------------------------

@pytest.mark.parametrize("wrapped", [
    "```markdown\n" + CLEAN + "```\n",
    "```md\n" + CLEAN + "```",
    "```\n" + CLEAN + "```\n",
    "````markdown\n" + CLEAN + "````\n",
    "~~~markdown\n" + CLEAN + "~~~\n",
    "Sure! Here is the LLD:\n\n```markdown\n" + CLEAN + "```\n",
    "Sure! Here is the LLD:\n```markdown\n" + CLEAN + "```\n\n" + CHATTER + "\n",
    "```markdown\n" + CLEAN + "```\n\nI hope this helps.\n",
    "```markdown\n" + CLEAN,  # the closing fence forgotten
])
def test_one_enclosing_fence_is_unwrapped(wrapped: str) -> None:
    assert tidy(wrapped, LLD) == CLEAN


def test_a_fence_inside_the_wrapped_document_is_kept() -> None:
    code = "```python\nx = 1\n```"
    inner = CLEAN.replace(body("Interfaces"), code)
    assert tidy("```markdown\n" + inner + "```\n", LLD) == inner


def test_a_document_that_starts_with_a_code_block_is_not_unwrapped() -> None:
    text = "```\nsetup.sh\n```\n\n" + CLEAN.split("\n", 2)[2] + "\n```\nend\n```\n"
    out = tidy(text, LLD)  # the code before the first section is text before it: dropped
    assert out.endswith(body("Definition of Done") + "\n\n```\nend\n```\n")
    assert not missing_sections(LLD, text)


def test_a_fence_that_is_not_markdown_is_not_unwrapped() -> None:
    text = "```python\n" + CLEAN + "```\n"
    assert tidy(text, LLD) == text


@pytest.mark.parametrize("preamble", [
    "Sure! Here is the LLD:",
    "Certainly. Below is the low-level design you asked for.\n\nIt follows the template.",
    "Here's the revised document addressing all findings:\n\n1. Security now says more.",
])
def test_text_before_the_title_is_dropped_and_the_title_kept(preamble: str) -> None:
    assert tidy(f"{preamble}\n\n{CLEAN}", LLD) == CLEAN
    out = tidy(f"{preamble}\n\n{draft(title=None)}", LLD)
    assert out == draft(title=None) and title_of(tidy(CLEAN, LLD), "x") == "Design: settling up"


def test_a_preamble_under_the_title_is_dropped_but_a_real_preface_kept() -> None:
    head, rest = CLEAN.split("\n\n", 1)
    assert tidy(f"{head}\n\nSure! Here is the design:\n\n{rest}", LLD) == CLEAN
    kept = f"{head}\n\nThis design replaces the nightly batch.\n\nOK means HTTP 200.\n\n{rest}"
    assert tidy(kept, LLD) == kept


@pytest.mark.parametrize("tail", [
    CHATTER,
    "I hope this helps! " + CHATTER,
    "Feel free to ask for more detail on any section.",
    "Would you like me to add a sequence diagram?",
    "*Let me know if anything should change.*",
    "---\n\nThis covers each section; if you want, I can add diagrams.",
    "---\n\nNotes for you: happy to help further.\n\n" + CHATTER,
    "Do you want me to revise any section?",
    "Hope this helps.\n\n---\n\nIs there anything else you need?",
])
def test_closing_chatter_is_dropped(tail: str) -> None:
    assert tidy(f"{CLEAN}\n{tail}\n", LLD) == CLEAN


@pytest.mark.parametrize("tail", [
    "If you need to roll back, turn the flag off.",  # content, though it speaks to "you"
    "If you'd like to reproduce the numbers, run `make bench`.",
    "Should I/O fail mid-write, the previous file stays in place.",
    "- Let me know is a bullet, so it is content.",
    "---\n\nAppendix: the measurements behind the budgets above.",
    "Let me know " + "in the design channel how the pilot went, " * 12,  # too long for chat
    "Feel free to extend the schema later; the migration is additive.",
    "---\n\nIf you need more, see the runbook.",  # after a rule, still only a real closing
    "Would you like the cache shared across tenants, or one per tenant? The source does not say.",
    "Do you want me to assume PostgreSQL 15? It affects the migration.",
    "Should I add rate limiting here, or leave it to the gateway?",
])
def test_the_last_sections_content_is_never_dropped(tail: str) -> None:
    out = tidy(f"{CLEAN}\n{tail}\n", LLD)
    assert content_lines(f"{CLEAN}\n{tail}\n") <= lines_of(out)
    assert split_sections(out)["Definition of Done"].endswith(tail.rsplit("\n", 1)[-1].strip())


# --- headings ----------------------------------------------------------------------------

@pytest.mark.parametrize("heading", [
    "## {n}. {name}", "## {n}) {name}", "## {n} - {name}", "## {n}: {name}", "## ({n}) {name}",
    "## {name}:", "## {name}.", "## **{name}**", "## **{n}. {name}**", "## {n}. **{name}**",
    "### {name}", "### {n}. {name}", "## {name} ##",
])
def test_headings_are_matched_tolerantly(heading: str) -> None:
    text = draft(heading)
    assert missing_sections(LLD, text) == []
    assert tidy(text, LLD) == CLEAN


def test_case_and_and_for_ampersand() -> None:
    text = CLEAN.replace("## Context & Goal", "## CONTEXT AND GOAL").replace(
        "## Definition of Done", "## definition-of-done")
    assert missing_sections(LLD, text) == [] and tidy(text, LLD) == CLEAN


def test_roman_numerals() -> None:
    romans = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII")
    text = "\n\n".join(f"## {r}. {name}\n\n{body(name)}" for r, name in zip(
        romans, LLD.sections, strict=True))
    assert tidy(text, LLD) == draft(title=None)


def test_a_level_one_heading_is_the_title_not_a_section() -> None:
    text = draft("# {name}", title=None)
    assert missing_sections(LLD, text) == list(LLD.sections)


def test_third_level_sections_keep_their_subheads_one_level_below() -> None:
    text = draft("### {name}").replace(body("Testing"), "#### Unit\n\nfast\n\n##### Deep\n\nx")
    out = tidy(text, LLD)
    assert out == CLEAN.replace(body("Testing"), "### Unit\n\nfast\n\n#### Deep\n\nx")


def test_a_title_with_third_level_subheads_under_each_section() -> None:
    text = draft().replace(f"\n\n{body('Security')}", f"\n\n### Detail\n\n{body('Security')}")
    assert tidy("Sure! Here is the design.\n\n" + text, LLD) == text


def test_other_headings_stay_inside_their_section_one_level_below() -> None:
    text = CLEAN.replace(body("Rollout"), "step one\n\n## Appendix\n\nthe old plan\n\n# Notes\n\nn")
    out = tidy(text, LLD)
    assert "### Appendix" in out and "### Notes" in out
    assert split_sections(out)["Rollout"] == "step one\n\n### Appendix\n\nthe old plan\n\n" \
                                             "### Notes\n\nn"


def test_a_subsection_named_for_a_missing_section_becomes_that_section() -> None:
    text = draft(names=tuple(n for n in LLD.sections if n != "Interfaces")).replace(
        body("Proposed Changes"), body("Proposed Changes") + "\n\n### Interfaces\n\n`f() -> int`")
    assert missing_sections(LLD, text) == []
    assert split_sections(tidy(text, LLD))["Interfaces"] == "`f() -> int`"


def test_a_section_written_twice_keeps_both_bodies_in_template_order() -> None:
    names = LLD.sections
    text = draft(names=(names[1], names[0], *names[2:], names[1])).replace(
        "## Proposed Changes", "## 2. Proposed Changes", 1)
    out = tidy(text, LLD)
    assert out.count("## Proposed Changes") == 1
    assert split_sections(out)["Proposed Changes"] == body(names[1]) + "\n\n" + body(names[1])
    assert [line for line in out.splitlines() if line.startswith("## ")] == [
        f"## {name}" for name in names]


def test_a_heading_inside_code_is_not_a_section() -> None:
    code = "```markdown\n## Security\nnot the section\n```"
    text = CLEAN.replace(body("Performance"), code)
    assert split_sections(text)["Performance"] == code
    moved = draft(names=tuple(n for n in LLD.sections if n != "Security")).replace(
        body("Performance"), code)
    assert missing_sections(LLD, moved) == ["Security"]


def test_the_issue_template() -> None:
    clean = ISSUE.format(title="Splitting bills", what="bill splitting", noun="bill")
    messy = ("Here is the issue:\n\n```markdown\n"
             + clean.replace("## Out of Scope", "### 4) out of scope:")
                    .replace("## User Story", "## 1. **User Story**")
             + "```\n\n" + CHATTER + "\n")
    assert missing_sections(ISSUE_TEMPLATE, messy) == []
    out = tidy(messy, ISSUE_TEMPLATE)
    assert split_sections(out) == split_sections(clean) and title_of(out, "") == "Splitting bills"


# --- properties over every shape -------------------------------------------------------------

SHAPES = [
    "```markdown\n" + draft("## {n}. {name}") + "```\n\n" + CHATTER,
    "Sure!\n\n" + draft("### {name}:").replace("Context & Goal", "Context and Goal"),
    draft().replace("## Risks", "## Risks\n\n### Detail\n\n## Appendix\n\nkept"),
    draft(names=LLD.sections[::-1]) + "\n---\n\nI hope this helps.\n",
    draft(names=(*LLD.sections, "Security", "Context & Goal")),
    draft("# {name}", title=None),
    "Here you go:\n\n" + draft(title=None).replace("## Testing", "## 9 - TESTING"),
    draft("### {n}. {name}").replace(body("Risks"), "#### Sub\n\ntext\n\n# Top\n\ny"),
    draft() + "\n```\nunclosed",
]


@pytest.mark.parametrize("text", SHAPES)
@pytest.mark.parametrize("template", [LLD, ISSUE_TEMPLATE], ids=["lld", "issue"])
def test_tidy_is_idempotent(text: str, template: object) -> None:
    assert isinstance(template, type(LLD))
    once = tidy(text, template)
    assert tidy(once, template) == once


@pytest.mark.parametrize("text", SHAPES)
def test_no_content_is_lost(text: str) -> None:
    chatter = {CHATTER, "I hope this helps.", "Sure!", "Here you go:", "---"}
    assert content_lines(text) - chatter <= lines_of(tidy(text, LLD))


@pytest.mark.parametrize("text", SHAPES[:5])
def test_the_tidied_draft_renders_every_section(text: str) -> None:
    tidied = tidy(text, LLD)
    assert missing_sections(LLD, text) == missing_sections(LLD, tidied) == []
    out = render("LLD-1: T", split_sections(tidied), LLD.sections)
    assert all(split_sections(out)[name] for name in LLD.sections)
    assert "```" not in out and CHATTER not in out


QUESTIONS = (
    "Would you like the cache shared across tenants, or one per tenant? The source does not say.",
    "Do you want me to assume PostgreSQL 15? It affects the migration.",
    "Should I add rate limiting here, or leave it to the gateway?",
    CHATTER,  # even this: a section of questions keeps every question it asks
)
QUESTIONS_LAST = (*[n for n in LLD.sections if n != "Open Questions"], "Open Questions")


@pytest.mark.parametrize("only", [False, True], ids=["after-a-paragraph", "only-paragraph"])
@pytest.mark.parametrize("question", QUESTIONS)
def test_open_questions_written_last_keep_their_questions(question: str, only: bool) -> None:
    text = draft(names=QUESTIONS_LAST)
    text = text.replace(body("Open Questions"), question) if only else f"{text}\n{question}\n"
    out = tidy(text, LLD)
    assert split_sections(out)["Open Questions"].endswith(question)
    assert missing_sections(LLD, text) == [] and tidy(out, LLD) == out


@pytest.mark.parametrize("question", QUESTIONS)
def test_a_workspace_template_ending_in_open_questions_keeps_them(
        question: str, tmp_path: Path) -> None:
    override = tmp_path / "lld.md"
    override.write_text("# LLD\n\n## Context & Goal\n\n<!-- why -->\n\n## Open Questions\n\n"
                        "<!-- what the source leaves open -->\n", encoding="utf-8")
    template = load_template(Kind.LLD, override, tmp_path)
    assert template.sections[-1] == "Open Questions"
    text = f"# T\n\n## Context & Goal\n\nWhy.\n\n## Open Questions\n\n{question}\n"
    assert tidy(text, template) == text and missing_sections(template, text) == []
    longer = f"{text}\nAlso: who owns the runbook?\n\n{question}\n"
    assert split_sections(tidy(longer, template))["Open Questions"].endswith(question)


@pytest.mark.parametrize("paragraph", [
    "I can also be done when QA signs off.",
    CHATTER,  # chat-like, but all the section says
])
def test_the_only_paragraph_of_the_last_section_is_kept(paragraph: str) -> None:
    text = CLEAN.replace(body("Definition of Done"), paragraph)
    assert tidy(text, LLD) == text and missing_sections(LLD, text) == []
    assert tidy(f"{text}\n---\n\n{CHATTER}\n", LLD) == text


def test_everything_after_the_closing_wrapper_fence_is_dropped() -> None:
    after = "The design above follows your template.\n\nQuestions welcome."
    assert tidy("```markdown\n" + CLEAN + "```\n\n" + after + "\n", LLD) == CLEAN


def test_a_forgotten_wrapper_fence_does_not_cut_the_text_after_a_code_block() -> None:
    code = "```\nmake check\n```\n\nDone when `make check` passes on CI."
    inner = CLEAN.replace(body("Definition of Done"), code)
    assert tidy("```markdown\n" + inner, LLD) == inner
