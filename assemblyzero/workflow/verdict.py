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
# A verdict line: `VERDICT: APPROVED`, `**Verdict:** REVISE`, `## Verdict: DISCUSS`,
# `Verdict - **REVISE**`; what follows the separator is the claim (`_claim`).
_LINE = re.compile(r"#{0,6}\s*[*_]*\s*(?:final\s+)?verdict\s*[*_]*\s*[:\-\u2013\u2014]\s*(.*)$",
                   re.I)
# A Verdict heading (`## Verdict`, `**Verdict:**`): the claim is on the next line.
_HEADING = re.compile(r"#{0,6}\s*[*_]*\s*(?:final\s+)?verdict\s*[*_]*\s*:?\s*[*_]*\s*$", re.I)
_CLAIM = re.compile(r"[*_`\s]*" + _WORD + r"[*_`]*", re.I)
_UPPER_CLAIM = re.compile(r"[*_`\s]*(?:APPROVED|REVISE|DISCUSS)\b")  # as the first line
_ANY_WORD = re.compile(r"\b(?:approv\w*|revise|discuss)\b", re.I)
_SEPARATORS = ".!-\u2013\u2014:,;("
# What makes a reason after APPROVED a condition, a doubt or a denial: then it is no approval.
_NOT_APPROVED = re.compile(
    r"\?|n't\b|\b(?:not|no|never|nor|cannot|only\s+if|if|unless|once|until|but|pending|"
    r"provided|assuming|subject\s+to|except|however|yet|first|must|fix\w*|blocking|"
    r"revise|discuss)\b|condition", re.I)
# ... except the usual ways of saying there is nothing left: "no issues found", "no further
# changes needed", "nothing to fix" are an approval's reason, not a doubt of it.
_NOTHING_LEFT = re.compile(
    r"\b(?:no|nothing|without)\s+(?:(?:further|more|other|remaining|open|outstanding|major|"
    r"blocking|significant)\s+)?(?:issues?|problems?|findings?|changes?|concerns?|blockers?|"
    r"comments?|objections?|gaps?|to\s+(?:add|fix|change))\b(?:\s+(?:found|needed|required|"
    r"remain(?:ing)?|left))?", re.I)
_DENIED = re.compile(  # prose around an embedded JSON approval that denies it
    r"\b(?:revise|discuss|unapprov\w*|disapprov\w*)\b|"
    r"(?:\b(?:not|never|cannot|no)|n't)\s+(?:\w+\s+){0,2}approv", re.I)
_ITEM = re.compile(r"(?:\d+[.)]|[-*+])\s+(.*)$")
_OPEN = re.compile(r" {0,3}(?:(`{3,})[^`]*|(~{3,}).*)$")  # as templates.py opens a fence
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

        Every JSON verdict in the text (the whole text, each fence, each object at the top
        level) and every top-level verdict line must say the same word; a verdict line that
        does not read cleanly (`APPROVED?`, `APPROVED only if ...`) is unreadable. An
        APPROVED embedded in prose that says otherwise, or with blocking or major findings,
        is unreadable too. A `structured` reply (JSON the provider produced natively) is
        read as JSON alone.
        """
        found = _json_verdicts(text)
        if found is None:
            return None
        if not found.verdicts:
            return None if structured else cls.from_text(text)
        words = {v.word for v in found.verdicts}
        if not structured:
            lines = _scan(text).words
            if lines is None:
                return None
            words |= lines
        if len(words) != 1:
            return None
        return _checked(found, structured)

    @classmethod
    def from_json(cls, text: str) -> Verdict | None:
        """The JSON verdict in `text` (raw, fenced, an object at the top level), or None:
        none, several that disagree, a duplicate key, an APPROVED in prose that denies it,
        or APPROVED with required changes."""
        found = _json_verdicts(text)
        if found is None or len({v.word for v in found.verdicts}) != 1:
            return None
        return _checked(found)

    @classmethod
    def from_text(cls, text: str) -> Verdict | None:
        """A verdict line at the top level and the numbered or bulleted findings, or None."""
        scan = _scan(text)
        if scan.words is None or len(scan.words) != 1:
            return None  # none, two that disagree, or one that does not read cleanly
        findings, prose = _findings_and_prose(text, scan.claims)
        return _unless_contradicted(cls(scan.words.pop(), " ".join(prose), tuple(findings)))

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


def _unless_contradicted(verdict: Verdict) -> Verdict | None:
    """None for an APPROVED that requires changes (blocking or major findings)."""
    return None if verdict.approved and verdict.required else verdict


def _checked(found: _Found, structured: bool = False) -> Verdict | None:
    """The first of the JSON verdicts (all of one word), unless it approves in prose that
    says otherwise (an example of the format, then "REVISE recommended") or it approves
    while requiring changes."""
    verdict = found.verdicts[0]
    if (verdict.approved and not structured and found.prose is not None
            and _DENIED.search(found.prose)):
        return None
    return _unless_contradicted(verdict)


class _Duplicate(Exception):
    """A JSON object with a key twice: which value the reviewer meant is unknown."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _Duplicate
    return dict(pairs)


