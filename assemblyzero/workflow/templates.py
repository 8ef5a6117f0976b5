"""Document templates and the section structure of markdown documents.

A template is a markdown file whose `## ` headings are the required
sections; the HTML comment under each heading is guidance for the drafter.
A workspace overrides one with `.assemblyzero/templates/<kind>.md`.
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
    """Map each `## ` heading to the text under it (up to the next one)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = _HEADING.match(line)
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
    """Required sections that are absent or hold nothing but comments."""
    found = split_sections(text)
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
