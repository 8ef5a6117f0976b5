"""The JSON outputs validate against their documented schemas (docs/schemas/), run as a user would.

Each output is produced by the real CLI (offline provider); every schema is
first checked against the metaschema it declares, and each schema must also
reject documents that break it, so that a schema accepting anything fails too.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, cli, journal, latest_run, make_workspace, summary
from gh_fake import Fake
from jsonschema import ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

SCHEMAS = ROOT / "docs" / "schemas"
NAMES = ["plan", "status", "summary", "journal-event"]
_UNKNOWN = object()


@cache
def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


def validator(name: str) -> Validator:
    """A validator of the draft the schema declares; a broken schema raises here."""
    schema = _schema(name)
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def assert_valid(name: str, document: Any) -> None:
    errors = sorted(validator(name).iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, f"{name}.schema.json rejects the output:\n" + "\n".join(
        f"  at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors
    ) + f"\ndocument: {json.dumps(document, indent=1)[:4000]}"


def _all_errors(errors: Any) -> Iterator[ValidationError]:
    for error in errors:
        yield error
        yield from _all_errors(error.context or ())


def assert_rejected(name: str, document: Any, path: tuple[Any, ...], keyword: str) -> None:
    """The schema rejects `document`, for the reason expected: `keyword` failing at `path`."""
    errors = list(_all_errors(validator(name).iter_errors(document)))
    assert errors, f"{name}.schema.json accepts a wrong document: {document}"
    found = [(tuple(e.absolute_path), e.validator) for e in errors]
    assert (path, keyword) in found, f"expected {keyword!r} at {path}, got {found}"


def credentials(*entries: dict[str, Any]) -> None:
    path = Path(os.environ["ASSEMBLYZERO_CREDENTIALS"])
    path.write_text(json.dumps({"credentials": list(entries)}))
    path.chmod(0o600)


def key(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": "offline", "max_concurrent": 1, **extra}


def json_out(*args: str, env: dict[str, str] | None = None) -> Any:
    run = cli(*args, env=env)
    assert run.code == 0, run.out + run.err
    return json.loads(run.out)


def assert_journal_valid(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines
    for line in lines:
        assert_valid("journal-event", json.loads(line))
    return journal(run_dir)


# --- the schemas themselves ----------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


@pytest.mark.parametrize("name", NAMES)
def test_each_schema_is_valid_for_its_declared_draft_refs_resolve_and_json_md_links_it(
        name: str):
    schema = _schema(name)
    assert "$schema" in schema
    cls = validator_for(schema, default=_UNKNOWN)
    assert cls is not _UNKNOWN, f"unknown $schema {schema['$schema']!r}"
    cls.check_schema(schema)
    refs = list(_refs(schema))
    for ref in refs:
        assert ref.startswith("#/"), ref
        target: Any = schema
        for part in ref[2:].split("/"):
            assert part in target, f"{ref} does not resolve in {name}.schema.json"
            target = target[part]
    assert (name == "journal-event") or refs  # the others share $defs
    assert f"schemas/{name}.schema.json" in (ROOT / "docs/json.md").read_text()


# --- dry-run --json ------------------------------------------------------------


@pytest.mark.e2e
def test_dry_run_json_kind_all_with_issues_and_briefs_matches_plan_schema(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["41", "42"], briefs=["receipt-photos"])
    plan = json_out("dry-run", "--kind=all", "--json", "--repo", str(ws))
    assert_valid("plan", plan)
    assert list(plan["kinds"]) == ["issue", "lld"]
    assert [p["id"] for p in plan["kinds"]["issue"]["pending"]] == ["receipt-photos"]
    assert [p["id"] for p in plan["kinds"]["lld"]["pending"]] == ["41", "42"]


@pytest.mark.e2e
def test_dry_run_json_with_a_skipped_bad_file_name_matches_plan_schema(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["7"], briefs=["idea"])
    (ws / "docs/issues/active/a b.md").write_text("# bad name\n")
    plan = json_out("dry-run", "--kind=all", "--json", "--repo", str(ws))
    assert_valid("plan", plan)
    assert [s["name"] for s in plan["kinds"]["lld"]["skipped"]] == ["a b.md"]
    assert plan["kinds"]["issue"]["skipped"] == []
    only = json_out("dry-run", "--kind=lld", "--only=7,../x", "--json", "--repo", str(ws))
    assert_valid("plan", only)
    assert [s["name"] for s in only["kinds"]["lld"]["skipped"]] == ["a b.md", "../x"]


@pytest.mark.e2e
def test_dry_run_json_with_a_credentials_file_matches_plan_schema(ws: Path):
    credentials(key("key-a", max_concurrent=2), key("key-b", enabled=False),
                {"name": "claude-a", "provider": "anthropic", "key_env": "UNSET_KEY_VAR"})
    plan = json_out("dry-run", "--json", "--repo", str(ws))
    assert_valid("plan", plan)
    creds = {c["name"]: c for c in plan["credentials"]}
    assert list(creds) == ["key-a", "key-b", "claude-a"]
    assert creds["key-b"]["enabled"] is False
    assert creds["claude-a"]["has_secret"] is False
    assert creds["claude-a"]["used_by_models"] is False


# --- runs: summary.json, journal.jsonl, status --json ---------------------------


@pytest.mark.e2e
def test_runs_with_everything_done_write_summary_and_journal_matching_their_schemas(
        tmp_path: Path, fast: None):
    ws = make_workspace(tmp_path / "ws", issues=["41", "42", "43"], briefs=["b1", "b2"])
    (ws / "docs/issues/active/a b.md").write_text("# bad name\n")  # a skipped item too
    for task, done in (("issue-all", 2), ("lld-all", 5)):  # the issues written feed lld-all
        run = cli(task, "--parallel=3", "--repo", str(ws))
        assert run.code == 0, run.out + run.err
        run_dir = latest_run(ws)
        data = summary(run_dir)
        assert_valid("summary", data)
        assert data["label"] == task and data["exit_code"] == 0
        assert data["counts"]["done"] == done and data["credentials"] == []
        events = assert_journal_valid(run_dir)
        assert events[0]["event"] == "run-start" and events[-1]["event"] == "run-end"
    assert {i["tag"]: i["status"] for i in data["items"]}["a b.md"] == "skipped"


@pytest.mark.e2e
def test_status_json_after_a_finished_run_matches_status_schema(tmp_path: Path, fast: None):
    ws = make_workspace(tmp_path / "ws", issues=["41", "42", "43"])
    none_yet = json_out("status", "--json", "--repo", str(ws))
    assert_valid("status", none_yet)
    assert none_yet["latest"] is None
    assert cli("lld-all", "--parallel=3", "--repo", str(ws)).code == 0
    data = json_out("status", "--json", "--repo", str(ws))
    assert_valid("status", data)
    assert data["latest"]["state"] == "finished" and data["latest"]["counts"]["done"] == 3


@pytest.mark.e2e
def test_status_json_with_latest_pointing_at_a_deleted_run_matches_status_schema(
        tmp_path: Path, fast: None):
    ws = make_workspace(tmp_path / "ws", issues=["7"])
    assert cli("lld-all", "--repo", str(ws)).code == 0
    shutil.rmtree(latest_run(ws))
    data = json_out("status", "--json", "--repo", str(ws))
    assert_valid("status", data)
    assert data["latest"] is None and len(data["problems"]) == 1


@pytest.mark.e2e
def test_a_run_with_a_failure_429_and_401_matches_summary_journal_status_plan_schemas(
        tmp_path: Path, fast: None):
    ws = make_workspace(tmp_path / "ws", issues=["1", "2", "3"])
    credentials(key("key-a"), key("key-b"), key("key-c"))
    run = cli("lld-all", "--parallel=3", "--no-pacing", "--repo", str(ws), env={  # 429: retry
        "ASSEMBLYZERO_SIMULATE_FAIL": "2", "ASSEMBLYZERO_SIMULATE_429": "key-a:1:30",
        "ASSEMBLYZERO_SIMULATE_401": "key-c"})
    assert run.code == 1, run.out + run.err
    run_dir = latest_run(ws)

    data = summary(run_dir)
    assert_valid("summary", data)
    assert data["exit_code"] == 1 and data["counts"]["failed"] == 1
    assert {i["id"]: i["status"] for i in data["items"]} == {
        "1": "done", "2": "failed", "3": "done"}
    keys = {k["name"]: k for k in data["credentials"]}
    assert set(keys) == {"key-a", "key-b", "key-c"}
    assert keys["key-a"]["rate_limited"] == 1 and keys["key-c"]["disabled"]

    events = assert_journal_valid(run_dir)
    assert {e["kind"] for e in events if e["event"] == "retry"} == {"rate_limited", "auth"}

    status = json_out("status", "--json", "--repo", str(ws))
    assert_valid("status", status)
    assert status["latest"]["exit_code"] == 1
    assert {i["id"]: i["status"] for i in status["latest"]["items"]}["2"] == "failed"

    plan = json_out("dry-run", "--json", "--repo", str(ws))  # key-a rests 30 s after its 429
    assert_valid("plan", plan)
    assert {c["name"]: c["cooldown_until"] for c in plan["credentials"]}["key-a"] is not None
    assert plan["kinds"]["lld"]["pending"] == [
        {"id": "2", "tag": "LLD-002", "input": "docs/issues/active/2.md", "resumes": True}]


@pytest.mark.e2e
def test_a_timed_out_item_matches_summary_journal_and_status_schemas(tmp_path: Path,
                                                                    fast: None):
    ws = make_workspace(tmp_path / "ws", issues=["7"])
    run = cli("lld-all", "--timeout=0.5", "--grace=0.2", "--repo", str(ws),
              env={"ASSEMBLYZERO_SIMULATE_HANG": "7"})
    assert run.code == 1, run.out + run.err
    run_dir = latest_run(ws)
    data = summary(run_dir)
    assert_valid("summary", data)
    assert [(i["id"], i["status"]) for i in data["items"]] == [("7", "timeout")]
    events = assert_journal_valid(run_dir)
    assert [e["status"] for e in events if e["event"] == "end" and e["item"] == "LLD-007"] == [
        "timeout"]
    status = json_out("status", "--json", "--repo", str(ws))
    assert_valid("status", status)
    assert status["latest"]["counts"]["timeout"] == 1


@pytest.mark.e2e
def test_source_github_plan_summary_journal_and_status_match_their_schemas(
        fake_gh: Fake, tmp_path: Path, fast: None):
    ws = make_workspace(tmp_path / "ws", issues=["007"])  # clashes with GitHub issue #7
    plan = json_out("dry-run", "--source", "github", "--json", "--repo", str(ws))
    assert_valid("plan", plan)
    assert plan["source"] == "github" and list(plan["kinds"]) == ["lld"]
    assert [p["input"] for p in plan["kinds"]["lld"]["pending"]] == [
        "GitHub issue #9", "GitHub issue #12"]
    assert [s["name"] for s in plan["kinds"]["lld"]["skipped"]] == ["#7"]
    run = cli("lld-all", "--source", "github", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    run_dir = latest_run(ws)
    data = summary(run_dir)
    assert_valid("summary", data)
    assert {i["tag"]: i["status"] for i in data["items"]} == {
        "LLD-009": "done", "LLD-012": "done", "#7": "skipped"}
    events = assert_journal_valid(run_dir)
    assert events[0]["source"] == "github"
    status = json_out("status", "--json", "--repo", str(ws))
    assert_valid("status", status)
    assert len(status["latest"]["items"]) == 3


@pytest.mark.e2e
def test_while_running_status_and_plan_then_after_sigterm_summary_journal_match_schemas(
        ws: Path):
    credentials(key("key-a"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", "--parallel=2", "--repo", str(ws)],
        env={**os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "30"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        seen = ""
        while ": calling " not in seen:
            line = proc.stdout.readline().decode()
            assert line, "the run ended before its worker called the model: " + seen
            seen += line
        running = json_out("status", "--json", "--repo", str(ws))
        assert_valid("status", running)
        assert running["latest"]["state"] == "running"
        assert {i["status"] for i in running["latest"]["items"]} == {"running", "pending"}
        plan = json_out("dry-run", "--json", "--repo", str(ws))
        assert_valid("plan", plan)
        assert [h["item"] for h in plan["credentials"][0]["holders"]] == ["LLD-041"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 143
    run_dir = latest_run(ws)
    data = summary(run_dir)
    assert_valid("summary", data)
    assert data["exit_code"] == 143 and data["counts"]["interrupted"] == 1
    assert data["counts"]["skipped"] == 5
    events = assert_journal_valid(run_dir)
    assert sum(e["event"] == "end" and "exit_code" not in e for e in events) == 5
    after = json_out("status", "--json", "--repo", str(ws))
    assert_valid("status", after)
    assert after["latest"]["exit_code"] == 143


# --- the schemas reject wrong documents ------------------------------------------

PLAN: dict[str, Any] = {
    "version": 1, "repo": "/tmp/ws", "parallel": 3, "drafter": "offline:default",
    "reviewer": "offline:default", "max_iterations": 3, "timeout": 1800.0,
    "credentials": [{"name": "team-a", "provider": "offline", "max_concurrent": 1,
                     "enabled": True, "has_secret": True, "used_by_models": True,
                     "holders": [{"pid": 17, "host": "vm", "run_id": "r", "item": "LLD-101"}],
                     "cooldown_until": None}],
    "kinds": {"lld": {"pending": [{"id": "101", "tag": "LLD-101",
                                   "input": "docs/issues/active/101.md", "resumes": False}],
                      "skipped": [{"name": "a b.md", "reason": "not a valid id"}]}},
    "source": "files", "publish": None,
}
_RUN = {"run_id": "20261124-141900-lld-all-17504", "state": "finished", "label": "lld-all",
        "exit_code": 0,
        "counts": {"done": 1, "failed": 0, "halted": 0, "timeout": 0, "interrupted": 0,
                   "skipped": 0},
        "items": [{"tag": "LLD-101", "id": "101", "status": "done", "reason": ""}]}
STATUS: dict[str, Any] = {
    "version": 1, "repo": "/tmp/ws", "latest": _RUN,
    "in_progress": [{"run_id": "20261124-141858-lld-all-17494", "state": "running",
                     "label": "lld-all", "exit_code": None,
                     "items": [{"tag": "LLD-102", "id": "102", "status": "pending",
                                "reason": ""}]}],
    "problems": [],
}
SUMMARY: dict[str, Any] = {
    "version": 1, "run_id": "20261124-141911-lld-all-17573", "label": "lld-all",
    "repo": "/tmp/ws", "started": "2026-11-24T14:19:11+0000", "wall_seconds": 5.0,
    "parallel": 3, "drafter": "offline:default", "reviewer": "offline:default", "exit_code": 0,
    "counts": {"done": 1, "failed": 0, "halted": 0, "timeout": 0, "interrupted": 0,
               "skipped": 0},
    "worker_seconds": 1.0, "retries": {"HTTP 503": 1},
    "cost": {"usd": None, "priced_usd": 0.02, "unpriced_calls": 1},
    "budget": {"usd": 5.0, "spent_usd": 0.02, "reached": False, "not_started": 0, "stopped": 0},
    "items": [{"kind": "lld", "id": "101", "tag": "LLD-101", "status": "done", "duration": 0.99,
               "iterations": 2, "model_calls": 4, "tokens": [5012, 2186], "attempts": 1,
               "rate_limited": 0, "credential": "team-a", "reason": "", "log": "/tmp/x.log",
               "retries": {"HTTP 503": 1},
               "cost": {"usd": None, "priced_usd": 0.02, "unpriced_calls": 1},
               "stopped_by_budget": False}],
    "credentials": [{"name": "team-a", "provider": "offline", "attempts": 1, "requests": 4,
                     "rate_limited": 0, "tokens": [5012, 2186],
                     "cost": {"usd": 0.02, "priced_usd": 0.02, "unpriced_calls": 0},
                     "cooldown_seconds": 0.0, "waited_seconds": 1.5, "disabled": ""}],
}
EVENTS: dict[str, dict[str, Any]] = {
    "run-start": {"event": "run-start", "ids": ["101"], "items": ["LLD-101"],
                  "label": "lld-all", "label_filter": None, "parallel": 3, "pid": 17,
                  "pid_start": "939500", "publish": None, "source": "files", "ts": 1.5},
    "start": {"attempt": 1, "credentials": ["team-a"], "event": "start", "item": "LLD-101",
              "pid": 18, "ts": 1.5},
    "end": {"duration": 0.4, "event": "end", "exit_code": 0, "item": "LLD-101",
            "status": "done", "ts": 1.9},
    "retry": {"credential": "team-a", "event": "retry", "item": "LLD-101",
              "kind": "rate_limited", "ts": 1.9},
    "pause": {"event": "pause", "reason": "every offline credential is held", "ts": 1.5},
    "budget": {"event": "budget", "spent": 5.02, "limit": 5.0, "ts": 1.7},
    "error": {"error": "OSError()", "event": "error", "traceback": "Traceback ...", "ts": 2.0},
    "run-end": {"event": "run-end", "exit_code": 0, "ts": 2.0, "wall_seconds": 0.5},
}


_DROP = object()


def _changed(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of `document` with `value` at `path` (`_DROP`: the key removed)."""
    doc = copy.deepcopy(document)
    node = doc
    for part in path[:-1]:
        node = node[part]
    if value is _DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


