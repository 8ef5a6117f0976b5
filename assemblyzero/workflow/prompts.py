"""What a model is asked: the request for one call, and the instruction text in it."""

from __future__ import annotations

from assemblyzero.ids import Kind
from assemblyzero.providers import ModelRequest
from assemblyzero.workflow.state import WorkflowState
from assemblyzero.workflow.templates import Template


def build_request(
    role: str, kind: Kind, item_id: str, template: Template, state: WorkflowState
) -> ModelRequest:
    """The request of a `role` call ("draft", "review" or "revise") from the current state."""
    return ModelRequest(
        role=role, kind=kind.value, item_id=item_id, title=state["title"],
        source=state["source"], sections=template.sections,
        prompt=build_prompt(role, template, state), draft=state.get("draft", ""),
        findings=tuple(state.get("findings", ())), iteration=state["iteration"],
    )


def build_prompt(role: str, template: Template, state: WorkflowState) -> str:
    """The instruction text a real model receives."""
    outline = "\n".join(f"## {name}\n{template.guidance.get(name, '')}"
                        for name in template.sections)
    kind = "low-level design" if template.kind is Kind.LLD else "issue"
    if role == "review":
        return (f"Review this {kind} draft against its source. Answer with a first line "
                f"'VERDICT: APPROVED' or 'VERDICT: REVISE', then numbered findings, each "
                f"starting with the section name and a colon.\n\n# Source\n{state['source']}"
                f"\n\n# Draft\n{state['draft']}")
    task = (f"Write a {kind} in markdown for the source below, with exactly these "
            f"sections, each non-empty:\n\n{outline}\n\n# Source\n{state['source']}")
    if role == "revise":
        findings = "\n".join(f"{n}. {f}" for n, f in enumerate(state.get("findings", []), 1))
        task += (f"\n\n# Previous draft\n{state['draft']}\n\n# Reviewer findings to address"
                 f"\n{findings}\n\nReturn the whole revised document.")
    return task
