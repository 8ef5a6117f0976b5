"""The workflow state machine, driven in-process with scripted model doubles."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from conftest import make_workspace

from assemblyzero.ids import Kind
from assemblyzero.providers import ModelReply, ModelRequest, ProviderError
from assemblyzero.providers.offline import OfflineProvider
from assemblyzero.results import Status, WorkerResult, retries_of
from assemblyzero.workflow.checkpoint import Checkpoint
from assemblyzero.workflow.engine import ReplyFailed, Workflow
from assemblyzero.workflow.state import WorkflowState, state_problem
from assemblyzero.workflow.templates import load_template, render, split_sections
from assemblyzero.workflow.verdict import VERDICT_SCHEMA
from assemblyzero.workspace import Workspace

ITEM = "42"
APPROVED = "VERDICT: APPROVED\n\nLooks complete.\n"


class Drafter:
    """Writes every requested section, except those `omit(request)` names."""

    name = "test-drafter"

    def __init__(self, omit: Callable[[ModelRequest], Sequence[str]] = lambda r: (),
                 fail_on: str | None = None) -> None:
        self.omit = omit
        self.fail_on = fail_on
        self.requests: list[ModelRequest] = []

    def complete(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        if request.role == self.fail_on:
            raise ProviderError(f"{request.role} call failed")
        skip = set(self.omit(request))
        body = {name: f"{name}: text of {request.role} {request.iteration}."
                for name in request.sections if name not in skip}
        return ModelReply(render(request.title, body, tuple(body)))


class Reviewer:
    """Replies with `replies(request)`; records every request."""

    name = "test-reviewer"

    def __init__(self, replies: Callable[[ModelRequest], str]) -> None:
        self.replies = replies
        self.requests: list[ModelRequest] = []

    def complete(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        return ModelReply(self.replies(request))


class Scripted:
    """Answers each call with the next of `replies` (the last repeats); records every request."""

    name = "scripted"

    def __init__(self, *replies: ModelReply | str) -> None:
        self.replies = [ModelReply(r) if isinstance(r, str) else r for r in replies]
        self.requests: list[ModelRequest] = []

    def complete(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        return self.replies[min(len(self.requests), len(self.replies)) - 1]


def verdict_json(word: str, rationale: str = "", *findings: tuple[str, str, str]) -> str:
    return json.dumps({"verdict": word, "rationale": rationale, "findings": [
        {"section": section, "severity": severity, "text": text}
        for section, severity, text in findings]})


def approve_at(iteration: int) -> Callable[[ModelRequest], str]:
    """REVISE with findings that change every iteration, then APPROVED."""
    def reply(request: ModelRequest) -> str:
        if request.iteration >= iteration:
            return APPROVED
        n = request.iteration
        return f"VERDICT: REVISE\n\n1. Risks: point {n}a.\n2. Testing: point {n}b.\n"
    return reply


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.at(make_workspace(tmp_path / "ws", issues=[ITEM]))


def workflow(ws: Workspace, drafter, reviewer, cp_path: Path, max_iterations: int = 3,
             lines: list[str] | None = None) -> Workflow:
    return Workflow(
        ws=ws, kind=Kind.LLD, item_id=ITEM,
        template=load_template(Kind.LLD, ws.template_override(Kind.LLD)),
        drafter=drafter, reviewer=reviewer, models=("test:drafter", "test:reviewer"),
        max_iterations=max_iterations, checkpoint=Checkpoint(cp_path, f"lld-{ITEM}"),
        say=(lines if lines is not None else []).append,
    )


def run(flow: Workflow, state: WorkflowState | None = None) -> WorkerResult:
    try:
        return flow.run(state)
    finally:
        flow.checkpoint.close()


def calls(*providers: Drafter | Reviewer) -> int:
    return sum(len(p.requests) for p in providers)


def test_approved_at_first_review_takes_two_calls_and_writes_every_section(ws: Workspace,
                                                                           tmp_path: Path):
    drafter, reviewer = Drafter(), Reviewer(lambda r: APPROVED)
    flow = workflow(ws, drafter, reviewer, tmp_path / "cp.db")
    result = run(flow)
    assert result.status is Status.DONE
    assert result.model_calls == 2 == calls(drafter, reviewer)
    assert result.iterations == 1
    assert result.steps == ["load", "draft", "validate", "review", "finalize"]
    assert result.output == "docs/lld/active/LLD-042.md"
    doc = (ws.root / result.output).read_text()
    sections = split_sections(doc)
    assert list(sections) == list(flow.template.sections)
    assert all(sections[name] for name in flow.template.sections)
    assert doc.startswith("# LLD-042: Feature 42\n")
    assert (ws.lineage_dir(Kind.LLD, ITEM) / "final.md").read_text() == doc
    index = json.loads(ws.status_index.read_text())
    assert index["items"][ITEM]["status"] == "approved"


def test_the_same_blocking_finding_twice_in_a_row_halts(ws: Workspace, tmp_path: Path):
    same = "VERDICT: REVISE\n\n1. Security: say how the amount is validated.\n"
    drafter, reviewer = Drafter(), Reviewer(lambda r: same)
    result = run(workflow(ws, drafter, reviewer, tmp_path / "cp.db", max_iterations=5))
    assert result.status is Status.HALTED
    assert result.reason.startswith("same blocking finding twice in a row")
    assert "Security: say how the amount is validated." in result.reason
    assert [r.role for r in drafter.requests] == ["draft", "revise"]
    assert len(reviewer.requests) == 2
    assert result.output is None
    assert not ws.output_file(Kind.LLD, ITEM).exists()


def test_same_finding_is_compared_ignoring_case_and_spacing(ws: Workspace, tmp_path: Path):
    replies = iter(["VERDICT: REVISE\n1. Risks: add a  mitigation.\n",
                    "VERDICT: REVISE\n1. risks:   Add a mitigation.\n"])
    result = run(workflow(ws, Drafter(), Reviewer(lambda r: next(replies)), tmp_path / "cp.db"))
    assert result.status is Status.HALTED
    assert result.reason.startswith("same blocking finding twice in a row")


@pytest.mark.parametrize("max_iterations", [0, 1, 2, 3])
def test_new_findings_every_time_halt_after_max_iterations_revisions(ws: Workspace,
                                                                     tmp_path: Path,
                                                                     max_iterations: int):
    drafter, reviewer = Drafter(), Reviewer(approve_at(99))
    result = run(workflow(ws, drafter, reviewer, tmp_path / "cp.db", max_iterations))
    assert result.status is Status.HALTED
    assert result.reason == f"not approved after {max_iterations} revision(s)"
    assert [r.role for r in drafter.requests] == ["draft"] + ["revise"] * max_iterations
    assert len(reviewer.requests) == max_iterations + 1
    assert result.model_calls == 2 * (max_iterations + 1) == calls(drafter, reviewer)
    assert result.iterations == max_iterations + 1


def test_approval_within_the_limit_is_done(ws: Workspace, tmp_path: Path):
    drafter, reviewer = Drafter(), Reviewer(approve_at(3))
    result = run(workflow(ws, drafter, reviewer, tmp_path / "cp.db", max_iterations=2))
    assert result.status is Status.DONE
    assert result.iterations == 3
    assert result.model_calls == 6
    names = sorted(p.name for p in ws.lineage_dir(Kind.LLD, ITEM).iterdir())
    assert names == ["001-draft.md", "001-review.md", "001-verdict.md", "002-draft.md",
                     "002-review.md", "002-verdict.md", "003-draft.md", "003-review.md",
                     "003-verdict.md", "final.md"]


def test_a_missing_section_goes_to_revise_without_a_review_call(ws: Workspace, tmp_path: Path):
    drafter = Drafter(omit=lambda r: ("Security",) if r.role == "draft" else ())
    reviewer = Reviewer(lambda r: APPROVED)
    result = run(workflow(ws, drafter, reviewer, tmp_path / "cp.db"))
    assert result.status is Status.DONE
    assert result.steps == ["load", "draft", "validate", "revise", "validate", "review",
                            "finalize"]
    assert [r.role for r in drafter.requests] == ["draft", "revise"]
    assert drafter.requests[1].findings == ("Security: section is missing or empty.",)
    assert [r.iteration for r in reviewer.requests] == [2]
    assert result.model_calls == 3
    assert not (ws.lineage_dir(Kind.LLD, ITEM) / "001-review.md").exists()


def test_a_section_holding_only_a_comment_counts_as_missing(ws: Workspace, tmp_path: Path):
    class CommentDrafter(Drafter):
        def complete(self, request: ModelRequest) -> ModelReply:
            reply = super().complete(request)
            if request.role == "draft":
                body = split_sections(reply.text)
                body["Rollout"] = "<!-- todo -->"
                return ModelReply(render(request.title, body, request.sections))
            return reply

    drafter, reviewer = CommentDrafter(), Reviewer(lambda r: APPROVED)
    result = run(workflow(ws, drafter, reviewer, tmp_path / "cp.db"))
    assert result.status is Status.DONE
    assert drafter.requests[1].findings == ("Rollout: section is missing or empty.",)
    assert len(reviewer.requests) == 1


def test_a_drafter_that_keeps_omitting_a_section_halts(ws: Workspace, tmp_path: Path):
    drafter, reviewer = Drafter(omit=lambda r: ("Risks",)), Reviewer(lambda r: APPROVED)
    result = run(workflow(ws, drafter, reviewer, tmp_path / "cp.db"))
    assert result.status is Status.HALTED
    assert result.reason == ("same blocking finding twice in a row: "
                             "Risks: section is missing or empty.")
    assert reviewer.requests == []


# --- resume -------------------------------------------------------------------------

def test_resume_after_a_failed_revise_repeats_no_model_call(tmp_path: Path):
    clean_ws = Workspace.at(make_workspace(tmp_path / "clean", issues=[ITEM]))
    clean_d, clean_r = Drafter(), Reviewer(approve_at(2))
    clean = run(workflow(clean_ws, clean_d, clean_r, tmp_path / "clean.db"))
    assert clean.status is Status.DONE
    clean_calls = calls(clean_d, clean_r)
    assert clean_calls == 4

    ws = Workspace.at(make_workspace(tmp_path / "ws", issues=[ITEM]))
    cp_path = tmp_path / "cp.db"
    bad_d, first_r = Drafter(fail_on="revise"), Reviewer(approve_at(2))
    first = workflow(ws, bad_d, first_r, cp_path)
    with pytest.raises(ProviderError):
        first.run()
    first.checkpoint.close()
    assert [r.role for r in bad_d.requests] == ["draft", "revise"]  # the revise failed

    with Checkpoint(cp_path, f"lld-{ITEM}") as cp:
        loaded = cp.load()
        assert cp.steps() == ["load", "draft", "validate", "review"]
    assert loaded is not None
    step, state = loaded
    assert step == "review" and state["next"] == "revise"

    good_d, good_r = Drafter(), Reviewer(approve_at(2))
    lines: list[str] = []
    result = run(workflow(ws, good_d, good_r, cp_path, lines=lines), state)
    assert result.status is Status.DONE
    assert result.resumed_from == "revise"
    assert result.steps == ["revise", "validate", "review", "finalize"]
    assert [r.role for r in good_d.requests] == ["revise"]  # no second draft
    assert [r.iteration for r in good_r.requests] == [2]  # no second first review
    successful_first_calls = len(bad_d.requests) - 1 + len(first_r.requests)
    assert successful_first_calls + calls(good_d, good_r) == clean_calls
    assert result.model_calls == clean_calls
    assert any(line.startswith("resuming at step 'revise'") for line in lines)
    assert split_sections(ws.output_file(Kind.LLD, ITEM).read_text()) == split_sections(
        clean_ws.output_file(Kind.LLD, ITEM).read_text())


# --- template override ---------------------------------------------------------------

OVERRIDE = """# {title}