_CRED, _PENDING = ("credentials", 0), ("kinds", "lld", "pending", 0)


@pytest.mark.parametrize(("path", "value", "at", "keyword"), [
    (("version",), "1", ("version",), "const"),
    (("kinds",), _DROP, (), "required"),
    (("parallel",), 11, ("parallel",), "maximum"),
    (("source",), "svn", ("source",), "enum"),
    (("drafter",), "offline", ("drafter",), "pattern"),
    ((*_CRED, "has_secret"), _DROP, _CRED, "required"),
    ((*_CRED, "cooldown_until"), "soon", (*_CRED, "cooldown_until"), "type"),
    ((*_PENDING, "resumes"), "no", (*_PENDING, "resumes"), "type"),
    (("kinds", "lld", "skipped"), _DROP, ("kinds", "lld"), "required"),
], ids=["version-string", "no-kinds", "parallel-above-cap", "source-enum", "model-no-colon",
        "credential-no-has_secret", "cooldown-string", "resumes-string", "kind-no-skipped"])
def test_plan_schema_rejects_wrong_documents(path: tuple[Any, ...], value: Any,
                                             at: tuple[Any, ...], keyword: str):
    assert_valid("plan", PLAN)
    assert_rejected("plan", _changed(PLAN, path, value), at, keyword)


