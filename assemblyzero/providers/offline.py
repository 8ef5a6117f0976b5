"""The embedded offline provider: deterministic, no network (README, The offline provider).

Drafts fill every required section from the input document; the reviewer
approves at iteration ASSEMBLYZERO_OFFLINE_APPROVE_AT (default 2, so the
revise loop runs); every call sleeps ASSEMBLYZERO_OFFLINE_LATENCY seconds;
ASSEMBLYZERO_SIMULATE_FAIL=<id>[:<role>],... makes that item's call of that
role (default: review) fail, after its draft is checkpointed;
ASSEMBLYZERO_SIMULATE_HANG=<id>[:<role>],... makes that call never return
(for `--timeout` and stop tests); ASSEMBLYZERO_SIMULATE_429=<credential or
*>:<count>[:<retry-after>] answers the first <count> calls made with that
credential (each credential, for `*`) with a 429, shared by every worker of
the run; a count of `<N>s` means every call for N seconds from the first;
ASSEMBLYZERO_SIMULATE_401=<credential>,... refuses every call made with it.
A review asked for with a schema is answered as the JSON verdict
(`structured`), with the same decision and findings as the text one.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from assemblyzero.constants import (
    DEFAULT_OFFLINE_APPROVE_AT,
    ENV_OFFLINE_APPROVE_AT,
    ENV_OFFLINE_LATENCY,
    ENV_RUN_DIR,
    ENV_SIMULATE_401,
    ENV_SIMULATE_429,
    ENV_SIMULATE_FAIL,
    ENV_SIMULATE_HANG,
)
from assemblyzero.providers import (
    AuthFailed,
    ModelReply,
    ModelRequest,
    ProviderError,
    ProviderKey,
    RateLimited,
)
from assemblyzero.workflow.templates import render, split_sections

# Where each target section looks first in the source document.
_SOURCES: dict[str, tuple[str, ...]] = {
    "Context & Goal": ("User Story", "Objective", "Context & Goal"),
    "Proposed Changes": ("Requirements",),
    "Alternatives Considered": ("Out of Scope",),
    "Risks": ("Risks",),
    "Testing": ("Acceptance Criteria",),
    "Definition of Done": ("Acceptance Criteria",),
    "User Story": ("User Story",),
    "Objective": ("Objective",),
    "Requirements": ("Requirements",),
    "Out of Scope": ("Out of Scope",),
    "Acceptance Criteria": ("Acceptance Criteria", "Requirements"),
}

# Sections with no counterpart in the source pick facts by keyword.
_KEYWORDS: dict[str, tuple[str, ...]] = {
    "Data Structures": ("store", "table", "column", "field", "schema", "record", "row", "unit"),
    "Interfaces": ("endpoint", "api", "/", "command", "email", "screen", "button", "page"),
    "Security": ("auth", "password", "secret", "token", "permission", "rate", "login", "abuse"),
    "Performance": ("ms", "second", "size", "max", "cache", "limit", "rows", "mb"),
    "Rollout": ("migration", "flag", "default", "existing", "deploy", "release"),
}
_MAX_FACTS = 6

_APPROVAL = "Every section is complete and matches the source."
_FINDINGS = (
    "Risks: give every risk a mitigation and a way to notice it in production.",
    "Testing: tie each test to one acceptance criterion by name.",
    "Proposed Changes: say which module owns each change.",
    "Open Questions: name who decides each question and by when.",
    "Security: state which inputs are untrusted and how they are checked.",
)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise ProviderError(f"{name}={raw!r} is not a number") from exc


class OfflineProvider:
    name = "offline"

    def __init__(self, model: str, key: ProviderKey | None = None) -> None:
        self.model, self.key = model, key
        self.latency = max(0.0, _env_float(ENV_OFFLINE_LATENCY, 0.0))
        self.approve_at = int(_env_float(ENV_OFFLINE_APPROVE_AT, DEFAULT_OFFLINE_APPROVE_AT))
        self.failing = _parse_fail(os.environ.get(ENV_SIMULATE_FAIL, ""))
        self.hanging = _parse_fail(os.environ.get(ENV_SIMULATE_HANG, ""), "draft")

    def complete(self, request: ModelRequest) -> ModelReply:
        if self.latency:
            time.sleep(self.latency)
        while (request.item_id, request.role) in self.hanging:
            time.sleep(3600)
        if self.key and self.key.name in os.environ.get(ENV_SIMULATE_401, "").split(","):
            raise AuthFailed(f"HTTP 401 Unauthorized (simulated, {ENV_SIMULATE_401})")
        if self.key and os.environ.get(ENV_SIMULATE_429):
            _simulate_429(self.key.name, os.environ[ENV_SIMULATE_429])
        if (request.item_id, request.role) in self.failing:
            raise ProviderError(
                f"simulated failure of the {request.role} call ({ENV_SIMULATE_FAIL})"
            )
        if request.role == "review" and request.schema is not None:
            text = json.dumps(self._verdict(request), indent=2)
            return ModelReply(text, len(request.prompt.split()), len(text.split()),
                              structured=True)
        if request.role == "review":
            text = self._review(request)
        elif request.role == "revise":
            text = _revise(request)
        else:
            text = _draft(request)
        return ModelReply(text, len(request.prompt.split()), len(text.split()))

    def _review(self, request: ModelRequest) -> str:
        if request.iteration >= self.approve_at:
            return f"VERDICT: APPROVED\n\n{_APPROVAL}\n"
        lines = [f"{n}. {text}" for n, text in enumerate(self._findings(request), 1)]
        return "VERDICT: REVISE\n\n" + "\n".join(lines) + "\n"

    def _verdict(self, request: ModelRequest) -> dict[str, Any]:
        """The review as the JSON the verdict schema asks for: same decision, same findings."""
        if request.iteration >= self.approve_at:
            return {"verdict": "APPROVED", "rationale": _APPROVAL, "findings": []}
        findings = []
        for finding in self._findings(request):
            section, _, text = finding.partition(": ")
            findings.append({"section": section, "severity": "major", "text": text})
        return {"verdict": "REVISE", "rationale": f"{len(findings)} findings to address.",
                "findings": findings}

    def _findings(self, request: ModelRequest) -> list[str]:
        first = (request.iteration - 1) * 2
        return [_FINDINGS[(first + k) % len(_FINDINGS)] for k in range(2)]


def create(model: str, key: ProviderKey | None = None) -> OfflineProvider:
    return OfflineProvider(model, key)


def _simulate_429(credential: str, spec: str) -> None:
    """Raise RateLimited while the run's shared 429 budget for `credential` lasts."""
    from pathlib import Path

    from assemblyzero.fileio import update_json
    from assemblyzero.keys.leases import state_dir

    target, _, rest = spec.partition(":")
    count, _, retry = rest.partition(":")
    if target not in ("*", credential) or not count:
        return
    folder = Path(os.environ.get(ENV_RUN_DIR) or state_dir())
    counter = folder / "simulate-429.json"
    hit: list[bool] = []

    def change(data: dict[str, Any]) -> None:
        now = time.time()
        first = float(data.setdefault(f"{credential}:first", now))
        used = int(data.get(credential, 0))
        if count.endswith("s"):
            hit.append(now - first < float(count[:-1]))
        else:
            hit.append(used < int(count))
        data[credential] = used + hit[-1]

    update_json(counter, folder / "simulate-429.lock", change, dict)
    if hit[-1]:
        raise RateLimited(f"HTTP 429 Too Many Requests (simulated, {ENV_SIMULATE_429})",
                          float(retry) if retry else None)