@dataclass(frozen=True)
class _Found:
    verdicts: list[Verdict]
    prose: str | None  # the text outside every candidate; None when the whole text is JSON


def _json_verdicts(text: str) -> _Found | None:
    """Every JSON verdict in `text`, in order; None if one has a duplicate key."""
    verdicts: list[Verdict] = []
    whole = text.strip()
    candidates = [(whole, (0, len(text)))] if _parses(whole) else _json_candidates(text)
    for candidate, _ in candidates:
        try:
            data = json.loads(candidate, object_pairs_hook=_no_duplicates)
        except _Duplicate:
            if '"verdict"' in candidate.lower():
                return None
            continue
        except (ValueError, RecursionError):
            continue
        verdict = _from_object(data)
        if verdict is not None:
            verdicts.append(verdict)
    if len(candidates) == 1 and candidates[0][0] is whole:
        return _Found(verdicts, None)
    prose, at = [], 0
    for start, end in sorted(span for _, span in candidates):
        prose.append(text[at:start])
        at = max(at, end)
    return _Found(verdicts, "".join(prose) + text[at:])


def _parses(text: str) -> bool:
    try:
        json.loads(text, object_pairs_hook=_no_duplicates)
    except _Duplicate:
        return True
    except (ValueError, RecursionError):
        return False
    return True


def _json_candidates(text: str) -> list[tuple[str, tuple[int, int]]]:
    """The content of each closed fence opened at the top level, and each balanced `{...}`
    starting on a top-level line (not indented, quoted, fenced or a list item), with spans."""
    found: list[tuple[str, tuple[int, int]]] = []
    cursor, unclosed = 0, 0
    for line, start, state, fence in _lines(text):
        if fence is not None:
            found.append(fence)
        if state != "top" or _ITEM.match(line):
            continue
        at = line.find("{", max(0, cursor - start))
        while at >= 0 and unclosed < _UNCLOSED_LIMIT:
            end = _balanced(text, start + at)
            if end is None:
                unclosed += 1  # each costs a scan to the end of the text
                at = line.find("{", at + 1)
                continue
            found.append((text[start + at:end], (start + at, end)))
            cursor = end
            if end > start + len(line):
                break
            at = line.find("{", end - start)
    return found


_UNCLOSED_LIMIT = 20  # braces never closed before the search gives up


def _balanced(text: str, start: int) -> int | None:
    """The end of the `{...}` opened at `start` (strings respected), or None."""
    depth, string, escaped = 0, False, False
    for i in range(start, len(text)):
        char = text[i]
        if string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                string = False
        elif char == '"':
            string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _closes(line: str, mark: str) -> bool:
    return re.fullmatch(rf" {{0,3}}{re.escape(mark[0])}{{{len(mark)},}}[ \t]*", line) is not None


