"""The workflow of one item (docs/design.md, "The processes"), as a checkpointed state machine.

    load -> draft -> validate -> review -> (revise -> validate -> review)* -> finalize

Each step reads and updates one `WorkflowState` (state.py) and names the next step in
`state["next"]`; after every step the whole state is saved to the checkpoint, so a rerun
continues exactly after the last completed step and no model call is repeated. What a
model is asked is in prompts.py, how a review is read in verdict.py, and what the LLD and
the issue workflows do differently in kinds.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from assemblyzero.fileio import check_inside
from assemblyzero.ids import Kind, tag
from assemblyzero.providers import Provider, ProviderError
from assemblyzero.results import Status, WorkerResult, tokens_by_key
from assemblyzero.workflow.checkpoint import Checkpoint
from assemblyzero.workflow.interrupt import Stop
from assemblyzero.workflow.kinds import KindRules, rules_for
from assemblyzero.workflow.prompts import build_request
from assemblyzero.workflow.state import ENDS, STEPS, WorkflowState, checked, new_state
from assemblyzero.workflow.templates import (
    Template,
    missing_sections,
    render,
    split_sections,
    title_of,
)
from assemblyzero.workflow.verdict import Verdict
from assemblyzero.workspace import Workspace


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
    state: WorkflowState = field(default_factory=new_state)

    def run(self, state: WorkflowState | None = None) -> WorkerResult:
        """Run from `state` (a loaded checkpoint) or from the start.

        `self.state` always holds the latest state, also after an exception.
        """
        resumed = state["next"] if state else None
        published = None
        if state and self._input_changed(state):
            self.say("the input changed since the checkpoint; starting this item over")
            published = state.get("published")  # a GitHub issue already created stays created
            state, resumed = None, None
        self.state = state or new_state()
        if published:
            self.state["published"] = published
        checked(self.state)  # InvalidState: not one to run from
        if resumed:
            self.say(f"resuming at step '{resumed}' (checkpoint {self.checkpoint.path.name})")
        steps: dict[str, Callable[[WorkflowState], None]] = {
            name: getattr(self, f"_{name}") for name in STEPS}
        done: list[str] = []
        while self.state["next"] not in ENDS:
            name = self.state["next"]
            steps[name](self.state)
            self.checkpoint.save(name, self.state)
            done.append(name)
            if self.state["next"] not in ENDS:  # finished is finished
                self.stop.check()
        if self.state["next"] == "halted":
            return self._result(Status.HALTED, resumed, done, self.state["halt_reason"])
        return self._result(Status.DONE, resumed, done, "")

    @property
    def rules(self) -> KindRules:
        return rules_for(self.kind)

    @property
    def source(self) -> Path:
        """The input document: the workspace's file, or a GitHub issue's copy."""
        return self.source_path or self.ws.input_file(self.kind, self.item_id)

    def _input_changed(self, state: WorkflowState) -> bool:
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
    def _load(self, state: WorkflowState) -> None:
        for folder in (self.ws.lineage_dir(self.kind, self.item_id),
                       self.ws.output_file(self.kind, self.item_id).parent):
            check_inside(self.ws.root, folder)  # before any paid call, not at its first write
        path = self.source
        state["source"] = self.scrub(self.ws.read_text(path))
        state["title"] = title_of(state["source"], tag(self.kind, self.item_id))
        self.say(f"load: {path.relative_to(self.ws.root)} ({state['title']})")
        state["next"] = "draft"

    def _draft(self, state: WorkflowState) -> None:
        state["iteration"] = 1
        state["draft"] = self._call(self.drafter, "draft", state)
        self.lineage(f"{state['iteration']:03d}-draft.md", state["draft"])
        state["next"] = "validate"

    def _validate(self, state: WorkflowState) -> None:
        missing = missing_sections(self.template, state["draft"])
        if not missing:
            self.say(f"validate: all {len(self.template.sections)} sections present")
            state["next"] = "review"
            return
        self.say(f"validate: {len(missing)} section(s) missing or empty: {', '.join(missing)}")
        self._judge(state, Verdict(False, tuple(
            f"{name}: section is missing or empty." for name in missing)))

    def _review(self, state: WorkflowState) -> None:
        reply = self._call(self.reviewer, "review", state)
        self.lineage(f"{state['iteration']:03d}-review.md", reply)
        verdict = Verdict.from_text(reply)
        found = len(verdict.findings)
        self.say(f"review: {verdict.word}" + (f" ({found} finding(s))" if found else ""))
        self._judge(state, verdict)

    def _judge(self, state: WorkflowState, verdict: Verdict) -> None:
        """Decide what follows a verdict: finalize, revise, or halt."""
        if verdict.approved:
            state["next"] = "finalize"
            return
        previous = state["history"][-1]["findings"] if state["history"] else []
        findings = list(verdict.findings)
        state["history"].append({"iteration": state["iteration"], "findings": findings})
        state["findings"] = findings
        repeated = verdict.repeated(previous)
        if repeated is not None:
            self._halt(state, f"same blocking finding twice in a row: {repeated}")
        elif state["iteration"] - 1 >= self.max_iterations:
            self._halt(state, f"not approved after {self.max_iterations} revision(s)")
        else:
            state["next"] = "revise"

    def _halt(self, state: WorkflowState, reason: str) -> None:
        """Needs a human: kept in the checkpoint until the input changes."""
        state["next"], state["halt_reason"] = "halted", reason

    def _revise(self, state: WorkflowState) -> None:
        state["iteration"] += 1
        state["draft"] = self._call(self.drafter, "revise", state)
        self.lineage(f"{state['iteration']:03d}-draft.md", state["draft"])
        state["next"] = "validate"

    def _finalize(self, state: WorkflowState) -> None:
        out = self.ws.output_file(self.kind, self.item_id)
        self.rules.before_output(self, state)
        doc = self.document(state)
        self.ws.write_text(out, doc)
        self.lineage("final.md", doc)
        self.say(f"finalize: wrote {out.relative_to(self.ws.root)} "
                 f"(approved at iteration {state['iteration']})")
        self.rules.after_output(self, state, out)
        state["next"] = "done"

    # --- model calls and files -------------------------------------------------
    def _call(self, provider: Provider, role: str, state: WorkflowState) -> str:
        spec = self.models[1] if role == "review" else self.models[0]
        self.say(f"{role}: calling {spec} (iteration {state['iteration']})")
        request = build_request(role, self.kind, self.item_id, self.template, state)
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

    def lineage(self, name: str, text: str) -> None:
        """Write `name` to the item's lineage folder (every draft, review and the result)."""
        self.ws.write_text(self.ws.lineage_dir(self.kind, self.item_id) / name, text)

    def document(self, state: WorkflowState) -> str:
        """The output document: the latest draft's sections under the kind's heading."""
        title, preface = self.rules.heading(self, state)
        return render(title, split_sections(state["draft"]), self.template.sections, preface)