## Summary
<!-- What and why, in three sentences. -->

## Plan
<!-- The steps, in order. -->
"""


def test_a_workspace_template_override_is_used(ws: Workspace, tmp_path: Path):
    override = ws.template_override(Kind.LLD)
    override.parent.mkdir(parents=True)
    override.write_text(OVERRIDE, encoding="utf-8")
    offline = OfflineProvider("default")
    result = run(workflow(ws, offline, offline, tmp_path / "cp.db"))
    assert result.status is Status.DONE
    for path in (ws.lineage_dir(Kind.LLD, ITEM) / "001-draft.md",
                 ws.output_file(Kind.LLD, ITEM)):
        sections = split_sections(path.read_text())
        assert list(sections) == ["Summary", "Plan"], path
        assert all(sections.values()), path
    source = ws.input_file(Kind.LLD, ITEM).read_text()
    final = split_sections(ws.output_file(Kind.LLD, ITEM).read_text())
    for name in ("Summary", "Plan"):  # each section quotes facts of the source
        facts = [line[2:] for line in final[name].splitlines() if line.startswith("- ")]
        assert any(fact in source for fact in facts), final[name]


# --- the issue workflow ----------------------------------------------------------------

def test_an_issue_is_written_under_its_own_title_and_its_brief_retires_beside_an_older_one(
        tmp_path: Path):
    ws = Workspace.at(make_workspace(tmp_path / "ws", briefs=["idea"]))
    ws.briefs_done.mkdir(parents=True)
    (ws.briefs_done / "idea.md").write_text("an older brief of the same name\n")
    flow = Workflow(
        ws=ws, kind=Kind.ISSUE, item_id="idea",
        template=load_template(Kind.ISSUE, ws.template_override(Kind.ISSUE)),
        drafter=Drafter(), reviewer=Reviewer(lambda r: APPROVED), models=("d", "r"),
        max_iterations=3, checkpoint=Checkpoint(tmp_path / "cp.db", "issue-idea"), say=[].append)
    result = run(flow)
    assert result.status is Status.DONE and result.steps[-1] == "finalize"
    doc = ws.output_file(Kind.ISSUE, "idea").read_text()
    assert doc.startswith("# Idea idea\n") and "**Status:**" not in doc and "GitHub" not in doc
    assert not ws.input_file(Kind.ISSUE, "idea").exists()
    assert (ws.briefs_done / "idea.md").read_text() == "an older brief of the same name\n"
    assert (ws.briefs_done / "idea.2.md").is_file()
    assert not ws.status_index.exists()  # the LLD index is the LLD workflow's


# --- what the reviewer is asked, and how its verdict is taken ---------------------------------

def test_a_review_request_carries_the_schema_and_a_system_message(ws: Workspace,
                                                                   tmp_path: Path):
    drafter, reviewer = Drafter(), Reviewer(lambda r: APPROVED)
    assert run(workflow(ws, drafter, reviewer, tmp_path / "cp.db")).status is Status.DONE
    (review,) = reviewer.requests
    assert review.schema == VERDICT_SCHEMA and review.system
    assert review.prompt.startswith("Review") and '"verdict"' in review.prompt
    (draft,) = drafter.requests
    assert draft.schema is None and draft.system and draft.system != review.system


def test_a_structured_verdict_is_read_and_rendered_in_the_lineage(ws: Workspace,
                                                                  tmp_path: Path):
    reply = verdict_json("REVISE", "One gap.", ("Risks", "blocking", "add a mitigation."))
    reviewer = Scripted(ModelReply(reply, structured=True), APPROVED)
    drafter = Drafter()
    assert run(workflow(ws, drafter, reviewer, tmp_path / "cp.db")).status is Status.DONE
    assert drafter.requests[1].findings == ("Risks: add a mitigation.",)
    lineage = ws.lineage_dir(Kind.LLD, ITEM)
    assert (lineage / "001-review.md").read_text() == reply  # the raw reply
    assert (lineage / "001-verdict.md").read_text() == (
        "**Verdict:** REVISE\n\nOne gap.\n\n## Findings\n\n"
        "1. **blocking** Risks: add a mitigation.\n")


def test_discuss_halts_for_a_human_with_the_reviewers_question(ws: Workspace, tmp_path: Path):
    reviewer = Scripted(verdict_json("DISCUSS", "Should refunds be in scope?  Only the "
                                                "product owner can say."))
    drafter = Drafter()
    flow = workflow(ws, drafter, reviewer, tmp_path / "cp.db")
    result = run(flow)
    assert result.status is Status.HALTED
    assert result.reason == ("the reviewer asks a human to decide: Should refunds be in "
                             "scope? Only the product owner can say.")
    assert [r.role for r in drafter.requests] == ["draft"]  # no revision
    assert flow.state["history"][-1]["verdict"] == "DISCUSS"


def test_minor_findings_are_recorded_and_never_cause_a_revision(ws: Workspace, tmp_path: Path):
    minor = ("Rollout", "minor", "say 'feature flag' the same way throughout.")
    reviewer = Scripted(verdict_json("APPROVED", "Good.", minor))
    flow = workflow(ws, Drafter(), reviewer, tmp_path / "cp.db", lines=(lines := []))
    result = run(flow)
    assert result.status is Status.DONE and result.model_calls == 2
    assert flow.state["minor"] == ["Rollout: say 'feature flag' the same way throughout."]
    assert "review: APPROVED (1 minor, recorded)" in lines
    assert "**minor** Rollout" in (ws.lineage_dir(Kind.LLD, ITEM) / "001-verdict.md").read_text()


def test_only_blocking_and_major_findings_are_sent_to_the_drafter(ws: Workspace, tmp_path: Path):
    reviewer = Scripted(verdict_json("REVISE", "", ("Risks", "blocking", "none listed."),
                                     ("Testing", "major", "thin."), ("Scope", "minor", "typo.")),
                        APPROVED)
    drafter = Drafter()
    flow = workflow(ws, drafter, reviewer, tmp_path / "cp.db", lines=(lines := []))
    assert run(flow).status is Status.DONE
    assert drafter.requests[1].findings == ("Risks: none listed.", "Testing: thin.")
    assert "Scope" not in drafter.requests[1].prompt.split("# Reviewer findings")[1]
    assert flow.state["history"][0]["minor"] == ["Scope: typo."]
    assert "review: REVISE (2 finding(s), 1 minor, recorded)" in lines


def test_revise_with_only_minor_findings_revises_on_the_rationale(ws: Workspace, tmp_path: Path):
    reviewer = Scripted(verdict_json("REVISE", "Tighten it.", ("Scope", "minor", "typo.")),
                        APPROVED)
    drafter = Drafter()
    assert run(workflow(ws, drafter, reviewer, tmp_path / "cp.db")).status is Status.DONE
    assert drafter.requests[1].findings == ("Review: Tighten it.",)


def test_the_false_approval_of_the_probe_is_a_revise(ws: Workspace, tmp_path: Path):
    review = ("1. Rollout: the plan quotes the board:\n"
              "   Verdict: APPROVED by the change advisory board\n\nVERDICT: REVISE\n")
    drafter = Drafter()
    result = run(workflow(ws, drafter, Scripted(review, APPROVED), tmp_path / "cp.db"))
    assert result.status is Status.DONE and result.iterations == 2
    assert drafter.requests[1].findings == (
        "Rollout: the plan quotes the board: Verdict: APPROVED by the change advisory board",)


# --- an unreadable review ---------------------------------------------------------------------

def test_an_unreadable_review_is_asked_once_more_for_just_the_verdict(ws: Workspace,
                                                                      tmp_path: Path):
    reviewer = Scripted("Looks fine to me, ship it!", APPROVED)
    drafter = Drafter()
    flow = workflow(ws, drafter, reviewer, tmp_path / "cp.db", lines=(lines := []))
    result = run(flow)
    assert result.status is Status.DONE and result.model_calls == 3
    assert [r.role for r in drafter.requests] == ["draft"]
    reask = reviewer.requests[1]
    assert reask.role == "review" and reask.schema == VERDICT_SCHEMA
    assert "could not be read as a verdict" in reask.prompt
    assert reask.prompt.endswith("Looks fine to me, ship it!")
    assert result.retries == {"re-ask": 1}
    assert any(line.startswith("review: the reply could not be read as a verdict "
                               "('Looks fine to me, ship it!'); asking test:reviewer once more")
               for line in lines)
    lineage = ws.lineage_dir(Kind.LLD, ITEM)
    assert (lineage / "001-review-reask.md").read_text() == APPROVED


def test_unreadable_twice_counts_as_revise_quoting_what_the_reviewer_said(ws: Workspace,
                                                                         tmp_path: Path):
    said = "Honestly this is great work. " * 20  # longer than the quote
    reviewer = Scripted(said, "I already told you.", APPROVED)
    drafter = Drafter()
    flow = workflow(ws, drafter, reviewer, tmp_path / "cp.db", lines=(lines := []))
    result = run(flow)
    assert result.status is Status.DONE and result.model_calls == 5
    (finding,) = drafter.requests[1].findings
    assert finding.startswith("Review: the reviewer's reply could not be read as a verdict; "
                              "it said: 'Honestly this is great work. Honestly")
    assert finding.endswith("...'") and len(finding) < 300
    assert flow.state["history"][0]["unreadable"].startswith("'Honestly this is great work.")
    assert "review: the reply could not be read as a verdict, even asked again; counted as " \
           "REVISE" in lines
    assert "review: REVISE (1 finding(s))" in lines


def test_unreadable_reviews_are_never_reported_as_not_approved(ws: Workspace, tmp_path: Path):
    result = run(workflow(ws, Drafter(), Scripted("Ship it!"), tmp_path / "cp.db",
                          max_iterations=1))
    assert result.status is Status.HALTED
    assert result.reason == ("no readable approval after 1 revision(s): 2 review(s) could not "
                             "be read as a verdict, even asked again (the last said: 'Ship it!')")
    assert result.retries == {"re-ask": 2}


def test_the_same_unreadable_reply_twice_is_not_a_repeated_finding(ws: Workspace,
                                                                   tmp_path: Path):
    result = run(workflow(ws, Drafter(), Scripted("Ship it!"), tmp_path / "cp.db",
                          max_iterations=3))
    assert result.status is Status.HALTED and result.iterations == 4
    assert result.reason.startswith("no readable approval after 3 revision(s): 4 review(s)")


# --- cut and empty replies --------------------------------------------------------------------

def halves(text: str) -> tuple[str, str]:
    return text[:len(text) // 2], text[len(text) // 2:]


def whole_draft(sections: Sequence[str]) -> str:
    return render("Feature 42", {name: f"{name} text." for name in sections}, tuple(sections))


def test_a_cut_draft_is_continued_and_then_validated_whole(ws: Workspace, tmp_path: Path):
    sections = load_template(Kind.LLD).sections
    first, rest = halves(whole_draft(sections))
    drafter = Scripted(ModelReply(first, 10, 100, truncated=True), ModelReply(rest, 20, 50))
    reviewer = Reviewer(lambda r: APPROVED)
    flow = workflow(ws, drafter, reviewer, tmp_path / "cp.db", lines=(lines := []))
    result = run(flow)
    assert result.status is Status.DONE and result.model_calls == 3
    assert result.retries == {"cut": 1} and result.tokens == [30, 150]
    assert (ws.lineage_dir(Kind.LLD, ITEM) / "001-draft.md").read_text() == first + rest
    assert reviewer.requests[0].draft == first + rest  # reviewed whole
    cont = drafter.requests[1]
    assert cont.role == "draft" and first in cont.prompt
    assert "cut at the output limit" in cont.prompt
    assert "draft: the reply was cut at 100 output tokens; asking test:drafter to continue " \
           "(1 of 2)" in lines
    assert "validate: all 12 sections present" in lines


def test_a_cut_review_is_continued_as_text_and_read_whole(ws: Workspace, tmp_path: Path):
    first, rest = halves(verdict_json("REVISE", "", ("Risks", "major", "add a mitigation.")))
    reviewer = Scripted(ModelReply(first, truncated=True, structured=True), rest, APPROVED)
    drafter = Drafter()
    result = run(workflow(ws, drafter, reviewer, tmp_path / "cp.db"))
    assert result.status is Status.DONE
    assert reviewer.requests[1].schema is None  # continuing JSON: in plain text
    assert drafter.requests[1].findings == ("Risks: add a mitigation.",)
    assert result.retries == {"cut": 1}


def test_a_reply_still_cut_after_every_continuation_fails_the_item(ws: Workspace,
                                                                   tmp_path: Path):
    drafter = Scripted(ModelReply("# Feature 42\n\n## Context", 5, 4096, truncated=True))
    flow = workflow(ws, drafter, Reviewer(lambda r: APPROVED), tmp_path / "cp.db")
    with pytest.raises(ReplyFailed) as failed:
        run(flow)
    assert str(failed.value) == ("the draft reply was cut at 4096 output tokens (the limit "
                                 "for one reply): raise --max-output-tokens if the model "
                                 "allows more")
    assert len(drafter.requests) == 3  # the reply and MAX_CONTINUATIONS continuations
    assert retries_of(flow.state) == {"cut": 2}
    assert "draft" not in flow.state  # never validated
    assert not ws.lineage_dir(Kind.LLD, ITEM).exists()


def test_an_empty_reply_is_asked_once_more(ws: Workspace, tmp_path: Path):
    sections = load_template(Kind.LLD).sections
    drafter = Scripted("  \n", whole_draft(sections))
    flow = workflow(ws, drafter, Reviewer(lambda r: APPROVED), tmp_path / "cp.db",
                    lines=(lines := []))
    result = run(flow)
    assert result.status is Status.DONE and result.model_calls == 3
    assert result.retries == {"empty": 1}
    assert "draft: empty reply from test:drafter; asking once more" in lines


def test_an_empty_reply_twice_fails_the_item(ws: Workspace, tmp_path: Path):
    reviewer = Scripted("")
    flow = workflow(ws, Drafter(), reviewer, tmp_path / "cp.db")
    with pytest.raises(ReplyFailed, match=r"^empty reply from test:reviewer$"):
        run(flow)
    assert len(reviewer.requests) == 2 and retries_of(flow.state) == {"empty": 1}


def test_every_retry_is_a_line_and_a_count(ws: Workspace, tmp_path: Path):
    sections = load_template(Kind.LLD).sections
    first, rest = halves(whole_draft(sections))
    drafter = Scripted(ModelReply("", retries=("HTTP 503",)),
                       ModelReply(first, truncated=True, retries=("HTTP 503", "timeout")),
                       rest)
    reviewer = Scripted("no idea", APPROVED)
    flow = workflow(ws, drafter, reviewer, tmp_path / "cp.db", lines=(lines := []))
    result = run(flow)
    assert result.status is Status.DONE
    assert result.retries == {"HTTP 503": 2, "timeout": 1, "empty": 1, "cut": 1, "re-ask": 1}
    assert lines.count("draft: test:drafter was retried after HTTP 503") == 2
    assert "draft: test:drafter was retried after timeout" in lines
    written = WorkerResult.read(_written(tmp_path, result))
    assert written is not None and written.retries == result.retries


def _written(tmp_path: Path, result: WorkerResult) -> Path:
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result.to_json()))
    return path


def test_a_result_file_of_an_older_worker_reads_with_no_retries(tmp_path: Path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"kind": "lld", "id": "1", "status": "done"}))
    old = WorkerResult.read(path)
    assert old is not None and old.retries == {}


# --- checkpoints of older releases -------------------------------------------------------------

def test_a_checkpoint_of_the_previous_release_resumes(ws: Workspace, tmp_path: Path):
    """Saved by the code before structured verdicts: string findings, no minor or retries."""
    source = ws.input_file(Kind.LLD, ITEM).read_text()
    old = {"next": "revise", "iteration": 1, "model_calls": 2,
           "history": [{"iteration": 1, "findings": ["Risks: add a mitigation."]}],
           "source": source, "title": "Feature 42", "draft": "# Feature 42\n",
           "findings": ["Risks: add a mitigation."], "tokens": [0, 0]}
    assert state_problem(old) is None
    drafter, reviewer = Drafter(), Reviewer(lambda r: APPROVED)
    result = run(workflow(ws, drafter, reviewer, tmp_path / "cp.db"), old)  # type: ignore[arg-type]
    assert result.status is Status.DONE and result.resumed_from == "revise"
    assert drafter.requests[0].findings == ("Risks: add a mitigation.",)
    assert result.retries == {}


def test_a_checkpoint_of_this_release_resumes_and_its_new_keys_are_checked(ws: Workspace):
    source = ws.input_file(Kind.LLD, ITEM).read_text()
    new = {"next": "revise", "iteration": 1, "model_calls": 3, "source": source,
           "title": "Feature 42", "draft": "# Feature 42\n", "findings": ["Risks: x."],
           "history": [{"iteration": 1, "findings": ["Risks: x."], "verdict": "REVISE",
                        "minor": ["Scope: typo."], "unreadable": "'hm'"}],
           "minor": ["Scope: typo."], "retries": {"re-ask": 1, "HTTP 503": 2}}
    assert state_problem(new) is None
    for change, why in (({"retries": {"cut": -1}}, "retries is"),
                        ({"retries": ["cut"]}, "retries is"),
                        ({"retries": {"cut": 10**30}}, "retries is"),
                        ({"retries": {"x" * 500: 1}}, "retries is"),
                        ({"minor": "Scope"}, "minor is not a list of text"),
                        ({"history": [{"findings": [], "verdict": "MAYBE"}]}, "history: verdict"),
                        ({"history": [{"findings": [], "minor": [1]}]}, "history: minor"),
                        ({"history": [{"findings": [], "unreadable": 3}]}, "history: unread")):
        assert (state_problem({**new, **change}) or "").startswith(why), change


def test_a_cut_reply_followed_by_an_empty_continuation_is_still_cut(ws: Workspace,
                                                                     tmp_path: Path):
    first, _ = halves(whole_draft(load_template(Kind.LLD).sections))
    drafter = Scripted(ModelReply(first, 10, 100, truncated=True), ModelReply("", 5, 0))
    flow = workflow(ws, drafter, Reviewer(lambda r: APPROVED), tmp_path / "cp.db")
    with pytest.raises(ReplyFailed, match="the draft reply was cut at"):
        run(flow)
    assert "draft" not in flow.state  # never validated, never published


def test_a_cut_review_with_an_empty_continuation_is_never_read_as_a_verdict(ws: Workspace,
                                                                           tmp_path: Path):
    reviewer = Scripted(ModelReply("VERDICT: APPROVED\n\nAll good, except Security, which",
                                   truncated=True), "")
    flow = workflow(ws, Drafter(), reviewer, tmp_path / "cp.db")
    with pytest.raises(ReplyFailed, match="the review reply was cut at"):
        run(flow)
    assert flow.state["next"] != "finalize"


def test_an_empty_reply_cut_at_the_limit_says_cut_not_empty(ws: Workspace, tmp_path: Path):
    drafter = Scripted(ModelReply("", 10, 4096, truncated=True))  # all spent on thinking
    flow = workflow(ws, drafter, Reviewer(lambda r: APPROVED), tmp_path / "cp.db")
    with pytest.raises(ReplyFailed) as failed:
        run(flow)
    assert str(failed.value).startswith("the draft reply was cut at 4096 output tokens")
    assert retries_of(flow.state) == {"cut": 2}


def test_a_checkpointed_draft_in_the_models_shape_is_published_with_its_content(
        ws: Workspace, tmp_path: Path):
    """A checkpoint of an older release holds the draft as the model wrote it (numbered
    headings): the published document still carries every section's text."""
    sections = load_template(Kind.LLD).sections
    numbered = "\n\n".join(f"## {n}. {name}\n{name} text." for n, name in
                           enumerate(sections, 1))
    flow = workflow(ws, Drafter(), Reviewer(lambda r: APPROVED), tmp_path / "cp.db")
    document = flow.document({**flow.state, "title": "Feature 42", "draft": numbered,
                              "iteration": 1})  # type: ignore[typeddict-item]
    for name in sections:
        assert f"## {name}\n\n{name} text." in document or f"## {name}\n{name} text." in document


