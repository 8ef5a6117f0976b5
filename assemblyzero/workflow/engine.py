"""The workflow of one item (docs/design.md, "The processes"), as a checkpointed state machine.

    load -> draft -> validate -> review -> (revise -> validate -> review)* -> finalize

Each step reads and updates one JSON-able `state` dict and names the next
step in `state["next"]`; after every step the whole state is saved to the
checkpoint, so a rerun continues exactly after the last completed step and
no model call is repeated.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assemblyzero.constants import MAX_STATE_ITERATION
from assemblyzero.fileio import check_inside
from assemblyzero.ids import Kind, tag
from assemblyzero.providers import ModelRequest, Provider, ProviderError
from assemblyzero.results import Status, WorkerResult, tokens_by_key
from assemblyzero.workflow import lld_index
from assemblyzero.workflow.checkpoint import Checkpoint
from assemblyzero.workflow.interrupt import Stop
from assemblyzero.workflow.templates import (
    Template,
    missing_sections,
    render,
    split_sections,
    title_of,
)
from assemblyzero.workspace import Workspace

State = dict[str, Any]
_VERDICT = re.compile(r"^\s*\**\s*VERDICT\s*\**\s*:\s*\**\s*(APPROVED|REVISE)\b", re.I | re.M)
_FINDING = re.compile(r"^\s*\d+[.)]\s+(.+?)\s*$", re.M)

# The steps, each a method `_<name>`, and the two ends a state's "next" may also name.
STEPS = ("load", "draft", "validate", "review", "revise", "finalize")
ENDS = ("done", "halted")
# What a state must hold before its next step and every step that may follow it,
# besides what every state holds (validate may lead to revise: it needs the source).
_NEEDS = {"draft": ("source", "title"), "validate": ("source", "title", "draft"),
          "review": ("source", "title", "draft"), "revise": ("source", "title", "draft"),
          "finalize": ("title", "draft"), "halted": ("halt_reason",)}
_TEXTS = ("source", "title", "draft", "halt_reason")


class InvalidState(ValueError):
    """A state (from a checkpoint) that the workflow cannot run from."""


@dataclass
class Workflow:
    ws: Workspace
    kind: Kind
    item_id: str
    template: Template
    drafter: Provider
    reviewer: Provider
    models: tuple[str, str]  # drafter and reviewer specs, for the record
    max_iterations: int
    checkpoint: Checkpoint
    say: Callable[[str], None]
    stop: Stop = field(default_factory=Stop)
    source_path: Path | None = None  # input other than the workspace's file (GitHub)
    publish: str | None = None  # "github": also create the issue there
    scrub: Callable[[str], str] = str  # masks secrets in model text before it is stored
    state: State = field(default_factory=dict)

    def run(self, state: State | None = None) -> WorkerResult:
        """Run from `state` (a loaded checkpoint) or from the start.

        `self.state` always holds the latest state, also after an exception.
        """
        resumed = state["next"] if state else None
        if state and self._input_changed(state):
            self.say("the input changed since the checkpoint; starting this item over")
            published = state.get("published")  # a GitHub issue already created stays created
            state = {"published": published} if published else None
            resumed = None
        fresh = {"next": "load", "iteration": 0, "model_calls": 0, "history": []}
        self.state = state if state and "next" in state else {**fresh, **(state or {})}
        problem = state_problem(self.state)
        if problem:
            raise InvalidState(problem)
        if resumed:
            self.say(f"resuming at step '{resumed}' (checkpoint {self.checkpoint.path.name})")
        steps: dict[str, Callable[[State], None]] = {
            name: getattr(self, f"_{name}") for name in STEPS}
        done: list[str] = []
        while self.state["next"] not in ("done", "halted"):
            name = self.state["next"]
            steps[name](self.state)
            self.checkpoint.save(name, self.state)
            done.append(name)
            if self.state["next"] not in ("done", "halted"):  # finished is finished
                self.stop.check()
        if self.state["next"] == "halted":
            return self._result(Status.HALTED, resumed, done, self.state["halt_reason"])
        return self._result(Status.DONE, resumed, done, "")

    def _input_changed(self, state: State) -> bool:
        if "source" not in state:
            return False
        try:
            current = self.ws.read_text(self.source)
        except OSError:
            return False  # gone or unreadable: the checkpoint still has it
        return bool(self.scrub(current) != state["source"])

    def _result(
        self, status: Status, resumed: str | None, done: list[str], reason: str
    ) -> WorkerResult:
        output = self.ws.output_file(self.kind, self.item_id) if status is Status.DONE else None
        return WorkerResult(
            kind=self.kind.value, id=self.item_id, status=status,
            iterations=self.state["iteration"], model_calls=self.state["model_calls"],
            tokens=list(self.state.get("tokens", [0, 0])),
            tokens_by_key=tokens_by_key(self.state),
            resumed_from=resumed, reason=reason, steps=done,
            output=str(output.relative_to(self.ws.root)) if output else None,
        )

    # --- steps --------------------------------------------------------------
    def _load(self, state: State) -> None:
        for folder in (self.ws.lineage_dir(self.kind, self.item_id),
                       self.ws.output_file(self.kind, self.item_id).parent):
            check_inside(self.ws.root, folder)  # before any paid call, not at its first write
        path = self.source
        state["source"] = self.scrub(self.ws.read_text(path))
        state["title"] = title_of(state["source"], tag(self.kind, self.item_id))
        self.say(f"load: {path.relative_to(self.ws.root)} ({state['title']})")
        state["next"] = "draft"

    def _draft(self, state: State) -> None:
        state["iteration"] = 1
        state["draft"] = self._call(self.drafter, "draft", state)
        self._lineage(f"{state['iteration']:03d}-draft.md", state["draft"])
        state["next"] = "validate"

    def _validate(self, state: State) -> None:
        missing = missing_sections(self.template, state["draft"])
        if not missing:
            self.say(f"validate: all {len(self.template.sections)} sections present")
            state["next"] = "review"
            return
        self.say(f"validate: {len(missing)} section(s) missing or empty: {', '.join(missing)}")
        self._judge(state, "REVISE", [f"{name}: section is missing or empty." for name in missing])

    def _review(self, state: State) -> None:
        reply = self._call(self.reviewer, "review", state)
        self._lineage(f"{state['iteration']:03d}-review.md", reply)
        verdict, findings = parse_verdict(reply)
        self.say(f"review: {verdict}" + (f" ({len(findings)} finding(s))" if findings else ""))
        self._judge(state, verdict, findings)

    def _judge(self, state: State, verdict: str, findings: list[str]) -> None:
        """Decide what follows a verdict: finalize, revise, or halt."""
        if verdict == "APPROVED":
            state["next"] = "finalize"
            return
        previous = state["history"][-1]["findings"] if state["history"] else []
        state["history"].append({"iteration": state["iteration"], "findings": findings})
        state["findings"] = findings
        repeated = {_norm(f) for f in findings} & {_norm(f) for f in previous}
        if repeated:
            first = next(f for f in findings if _norm(f) in repeated)
            self._halt(state, f"same blocking finding twice in a row: {first}")
        elif state["iteration"] - 1 >= self.max_iterations:
            self._halt(state, f"not approved after {self.max_iterations} revision(s)")
        else:
            state["next"] = "revise"

    def _halt(self, state: State, reason: str) -> None:
        """Needs a human: kept in the checkpoint until the input changes."""
        state["next"], state["halt_reason"] = "halted", reason

    def _revise(self, state: State) -> None:
        state["iteration"] += 1
        state["draft"] = self._call(self.drafter, "revise", state)
        self._lineage(f"{state['iteration']:03d}-draft.md", state["draft"])
        state["next"] = "validate"

    @property
    def source(self) -> Path:
        """The input document: the workspace's file, or a GitHub issue's copy."""
        return self.source_path or self.ws.input_file(self.kind, self.item_id)

    def _finalize(self, state: State) -> None:
        out = self.ws.output_file(self.kind, self.item_id)
        if self.publish == "github" and "published" not in state:
            self._publish(state)  # before the document: a failure leaves the item pending
        doc = self._document(state)
        self.ws.write_text(out, doc)
        self._lineage("final.md", doc)
        self.say(f"finalize: wrote {out.relative_to(self.ws.root)} "
                 f"(approved at iteration {state['iteration']})")
        if self.kind is Kind.LLD:
            lld_index.record_or_warn(self.ws, self.item_id, "approved", self.say,
                          iterations=state["iteration"], file=str(out.relative_to(self.ws.root)))
        else:
            self._retire_brief()
        state["next"] = "done"

    def _publish(self, state: State) -> None:
        """Create the GitHub issue; its number goes to the checkpoint at once, and the lineage."""
        from assemblyzero import github

        body = self._document(state).split("\n", 1)[1].lstrip()
        number = github.create_issue(state["title"], body, cwd=self.ws.root)
        state["published"] = number
        self.checkpoint.save("publish", state)  # a rerun must not create it twice
        self._lineage("published.json", json.dumps({"github_issue": number}) + "\n")
        self.say(f"publish: created GitHub issue #{number}")

    def _retire_brief(self) -> None:
        """Move the brief to ideas/done, never over an older brief of the same name."""
        brief = self.ws.input_file(self.kind, self.item_id)
        if not brief.exists():
            return
        check_inside(self.ws.root, self.ws.briefs_done)
        self.ws.briefs_done.mkdir(parents=True, exist_ok=True)
        target, n = self.ws.briefs_done / brief.name, 1
        while target.exists():
            n += 1
            target = self.ws.briefs_done / f"{self.item_id}.{n}.md"
        brief.replace(target)

    # --- helpers ------------------------------------------------------------
    def _call(self, provider: Provider, role: str, state: State) -> str:
        spec = self.models[1] if role == "review" else self.models[0]
        self.say(f"{role}: calling {spec} (iteration {state['iteration']})")
        request = ModelRequest(
            role=role, kind=self.kind.value, item_id=self.item_id, title=state["title"],
            source=state["source"], sections=self.template.sections,
            prompt=build_prompt(role, self.template, state), draft=state.get("draft", ""),
            findings=tuple(state.get("findings", ())), iteration=state["iteration"],
        )
        started = time.monotonic()
        try:
            reply = self.stop.call(lambda: provider.complete(request))
        except ProviderError as exc:
            key = getattr(provider, "key", None)
            exc.credential = key.name if key else None
            raise
        state["model_calls"] += 1
        used = state.setdefault("tokens", [0, 0])  # input, output: where the API reports them
        used[0] += reply.input_tokens or 0
        used[1] += reply.output_tokens or 0
        key = getattr(provider, "key", None)
        if key is not None:  # per leased key too, so each key is charged only its own calls
            mine = state.setdefault("tokens_by_key", {}).setdefault(key.name, [0, 0])
            mine[0] += reply.input_tokens or 0
            mine[1] += reply.output_tokens or 0
        counted = reply.input_tokens is not None or reply.output_tokens is not None
        tokens = (f", {reply.input_tokens or 0} in / {reply.output_tokens or 0} out tokens"
                  if counted else "")
        self.say(f"{role}: reply in {time.monotonic() - started:.2f}s{tokens}")
        return self.scrub(reply.text)

    def _lineage(self, name: str, text: str) -> None:
        self.ws.write_text(self.ws.lineage_dir(self.kind, self.item_id) / name, text)

    def _document(self, state: State) -> str:
        body = split_sections(state["draft"])
        source = self.source.relative_to(self.ws.root)
        if self.kind is Kind.ISSUE:
            published = state.get("published")
            preface = f"**GitHub:** #{published}" if published else ""
            return render(state["title"], body, self.template.sections, preface)
        preface = (f"**Status:** APPROVED (iteration {state['iteration']})  \n"
                   f"**Source:** `{source}`  \n"
                   f"**Drafter:** `{self.scrub(self.models[0])}` / "
                   f"**Reviewer:** `{self.scrub(self.models[1])}`")
        title = f"{tag(self.kind, self.item_id)}: {state['title']}"
        return render(title, body, self.template.sections, preface)


def parse_verdict(text: str) -> tuple[str, list[str]]:
    """`APPROVED` or `REVISE` with its numbered findings.

    An unparseable reply is REVISE, with that as its finding.
    """
    match = _VERDICT.search(text)
    if match is None:
        snippet = " ".join(text.split())[:120]
        return "REVISE", [f"Review: unparseable verdict: {snippet!r}"]
    verdict = match.group(1).upper()
    findings = _FINDING.findall(text) if verdict == "REVISE" else []
    return verdict, findings or (["Review: REVISE without numbered findings"]
                                 if verdict == "REVISE" else [])


def _norm(finding: str) -> str:
    return " ".join(finding.lower().split())


def build_prompt(role: str, template: Template, state: State) -> str:
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


def state_problem(state: object) -> str | None:
    """What makes `state` one the workflow cannot resume from, or None if it can."""
    if not isinstance(state, dict):
        return "the state is not an object"
    step = state.get("next")
    if not isinstance(step, str) or step not in STEPS + ENDS:
        return f"unknown next step {_shown(step)} (known: {', '.join(STEPS + ENDS)})"
    for key, most in (("iteration", MAX_STATE_ITERATION), ("model_calls", None)):
        if not _count(state.get(key), most):
            return f"{key} is {_shown(state.get(key))}, not a whole number" + (
                f" from 0 to {most}" if most else " >= 0")
    if not isinstance(state.get("history"), list) or not all(
            isinstance(h, dict) and _texts(h.get("findings")) for h in state["history"]):
        return "history is not a list of {findings: [text, ...]}"
    missing = [key for key in _NEEDS.get(step, ()) if key not in state]
    if missing:
        return f"step {step!r} needs {', '.join(missing)}, missing from the state"
    wrong = [key for key in _TEXTS if key in state and not _text(state[key])]
    if wrong:
        return f"not UTF-8 text: {', '.join(wrong)}"
    if "findings" in state and not _texts(state["findings"]):
        return "findings is not a list of text"
    tokens = state.get("tokens", [0, 0])
    if not _pair(tokens):
        return f"tokens is {_shown(tokens)}, not [input, output] counts"
    by_key = state.get("tokens_by_key", {})  # absent in checkpoints of older releases
    if not (isinstance(by_key, dict) and all(_text(k) and _pair(v) for k, v in by_key.items())):
        return f"tokens_by_key is {_shown(by_key)}, not {{credential: [input, output]}}"
    if "published" in state and not (_count(state["published"]) and state["published"]):
        return f"published is {_shown(state['published'])}, not a GitHub issue number"
    return None


def _pair(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_count(t) for t in value)


def _count(value: object, most: int | None = None) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= 0
            and (most is None or value <= most))


def _text(value: object) -> bool:
    """A str that can be written as UTF-8 (JSON may smuggle in lone surrogates)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _texts(value: object) -> bool:
    return isinstance(value, list) and all(_text(v) for v in value)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

