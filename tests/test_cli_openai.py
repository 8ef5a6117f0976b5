"""End to end: `lld-all` with the openai provider against a loopback OpenAI-compatible server.

Two keys, one of which the server rate-limits at first: every item still
finishes, the summary counts that key's 429s, and neither secret reaches a file.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli, latest_run, make_workspace, summary
from http_fake import JsonHandler, start

pytestmark = pytest.mark.e2e  # every test here starts real processes

SECRET_A = "sk-proj-aaaaaaaaaaaaaaaaaaaa-0001"
SECRET_B = "sk-proj-bbbbbbbbbbbbbbbbbbbb-0002"
LIMITED = 2  # the first calls made with key A get a 429
SECTIONS = ("Context & Goal", "Proposed Changes", "Data Structures", "Interfaces",
            "Alternatives Considered", "Security", "Performance", "Risks", "Testing",
            "Rollout", "Open Questions", "Definition of Done")
DRAFT = "# Design\n\n" + "\n\n".join(f"## {name}\n{name} is covered here." for name in SECTIONS)


class ChatServer:
    """Answers chat completions: drafts, approving reviews, and 429s for key A at first."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()  # secret -> calls
        self.limited = 0
        self.lock = threading.Lock()
        server = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = self.read_json()
                secret = self.headers.get("Authorization", "").removeprefix("Bearer ")
                with server.lock:
                    server.calls[secret] += 1
                    limit = secret == SECRET_A and server.calls[secret] <= LIMITED
                    server.limited += limit
                if self.path != "/v1/chat/completions" or secret not in (SECRET_A, SECRET_B):
                    self.reply(404 if secret else 401, {"error": {"message": "no"}})
                elif limit:
                    self.reply(429, {"error": {"message": "Rate limit reached"}},
                               {"Retry-After": "0.2"})
                else:
                    prompt = next(m["content"] for m in body["messages"]  # after the system's
                                  if m["role"] == "user")
                    text = ("VERDICT: APPROVED\n\nAll good." if prompt.startswith("Review")
                            else DRAFT)
                    self.reply(200, {
                        "id": "c", "object": "chat.completion", "created": 1,
                        "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 50,
                                  "total_tokens": 150}})

        self.httpd = start(Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    server = ChatServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_lld_all_on_openai_keys_survives_429s_and_leaks_no_secret(tmp_path: Path,
                                                                  chat: ChatServer):
    ws = make_workspace(tmp_path / "ws", issues=["1", "2"])
    creds = Path(os.environ["ASSEMBLYZERO_CREDENTIALS"])
    creds.write_text(json.dumps({"credentials": [
        {"name": name, "provider": "openai", "key_env": env, "max_concurrent": 1,
         "base_url": chat.url}
        for name, env in (("key-a", "AZ_TEST_OPENAI_A"), ("key-b", "AZ_TEST_OPENAI_B"))]}))
    run = cli("lld-all", "--parallel=2", "--drafter=openai:test-model",
              "--reviewer=openai:test-model", "--repo", str(ws), timeout=60,
              env={"AZ_TEST_OPENAI_A": SECRET_A, "AZ_TEST_OPENAI_B": SECRET_B,
                   "ASSEMBLYZERO_CALL_TIMEOUT": "10"})
    assert run.code == 0, run.out + run.err
    data = summary(latest_run(ws))
    assert [i["status"] for i in data["items"]] == ["done"] * 2
    assert chat.limited >= 1  # key A was used, and refused, at least once
    keys = {k["name"]: k for k in data["credentials"]}
    assert keys["key-a"]["rate_limited"] == chat.limited
    assert keys["key-b"]["rate_limited"] == 0
    assert sum(i["rate_limited"] for i in data["items"]) == chat.limited
    assert sum(chat.calls.values()) == chat.limited + 2 * 2  # a draft and a review per item
    assert "429" in run.out
    for secret in (SECRET_A, SECRET_B):
        assert secret not in run.out + run.err
        for path in [*ws.rglob("*"), *Path(os.environ["ASSEMBLYZERO_STATE_DIR"]).rglob("*")]:
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
