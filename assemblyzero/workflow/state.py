"""What the workflow keeps in its checkpoint: `WorkflowState`, and whether one can be resumed.

The state is saved as JSON after every step (`checkpoint.Checkpoint.save`) and read back on
a rerun; `state_problem` says why a state read back cannot be run from. The keys and their
JSON shapes are the checkpoint's format: adding a key is fine, renaming or reshaping one
breaks the checkpoints that older releases left behind.
"""

from __future__ import annotations

from typing import Required, TypedDict, cast

from assemblyzero.constants import MAX_STATE_ITERATION, RETRY_COUNT_MAX, RETRY_NAME_LIMIT
from assemblyzero.workflow.verdict import WORDS

# The steps, each a method `Workflow._<name>`, and the two ends a state's "next" may also name.
STEPS = ("load", "draft", "validate", "review", "revise", "finalize")
ENDS = ("done", "halted")
PAID_STEPS = ("draft", "review", "revise")  # the steps that call a model
# What a state must hold before its next step and every step that may follow it,
# besides what every state holds (validate may lead to revise: it needs the source).
_NEEDS = {"draft": ("source", "title"), "validate": ("source", "title", "draft"),
          "review": ("source", "title", "draft"), "revise": ("source", "title", "draft"),
          "finalize": ("title", "draft"), "halted": ("halt_reason",)}
_TEXTS = ("source", "title", "draft", "halt_reason")


class Round(TypedDict, total=False):
    """One review round that was not approved (older checkpoints hold only the first two)."""

    iteration: int
    findings: Required[list[str]]  # the changes the revision must make (blocking and major)
    verdict: str  # REVISE or DISCUSS (a validate round: REVISE)
    minor: list[str]  # the minor findings: recorded, not sent to the drafter
    unreadable: str  # the review could not be read, even asked again: what it said, quoted


class WorkflowState(TypedDict, total=False):
    """The whole state of one item's workflow, as the checkpoint stores it."""

    next: Required[str]  # the step to run next (STEPS), or how it ended (ENDS)
    iteration: Required[int]  # 1 for the first draft, +1 per revision
    model_calls: Required[int]
    history: Required[list[Round]]  # every round that was not approved, oldest first
    source: str  # the input document, secrets masked (load)
    title: str  # its title (load)
    draft: str  # the latest draft (draft, revise)
    findings: list[str]  # the latest round's findings, for the next revise
    minor: list[str]  # the latest review's minor findings (approved or not)
    retries: dict[str, int]  # what was retried, how often (results.WorkerResult.retries)
    halt_reason: str  # why it needs a human (next == "halted")
    tokens: list[int]  # [input, output] of every call, where the API reports them
    tokens_by_key: dict[str, list[int]]  # the same per leased key (older checkpoints: absent)
    published: int  # the GitHub issue created at finalize (issue workflow, --publish)


class InvalidState(ValueError):
    """A state (from a checkpoint) that the workflow cannot run from."""


def new_state() -> WorkflowState:
    """The state of an item that has not started."""
    return {"next": "load", "iteration": 0, "model_calls": 0, "history": []}


def checked(state: object) -> WorkflowState:
    """`state` (read back from a checkpoint) as a WorkflowState; InvalidState if it is not one."""
    problem = state_problem(state)
    if problem:
        raise InvalidState(problem)
    return cast(WorkflowState, state)


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
    wrong_round = next((_round_problem(h) for h in state["history"] if _round_problem(h)), None)
    if wrong_round:
        return f"history: {wrong_round}"
    missing = [key for key in _NEEDS.get(step, ()) if key not in state]
    if missing:
        return f"step {step!r} needs {', '.join(missing)}, missing from the state"
    wrong = [key for key in _TEXTS if key in state and not _text(state[key])]
    if wrong:
        return f"not UTF-8 text: {', '.join(wrong)}"
    for key in ("findings", "minor"):
        if key in state and not _texts(state[key]):
            return f"{key} is not a list of text"
    retries = state.get("retries", {})  # absent in checkpoints of older releases
    if not (isinstance(retries, dict) and all(
            _text(k) and len(k) <= RETRY_NAME_LIMIT and _count(n, RETRY_COUNT_MAX)
            for k, n in retries.items())):
        return f"retries is {_shown(retries)}, not {{what: count}}"
    tokens = state.get("tokens", [0, 0])
    if not _pair(tokens):
        return f"tokens is {_shown(tokens)}, not [input, output] counts"
    by_key = state.get("tokens_by_key", {})  # absent in checkpoints of older releases
    if not (isinstance(by_key, dict) and all(_text(k) and _pair(v) for k, v in by_key.items())):
        return f"tokens_by_key is {_shown(by_key)}, not {{credential: [input, output]}}"
    if "published" in state and not (_count(state["published"]) and state["published"]):
        return f"published is {_shown(state['published'])}, not a GitHub issue number"
    return None


def _round_problem(round_: dict[str, object]) -> str | None:
    """What is wrong with the keys a round of this release adds (absent in older ones)."""
    if "verdict" in round_ and round_["verdict"] not in WORDS:
        return f"verdict {_shown(round_['verdict'])} is not one of {', '.join(WORDS)}"
    if "minor" in round_ and not _texts(round_["minor"]):
        return "minor is not a list of text"
    if "unreadable" in round_ and not _text(round_["unreadable"]):
        return "unreadable is not text"
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
