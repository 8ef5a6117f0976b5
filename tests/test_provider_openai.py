"""The openai provider against a loopback server speaking chat completions."""

from __future__ import annotations

import email.utils
import importlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from http_fake import FakeServer, Reply

from assemblyzero.providers import (
    AuthFailed,
    ModelRequest,
    ProviderError,
    ProviderKey,
    RateLimited,
    _common,
    load_provider,
)
from assemblyzero.providers import openai as provider

SECRET = "sk-proj-test-0123456789secret"
PROMPT = "Write a low-level design for feature 7."


def completion(text: str | None = "# Design\n\nhello",
               tokens: tuple[int, int] = (11, 22)) -> dict:  # type: ignore[type-arg]
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1],
                      "total_tokens": sum(tokens)}}


def error(status: int, text: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"error": {"message": text, "type": "error", "code": None}},
                 headers or {})


REQUEST = ModelRequest(role="draft", kind="lld", item_id="7", title="Feature 7", source="src",
                       sections=("Context & Goal",), prompt=PROMPT)


@pytest.fixture(scope="module")
def closing() -> Iterator[list[threading.Thread]]:
    """Servers close in the background (each close waits up to 0.5 s), joined at the end."""
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join()


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch,
          closing: list[threading.Thread]) -> Iterator[Callable[..., FakeServer]]:
    monkeypatch.setattr(_common, "RETRY_BASE", 0.01)
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    servers: list[FakeServer] = []

    def start(*replies: Reply) -> FakeServer:
        servers.append(FakeServer(list(replies)))
        return servers[-1]

    yield start
    for server in servers:
        closing.append(threading.Thread(target=server.close, daemon=True))
        closing[-1].start()


def call(server: FakeServer, base: str = "/v1") -> object:
    key = ProviderKey("team-a", SECRET, server.url + base)
    return provider.create("gpt-x", key).complete(REQUEST)


def test_a_reply_carries_text_and_tokens_and_the_request_model_prompt_and_key(serve):
    server = serve(Reply(200, completion("# Design\n\nhello")))
    reply = call(server)
    assert reply.text == "# Design\n\nhello"
    assert (reply.input_tokens, reply.output_tokens) == (11, 22)
    [seen] = server.requests
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.body["model"] == "gpt-x"
    assert seen.body["messages"] == [{"role": "user", "content": PROMPT}]
    assert seen.headers["authorization"] == f"Bearer {SECRET}"


def test_the_path_follows_the_base_url_as_given(serve):
    server = serve(Reply(200, completion()))
    call(server, base="")
    assert server.requests[0].path == "/chat/completions"


def test_an_empty_content_and_no_usage_give_empty_text_and_no_counts(serve):
    body = completion(None)
    del body["usage"]
    reply = call(serve(Reply(200, body)))
    assert (reply.text, reply.input_tokens, reply.output_tokens) == ("", None, None)


def test_a_429_is_rate_limited_with_retry_after_seconds_and_no_sdk_retry(serve):
    server = serve(error(429, "Rate limit reached", {"Retry-After": "7"}))
    with pytest.raises(RateLimited) as caught:
        call(server)
    assert caught.value.retry_after == 7
    assert "429" in str(caught.value) and "Rate limit reached" in str(caught.value)
    assert len(server.requests) == 1


def test_a_429_with_an_http_date_retry_after(serve):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server = serve(error(429, "Rate limit reached", {"Retry-After": when}))
    with pytest.raises(RateLimited) as caught:
        call(server)
    assert caught.value.retry_after is not None and 27 <= caught.value.retry_after <= 31
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_auth_failures_and_never_show_the_key(serve, status: int):
    # OpenAI echoes (part of) a bad key: our message must never carry it
    server = serve(error(status, f"Incorrect API key provided: {SECRET}."))
    with pytest.raises(AuthFailed) as caught:
        call(server)
    assert str(status) in str(caught.value) and SECRET not in str(caught.value)
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [400, 404, 429, 500])
def test_no_error_message_carries_the_secret_even_when_the_server_echoes_it(serve, status: int):
    with pytest.raises(ProviderError) as caught:
        call(serve(error(status, f"bad key {SECRET}")))
    assert SECRET not in str(caught.value) and "***" in str(caught.value)

def test_a_500_then_a_reply_succeeds_on_the_second_try(serve):
    server = serve(error(500, "boom"), Reply(200, completion("ok")))
    assert call(server).text == "ok"
    assert len(server.requests) == 2


def test_three_500s_fail_naming_the_tries(serve):
    server = serve(error(503, "overloaded"))
    with pytest.raises(ProviderError) as caught:
        call(server)
    assert "after 3 tries" in str(caught.value) and "503" in str(caught.value)
    assert not isinstance(caught.value, (RateLimited, AuthFailed))
    assert len(server.requests) == 3


def test_another_client_error_is_a_plain_provider_error_with_status(serve):
    server = serve(error(404, "The model `gpt-x` does not exist"))
    with pytest.raises(ProviderError) as caught:
        call(server)
    assert type(caught.value) is ProviderError
    assert "HTTP 404" in str(caught.value) and "does not exist" in str(caught.value)
    assert len(server.requests) == 1


def test_a_slow_reply_times_out_is_retried_then_fails(serve, monkeypatch):
    monkeypatch.setenv("ASSEMBLYZERO_CALL_TIMEOUT", "0.3")
    server = serve(Reply(200, completion(), delay=2))
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        call(server)
    assert "no reply within 0.3s" in str(caught.value) and "after 3 tries" in str(caught.value)
    assert len(server.requests) == 3
    assert time.monotonic() - started < 5


def test_a_refused_connection_is_transient_then_fails(serve):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    with pytest.raises(ProviderError) as caught:
        provider.create("gpt-x", ProviderKey("team-a", SECRET, url)).complete(REQUEST)
    assert "connection error" in str(caught.value) and "after 3 tries" in str(caught.value)


def test_no_key_and_no_base_url_asks_for_a_credential(serve):
    with pytest.raises(ProviderError, match="credential for provider openai"):
        provider.create("gpt-x", None)


def test_no_key_uses_openai_api_key_and_openai_base_url(serve, monkeypatch):
    server = serve(Reply(200, completion("env")))
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert provider.create("gpt-x", None).complete(REQUEST).text == "env"
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"


def test_a_keyless_local_server_gets_a_placeholder_key(serve, monkeypatch):
    server = serve(Reply(200, completion("local")))
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    assert provider.create("llama3", None).complete(REQUEST).text == "local"
    keyless = ProviderKey("ollama", "", server.url + "/v1")  # an entry with a base_url only
    assert provider.create("llama3", keyless).complete(REQUEST).text == "local"
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer unused"] * 2


def test_a_missing_sdk_gives_the_install_hint(monkeypatch):
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> ModuleType:
        if name == "openai":
            raise ImportError("No module named 'openai'")
        return real(name, package)

    monkeypatch.setattr(_common.importlib, "import_module", fake)
    with pytest.raises(ProviderError) as caught:
        provider.create("gpt-x", ProviderKey("team-a", SECRET))
    assert 'pip install "assemblyzero[openai]"' in str(caught.value)


def test_the_registry_loads_it_by_spec(serve):
    server = serve(Reply(200, completion("via registry")))
    loaded = load_provider("openai:gpt-x", ProviderKey("k", SECRET, server.url))
    assert loaded.name == "openai" and loaded.key is not None and loaded.key.name == "k"
    assert loaded.complete(REQUEST).text == "via registry"
    assert server.requests[0].body["model"] == "gpt-x"
