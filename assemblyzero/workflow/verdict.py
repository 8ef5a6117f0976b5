"""The reviewer's verdict: APPROVED, REVISE or DISCUSS, its rationale and its findings.

The review is asked for as JSON against `VERDICT_SCHEMA` (natively where the provider can,
in the prompt otherwise), and still read when a model answers in text. `Verdict.read` is
the one entry point; None means the reply could not be read. A verdict is taken only from
the JSON or from a verdict line at the top level of the text: never from an indented line,
a numbered or bulleted finding, a `>` quote or a code fence; two verdicts that disagree are
unreadable, never APPROVED.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from assemblyzero.constants import QUOTE_LIMIT

WORDS = ("APPROVED", "REVISE", "DISCUSS")
SEVERITIES = ("blocking", "major", "minor")
DRIVING = ("blocking", "major")  # the severities a revision must address

VERDICT_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["verdict", "rationale", "findings"],
    "properties": {
        "verdict": {"type": "string", "enum": list(WORDS)},
        "rationale": {"type": "string"},
        "findings": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "required": ["section", "severity", "text"],
            "properties": {
                "section": {"type": "string"},
                "severity": {"type": "string", "enum": list(SEVERITIES)},
                "text": {"type": "string"},
            }}},
    },
}

_WORD = r"(APPROVED|REVISE|DISCUSS)\b"
# `VERDICT: APPROVED`, `**Verdict:** REVISE`, `## Verdict: DISCUSS`, `Verdict - **REVISE**`
_LINE = re.compile(r"#{0,6}\s*[*_]*\s*(?:final\s+)?verdict\s*[*_]*\s*[:\-\u2013\u2014]\s*"
                   r"[*_`]*\s*" + _WORD, re.I)
_HEADING = re.compile(r"#{1,6}\s*[*_]*\s*(?:final\s+)?verdict\s*[*_]*\s*:?\s*$", re.I)
# The line after a Verdict heading: the word, alone or followed by punctuation and a reason.
_AFTER_HEADING = re.compile(r"[*_`]*\s*" + _WORD + r"[*_`]*(?:\s*[.!:,;(\-\u2013\u2014].*)?$",
                            re.I)
_BARE = re.compile(r"[*_`]*\s*" + _WORD + r"\s*[*_`]*\s*[.!]?\s*$", re.I)  # the first line
_ITEM = re.compile(r"(?:\d+[.)]|[-*+])\s+(.*)$")
_FENCE = re.compile(r"\s{0,3}(```|~~~)")
_JSON_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n(.*?)\n[ \t]*```", re.S | re.I)
_SEVERITY = re.compile(r"[*_]*\s*(?:[\[(](blocking|major|minor)[\])]|(blocking|major|minor)"
                       r"[*_]*\s*:)[*_]*\s*[:\-\u2013\u2014]?\s*", re.I)
_SECTION = re.compile(r"[*_`]*([^:*_`]{1,60}?)[*_`]*\s*:\s+(.+)$", re.S)


@dataclass(frozen=True)
class Finding:
    """One thing the reviewer found: in which section, how grave, and what."""

    section: str
    severity: str  # SEVERITIES
    text: str

    def __str__(self) -> str:
        return f"{self.section}: {self.text}" if self.section else self.text

    @property
    def driving(self) -> bool:
        """A revision must address it (blocking or major); a minor one is only recorded."""
        return self.severity in DRIVING


@dataclass(frozen=True)
class Verdict:
    """The reviewer's word (WORDS), why, and what it found."""

    word: str
    rationale: str = ""
    findings: tuple[Finding, ...] = ()

    @property
    def approved(self) -> bool:
        return self.word == "APPROVED"

    @property
    def required(self) -> tuple[str, ...]:
        """The changes a revision must make: the blocking and major findings."""
        return tuple(str(f) for f in self.findings if f.driving)

    @property
    def minor(self) -> tuple[str, ...]:
        """The minor findings: recorded, never sent as required changes."""
        return tuple(str(f) for f in self.findings if not f.driving)

    @classmethod
    def read(cls, text: str, structured: bool = False) -> Verdict | None:
        """The verdict of a review reply, or None if it cannot be read.

        The JSON is looked for anywhere in the text, then the text shapes. In a reply that
        is not `structured` (JSON the provider produced natively), a JSON verdict and a
        top-level verdict line that disagree are unreadable.
        """
        found = cls.from_json(text)
        if found is None:
            return cls.from_text(text)
        if structured or _top_level_words(text) <= {found.word}:
            return found
        return None

    @classmethod
    def from_json(cls, text: str) -> Verdict | None:
        """The JSON verdict anywhere in `text` (raw, fenced, the outermost braces), or None."""
        for candidate in _json_candidates(text):
            try:
                data = json.loads(candidate)
            except (ValueError, RecursionError):
                continue
            verdict = _from_object(data)
            if verdict is not None:
                return verdict
        return None

    @classmethod
    def from_text(cls, text: str) -> Verdict | None:
        """A verdict line at the top level and the numbered or bulleted findings, or None."""
        words = _top_level_words(text)
        if len(words) != 1:
            return None  # none, or two that disagree
        findings, prose = _findings_and_prose(text)
        return cls(words.pop(), " ".join(prose), tuple(findings))

    def repeated(self, previous: Iterable[str]) -> str | None:
        """The first required change also among `previous` (case and spacing aside), or None."""
        before = {_norm(f) for f in previous}
        return next((f for f in self.required if _norm(f) in before), None)

    def to_markdown(self) -> str:
        """The verdict as the lineage shows it."""
        lines = [f"**Verdict:** {self.word}", ""]
        if self.rationale:
            lines += [self.rationale, ""]
        if self.findings:
            lines += ["## Findings", ""]
            lines += [f"{n}. **{f.severity}** {f}" for n, f in enumerate(self.findings, 1)]
            lines.append("")
        return "\n".join(lines)