def _parse_fail(raw: str, default_role: str = "review") -> set[tuple[str, str]]:
    """`42,43:revise` -> {("42", "review"), ("43", "revise")}."""
    pairs = set()
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        item_id, _, role = entry.partition(":")
        pairs.add((item_id, role or default_role))
    return pairs


def _facts(text: str) -> list[str]:
    """Sentences and list items of a markdown text, markup stripped."""
    facts: list[str] = []
    for line in text.splitlines():
        item = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", line).strip()
        if not item or item.startswith(("#", "<!--")):
            continue
        if item != line.strip():  # a list item is one fact
            facts.append(item)
        else:  # prose: one fact per sentence
            facts.extend(p for p in re.split(r"(?<=[.!?])\s+(?=[A-Z])", item) if p)
    return facts


def _draft(request: ModelRequest) -> str:
    source = split_sections(request.source)
    pool = _facts(request.source) or [request.title]
    body: dict[str, str] = {}
    for index, name in enumerate(request.sections):
        picked = [fact for key in _SOURCES.get(name, ()) for fact in _facts(source.get(key, ""))]
        if not picked:
            words = _KEYWORDS.get(name, ())
            picked = [fact for fact in pool if any(w in fact.lower() for w in words)]
        if not picked:  # spread the source over the sections that have no direct match
            picked = [pool[(index + k) % len(pool)] for k in range(min(2, len(pool)))]
        lead = f"{name} for \"{request.title}\", drafted from the source document."
        body[name] = lead + "\n\n" + "\n".join(f"- {fact}" for fact in picked[:_MAX_FACTS])
    return render(request.title, body, request.sections)


def _revise(request: ModelRequest) -> str:
    body = split_sections(request.draft)
    for finding in request.findings:
        target = finding.split(":", 1)[0].strip()
        name = target if target in body else request.sections[-1]
        body[name] = body.get(name, "") + f"\n- Revision {request.iteration}: {finding}"
    for name in request.sections:  # a revision also fills what validation found missing
        if not body.get(name, "").strip():
            body[name] = f"{name} for \"{request.title}\", added in revision {request.iteration}."
    return render(request.title, body, request.sections)