@pytest.mark.parametrize(("path", "value", "at", "keyword"), [
    (("version",), "1", ("version",), "const"),
    (("problems",), _DROP, (), "required"),
    (("latest", "state"), "done", ("latest", "state"), "enum"),
    (("latest", "items", 0, "status"), "approved", ("latest", "items", 0, "status"), "enum"),
    (("latest", "counts"), _DROP, ("latest",), "required"),
    (("latest", "counts", "done"), -1, ("latest", "counts", "done"), "minimum"),
    (("in_progress", 0, "exit_code"), 0, ("in_progress", 0, "exit_code"), "type"),
], ids=["version-string", "no-problems", "state-enum", "item-status-enum",
        "finished-without-counts", "negative-count", "running-with-exit-code"])
def test_status_schema_rejects_wrong_documents(path: tuple[Any, ...], value: Any,
                                               at: tuple[Any, ...], keyword: str):
    assert_valid("status", STATUS)
    assert_rejected("status", _changed(STATUS, path, value), at, keyword)


_ITEM, _KEY = ("items", 0), ("credentials", 0)


@pytest.mark.parametrize(("path", "value", "at", "keyword"), [
    (("version",), "1", ("version",), "const"),
    (("credentials",), _DROP, (), "required"),
    (("exit_code",), 2, ("exit_code",), "enum"),
    (("label",), "lld", ("label",), "enum"),
    (("started",), "2026-11-24 14:19:11", ("started",), "pattern"),
    (("counts", "skipped"), _DROP, ("counts",), "required"),
    ((*_ITEM, "status"), "running", (*_ITEM, "status"), "enum"),
    ((*_ITEM, "tokens"), [1, 2, 3], (*_ITEM, "tokens"), "maxItems"),
    ((*_ITEM, "tokens"), [1, "2"], (*_ITEM, "tokens", 1), "type"),
    ((*_ITEM, "log"), _DROP, _ITEM, "required"),
    ((*_KEY, "disabled"), False, (*_KEY, "disabled"), "type"),
    ((*_ITEM, "retries", "HTTP 503"), 0, (*_ITEM, "retries", "HTTP 503"), "minimum"),
    (("retries",), _DROP, (), "required"),
    (("cost",), _DROP, (), "required"),
    ((*_ITEM, "cost", "usd"), "unknown", (*_ITEM, "cost", "usd"), "type"),
    ((*_KEY, "cost", "unpriced_calls"), -1, (*_KEY, "cost", "unpriced_calls"), "minimum"),
    (("budget", "reached"), "yes", ("budget", "reached"), "type"),
], ids=["version-string", "no-credentials", "exit-code-enum", "label-enum", "started-format",
        "counts-missing-key", "item-status-enum", "tokens-three", "tokens-string",
        "item-no-log", "disabled-bool", "retries-zero", "no-retries", "no-cost",
        "cost-usd-string", "key-cost-negative", "budget-reached-string"])