def shorten(text: str, limit: int) -> str:
    """`text` on one line, at most `limit` characters (cut ones end in "...")."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` on one line, at most `limit` characters, quoted."""
    return repr(shorten(text, limit))


def _from_object(data: object) -> Verdict | None:
    """A verdict from parsed JSON of the schema's shape; None for any other shape.

    Keys beyond the schema's are ignored, case in the enums is forgiven, and a finding
    without a section or severity is taken as a major one for the whole document.
    """
    if not isinstance(data, dict):
        return None
    word, rationale, items = data.get("verdict"), data.get("rationale", ""), data.get(
        "findings", [])
    if not (isinstance(word, str) and word.strip().upper() in WORDS
            and isinstance(rationale, str) and isinstance(items, list)):
        return None
    findings = []
    for item in items:
        if not isinstance(item, dict):
            return None
        section, severity, text = (item.get("section", ""), item.get("severity", "major"),
                                   item.get("text"))
        if not (isinstance(section, str) and isinstance(text, str) and isinstance(severity, str)
                and severity.strip().lower() in SEVERITIES):
            return None
        findings.append(Finding(section.strip(), severity.strip().lower(), text.strip()))
    return Verdict(word.strip().upper(), rationale.strip(), tuple(findings))


def _json_candidates(text: str) -> Iterable[str]:
    yield text.strip()
    yield from _JSON_FENCE.findall(text)
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        yield text[start:end + 1]


def _top_lines(text: str) -> Iterable[tuple[str, bool]]:
    """Each line outside code fences, and whether it is at the top level (not indented,
    not a quote); list items are top level here, for the callers to tell apart."""
    fence: str | None = None
    for line in text.splitlines():
        opened = _FENCE.match(line)
        if opened:
            marker = opened.group(1)
            fence = None if fence == marker else (fence or marker)
            continue
        if fence is None:
            yield line.rstrip(), not line[:1].isspace() and not line.startswith(">")


def _top_level_words(text: str) -> set[str]:
    """Every verdict word said on a verdict line at the top level."""
    words: set[str] = set()
    heading, first = False, True
    for line, top in _top_lines(text):
        if not line.strip():
            continue
        if top and not _ITEM.match(line):
            match = (_LINE.match(line) or (heading and _AFTER_HEADING.match(line))
                     or (first and _BARE.match(line)))
            if match:
                words.add(match.group(1).upper())
            heading = bool(_HEADING.match(line))
        else:
            heading = False
        first = False
    return words


def _findings_and_prose(text: str) -> tuple[list[Finding], list[str]]:
    """Numbered or bulleted findings (indented lines continue one), and the other prose."""
    items: list[str] = []
    prose: list[str] = []
    within = False  # the lines since the last item belong to it
    for line, top in _top_lines(text):
        item = _ITEM.match(line) if top else None
        if item:
            items.append(item.group(1).strip())
            within = True
        elif not line.strip():
            continue
        elif not top and within:
            items[-1] += " " + line.strip().lstrip(">").strip()
        elif top:
            within = False
            if not (_LINE.match(line) or _BARE.match(line) or line.startswith("#")):
                prose.append(line.strip())
    return [_finding(item) for item in items if item], prose


def _finding(item: str) -> Finding:
    severity = "major"  # a text finding that does not say how grave it is
    tagged = _SEVERITY.match(item)
    if tagged:
        severity = (tagged.group(1) or tagged.group(2)).lower()
        item = item[tagged.end():]
    parts = _SECTION.match(item)
    if parts and "." not in parts.group(1):
        return Finding(parts.group(1).strip(), severity, parts.group(2).strip())
    return Finding("", severity, item.strip())


def _norm(finding: str) -> str:
    return " ".join(finding.lower().split())
