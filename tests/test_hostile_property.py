"""Property: random names, titles and stored documents never crash the planner or `status`,
never make them read or write outside the workspace, never put a secret or an escape
code into what they print (issue 12)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assemblyzero.cli import history, plan
from assemblyzero.cli.options import Parallel, UsageError, resolve
from assemblyzero.ids import Kind
from assemblyzero.keys.credentials import CredentialError
from assemblyzero.ui.console import ESCAPES

SECRET = "sk-ant-api03-" + "S" * 40  # in the credentials file, and outside the workspace
PRIVATE = "PRIVATE-KEY-MATERIAL-0123456789"

# File names: anything a file system takes (no "/" or NUL), escapes and newlines included.
NAMES = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/\x00"),
                min_size=1, max_size=40).filter(lambda n: n not in (".", ".."))
TITLES = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=20) | st.sampled_from([SECRET, "1e400", "lld-all", "done", "failed"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10) | st.sampled_from(
        ["items", "tag", "id", "status", "reason", "event", "pid", "pid_start", "label",
         "credentials", "name", "provider", "key", "key_env", "max_concurrent", SECRET]),
        inner, max_size=5),
    max_leaves=12)
CRED_ENTRY = st.fixed_dictionaries(
    {"name": st.sampled_from(["team-a", SECRET, "a b", ""]) | st.text(max_size=12),
     "provider": st.sampled_from(["offline", "anthropic", SECRET]) | JSON},
    optional={"key": st.just(SECRET) | JSON, "key_env": st.sampled_from([SECRET, "X"]) | JSON,
              SECRET: JSON, "max_concurrent": JSON, "enabled": JSON, "base_url": JSON})
CREDS = (st.just({"credentials": []})  # a good file half of the time: the plan is printed
         | st.just({"credentials": [{"name": "team-a", "provider": "offline"}]})
         | st.fixed_dictionaries({"credentials": st.lists(CRED_ENTRY | JSON, max_size=3)})
         | JSON)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", errors="surrogateescape")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(issues=st.lists(st.tuples(NAMES, TITLES), max_size=4),
       briefs=st.lists(st.tuples(NAMES, TITLES), max_size=2),
       links=st.lists(NAMES, max_size=2), status_doc=JSON, summary_doc=JSON,
       journal=st.lists(JSON, max_size=4), latest=st.sampled_from(["link", "dir", "none", "out"]),
       creds=CREDS)
def test_the_planner_and_status_survive_any_names_titles_and_documents(
        issues: list[tuple[str, str]], briefs: list[tuple[str, str]], links: list[str],
        status_doc: Any, summary_doc: Any, journal: list[Any], latest: str, creds: Any) -> None:
    with tempfile.TemporaryDirectory() as top:
        base = Path(top)
        outside, ws = base / "outside", base / "ws"
        _write(outside / "id_ed25519", PRIVATE + "\n")
        for name, title in issues:
            _write(ws / "docs/issues/active" / f"{name}.md", f"# {title}\n\nbody\n")
        for name, title in briefs:
            _write(ws / "ideas/active" / f"{name}.md", f"# {title}\n")
        for name in links:  # a cloned repository pointing an "issue" at a private key
            link = ws / "docs/issues/active" / f"{name}-link.md"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not os.path.lexists(link):
                link.symlink_to(outside / "id_ed25519")
        _write(ws / "docs/lld/status.json", json.dumps(status_doc))
        run_dir = ws / "logs/parallel/20261202-000000-lld-all-1"
        _write(run_dir / "summary.json", json.dumps(summary_doc))
        _write(run_dir / "journal.jsonl", "\n".join(json.dumps(e) for e in journal))
        if latest == "link":
            (ws / "logs/parallel/latest").symlink_to(run_dir.name)
        elif latest == "dir":
            (ws / "logs/parallel/latest").mkdir()
        elif latest == "out":
            (ws / "logs/parallel/latest").symlink_to(outside)
        credentials = base / "credentials.json"
        _write(credentials, json.dumps(creds))
        credentials.chmod(0o600)
        os.environ["ASSEMBLYZERO_CREDENTIALS"] = str(credentials)
        before_out, before_ws = _files(outside), _files(ws)

        space = plan.workspace(ws)
        try:
            data = plan.describe(space, [Kind.ISSUE, Kind.LLD], resolve(space.root, {}),
                                 Parallel(3), None, None)
            plan_text, plan_json = plan.render_plan(data), plan.plan_json(data)
        except (UsageError, CredentialError) as exc:  # the documented refusals
            plan_text, plan_json = str(exc), ""
        overview = history.overview(space)
        status_text, status_json = history.render(overview), json.dumps(overview)

        assert _files(outside) == before_out  # nothing written outside
        assert _files(ws) == before_ws  # the planner and status write nothing at all
        for text in (plan_text, plan_json, status_text, status_json):
            assert PRIVATE not in text  # never read through the link
            assert SECRET not in text  # never echoed
        for text in (plan_text, status_text):  # what reaches the terminal: no escape, no control
            assert ESCAPES.search(text.replace("\n", " ")) is None, text