def test_summary_schema_rejects_wrong_documents(path: tuple[Any, ...], value: Any,
                                                at: tuple[Any, ...], keyword: str):
    assert_valid("summary", SUMMARY)
    assert_rejected("summary", _changed(SUMMARY, path, value), at, keyword)


@pytest.mark.parametrize(("event", "path", "value", "at", "keyword"), [
    ("end", ("ts",), _DROP, (), "required"),
    ("pause", ("ts",), "1.5", ("ts",), "type"),
    ("run-start", ("pid_start",), _DROP, (), "required"),
    ("run-start", ("label",), "lld", ("label",), "enum"),
    ("start", ("attempt",), 0, ("attempt",), "minimum"),
    ("start", ("credentials",), "team-a", ("credentials",), "type"),
    ("end", ("status",), "running", ("status",), "enum"),
    ("end", ("duration",), _DROP, (), "dependentRequired"),
    ("retry", ("kind",), "other", ("kind",), "enum"),
    ("pause", ("reason",), _DROP, (), "required"),
    ("error", ("traceback",), _DROP, (), "required"),
    ("run-end", ("wall_seconds",), _DROP, (), "required"),
], ids=["no-ts", "ts-string", "run-start-no-pid_start", "run-start-label-enum",
        "start-attempt-0", "start-credentials-string", "end-status-enum",
        "end-exit-code-without-duration", "retry-kind-enum", "pause-no-reason",
        "error-no-traceback", "run-end-no-wall_seconds"])
def test_journal_event_schema_rejects_wrong_events(event: str, path: tuple[Any, ...],
                                                   value: Any, at: tuple[Any, ...],
                                                   keyword: str):
    assert_valid("journal-event", EVENTS[event])
    assert_rejected("journal-event", _changed(EVENTS[event], path, value), at, keyword)
