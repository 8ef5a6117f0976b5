"""What a model is asked: the request for one call, and the instruction text in it.

The texts are files (`prompts/<name>.md` in this package, `PLACEHOLDERS` lists them and
what each is filled in with); a workspace overrides any of them with
`.assemblyzero/prompts/<name>.md`. `load_prompts` reads and checks them all at once, so an
override that cannot be used fails before any model call.

The review asks for the JSON verdict (`verdict.VERDICT_SCHEMA`): natively where the provider
can (`ModelRequest.schema`), and in the prompt for one that only answers in text (`cmd:`),
which may still answer with a `VERDICT:` line and numbered findings.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path

from assemblyzero.fileio import inside
from assemblyzero.ids import Kind
from assemblyzero.providers import ModelRequest
from assemblyzero.workflow.state import WorkflowState
from assemblyzero.workflow.templates import Template
from assemblyzero.workflow.verdict import VERDICT_SCHEMA

_DOCUMENT = ("kind", "title", "sections", "outline", "source")
# Each prompt's name (its file is <name>.md) and the placeholders it is filled in with.
PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "system-drafter": ("kind",),
    "system-reviewer": ("kind",),
    "draft": _DOCUMENT,
    "revise": (*_DOCUMENT, "draft_prompt", "draft", "findings"),
    "review": (*_DOCUMENT, "draft", "rubric", "shape", "text_fallback"),
    "rubric": ("kind",),
    "reask": ("shape", "text_fallback", "reply"),
    "continue": ("prompt", "so_far"),
}
# The verdict formats that verdict.py reads: part of the code, not of the prompt files.
_SHAPE = ('{"verdict": "APPROVED" | "REVISE" | "DISCUSS", "rationale": "<why, briefly>", '
          '"findings": [{"section": "<section name>", "severity": "blocking" | "major" | '
          '"minor", "text": "<what to change>"}]}')
_TEXT_FALLBACK = ("If you cannot answer in JSON, write a first line 'VERDICT: APPROVED', "
                  "'VERDICT: REVISE' or 'VERDICT: DISCUSS', then numbered findings, each "
                  "starting with the section name and a colon.")
_NOTE = re.compile(r"\A<!--.*?-->\s*", re.S)  # a leading comment: for people, not sent
_FIX = "or delete it to use the built-in prompt"
PROMPT_LIMIT = 256 * 1024  # bytes: a prompt file larger than this is not a prompt


@dataclass(frozen=True)
class Prompts:
    texts: Mapping[str, str]  # name -> text, placeholders not yet filled in
    sources: Mapping[str, str]  # name -> the override's path or "built-in"

    def render(self, name: str, **values: str) -> str:
        """Prompt `name` with its placeholders filled in (every one is checked at load)."""
        return string.Template(self.texts[name]).substitute(values)


def load_prompts(folder: Path | None = None, root: Path | None = None) -> Prompts:
    """Every prompt: the override in `folder` where there is one, else the built-in.

    `root`: the workspace, which an override must not lead out of. A prompt that cannot
    be used (unreadable, an unknown placeholder, a stray `$`, a file named like no
    prompt) is a ValueError naming the file and saying what to do.
    """
    texts, sources = dict(builtin_prompts().texts), dict(builtin_prompts().sources)
    for path in _overrides(folder, root):
        name = path.name.removesuffix(".md")
        texts[name], sources[name] = _checked(name, _read(path, root), str(path)), str(path)
    return Prompts(texts, sources)


@cache
def builtin_prompts() -> Prompts:
    """The prompts shipped in the package."""
    folder = resources.files("assemblyzero.workflow").joinpath("prompts")
    texts = {name: _checked(name, folder.joinpath(f"{name}.md").read_text(encoding="utf-8"),
                            "built-in")
             for name in PLACEHOLDERS}
    return Prompts(texts, dict.fromkeys(PLACEHOLDERS, "built-in"))


def _overrides(folder: Path | None, root: Path | None) -> list[Path]:
    """The override files in `folder`, each named like a prompt."""
    if folder is None or not (folder.is_dir() or folder.is_symlink()):
        return []
    if root is not None and not inside(root, folder):
        raise ValueError(f"prompts folder {folder} leads outside the workspace (to "
                         f"{os.path.realpath(folder)}); replace the symlink with a real "
                         "folder, or delete it to use the built-in prompts")
    try:
        found = sorted(p for p in folder.iterdir() if p.name.endswith(".md"))
    except OSError as exc:
        raise ValueError(f"cannot read prompts folder {folder}: {exc.strerror or exc}; fix "
                         "it, or delete it to use the built-in prompts") from None
    for path in found:
        if path.name.removesuffix(".md") not in PLACEHOLDERS:
            raise ValueError(f"prompt {path} is named like no prompt (the names are "
                             f"{', '.join(f'{n}.md' for n in PLACEHOLDERS)}); rename it, "
                             "or move it out of the folder")
    return found


def _read(path: Path, root: Path | None) -> str:
    """An override's text, read as a template override is (templates.load_template)."""
    if root is not None and not inside(root, path):
        raise ValueError(f"prompt {path} leads outside the workspace (to "
                         f"{os.path.realpath(path)}); replace the symlink with the file "
                         f"itself, {_FIX}")
    try:
        if not path.is_file():  # a FIFO or a device would hang the read, or never end
            raise ValueError(f"prompt {path} is not a plain file; make it one, {_FIX}")
        if path.stat().st_size > PROMPT_LIMIT:
            raise ValueError(f"prompt {path} is over {PROMPT_LIMIT // 1024} KiB; shorten it, "
                             f"{_FIX}")
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"prompt {path} is not UTF-8 text (byte {exc.start}); save it as "
                         f"UTF-8, {_FIX}") from None
    except OSError as exc:
        raise ValueError(f"cannot read prompt {path}: {exc.strerror or exc}; fix it, "
                         f"{_FIX}") from None