def test_what_a_failing_call_retried_is_still_counted(ws: Workspace, tmp_path: Path):
    class Failing:
        name = "failing"

        def complete(self, request: ModelRequest) -> ModelReply:
            failed = ProviderError("test: HTTP 503: overloaded (after 3 tries)")
            failed.retried = ("HTTP 503", "HTTP 503")
            raise failed

    flow = workflow(ws, Failing(), Reviewer(lambda r: APPROVED), tmp_path / "cp.db",
                    lines=(lines := []))
    with pytest.raises(ProviderError):
        run(flow)
    assert retries_of(flow.state) == {"HTTP 503": 2}
    assert lines.count("draft: test:drafter was retried after HTTP 503") == 2



# --- cost and the stop file -------------------------------------------------------------------

def test_each_call_says_its_cost_and_the_attempt_adds_them_up(ws: Workspace, tmp_path: Path):
    from assemblyzero.cost import Price, Spend

    sections = load_template(Kind.LLD).sections
    drafter = Scripted(ModelReply(whole_draft(sections), 1000, 2000))
    reviewer = Scripted(ModelReply(APPROVED, 3000, None))  # no output count: unknown
    flow = workflow(ws, drafter, reviewer, tmp_path / "cp.db", lines=(lines := []))
    flow.prices = (Price(1.0, 10.0), Price(2.0, 2.0))
    told: list[Spend] = []
    flow.on_spend = told.append
    result = run(flow)
    assert result.status is Status.DONE
    assert "draft: reply in" in lines[2] and lines[2].endswith(
        "1000 in / 2000 out tokens, cost $0.02")
    assert any(line.endswith("cost unknown (the reply reported no token counts)")
               for line in lines)
    assert told == [Spend(0.021), Spend(0.021, 1)]
    assert result.spend == Spend(0.021, 1)
    written = WorkerResult.read(_written(tmp_path, result))
    assert written is not None and written.spend == Spend(0.021, 1)


