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
from assemblyzero.results import Status, WorkerResult
from assemblyzero.workflow.checkpoint import Checkpoint
from assemblyzero.workflow.engine import Workflow
from assemblyzero.workflow.state import WorkflowState
from assemblyzero.workflow.templates import load_template, render, split_sections
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
    assert names == ["001-draft.md", "001-review.md", "002-draft.md", "002-review.md",
                     "003-draft.md", "003-review.md", "final.md"]


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


def test_an_unparseable_review_is_treated_as_revise(ws: Workspace, tmp_path: Path):
    replies = iter(["Looks fine to me, ship it!", APPROVED])
    drafter, reviewer = Drafter(), Reviewer(lambda r: next(replies))
    lines: list[str] = []
    result = run(workflow(ws, drafter, reviewer, tmp_path / "cp.db", lines=lines))
    assert result.status is Status.DONE
    assert [r.role for r in drafter.requests] == ["draft", "revise"]
    (finding,) = drafter.requests[1].findings
    assert "unparseable verdict" in finding
    assert "Looks fine to me, ship it!" in finding
    assert "review: REVISE (1 finding(s))" in lines
    assert result.model_calls == 4


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
