"""Replies as real models write them, served on 127.0.0.1 in two wire formats.

`ShapeServer(wire)` answers OpenAI chat completions (`wire="openai"`, also what
OpenAI-compatible servers speak) or Anthropic messages (`wire="anthropic"`). Each
item's id names its shape (`make_workspace(issues=["d-fence-1", ...])`: the source
the models get says "Feature d-fence-1"), or a draft shape and a review shape
together ("d-fence_r-bold-1": the drafts of d-fence, the reviews of r-bold);
`SHAPES` lists them with what must come of them. Review requests are told apart by
the schema they carry (response_format, a forced tool) or by a prompt that starts
with "Review".

`python tests/reply_shapes.py [N]` runs every shape N times (default 3) through the
real CLI for both wire formats and prints the table of outcomes.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from http_fake import JsonHandler, start

SECTIONS = ("Context & Goal", "Proposed Changes", "Data Structures", "Interfaces",
            "Alternatives Considered", "Security", "Performance", "Risks", "Testing",
            "Rollout", "Open Questions", "Definition of Done")
TAIL = "Done when every test in the plan passes on CI."  # the last section's last line


def draft(heading: str = "## {name}", names: tuple[str, ...] = SECTIONS, title: bool = True,
          sub: bool = False) -> str:
    lines = ["# Design: settling up", ""] if title else []
    for n, name in enumerate(names, 1):
        lines.append(heading.format(name=name, n=n))
        if sub:
            lines.append("### Detail")
        lines.append(f"{name} is covered here in full." if name != SECTIONS[-1] else TAIL)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


CLEAN = draft()
APPROVE_TEXT = "VERDICT: APPROVED\n\nThe draft covers the source."
APPROVE_JSON = {"verdict": "APPROVED", "rationale": "The draft covers the source.",
                "findings": []}
BULLET_FINDING = "Security: say how the session tokens are stored"
FALSE_APPROVAL = (
    "1. Rollout: the plan quotes the old sign-off, which read\n"
    "   Verdict: APPROVED by the change advisory board\n"
    "   and that no longer holds.\n"
    "2. Security: say how the session tokens are stored.\n\n"
    "VERDICT: REVISE\n")


@dataclass(frozen=True)
class Shape:
    name: str
    what: str  # the row of the table
    drafts: tuple[str, ...] = (CLEAN,)  # the drafter's replies in turn (the last repeats)
    reviews: tuple[Any, ...] = (APPROVE_TEXT,)  # str: text; dict: JSON (native if asked)
    cut: bool = False  # the first draft stops at the token limit; the rest comes next
    always_cut: bool = False  # every draft reply stops at the token limit
    expect: str = "done"  # the item's status
    reason: str = ""  # what its reason must say (when not done)
    min_iterations: int = 1  # the reviewer's word must cost at least this many drafts
    revise_must_quote: str = ""  # the revision request must carry this finding


SHAPES = (
    Shape("d-clean", "draft: chat preamble, `# Title`, `###` subheads",
          drafts=("Sure! Here is the design.\n\n" + draft(sub=True),)),
    Shape("d-fence", "draft wrapped in a ```markdown fence",
          drafts=("```markdown\n" + CLEAN + "```\n",)),
    Shape("d-chatter", "draft ending with \"Let me know if ...\"",
          drafts=(CLEAN + "\nLet me know if you would like any changes to the design!\n",)),
    Shape("d-numbered", "draft with numbered headings (`## 1. Context & Goal`)",
          drafts=(draft("## {n}. {name}"),)),
    Shape("d-and", "draft writing `and` for `&`",
          drafts=(CLEAN.replace("Context & Goal", "Context and Goal"),)),
    Shape("d-cut", "draft cut off (finish_reason length / stop_reason max_tokens)",
          cut=True),
    Shape("d-empty", "an empty reply, then a draft", drafts=("", CLEAN)),
    Shape("d-empties", "only empty replies", drafts=("",), expect="failed",
          reason="empty reply from"),
    Shape("d-cutcut", "every reply cut at the token limit", always_cut=True, expect="failed",
          reason="reply was cut at 60 output tokens"),
    Shape("r-line", "review `VERDICT: APPROVED`"),
    Shape("r-bold", "review `**Verdict:** APPROVED`",
          reviews=("**Verdict:** APPROVED\n\nGood work.",)),
    Shape("r-heading", "review with a `## Verdict` heading, then `APPROVED`",
          reviews=("## Verdict\n\nAPPROVED\n\n## Notes\n\nNothing to add.",)),
    Shape("r-json", "review as raw JSON text", reviews=(json.dumps(APPROVE_JSON),)),
    Shape("r-fenced", "review as JSON in a ```json fence",
          reviews=("```json\n" + json.dumps(APPROVE_JSON, indent=2) + "\n```",)),
    Shape("r-native", "review through the native structured output", reviews=(APPROVE_JSON,)),
    Shape("r-false", "review quoting `Verdict: APPROVED` in a finding, ending REVISE",
          reviews=(FALSE_APPROVAL, APPROVE_TEXT), min_iterations=2),
    Shape("r-bullets", "review `Verdict: REVISE` with `- ` findings",
          reviews=(f"Verdict: REVISE\n\n- {BULLET_FINDING}\n", APPROVE_TEXT),
          min_iterations=2, revise_must_quote="session tokens are stored"),
    Shape("r-discuss", "review DISCUSS with a question for a human",
          reviews=({"verdict": "DISCUSS", "rationale": "Refund to the card or as credit?",
                    "findings": []},), expect="halted", reason="Refund to the card or as credit?"),
)
BY_NAME = {s.name: s for s in SHAPES}
SHAPE_ID = re.compile(r"Feature ((?:d|r)-[a-z]+)(?:_((?:d|r)-[a-z]+))?(?:-\d+)?")
# What differs between wire formats: how a cut, an empty reply and a native verdict arrive
# (documents and text verdicts are read by the engine, the same for every provider).
WIRE_SHAPES = ("d-cut", "d-cutcut", "d-empty", "r-native", "r-line")


def paired(shapes: list[Shape]) -> list[tuple[Shape, ...]]:
    """The shapes as items, a draft shape with a review shape where both must end done
    (the draft shape's drafts, the review shape's reviews: one worker judged for both);
    every other shape alone."""
    def done(prefix: str) -> list[Shape]:
        return [s for s in shapes if s.name.startswith(prefix) and s.expect == "done"]

    drafts, reviews = done("d-"), done("r-")
    pairs = list(zip(drafts, reviews, strict=False))  # the extra ones alone
    taken = {s.name for pair in pairs for s in pair}
    return [*pairs, *((s,) for s in shapes if s.name not in taken)]


def combined(names: tuple[str, ...]) -> Shape:
    """The shape the server plays for an item of `names` (one shape, or a draft shape and
    a review shape)."""
    if len(names) == 1:
        return BY_NAME[names[0]]
    draft, review = (BY_NAME[n] for n in sorted(names))  # "d-..." before "r-..."
    return Shape("_".join(names), "", drafts=draft.drafts, reviews=review.reviews,
                 cut=draft.cut, always_cut=draft.always_cut)


class ShapeServer:
    def __init__(self, wire: str) -> None:
        self.wire = wire
        self.lock = threading.Lock()
        self.turns: dict[tuple[str, str], int] = {}  # (item, role) -> replies so far
        self.prompts: dict[str, list[str]] = {}  # item -> every prompt it sent, in order
        self.cut_pending: set[str] = set()  # items whose last draft was cut
        server = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                self.reply(*server.answer(self.read_json()))

        self.httpd = start(Handler)
        port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}" + ("/v1" if wire == "openai" else "")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- the model ------------------------------------------------------------------------
    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        prompt = _prompt(body)
        found = SHAPE_ID.search(prompt)
        names = tuple(n for n in found.groups() if n) if found else ()
        if not names or any(n not in BY_NAME for n in names) or (
                len(names) == 2 and sorted(n[0] for n in names) != ["d", "r"]):
            return 400, {"error": {"message": "no shape for this prompt"}}
        shape = combined(names)
        item = found.group(0) if found else ""
        asked_schema = bool(body.get("response_format") or body.get("tools"))
        review = asked_schema or prompt.lstrip().startswith("Review")
        with self.lock:
            self.prompts.setdefault(item, []).append(prompt)
            role = "review" if review else "draft"
            turn = self.turns.get((item, role), 0)
            self.turns[item, role] = turn + 1
            if review:
                reply = shape.reviews[min(turn, len(shape.reviews) - 1)]
                if isinstance(reply, dict):
                    return 200, self._reply(json.dumps(reply) if not asked_schema else reply)
                return 200, self._reply(reply)
            if shape.cut and item in self.cut_pending:
                self.cut_pending.discard(item)
                return 200, self._reply(CLEAN[len(CLEAN) // 2:])
            if shape.always_cut:
                return 200, self._reply(CLEAN[:len(CLEAN) // 2], cut=True)
            if shape.cut and turn == 0:
                self.cut_pending.add(item)
                return 200, self._reply(CLEAN[:len(CLEAN) // 2], cut=True)
            return 200, self._reply(shape.drafts[min(turn, len(shape.drafts) - 1)])

    def _reply(self, content: str | dict[str, Any], cut: bool = False) -> dict[str, Any]:
        usage_in, usage_out = 120, 60
        if self.wire == "openai":
            text = content if isinstance(content, str) else json.dumps(content)
            return {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "length" if cut else "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out,
                              "total_tokens": usage_in + usage_out}}
        block: dict[str, Any] = (
            {"type": "text", "text": content} if isinstance(content, str) else
            {"type": "tool_use", "id": "toolu_1", "name": "verdict", "input": content})
        stop = "max_tokens" if cut else ("tool_use" if block["type"] == "tool_use" else
                                         "end_turn")
        return {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                "content": [block], "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": usage_in, "output_tokens": usage_out}}


def _prompt(body: dict[str, Any]) -> str:
    """The user's text of a request, in either wire format."""
    texts = []
    for message in body.get("messages", []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [b.get("text", "") for b in content if isinstance(b, dict)]
    return "\n".join(texts)


# --- judging an outcome ---------------------------------------------------------------------

def problems(shape: Shape, item: dict[str, Any], lld: Path | None, prompts: list[str]) -> str:
    """What is wrong with how `shape` ended ("" when it ended right)."""
    if shape.expect != "done":
        if item["status"] != shape.expect or shape.reason not in item["reason"]:
            return f"{item['status']}: {item['reason'][:120]} (expected {shape.expect})"
        return ""
    if item["status"] != "done":
        return f"{item['status']}: {item['reason'][:120]}"
    if lld is None or not lld.is_file():
        return "done, but no LLD file"
    text = lld.read_text(encoding="utf-8")
    wrong = []
    if "```" in text:
        wrong.append("keeps the fence")
    if "Let me know" in text or "Sure! Here" in text:
        wrong.append("keeps the chatter")
    for name in SECTIONS:
        count = len(re.findall(rf"^## {re.escape(name)}\s*$", text, re.M))
        if count != 1:
            wrong.append(f"heading {name!r} x{count}")
    if TAIL not in text:
        wrong.append("the last section is cut")
    if item["iterations"] < shape.min_iterations:
        wrong.append(f"approved at iteration {item['iterations']} against the reviewer")
    if shape.revise_must_quote and not any(shape.revise_must_quote in p for p in prompts[1:]):
        wrong.append("the revision request lost the findings")
    return "; ".join(wrong)


def probe(root: Path, wire: str, repeat: int, names: tuple[str, ...] | None = None,
          pair: bool = False) -> list[tuple[str, str, str]]:
    """Run every shape (or those `names`) `repeat` times through the CLI on `wire`;
    (shape, what, outcome) for each. `pair`: a draft shape and a review shape share
    an item where both must end done (`paired`), so fewer workers run; each shape is
    still judged on its own terms, on the item it took part in."""
    shapes = [s for s in SHAPES if names is None or s.name in names]
    items_of = paired(shapes) if pair else [(s,) for s in shapes]
    base = {s.name: "_".join(x.name for x in item) for item in items_of for s in item}
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import cli, latest_run, make_workspace, summary

    server = ShapeServer(wire)
    try:
        ids = [f"{'_'.join(s.name for s in item)}-{n}" for item in items_of
               for n in range(1, repeat + 1)]
        ws = make_workspace(root / f"ws-{wire}", issues=ids)
        env = {"ASSEMBLYZERO_CALL_TIMEOUT": "20"}
        if wire == "openai":  # a local server, no credential: the README's recipe
            env["OPENAI_BASE_URL"] = server.url
        else:  # a credential whose base_url is the server
            creds = Path(os.environ["ASSEMBLYZERO_CREDENTIALS"])
            creds.write_text(json.dumps({"credentials": [
                {"name": "shapes", "provider": "anthropic", "key_env": "AZ_SHAPES_KEY",
                 "base_url": server.url, "max_concurrent": 4}]}))
            creds.chmod(0o600)
            env["AZ_SHAPES_KEY"] = "sk-ant-shapes-0000000000000000"
        spec = f"{wire}:shape-model"
        run = cli("lld-all", "--parallel=4", f"--drafter={spec}", f"--reviewer={spec}",
                  "--repo", str(ws), timeout=300, env=env)
        if not (latest_run(ws) / "summary.json").is_file():
            raise RuntimeError(f"the {wire} run left no summary: {run.out[-2000:]}{run.err}")
        items = {i["id"]: i for i in summary(latest_run(ws))["items"]}
        rows = []
        for shape in shapes:
            outcomes = []
            for n in range(1, repeat + 1):
                item_id = f"{base[shape.name]}-{n}"
                lld = next(iter((ws / "docs/lld/active").glob(f"*{item_id}*")), None)
                outcomes.append(problems(shape, items[item_id], lld,
                                         server.prompts.get(f"Feature {item_id}", [])))
            bad = [o for o in outcomes if o]
            shared = f" on item {base[shape.name]}" if base[shape.name] != shape.name else ""
            rows.append((shape.name, shape.what, f"{repeat - len(bad)}/{repeat} right" + (
                f" ({bad[0]}{shared})" if bad else "")))
        return rows
    finally:
        server.close()


def main() -> None:
    import tempfile

    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory() as tmp:
        # Never the real home, state or credentials.
        os.environ["ASSEMBLYZERO_STATE_DIR"] = str(Path(tmp) / "state")
        os.environ["ASSEMBLYZERO_CREDENTIALS"] = str(Path(tmp) / "none.json")
        os.environ["HOME"] = tmp
        for wire in ("openai", "anthropic"):
            print(f"\n| {wire}: reply shape | outcome |\n|---|---|")
            for _, what, outcome in probe(Path(tmp), wire, repeat):
                print(f"| {what} | {outcome} |")


if __name__ == "__main__":
    main()
