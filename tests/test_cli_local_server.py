"""End to end: a local OpenAI-compatible server reached with no credential (OPENAI_BASE_URL)
is a key like any other: its 429 is waited out by the worker (or, with --no-pacing, rests
it and the item retries), 429S counts it, and an item that runs out of attempts still gets
its docs/lld/status.json entry."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import cli, journal, latest_run, make_workspace, summary
from http_fake import JsonHandler, start

pytestmark = pytest.mark.e2e  # the CLI and its workers are real processes

SECTIONS = ("Context & Goal", "Proposed Changes", "Data Structures", "Interfaces",
            "Alternatives Considered", "Security", "Performance", "Risks", "Testing",
            "Rollout", "Open Questions", "Definition of Done")
DRAFT = "# Design\n\n" + "\n\n".join(f"## {name}\n{name} is covered here." for name in SECTIONS)
REVIEW = "VERDICT: APPROVED\n\nAll good."
RETRY_AFTER = 0.2  # seconds, what the server's 429 says


class LocalServer:
    """Chat completions with no key; the first `limited` calls answer 429 (RETRY_AFTER)."""

    def __init__(self, limited: int) -> None:
        self.calls, self.limited, self.lock = 0, limited, threading.Lock()
        self.bodies: list[dict[str, Any]] = []  # every request, as sent
        server = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = self.read_json()
                with server.lock:
                    server.bodies.append(body)
                    server.calls += 1
                    limit = server.calls <= server.limited
                if limit:
                    self.reply(429, {"error": {"message": "slow down"}},
                               {"Retry-After": str(RETRY_AFTER)})
                    return
                asked = " ".join(str(m.get("content", "")) for m in body["messages"])
                review = "response_format" in body or "VERDICT" in asked  # only a review asks
                text = REVIEW if review else DRAFT
                self.reply(200, {
                    "id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

        self.httpd = start(Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture
def local() -> Iterator[LocalServer]:
    server = LocalServer(limited=1)
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def _run(ws: Path, server: LocalServer, *flags: str) -> tuple[int, str, dict[str, Any]]:
    run = cli("lld-all", "--drafter=openai:local-model", "--reviewer=openai:local-model",
              "--repo", str(ws), *flags, timeout=60,
              env={"OPENAI_BASE_URL": server.url, "ASSEMBLYZERO_CALL_TIMEOUT": "10"})
    return run.code, run.out + run.err, summary(latest_run(ws))


def test_a_429_from_a_keyless_local_server_is_waited_out_in_the_worker_on_the_same_key(
        tmp_path: Path, local: LocalServer) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["1"])
    code, out, data = _run(ws, local)
    assert code == 0, out
    name = f"local.127.0.0.1-{local.port}"
    assert f"429 on {name}; waiting" in out and "then the same call again on it" in out
    item = data["items"][0]
    assert item["status"] == "done" and item["rate_limited"] == 1 and item["attempts"] == 1
    assert item["retries"] == {"HTTP 429": 1}
    key = {k["name"]: k for k in data["credentials"]}[name]
    assert key["rate_limited"] == 1 and key["requests"] == 3  # the 429'd call, draft, review
    assert key["waited_seconds"] >= 0.9 * RETRY_AFTER  # waited out before the call
    assert [e for e in journal(latest_run(ws)) if e["event"] == "retry"] == []


def test_without_pacing_a_429_from_a_keyless_local_server_rests_it_and_the_item_retries(
        tmp_path: Path, local: LocalServer) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["1"])
    code, out, data = _run(ws, local, "--no-pacing")
    assert code == 0, out
    name = f"local.127.0.0.1-{local.port}"
    assert "rate limited on None" not in out and f"got a 429 on {name}" in out
    assert data["items"][0]["status"] == "done" and data["items"][0]["rate_limited"] == 1
    keys = {k["name"]: k for k in data["credentials"]}
    assert keys[name]["rate_limited"] == 1
    assert keys[name]["cooldown_seconds"] >= 0.9 * RETRY_AFTER  # its Retry-After, from the 429
    assert [e["credential"] for e in journal(latest_run(ws)) if e["event"] == "retry"] == [name]


def test_an_item_out_of_attempts_on_a_local_server_gets_its_status_entry(
        tmp_path: Path, local: LocalServer) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["1"])
    code, out, data = _run(ws, local, "--max-attempts=1", "--no-pacing")
    assert code == 1, out
    assert data["items"][0]["status"] == "failed"
    index = json.loads((ws / "docs/lld/status.json").read_text())
    assert index["items"]["1"]["status"] == "failed"
    assert "429" in index["items"]["1"]["reason"]


def test_max_output_tokens_caps_every_call_and_dry_run_shows_it(
        tmp_path: Path, local: LocalServer) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["1"])
    plan = cli("dry-run", "--kind=lld", "--repo", str(ws), "--max-output-tokens=777",
               env={"OPENAI_BASE_URL": local.url})
    assert plan.code == 0 and "at most 777 output tokens per reply" in plan.out, plan.out
    code, out, _ = _run(ws, local, "--max-output-tokens=777")
    assert code == 0, out
    sent = [b.get("max_tokens") for b in local.bodies if "messages" in b]
    assert len(sent) >= 2 and set(sent) == {777}  # the 429'd call, the draft, the review
    bad = cli("lld-all", "--repo", str(ws), "--max-output-tokens=0")
    assert bad.code == 2 and "--max-output-tokens must be at least 1 (got 0)" in bad.out + bad.err


def test_a_workspace_prompt_override_reaches_the_model_and_a_bad_one_stops_the_run(
        tmp_path: Path) -> None:
    server = LocalServer(limited=0)
    try:
        ws = make_workspace(tmp_path / "ws", issues=["1"])
        prompts = ws / ".assemblyzero" / "prompts"
        prompts.mkdir(parents=True)
        (prompts / "draft.md").write_text("Team rules first. Write the $kind.\n\n$outline\n\n"
                                          "# Source\n$source\n")
        code, out, _ = _run(ws, server)
        assert code == 0, out
        drafts = [b for b in server.bodies if "Team rules first." in json.dumps(b)]
        assert len(drafts) == 1  # the draft, not the review
        (prompts / "draft.md").write_text("Write for $audience.\n")
        (ws / "docs/issues/active/2.md").write_text((ws / "docs/issues/active/1.md").read_text())
        calls = len(server.bodies)
        code, out, _ = _run(ws, server)
        assert code == 2 and "$audience" in out and "draft.md" in out, out
        assert len(server.bodies) == calls  # stopped before any worker called the model
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
