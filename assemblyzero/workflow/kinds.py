"""What the LLD and the issue workflows do differently: the head of the output document,
and what finalize does around writing it. The engine has no kind branches; it asks
`rules_for(kind)`.

- LLD: the document carries its status, source and models; once written, the LLD status
  index (docs/lld/status.json) records it as approved.
- Issue: with `--publish=github` the issue is first created on GitHub (its number goes to
  the checkpoint at once, so a rerun never creates it twice); once written, the brief
  moves to ideas/done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from assemblyzero.fileio import check_inside
from assemblyzero.ids import Kind, tag
from assemblyzero.workflow.state import WorkflowState

if TYPE_CHECKING:
    from assemblyzero.workflow.engine import Workflow
    from assemblyzero.workspace import Workspace


class KindRules(Protocol):
    def heading(self, flow: Workflow, state: WorkflowState) -> tuple[str, str]:
        """The output document's title and preface (the lines under the title)."""
        ...

    def before_output(self, flow: Workflow, state: WorkflowState) -> None:
        """Finalize, before the output is written: a failure leaves the item pending."""
        ...

    def after_output(self, flow: Workflow, state: WorkflowState, out: Path) -> None:
        """Finalize, once the output (at `out`) and its lineage copy are written."""
        ...


class LldRules:
    def heading(self, flow: Workflow, state: WorkflowState) -> tuple[str, str]:
        source = flow.source.relative_to(flow.ws.root)
        preface = (f"**Status:** APPROVED (iteration {state['iteration']})  \n"
                   f"**Source:** `{source}`  \n"
                   f"**Drafter:** `{flow.scrub(flow.models[0])}` / "
                   f"**Reviewer:** `{flow.scrub(flow.models[1])}`")
        return f"{tag(Kind.LLD, flow.item_id)}: {state['title']}", preface

    def before_output(self, flow: Workflow, state: WorkflowState) -> None:
        pass

    def after_output(self, flow: Workflow, state: WorkflowState, out: Path) -> None:
        from assemblyzero.workflow import lld_index  # only at the end: the worker starts lean

        lld_index.record_or_warn(flow.ws, flow.item_id, "approved", flow.say,
                                 iterations=state["iteration"],
                                 file=str(out.relative_to(flow.ws.root)))


class IssueRules:
    def heading(self, flow: Workflow, state: WorkflowState) -> tuple[str, str]:
        published = state.get("published")
        return state["title"], f"**GitHub:** #{published}" if published else ""

    def before_output(self, flow: Workflow, state: WorkflowState) -> None:
        if flow.publish == "github" and "published" not in state:
            _publish(flow, state)

    def after_output(self, flow: Workflow, state: WorkflowState, out: Path) -> None:
        _retire_brief(flow)


_RULES: dict[Kind, KindRules] = {Kind.LLD: LldRules(), Kind.ISSUE: IssueRules()}


def rules_for(kind: Kind) -> KindRules:
    return _RULES[kind]


def _publish(flow: Workflow, state: WorkflowState) -> None:
    """Create the GitHub issue; its number goes to the checkpoint at once, and the lineage."""
    from assemblyzero import github  # only a publishing worker needs it (and subprocess)

    body = flow.document(state).split("\n", 1)[1].lstrip()
    number = github.create_issue(state["title"], body, cwd=flow.ws.root)
    state["published"] = number
    flow.checkpoint.save("publish", state)  # a rerun must not create it twice
    flow.lineage("published.json", json.dumps({"github_issue": number}) + "\n")
    flow.say(f"publish: created GitHub issue #{number}")


def _retire_brief(flow: Workflow) -> None:
    retire_brief(flow.ws, flow.item_id)


def retire_brief(ws: Workspace, item_id: str) -> None:
    """Move the brief to ideas/done, never over an older brief of the same name."""
    brief = ws.input_file(Kind.ISSUE, item_id)
    if not brief.exists():
        return
    check_inside(ws.root, ws.briefs_done)
    ws.briefs_done.mkdir(parents=True, exist_ok=True)
    target, n = ws.briefs_done / brief.name, 1
    while target.exists():
        n += 1
        target = ws.briefs_done / f"{item_id}.{n}.md"
    brief.replace(target)
