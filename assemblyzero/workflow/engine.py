"""The workflow of one item (docs/design.md, "The processes"), as a checkpointed state machine.

    load -> draft -> validate -> review -> (revise -> validate -> review)* -> finalize

Each step reads and updates one `WorkflowState` (state.py) and names the next step in
`state["next"]`; after every step the whole state is saved to the checkpoint, so a rerun
continues exactly after the last completed step and no model call is repeated. What a
model is asked is in prompts.py, how a review is read in verdict.py, and what the LLD and
the issue workflows do differently in kinds.py.

A reply is taken whole or not at all (`_call`): an empty one is asked once more, a cut one
is continued, and one that stays empty or cut fails the item; an unreadable review is asked
once more for just its verdict, then counts as REVISE quoting what it said. Every retry is
a line in the item's log and a count in `state["retries"]` (WorkerResult.retries).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from assemblyzero.constants import MAX_CONTINUATIONS, QUOTE_LIMIT, REASON_LIMIT, RETRY_NAME_LIMIT
from assemblyzero.cost import Price, Spend, money
from assemblyzero.fileio import check_inside
from assemblyzero.ids import Kind, tag
from assemblyzero.keys.pacer import Pacer
from assemblyzero.providers import (
    ModelReply,
    ModelRequest,
    Provider,
    ProviderError,
    RateLimited,
)
from assemblyzero.results import Status, WorkerResult, retries_of, tokens_by_key
from assemblyzero.workflow.checkpoint import Checkpoint
from assemblyzero.workflow.interrupt import Interrupted, Stop
from assemblyzero.workflow.kinds import KindRules, rules_for
from assemblyzero.workflow.prompts import (
    Prompts,
    build_request,
    builtin_prompts,
    continued,
    reask_request,
)
from assemblyzero.workflow.state import (
    ENDS,
    PAID_STEPS,
    STEPS,
    Round,
    WorkflowState,
    checked,
    new_state,
)
from assemblyzero.workflow.templates import (
    Template,
    missing_sections,
    render,
    split_sections,
    tidy,
    title_of,
)
from assemblyzero.workflow.verdict import Finding, Verdict, quote, shorten
from assemblyzero.workspace import Workspace


class ReplyFailed(ProviderError):
    """A reply that stayed empty, or stayed cut after every continuation: the item fails."""


def _cut_at(reply: ModelReply) -> str:
    if reply.output_tokens is None:
        return "the output-token limit"
    return f"{reply.output_tokens} output tokens"


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
    max_output_tokens: int | None = None  # a cap on one reply (None: the provider's default)
    prompts: Prompts = field(default_factory=builtin_prompts)  # the workspace's or built in
    prices: tuple[Price | None, Price | None] = (None, None)  # drafter's, reviewer's; None: unknown
    on_spend: Callable[[Spend], None] | None = None  # told this attempt's spend after each call
    pacer: Pacer = field(default_factory=Pacer)  # each call's key budget; counts per key
    state: WorkflowState = field(default_factory=new_state)
    # What this attempt's calls cost, overall and per leased key (not checkpointed: a rerun
    # is another attempt, and what the run spent is the sum of its attempts').
    spend: Spend = field(default_factory=Spend)
    spend_by_key: dict[str, Spend] = field(default_factory=dict)

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
                # Asked to stop after this step (a budget): only before one that spends.
                self.stop.between_steps(name, self.state["next"] in PAID_STEPS)
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
            tokens_by_key=tokens_by_key(self.state), retries=retries_of(self.state),
            spent=self.spend.pair(), spent_by_key=self.spent_by_key(),
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
        raw = self._call(self.drafter, "draft", state).text
        self.lineage(f"{state['iteration']:03d}-draft.md", raw)  # as the model wrote it
        state["draft"] = tidy(raw, self.template)  # the template's headings, no chatter
        state["next"] = "validate"

    def _validate(self, state: WorkflowState) -> None:
        missing = missing_sections(self.template, state["draft"])
        if not missing:
            self.say(f"validate: all {len(self.template.sections)} sections present")
            state["next"] = "review"
            return
        self.say(f"validate: {len(missing)} section(s) missing or empty: {', '.join(missing)}")
        self._judge(state, Verdict("REVISE", "", tuple(
            Finding(name, "blocking", "section is missing or empty.") for name in missing)))

    def _review(self, state: WorkflowState) -> None:
        at = f"{state['iteration']:03d}"
        reply = self._call(self.reviewer, "review", state)
        self.lineage(f"{at}-review.md", reply.text)
        verdict = Verdict.read(reply.text, reply.structured)
        said = None
        if verdict is None:  # once more, for just the verdict
            self._retried(state, "re-ask", f"review: the reply could not be read as a verdict "
                          f"({quote(reply.text, QUOTE_LIMIT)}); asking {self.models[1]} once "
                          f"more for just the verdict")
            request = build_request("review", self.kind, self.item_id, self.template, state,
                                    self.prompts)
            again = self._call(self.reviewer, "review", state,
                               reask_request(request, reply.text, self.prompts))
            self.lineage(f"{at}-review-reask.md", again.text)
            verdict = Verdict.read(again.text, again.structured)
        if verdict is None:
            said = quote(reply.text, QUOTE_LIMIT)
            self.say("review: the reply could not be read as a verdict, even asked again; "
                     "counted as REVISE")
            verdict = Verdict("REVISE", f"no verdict could be read; the reviewer said: {said}", (
                Finding("Review", "major", f"the reviewer's reply could not be read as a "
                                           f"verdict; it said: {said}"),))
        self.lineage(f"{at}-verdict.md", verdict.to_markdown())
        required, minor = len(verdict.required), len(verdict.minor)
        counts = [f"{required} finding(s)"] if required else []
        counts += [f"{minor} minor, recorded"] if minor else []
        self.say(f"review: {verdict.word}" + (f" ({', '.join(counts)})" if counts else ""))
        self._judge(state, verdict, said)

    def _judge(self, state: WorkflowState, verdict: Verdict, said: str | None = None) -> None:
        """Decide what follows a verdict: finalize, revise, or halt.

        `said`: the review could not be read; the quote of what the reviewer said.
        """
        state["minor"] = list(verdict.minor)
        if verdict.approved:
            state["next"] = "finalize"
            return
        last = state["history"][-1] if state["history"] else None
        previous = last["findings"] if last and "unreadable" not in last else []
        findings = list(verdict.required) or [
            f"Review: {shorten(verdict.rationale, REASON_LIMIT) or 'REVISE without findings'}"]
        done: Round = {"iteration": state["iteration"], "findings": findings,
                       "verdict": verdict.word}
        if verdict.minor:
            done["minor"] = list(verdict.minor)
        if said is not None:
            done["unreadable"] = said
        state["history"].append(done)
        state["findings"] = findings
        repeated = verdict.repeated(previous) if said is None else None
        if verdict.word == "DISCUSS":
            question = verdict.rationale or "; ".join(verdict.required) or "(no question given)"
            self._halt(state, f"the reviewer asks a human to decide: "
                              f"{shorten(question, REASON_LIMIT)}")
        elif repeated is not None:
            self._halt(state, f"same blocking finding twice in a row: {repeated}")
        elif state["iteration"] - 1 >= self.max_iterations:
            self._halt(state, self._not_approved(state))
        else:
            state["next"] = "revise"

    def _not_approved(self, state: WorkflowState) -> str:
        """The reason of a halt after the last revision, saying when reviews were unreadable."""
        unread = [r["unreadable"] for r in state["history"] if "unreadable" in r]
        if not unread:
            return f"not approved after {self.max_iterations} revision(s)"
        return (f"no readable approval after {self.max_iterations} revision(s): {len(unread)} "
                f"review(s) could not be read as a verdict, even asked again (the last said: "
                f"{unread[-1]})")

    def _halt(self, state: WorkflowState, reason: str) -> None:
        """Needs a human: kept in the checkpoint until the input changes."""
        state["next"], state["halt_reason"] = "halted", reason

    def _revise(self, state: WorkflowState) -> None:
        state["iteration"] += 1
        raw = self._call(self.drafter, "revise", state).text
        self.lineage(f"{state['iteration']:03d}-draft.md", raw)  # as the model wrote it
        state["draft"] = tidy(raw, self.template)  # the template's headings, no chatter
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
    def _call(self, provider: Provider, role: str, state: WorkflowState,
              request: ModelRequest | None = None) -> ModelReply:
        """One whole reply of `role` (secrets masked): an empty one asked once more, a cut one
        continued up to MAX_CONTINUATIONS times; ReplyFailed when neither comes right."""
        spec = self.models[1] if role == "review" else self.models[0]
        request = request or build_request(role, self.kind, self.item_id, self.template, state,
                                           self.prompts)
        if self.max_output_tokens is not None:
            request = replace(request, max_output_tokens=self.max_output_tokens)
        reply = self._once(provider, role, spec, state, request)
        if not reply.text.strip() and not reply.truncated:  # cut with nothing: the limit's
            self._retried(state, "empty", f"{role}: empty reply from {spec}; asking once more")
            reply = self._once(provider, role, spec, state, request)
            if not reply.text.strip() and not reply.truncated:
                raise self._failed(provider, f"empty reply from {spec}")
        text, structured, cut = reply.text, reply.structured, reply.truncated
        for n in range(1, MAX_CONTINUATIONS + 1):
            if not cut:
                break
            self._retried(state, "cut", f"{role}: the reply was cut at {_cut_at(reply)}; asking "
                          f"{spec} to continue ({n} of {MAX_CONTINUATIONS})")
            reply = self._once(provider, role, spec, state,
                               continued(request, text, self.prompts))
            # An empty continuation finished nothing: the text is still cut.
            text, structured = text + reply.text, False
            cut = reply.truncated or not reply.text.strip()
        if cut or not text.strip():
            raise self._failed(provider, f"the {role} reply was cut at {_cut_at(reply)} "
                                         f"(the limit for one reply): raise "
                                         f"--max-output-tokens if the model allows more")
        return replace(reply, text=self.scrub(text), structured=structured)

    def _once(self, provider: Provider, role: str, spec: str, state: WorkflowState,
              request: ModelRequest) -> ModelReply:
        """One model call: counted, its tokens charged, its provider's retries said."""
        self.say(f"{role}: calling {spec} (iteration {state['iteration']})")
        key = getattr(provider, "key", None)
        name = key.name if key is not None else None
        chars = len(request.prompt) + len(request.system)
        ensure = getattr(provider, "ensure", None)  # a LazyProvider: created before it paces
        if ensure is not None:
            try:
                self.stop.call(ensure)
            except ProviderError as exc:
                exc.credential = name
                raise
        while True:
            ticket = self.pacer.before(name, role, chars, request.max_output_tokens)
            started = time.monotonic()
            try:
                reply = self.stop.call(lambda: provider.complete(request))
            except Interrupted:  # abandoned in flight: the provider may bill it all the same
                self._add_spend(None, name)
                raise
            except RateLimited as exc:  # waited out here, or the attempt ends (the pacer's)
                exc.credential = name
                self._say_retries(state, role, spec, exc.retried)
                if self.pacer.refused(ticket, exc):  # which says so in the item's log
                    counts = state.setdefault("retries", {})
                    counts["HTTP 429"] = counts.get("HTTP 429", 0) + 1
                    continue
                raise
            except ProviderError as exc:
                exc.credential = name
                self._say_retries(state, role, spec, exc.retried)  # counted even as it fails
                raise
            self.pacer.after(ticket, reply)
            break
        state["model_calls"] += 1
        used = state.setdefault("tokens", [0, 0])  # input, output: where the API reports them
        used[0] += reply.input_tokens or 0
        used[1] += reply.output_tokens or 0
        if key is not None:  # per leased key too, so each key is charged only its own calls
            mine = state.setdefault("tokens_by_key", {}).setdefault(key.name, [0, 0])
            mine[0] += reply.input_tokens or 0
            mine[1] += reply.output_tokens or 0
        self._say_retries(state, role, spec, reply.retries)
        counted = reply.input_tokens is not None or reply.output_tokens is not None
        tokens = (f", {reply.input_tokens or 0} in / {reply.output_tokens or 0} out tokens"
                  if counted else "")
        cost = self._charge(role, spec, reply, key.name if key is not None else None)
        self.say(f"{role}: reply in {time.monotonic() - started:.2f}s{tokens}, {cost}")
        return reply

    def _charge(self, role: str, spec: str, reply: ModelReply, key: str | None) -> str:
        """Add one call's cost to this attempt's spend (and its key's); how it reads."""
        price = self.prices[1] if role == "review" else self.prices[0]
        usd = price.of(reply.input_tokens, reply.output_tokens) if price else None
        self._add_spend(usd, key)
        if usd is not None:
            return f"cost {money(usd)}"
        if price is None:
            return f"cost unknown (no price for {spec}: add it to [tool.assemblyzero.prices])"
        return "cost unknown (the reply reported no token counts)"

    def _add_spend(self, usd: float | None, key: str | None) -> None:
        """One call more in this attempt's spend (None: its cost is unknown), told on."""
        self.spend = self.spend.call(usd)
        if key is not None:
            self.spend_by_key[key] = self.spend_by_key.get(key, Spend()).call(usd)
        if self.on_spend is not None:
            self.on_spend(self.spend)

    def spent_by_key(self) -> dict[str, list[float | int]]:
        """This attempt's spend per leased key, as a result file stores it."""
        return {name: spend.pair() for name, spend in self.spend_by_key.items()}

    def _say_retries(self, state: WorkflowState, role: str, spec: str,
                     retries: tuple[str, ...]) -> None:
        for what in retries:
            label = " ".join(self.scrub(what).split())[:RETRY_NAME_LIMIT] or "retry"
            self._retried(state, label, f"{role}: {spec} was retried after {label}")

    def _retried(self, state: WorkflowState, what: str, line: str) -> None:
        """Say a retry in the item's log and count it (WorkerResult.retries)."""
        self.say(line)
        counts = state.setdefault("retries", {})
        counts[what] = counts.get(what, 0) + 1

    def _failed(self, provider: Provider, message: str) -> ReplyFailed:
        failed = ReplyFailed(message)
        key = getattr(provider, "key", None)
        failed.credential = key.name if key else None
        return failed

    def lineage(self, name: str, text: str) -> None:
        """Write `name` to the item's lineage folder (every draft, review and the result)."""
        self.ws.write_text(self.ws.lineage_dir(self.kind, self.item_id) / name, text)

    def document(self, state: WorkflowState) -> str:
        """The output document: the latest draft's sections under the kind's heading."""
        title, preface = self.rules.heading(self, state)
        # Tidied again: a checkpoint of an older release may hold a draft as the model wrote it.
        sections = split_sections(tidy(state["draft"], self.template))
        return render(title, sections, self.template.sections, preface)