def _lines(text: str) -> Iterable[tuple[str, int, str, tuple[str, tuple[int, int]] | None]]:
    """Each line (without its end), where it starts, and its state: "top" (not indented,
    not a quote), "inner" (indented or quoted) or "fence" (a code fence, its markers too;
    fences open and close as in templates.py, and one never closed hides the rest).
    A fence opened at the top level also comes with its content and span, once."""
    lines = text.splitlines()
    starts = [0]
    for piece in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(piece))
    close = -1  # the last line of the fence being read
    for i, line in enumerate(lines):
        if i <= close:
            yield line, starts[i], "fence", None
            continue
        opened = _OPEN.match(line)
        if opened:
            mark = opened.group(1) or opened.group(2)
            close = next((j for j in range(i + 1, len(lines)) if _closes(lines[j], mark)),
                         len(lines))
            fence = None
            if close < len(lines) and not line[:1].isspace():
                fence = ("\n".join(lines[i + 1:close]), (starts[i], starts[close + 1]))
            yield line, starts[i], "fence", fence
            continue
        top = not line[:1].isspace() and not line.startswith(">")
        yield line, starts[i], "top" if top else "inner", None


def _top_lines(text: str) -> Iterable[tuple[int, str, bool]]:
    """Each line outside code fences, its number, and whether it is at the top level (not
    indented, not a quote); list items are top level here, for the callers to tell apart."""
    for n, (line, _, state, _) in enumerate(_lines(text)):
        if state != "fence":
            yield n, line.rstrip(), state == "top"


_UNREADABLE = ""


def _claim(rest: str, first: bool = False) -> str | None:
    """The verdict word that `rest` (a verdict line after its label, the line after a
    Verdict heading, or the first line of the reply) claims: None if it claims none,
    _UNREADABLE if it claims one but not cleanly. After the word comes nothing, `.` or `!`,
    or a separator and a reason; after APPROVED, a reason that is no condition, doubt or
    denial (`_NOT_APPROVED`), and never another verdict word."""
    match = _CLAIM.match(rest)
    if match is None:
        return None
    word = match.group(1).upper()
    tail = rest[match.end():].strip().strip("*_`").strip()
    if first and not _UPPER_CLAIM.match(rest) and tail and tail[0] not in _SEPARATORS + "?":
        return None  # "Revise the intro ..." starts the prose, it is no verdict
    if not tail or re.fullmatch(r"[.!]+", tail):
        return word
    if tail[0] not in _SEPARATORS:
        return _UNREADABLE  # "APPROVED?", "APPROVED only if ...", "APPROVED with conditions"
    reason = tail[1:]
    others = {w.upper() for w in re.findall(r"\b(?:APPROVED|REVISE|DISCUSS)\b", reason, re.I)}
    if others - {word} or (word == "APPROVED"
                           and _NOT_APPROVED.search(_NOTHING_LEFT.sub("", reason))):
        return _UNREADABLE
    return word


@dataclass(frozen=True)
class _Scan:
    words: set[str] | None  # None: a verdict line that does not read cleanly
    claims: set[int]  # the lines that are verdict lines or headings, not prose


def _scan(text: str) -> _Scan:
    """Every verdict word said on a verdict line at the top level."""
    words: set[str] = set()
    claims: set[int] = set()
    heading, first = False, True
    for n, line, top in _top_lines(text):
        if not line.strip():
            continue
        if top and not _ITEM.match(line):
            said: str | None = None
            labelled = _LINE.match(line)
            if _HEADING.match(line):
                claims.add(n)
            elif labelled:
                said = _claim(labelled.group(1))
                said = _UNREADABLE if said is None else said  # `Verdict: NOT APPROVED`
            elif heading:
                said = _claim(line)
                if said is None and _ANY_WORD.search(line):
                    said = _UNREADABLE  # `## Verdict` then `It is not approved`
            elif first:
                said = _claim(line, first=True)
            if said == _UNREADABLE:
                return _Scan(None, claims)
            if said is not None:
                words.add(said)
                if labelled or heading or re.fullmatch(r"[*_`\s]*\w+[*_`\s.!]*", line):
                    claims.add(n)
            heading = bool(_HEADING.match(line))
        else:
            heading = False
        first = False
    return _Scan(words, claims)


def _findings_and_prose(text: str, claims: set[int]) -> tuple[list[Finding], list[str]]:
    """Numbered or bulleted findings (indented lines continue one), and the other prose
    (without the verdict lines and headings, `claims`)."""
    items: list[str] = []
    prose: list[str] = []
    within = False  # the lines since the last item belong to it
    for n, line, top in _top_lines(text):
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
            if n not in claims and not line.startswith("#"):
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