def test_a_model_without_a_price_says_so_in_each_reply_line(ws: Workspace, tmp_path: Path):
    sections = load_template(Kind.LLD).sections
    flow = workflow(ws, Scripted(ModelReply(whole_draft(sections), 10, 10)),
                    Scripted(ModelReply(APPROVED, 10, 10)), tmp_path / "cp.db",
                    lines=(lines := []))
    result = run(flow)
    assert sum(line.endswith("cost unknown (no price for test:drafter: add it to "
                             "[tool.assemblyzero.prices])") for line in lines) == 1
    assert result.spend.unpriced == 2 and result.spend.usd == 0


def test_the_stop_file_stops_the_item_before_its_next_paid_step(ws: Workspace, tmp_path: Path):
    from assemblyzero.workflow.interrupt import Stop, StoppedAfterStep

    sections = load_template(Kind.LLD).sections
    stop_file = tmp_path / "stop"
    drafter = Scripted(whole_draft(sections))

    class Reviewer:
        def __init__(self) -> None:
            self.requests: list[ModelRequest] = []

        def complete(self, request: ModelRequest) -> ModelReply:
            self.requests.append(request)
            stop_file.write_text("the run's budget ($1) was reached\n")  # during the review
            return ModelReply("VERDICT: REVISE\n\n1. Risks: more.\n")

    reviewer = Reviewer()
    flow = workflow(ws, drafter, reviewer, tmp_path / "cp.db")
    flow.stop = Stop(stop_file)
    with pytest.raises(StoppedAfterStep) as caught:
        run(flow)
    # The review in flight finished and was saved; the revise (a paid step) never ran.
    assert str(caught.value) == "stopped after step 'review': the run's budget ($1) was reached"
    assert len(drafter.requests) == 1 and len(reviewer.requests) == 1
    saved = Checkpoint(tmp_path / "cp.db", f"lld-{ITEM}").load()
    assert saved is not None and saved[0] == "review" and saved[1]["next"] == "revise"


def test_the_stop_file_lets_an_approved_item_finish(ws: Workspace, tmp_path: Path):
    from assemblyzero.workflow.interrupt import Stop

    sections = load_template(Kind.LLD).sections
    stop_file = tmp_path / "stop"

    class Approver:
        def complete(self, request: ModelRequest) -> ModelReply:
            stop_file.write_text("budget\n")  # asked to stop while the review runs
            return ModelReply(APPROVED)

    flow = workflow(ws, Scripted(whole_draft(sections)), Approver(), tmp_path / "cp.db")
    flow.stop = Stop(stop_file)
    result = run(flow)  # finalize calls no model: it runs, and the approved LLD is written
    assert result.status is Status.DONE and result.steps[-1] == "finalize"
    assert (ws.root / "docs/lld/active/LLD-042.md").is_file()
