"""The reviewer's verdict: approved, or the findings a revision must address.

Today the reviewer answers in free text (`prompts.build_prompt` asks for a `VERDICT:`
line and numbered findings) and `Verdict.from_text` reads it. Structured verdicts
(docs/design.md, "Seams for what comes next") will add a `Verdict.from_json` beside it,
for providers that return the review as JSON; the engine only ever sees a `Verdict`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_VERDICT = re.compile(r"^\s*\**\s*VERDICT\s*\**\s*:\s*\**\s*(APPROVED|REVISE)\b", re.I | re.M)
_FINDING = re.compile(r"^\s*\d+[.)]\s+(.+?)\s*$", re.M)


@dataclass(frozen=True)
class Verdict:
    """APPROVED (no findings), or REVISE with at least one finding."""

    approved: bool
    findings: tuple[str, ...] = ()

    @property
    def word(self) -> str:
        """`APPROVED` or `REVISE`, as the reviewer is asked to write it."""
        return "APPROVED" if self.approved else "REVISE"

    @classmethod
    def from_text(cls, text: str) -> Verdict:
        """The first `VERDICT: APPROVED|REVISE` line, and for REVISE its numbered findings.

        Case, bold markers and spaces around the word are tolerated. An unparseable reply
        is REVISE, with that as its finding; so is a REVISE without numbered findings.
        """
        match = _VERDICT.search(text)
        if match is None:
            snippet = " ".join(text.split())[:120]
            return cls(False, (f"Review: unparseable verdict: {snippet!r}",))
        if match.group(1).upper() == "APPROVED":
            return cls(True)
        findings = tuple(_FINDING.findall(text))
        return cls(False, findings or ("Review: REVISE without numbered findings",))

    def repeated(self, previous: Iterable[str]) -> str | None:
        """The first finding also among `previous` (case and spacing aside), or None."""
        before = {_norm(f) for f in previous}
        return next((f for f in self.findings if _norm(f) in before), None)


def _norm(finding: str) -> str:
    return " ".join(finding.lower().split())
