"""What a model is asked: the request for one call, and the instruction text in it.

The review asks for the JSON verdict (`verdict.VERDICT_SCHEMA`): natively where the provider
can (`ModelRequest.schema`), and in the prompt for one that only answers in text (`cmd:`),
which may still answer with a `VERDICT:` line and numbered findings.
"""

from __future__ import annotations

import json
from dataclasses import replace

from assemblyzero.ids import Kind
from assemblyzero.providers import ModelRequest
from assemblyzero.workflow.state import WorkflowState
from assemblyzero.workflow.templates import Template
from assemblyzero.workflow.verdict import VERDICT_SCHEMA

_SHAPE = ('{"verdict": "APPROVED" | "REVISE" | "DISCUSS", "rationale": "<why, briefly>", '
          '"findings": [{"section": "<section name>", "severity": "blocking" | "major" | '
          '"minor", "text": "<what to change>"}]}')
_RUBRIC = (
    "- APPROVED: the draft can be published as it is (it may still have minor findings).\n"
    "- REVISE: there is at least one blocking or major finding the drafter must address.\n"
    "- DISCUSS: a question only a human can decide; ask it in the rationale.\n"
    "Severity: blocking = wrong, unsafe, or missing what the source requires; major = "
    "incomplete or unclear enough that an engineer could not build from it; minor = "
    "wording, style or a nice-to-have (recorded, not sent back as a required change).")
_TEXT_FALLBACK = ("If you cannot answer in JSON, write a first line 'VERDICT: APPROVED', "
                  "'VERDICT: REVISE' or 'VERDICT: DISCUSS', then numbered findings, each "
                  "starting with the section name and a colon.")


def build_request(
    role: str, kind: Kind, item_id: str, template: Template, state: WorkflowState
) -> ModelRequest:
    """The request of a `role` call ("draft", "review" or "revise") from the current state."""
    return ModelRequest(
        role=role, kind=kind.value, item_id=item_id, title=state["title"],
        source=state["source"], sections=template.sections,
        prompt=build_prompt(role, template, state), draft=state.get("draft", ""),
        findings=tuple(state.get("findings", ())), iteration=state["iteration"],
        schema=VERDICT_SCHEMA if role == "review" else None,
        system=system_message(role, template.kind),
    )


def reask_request(review: ModelRequest, reply: str) -> ModelRequest:
    """The review asked once more, for just the verdict of the `reply` it gave."""
    prompt = (f"Review verdict needed: your review below could not be read as a verdict. "
              f"Answer with only the verdict of that review, as one JSON object and nothing "
              f"else:\n{_SHAPE}\n\n{_TEXT_FALLBACK}\n\n# Your review\n{reply}")
    return replace(review, prompt=prompt)


def continued(request: ModelRequest, so_far: str) -> ModelRequest:
    """The same request, asking the model to go on where its reply `so_far` was cut.

    The continuation is plain text, even for a review: what it continues may be JSON.
    """
    prompt = (f"{request.prompt}\n\n# Your reply so far\n{so_far}\n\n# Continue\nYour reply "
              f"above was cut at the output limit. Continue exactly where it stops: repeat "
              f"nothing and add nothing before the continuation.")
    return replace(request, prompt=prompt, schema=None)


def system_message(role: str, kind: Kind) -> str:
    """The role's system message."""
    what = "low-level design" if kind is Kind.LLD else "issue"
    if role == "review":
        return (f"You review {what} documents for a software team: strict about what the "
                f"source requires, brief, and you answer with the verdict in the format asked.")
    return (f"You write {what} documents for a software team, in markdown. Reply with the "
            f"document only: no preamble, no closing remarks, no code fence around it.")


def build_prompt(role: str, template: Template, state: WorkflowState) -> str:
    """The instruction text a real model receives."""
    outline = "\n".join(f"## {name}\n{template.guidance.get(name, '')}"
                        for name in template.sections)
    kind = "low-level design" if template.kind is Kind.LLD else "issue"
    if role == "review":
        sections = json.dumps(list(template.sections))
        return (f"Review this {kind} draft against its source. Answer with one JSON object "
                f"and nothing else:\n{_SHAPE}\n\n{_RUBRIC}\nThe sections are {sections}."
                f"\n\n{_TEXT_FALLBACK}\n\n# Source\n{state['source']}"
                f"\n\n# Draft\n{state['draft']}")
    task = (f"Write a {kind} in markdown for the source below, with exactly these "
            f"sections, each non-empty:\n\n{outline}\n\n# Source\n{state['source']}")
    if role == "revise":
        findings = "\n".join(f"{n}. {f}" for n, f in enumerate(state.get("findings", []), 1))
        task += (f"\n\n# Previous draft\n{state['draft']}\n\n# Reviewer findings to address"
                 f"\n{findings}\n\nReturn the whole revised document.")
    return task
