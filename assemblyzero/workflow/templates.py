"""Document templates and the section structure of markdown documents.

A template is a markdown file whose `## ` headings are the required
sections; the HTML comment under each heading is guidance for the drafter.
A workspace overrides one with `.assemblyzero/templates/<kind>.md`.

`tidy` turns a draft as models write it (fenced, chatty, numbered headings, other
levels or spellings) into a document with the template's exact headings.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from assemblyzero.fileio import inside
from assemblyzero.ids import Kind

_HEADING = re.compile(r"^##\s+(.+?)\s*#*\s*$")
_COMMENT = re.compile(r"<!--.*?-->", re.S)


@dataclass(frozen=True)
class Template:
    kind: Kind
    source: str  # where it came from: the override's path or "built-in"
    sections: tuple[str, ...]
    guidance: dict[str, str]


def load_template(kind: Kind, override: Path | None = None, root: Path | None = None) -> Template:
    """The workspace's override if it exists, else the built-in template.

    `root`: the workspace, which an override must not lead out of. A template
    that cannot be used is a ValueError naming it and saying what to do.
    """
    if override is not None and (override.is_file() or override.is_symlink()):
        if root is not None and not inside(root, override):
            raise ValueError(f"template {override} leads outside the workspace (to "
                             f"{os.path.realpath(override)}); replace the symlink with the "
                             "file itself, or delete it to use the built-in template")
        try:
            text, source = override.read_text(encoding="utf-8"), str(override)
        except UnicodeDecodeError as exc:
            raise ValueError(f"template {override} is not UTF-8 text (byte {exc.start}); save "
                             "it as UTF-8, or delete it to use the built-in template") from None
        except OSError as exc:
            raise ValueError(f"cannot read template {override}: {exc.strerror or exc}; fix it, "
                             "or delete it to use the built-in template") from None
    else:
        builtin = resources.files("assemblyzero.workflow").joinpath(f"templates/{kind.value}.md")
        text = builtin.read_text(encoding="utf-8")
        source = "built-in"
    raw = split_sections(text)
    if not raw:
        raise ValueError(f"template {source} has no '## ' sections; add a '## ' heading per "
                         "required section, or delete it to use the built-in template")
    guidance = {name: " ".join(_COMMENT.sub(lambda m: m.group(0)[4:-3], body).split())
                for name, body in raw.items()}
    return Template(kind, source, tuple(raw), guidance)


def split_sections(text: str) -> dict[str, str]:
    """Map each `## ` heading to the text under it (up to the next one; not inside code)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    lines = text.splitlines()
    for line, fenced in zip(lines, _fenced(lines), strict=True):
        match = None if fenced else _HEADING.match(line)
        if match:
            current = sections.setdefault(match.group(1).strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def title_of(text: str, fallback: str) -> str:
    """The first `# ` heading of a document, else `fallback`."""
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip() or fallback
    return fallback


def missing_sections(template: Template, text: str) -> list[str]:
    """Required sections that are absent or hold nothing but comments (matched as `tidy` does)."""
    found = split_sections(tidy(text, template))
    return [
        name for name in template.sections
        if not _COMMENT.sub("", found.get(name, "")).strip()
    ]


def render(title: str, sections: dict[str, str], order: tuple[str, ...], preface: str = "") -> str:
    """A markdown document: `# title`, optional preface, then the sections in order."""
    parts = [f"# {title}\n"]
    if preface:
        parts.append(preface.strip() + "\n")
    for name in order:
        parts.append(f"## {name}\n\n{sections.get(name, '').strip()}\n")
    return "\n".join(parts)


# --- tolerant documents: drafts as real models write them ----------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_OPEN = re.compile(r"^ {0,3}(?:(`{3,})([^`]*)|(~{3,})(.*))$")
_NUMBER = re.compile(  # 1. / 1) / 1: / 1 - / 1.2 / (1) / IV. / a)
    r"^\(?(?:\d+(?:\.\d+)*(?:[.):]|\s*[-\u2013\u2014]|(?=\s))|[ivxlcdm]+[.)]|[a-z][.)])\s*", re.I)
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_STRUCTURE = re.compile(r"^\s*(?:[-*+]\s|\d+[.)]\s|[|>#<]|`{3}|~{3})")
# A paragraph that starts like one of these speaks to the user about the document or the
# conversation ("Let me know if ...", "Would you like me to ..."), not about the design:
# "Would you like the cache shared?" or "Should I add rate limiting?" is an open question.
_CLOSING = ("(?:please )?let me know", "i hope this helps", "hope this helps", "happy to",
            "i(?:'m| am) happy to", "i(?:'d| would) be happy to", "(?:i )?hope that helps",
            "feel free to (?:reach out|ask|let me know|tell me|get in touch)",
            "would you like me to", "if you(?:'d| would) like me to", "if you want me to",
            "if you(?:'d| would) like,? i can",
            "do you want me to (?:revise|change|adjust|expand|add more|make changes)",
            "is there anything else", "don't hesitate to (?:reach out|ask|let me know)")
# After a `---` rule these count anywhere in a paragraph ("Notes: happy to help further.").
_CLOSING_ANYWHERE = ("let me know if", "i hope this helps", "hope this helps", "happy to help",
                     "if you(?:'d like| would like| want),? i can",
                     "feel free to (?:reach out|ask|let me know)", "is there anything else",
                     "don't hesitate to")
_OPENING = ("(?:sure|certainly|of course|absolutely|okay|ok|great)[!,.:]", "here is",
            "here's", "here are", "below is", "below are", "as requested",
            "i(?:'ve| have) (?:written|drafted|prepared|revised|updated|created|put together)",
            "this is the (?:revised|updated|complete|full)")


def _phrases(words: tuple[str, ...], anchored: bool) -> re.Pattern[str]:
    alternatives = "|".join(w.replace(" ", r"\s+") for w in words)
    return re.compile((r"^\W*" if anchored else r"\b") + f"(?:{alternatives})" + r"(?!\w)",
                      re.I)


_CHATTER = _phrases(_CLOSING, anchored=True)  # a closing paragraph addressed to the user
_CHATTER_ANYWHERE = _phrases(_CLOSING_ANYWHERE, anchored=False)  # the same, after a `---`
_PREAMBLE = _phrases(_OPENING + _CLOSING, anchored=True)  # "Sure! Here is the LLD:"
_CHATTER_MAX = 400  # characters: a longer paragraph is content, whatever it starts with


@dataclass
class _Draft:
    title: str | None
    preface: list[str]  # between the title and the first section
    parts: list[tuple[str, list[str]]]  # (template section, body lines), in document order
    changed: bool


def tidy(text: str, template: Template) -> str:
    """`text` as a document of `template`, or `text` itself when it already is one.

    Unwraps one code fence around the whole document; drops text before the title (or
    before the first heading) and chat addressed to the user at either end; finds the
    template's sections whatever their numbering, case, `&`/`and`, level (## or ###) or
    trailing punctuation; writes them under the template's exact headings, each once, in
    template order (a section written twice keeps both bodies). Other headings stay,
    one level below their section.
    """
    keys: dict[str, str] = {}
    for name in template.sections:
        keys.setdefault(_key(name), name)
    lines = text.splitlines()
    unwrapped = _unwrap(lines, keys)
    if unwrapped is not None:
        lines = unwrapped[0]  # what follows the closing fence is the chat around the document
    draft = _parse(lines, keys)
    if draft is None:
        return text
    name, body = draft.parts[-1]
    body, dropped = _drop_closing(body, name)
    draft.parts[-1] = (name, body)
    changed = unwrapped is not None or draft.changed or dropped
    names = [name for name, _ in draft.parts]
    changed |= names != sorted(set(names), key=template.sections.index)
    bodies: dict[str, list[str]] = {}
    for name, body in draft.parts:
        text_of = "\n".join(_trim(body))
        bodies.setdefault(name, []).extend([text_of] if text_of else [])
    merged = {name: "\n\n".join(texts) for name, texts in bodies.items()}
    last = max(merged, key=template.sections.index)  # the end of the tidied document
    kept, dropped = _drop_closing(merged[last].split("\n"), last)
    merged[last] = "\n".join(_trim(kept))
    if not (changed or dropped):
        return text
    blocks = [f"# {draft.title}"] if draft.title is not None else []
    blocks += ["\n".join(_trim(draft.preface))] if _trim(draft.preface) else []
    blocks += [f"## {name}\n\n{merged[name]}".rstrip() for name in template.sections
               if name in merged]
    return "\n\n".join(blocks) + "\n"


def _key(heading: str) -> str:
    """What a heading is matched by: no numbering, case, punctuation or `&` vs `and`."""
    text = _NUMBER.sub("", re.sub(r"^[*_`\s]+", "", heading.replace("\u2019", "'")), count=1)
    return " ".join(re.findall(r"[^\W_]+", text.casefold().replace("&", " and ")))


def _parse(lines: list[str], keys: dict[str, str]) -> _Draft | None:
    """The draft's parts, or None when no heading names a template section."""
    heads: dict[int, tuple[int, str]] = {}
    for i, (line, fenced) in enumerate(zip(lines, _fenced(lines), strict=True)):
        match = None if fenced else _ATX.match(line)
        if match and match.group(2).strip():
            heads[i] = (len(match.group(1)), match.group(2).strip())
    named = {i: keys[k] for i, (_, head) in heads.items() if (k := _key(head)) in keys}
    levels = [heads[i][0] for i in named if heads[i][0] in (2, 3)]
    if not levels:
        return None
    top = min(levels)  # the sections' level; one below it, a section not written at `top`
    at_top = {named[i] for i in named if heads[i][0] == top}
    starts = [i for i in named if heads[i][0] == top
              or (heads[i][0] == top + 1 and named[i] not in at_top)]
    title, preface, changed = _leading(lines[:starts[0]], heads)
    parts = []
    for start, end in zip(starts, [*starts[1:], len(lines)], strict=True):
        changed |= lines[start] != f"## {named[start]}"
        body = []
        for i in range(start + 1, end):
            level, head = heads.get(i, (0, ""))
            new = (level - top + 2 if level > top else 4 if i in named else 3) if level else 0
            changed |= new != level
            body.append(f"{'#' * new} {head}" if new != level else lines[i])
        parts.append((named[start], body))
    return _Draft(title, preface, parts, changed)


def _leading(lines: list[str], heads: dict[int, tuple[int, str]]) -> tuple[
        str | None, list[str], bool]:
    """Title, preface, and whether anything is dropped, from the text before the sections."""
    title_at = next((i for i in range(len(lines)) if heads.get(i, (0, ""))[0] == 1), None)
    first = title_at if title_at is not None else next(
        (i for i in range(len(lines)) if i in heads), len(lines))
    dropped = any(line.strip() for line in lines[:first])
    rest = lines[first + 1:] if title_at is not None else lines[first:]
    preface, fenced = list(rest), _fenced(rest)
    for start, end in _blocks(rest):
        if not fenced[start] and _chatty(rest[start:end], _PREAMBLE):
            preface[start:end], dropped = [""] * (end - start), True
    return (heads[title_at][1] if title_at is not None else None), preface, dropped


def _drop_closing(lines: list[str], section: str) -> tuple[list[str], bool]:
    """`lines` without the closing chat addressed to the user that ends them (and its `---`).

    Conservative: only short prose paragraphs that plainly speak to the user about the
    document or the conversation go, never the section's only paragraph, and nothing in a
    section of questions (its questions are addressed to the reader by design).
    """
    if "question" in _key(section):
        return lines, False
    blocks = _blocks(lines)
    cut, dropped = len(lines), False
    while blocks:
        start, end = blocks.pop()
        chunk = lines[start:end]
        after_rule = bool(blocks) and _is_rule(lines[blocks[-1][0]:blocks[-1][1]])
        content_left = any(not _is_rule(lines[s:e]) for s, e in blocks)
        if dropped and _is_rule(chunk):
            cut = start
        elif content_left and (_chatty(chunk, _CHATTER) or (
                after_rule and _chatty(chunk, _CHATTER_ANYWHERE))):
            cut, dropped = start, True
        else:
            break
    return lines[:cut], dropped


def _chatty(block: list[str], phrases: re.Pattern[str]) -> bool:
    """A short prose paragraph (no list, table, heading, quote or code) matching `phrases`."""
    if any(_STRUCTURE.match(line) for line in block):
        return False
    paragraph = " ".join(line.strip() for line in block).replace("\u2019", "'")
    return len(paragraph) <= _CHATTER_MAX and bool(phrases.search(paragraph))


def _is_rule(block: list[str]) -> bool:
    return len(block) == 1 and bool(_RULE.match(block[0]))


def _blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(start, end) of each run of non-blank lines."""
    runs: list[tuple[int, int]] = []
    for i, line in enumerate(lines):
        if line.strip():
            if runs and runs[-1][1] == i:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
    return runs


def _trim(lines: list[str]) -> list[str]:
    """Without the blank lines at either end."""
    marked = [i for i, line in enumerate(lines) if line.strip()]
    return lines[marked[0]:marked[-1] + 1] if marked else []


def _opener(line: str) -> tuple[str, str] | None:
    """(fence marker, info string) of a line that opens a code fence."""
    match = _OPEN.match(line)
    if match is None:
        return None
    return (match.group(1), match.group(2).strip()) if match.group(1) else (
        match.group(3), match.group(4).strip())


def _closes(line: str, mark: str) -> bool:
    return re.fullmatch(rf" {{0,3}}{re.escape(mark[0])}{{{len(mark)},}}[ \t]*", line) is not None


def _fenced(lines: list[str]) -> list[bool]:
    """Which lines belong to a closed code fence (an unclosed one is taken as text)."""
    mask = [False] * len(lines)
    i = 0
    while i < len(lines):
        opened = _opener(lines[i])
        end = None if opened is None else next(
            (j for j in range(i + 1, len(lines)) if _closes(lines[j], opened[0])), None)
        if end is not None:
            mask[i:end + 1] = [True] * (end + 1 - i)
            i = end
        i += 1
    return mask


def _unwrap(lines: list[str], keys: dict[str, str]) -> tuple[list[str], list[str]] | None:
    """(inside, after) of one ```markdown/```md/``` fence around the whole document."""
    start = next((i for i, line in enumerate(lines) if _OPEN.match(line)), None)
    if start is None or any(_ATX.match(line) for line in lines[:start]):
        return None
    mark, info = _opener(lines[start]) or ("", "")
    if info.lower() not in ("", "markdown", "md"):
        return None
    ends = [i for i in range(start + 1, len(lines)) if _closes(lines[i], mark)]
    # the closing fence: the last one that is no part of a code block of the document's own
    # (when every one is, the wrapper's was forgotten)
    own = _fenced(lines[start + 1:])
    end = next((i for i in reversed(ends) if not own[i - start - 1]), len(lines))
    inside, after = lines[start + 1:end], lines[end + 1:]
    first = next((i for i, line in enumerate(inside) if (m := _ATX.match(line))
                  and len(m.group(1)) in (2, 3) and _key(m.group(2)) in keys), None)
    if (first is None or (ends and ends[0] < start + 1 + first)
            or any(_ATX.match(line) or _OPEN.match(line) for line in after)):
        return None
    return inside, after