def _checked(name: str, text: str, source: str) -> str:
    """`text` without its leading note and trailing whitespace, its placeholders checked."""
    note = _NOTE.match(text)
    whole, skipped = text, note.end() if note else 0
    text = text[skipped:].rstrip()
    if not text:
        raise ValueError(f"prompt {source} is empty (a leading <!-- note --> is not sent); "
                         f"write the prompt, {_FIX}")
    known = PLACEHOLDERS[name]
    listed = ", ".join(f"${k}" for k in known)
    template = string.Template(text)
    for match in template.pattern.finditer(text):
        if match.group("invalid") is not None:
            at = skipped + match.start()
            line, column = whole.count("\n", 0, at) + 1, at - whole.rfind("\n", 0, at)
            raise ValueError(f"prompt {source}: the '$' at line {line}, column {column} "
                             f"starts no placeholder ({name}.md knows {listed}); write $$ "
                             f"for a literal $, {_FIX}")
    unknown = [p for p in template.get_identifiers() if p not in known]
    if unknown:
        raise ValueError(f"prompt {source}: unknown placeholder ${unknown[0]} ({name}.md "
                         f"knows {listed}); fix it, write $$ for a literal $, {_FIX}")
    return text


def build_request(
    role: str, kind: Kind, item_id: str, template: Template, state: WorkflowState,
    prompts: Prompts | None = None,
) -> ModelRequest:
    """The request of a `role` call ("draft", "review" or "revise") from the current state."""
    return ModelRequest(
        role=role, kind=kind.value, item_id=item_id, title=state["title"],
        source=state["source"], sections=template.sections,
        prompt=build_prompt(role, template, state, prompts), draft=state.get("draft", ""),
        findings=tuple(state.get("findings", ())), iteration=state["iteration"],
        schema=VERDICT_SCHEMA if role == "review" else None,
        system=system_message(role, template.kind, prompts),
    )


def reask_request(review: ModelRequest, reply: str, prompts: Prompts | None = None) -> ModelRequest:
    """The review asked once more, for just the verdict of the `reply` it gave."""
    prompt = (prompts or builtin_prompts()).render(
        "reask", shape=_SHAPE, text_fallback=_TEXT_FALLBACK, reply=reply)
    return replace(review, prompt=prompt)


def continued(request: ModelRequest, so_far: str, prompts: Prompts | None = None) -> ModelRequest:
    """The same request, asking the model to go on where its reply `so_far` was cut.

    The continuation is plain text, even for a review: what it continues may be JSON.
    """
    prompt = (prompts or builtin_prompts()).render("continue", prompt=request.prompt,
                                                   so_far=so_far)
    return replace(request, prompt=prompt, schema=None)


def system_message(role: str, kind: Kind, prompts: Prompts | None = None) -> str:
    """The role's system message (a revision is the drafter's)."""
    name = "system-reviewer" if role == "review" else "system-drafter"
    return (prompts or builtin_prompts()).render(name, kind=_kind_name(kind))


def build_prompt(
    role: str, template: Template, state: WorkflowState, prompts: Prompts | None = None
) -> str:
    """The instruction text a real model receives."""
    prompts = prompts or builtin_prompts()
    kind = _kind_name(template.kind)
    values = {
        "kind": kind, "title": state["title"], "source": state["source"],
        "sections": json.dumps(list(template.sections)),
        "outline": "\n".join(f"## {name}\n{template.guidance.get(name, '')}"
                             for name in template.sections),  # the template's guidance
    }
    if role == "review":
        return prompts.render("review", **values, draft=state["draft"], shape=_SHAPE,
                              text_fallback=_TEXT_FALLBACK,
                              rubric=prompts.render("rubric", kind=kind))
    task = prompts.render("draft", **values)
    if role != "revise":
        return task
    findings = "\n".join(f"{n}. {f}" for n, f in enumerate(state.get("findings", []), 1))
    return prompts.render("revise", **values, draft_prompt=task, draft=state["draft"],
                          findings=findings)


def _kind_name(kind: Kind) -> str:
    return "low-level design" if kind is Kind.LLD else "issue"
