"""The anthropic provider against a loopback server speaking the Messages API."""

from __future__ import annotations

import dataclasses
import email.utils
import importlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import ModuleType

import pytest
from http_fake import FakeServer, Reply

from assemblyzero.constants import ANTHROPIC_MAX_OUTPUT_TOKENS
from assemblyzero.providers import (
    AuthFailed,
    ModelRequest,
    ProviderError,
    ProviderKey,
    RateInfo,
    RateLimited,
    Window,
    _common,
    load_provider,
)
from assemblyzero.providers import anthropic as provider
from assemblyzero.workflow.verdict import VERDICT_SCHEMA

SECRET = "sk-ant-test-0123456789secret"
PROMPT = "Write a low-level design for feature 7."


def message(text: str = "# Design\n\nhello", tokens: tuple[int, int] = (11, 22)) -> dict:  # type: ignore[type-arg]
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]}}


def error(status: int, kind: str, text: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"type": "error", "error": {"type": kind, "message": text}},
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
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    servers: list[FakeServer] = []

    def start(*replies: Reply) -> FakeServer:
        servers.append(FakeServer(list(replies)))
        return servers[-1]

    yield start
    for server in servers:
        closing.append(threading.Thread(target=server.close, daemon=True))
        closing[-1].start()


def call(server: FakeServer) -> object:
    return provider.create("claude-x", ProviderKey("team-a", SECRET, server.url)).complete(REQUEST)


def test_a_reply_carries_text_and_tokens_and_the_request_model_prompt_and_key(serve):
    server = serve(Reply(200, message("# Design\n\nhello")))
    reply = call(server)
    assert reply.text == "# Design\n\nhello"
    assert (reply.input_tokens, reply.output_tokens) == (11, 22)
    [seen] = server.requests
    assert (seen.method, seen.path) == ("POST", "/v1/messages")
    assert seen.body["model"] == "claude-x"
    assert seen.body["max_tokens"] == ANTHROPIC_MAX_OUTPUT_TOKENS
    assert seen.body["messages"] == [{"role": "user", "content": PROMPT}]
    # anthropic 2.x sends an api_key as a bearer token; older SDKs used x-api-key
    assert (seen.headers.get("x-api-key") == SECRET
            or seen.headers.get("authorization") == f"Bearer {SECRET}")


def test_a_429_is_rate_limited_with_retry_after_seconds_and_no_sdk_retry(serve):
    server = serve(error(429, "rate_limit_error", "slow down", {"Retry-After": "7"}))
    with pytest.raises(RateLimited) as caught:
        call(server)
    assert caught.value.retry_after == 7
    assert "429" in str(caught.value)
    assert len(server.requests) == 1


def test_a_429_with_an_http_date_retry_after(serve):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server = serve(error(429, "rate_limit_error", "slow down", {"Retry-After": when}))
    before = time.time()
    with pytest.raises(RateLimited) as caught:
        call(server)
    due = email.utils.parsedate_to_datetime(when).timestamp()  # the date's whole second
    # seconds from the moment the provider read it, however slow the call
    assert due - time.time() - 0.01 <= caught.value.retry_after <= due - before + 0.01
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_auth_failures_and_never_show_the_key(serve, status: int):
    # a server that echoes the key it was given must not get it into our message
    server = serve(error(status, "authentication_error", f"invalid x-api-key {SECRET}"))
    with pytest.raises(AuthFailed) as caught:
        call(server)
    assert str(status) in str(caught.value) and SECRET not in str(caught.value)
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [400, 404, 429, 500])
def test_no_error_message_carries_the_secret_even_when_the_server_echoes_it(serve, status: int):
    with pytest.raises(ProviderError) as caught:
        call(serve(error(status, "error", f"bad key {SECRET}")))
    assert SECRET not in str(caught.value) and "***" in str(caught.value)

def test_a_500_then_a_reply_succeeds_on_the_second_try(serve):
    server = serve(error(500, "api_error", "boom"), Reply(200, message("ok")))
    assert call(server).text == "ok"
    assert len(server.requests) == 2


def test_three_500s_fail_naming_the_tries(serve):
    server = serve(error(500, "api_error", "boom"))
    with pytest.raises(ProviderError) as caught:
        call(server)
    assert "after 3 tries" in str(caught.value) and "500" in str(caught.value)
    assert not isinstance(caught.value, (RateLimited, AuthFailed))
    assert len(server.requests) == 3


def test_another_client_error_is_a_plain_provider_error_with_status(serve):
    server = serve(error(400, "invalid_request_error", "max_tokens too large"))
    with pytest.raises(ProviderError) as caught:
        call(server)
    assert type(caught.value) is ProviderError
    assert "HTTP 400" in str(caught.value) and "max_tokens too large" in str(caught.value)
    assert len(server.requests) == 1


def test_a_slow_reply_times_out_is_retried_then_fails(serve, monkeypatch):
    monkeypatch.setenv("ASSEMBLYZERO_CALL_TIMEOUT", "0.3")
    server = serve(Reply(200, message(), delay=2))
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        call(server)
    assert "no reply within 0.3s" in str(caught.value) and "after 3 tries" in str(caught.value)
    assert len(server.requests) == 3
    assert time.monotonic() - started < 5


def test_a_refused_connection_is_transient_then_fails(serve):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(ProviderError) as caught:
        provider.create("claude-x", ProviderKey("team-a", SECRET, url)).complete(REQUEST)
    assert "connection error" in str(caught.value) and "after 3 tries" in str(caught.value)


def test_a_missing_key_asks_for_a_credential():
    with pytest.raises(ProviderError, match="credential for provider anthropic"):
        provider.create("claude-x", None)


def test_a_missing_sdk_gives_the_install_hint(monkeypatch):
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> ModuleType:
        if name == "anthropic":
            raise ImportError("No module named 'anthropic'")
        return real(name, package)

    monkeypatch.setattr(_common.importlib, "import_module", fake)
    with pytest.raises(ProviderError) as caught:
        provider.create("claude-x", ProviderKey("team-a", SECRET))
    assert 'pip install "assemblyzero[anthropic]"' in str(caught.value)


def test_the_registry_loads_it_by_spec(serve):
    server = serve(Reply(200, message("via registry")))
    loaded = load_provider("anthropic:claude-x", ProviderKey("k", "sk-ant-test", server.url))
    assert loaded.name == "anthropic" and loaded.key is not None and loaded.key.name == "k"
    assert loaded.complete(REQUEST).text == "via registry"
    assert server.requests[0].body["model"] == "claude-x"


def test_anthropic_base_url_is_honoured_when_the_key_has_none(serve, monkeypatch):
    server = serve(Reply(200, message("from env url")))
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    assert provider.create("claude-x", ProviderKey("k", SECRET)).complete(REQUEST).text == (
        "from env url")


# ----------------------------------------------------------- structured verdicts, limits, retries

SCHEMA = VERDICT_SCHEMA  # the review's schema, as the engine sends it
VERDICT = {"verdict": "REVISE", "rationale": "one gap",
           "findings": [{"section": "Risks", "severity": "major", "text": "add a mitigation"}]}
REVIEW = dataclasses.replace(REQUEST, role="review", schema=SCHEMA,
                             system="You review designs.", max_output_tokens=900)


def tool_use(verdict: dict, stop: str = "tool_use") -> dict:  # type: ignore[type-arg]
    body = message()
    body["content"] = [{"type": "tool_use", "id": "toolu_1", "name": "verdict",
                        "input": verdict}]
    body["stop_reason"] = stop
    return body


def test_a_schema_forces_the_verdict_tool_and_its_input_is_the_json_reply(serve):
    server = serve(Reply(200, tool_use(VERDICT)))
    reply = provider.create("claude-x", ProviderKey("team-a", SECRET, server.url)).complete(
        REVIEW)
    assert json.loads(reply.text) == VERDICT and reply.text == json.dumps(VERDICT)
    assert (reply.structured, reply.truncated, reply.retries) == (True, False, ())
    [seen] = server.requests
    [tool] = seen.body["tools"]
    assert (tool["name"], tool["input_schema"]) == ("verdict", SCHEMA) and tool["description"]
    assert seen.body["tool_choice"] == {"type": "tool", "name": "verdict"}
    assert seen.body["system"] == "You review designs." and seen.body["max_tokens"] == 900


def test_without_a_schema_or_system_no_tool_and_the_default_cap(serve):
    server = serve(Reply(200, message()))
    reply = call(server)
    assert not reply.structured
    body = server.requests[0].body
    assert not {"tools", "tool_choice", "system"} & set(body)
    assert body["max_tokens"] == ANTHROPIC_MAX_OUTPUT_TOKENS


def test_stop_reason_max_tokens_is_a_truncated_reply(serve):
    body = message("# Design\n\nthe last sen")
    body["stop_reason"] = "max_tokens"
    reply = call(serve(Reply(200, body)))
    assert reply.truncated and reply.text == "# Design\n\nthe last sen"


def test_a_tool_call_cut_at_max_tokens_is_truncated_and_still_structured(serve):
    reply = provider.create("claude-x", ProviderKey("team-a", SECRET, serve(
        Reply(200, tool_use({"verdict": "REVISE"}, "max_tokens"))).url)).complete(REVIEW)
    assert (reply.truncated, reply.structured, reply.text) == (
        True, True, '{"verdict": "REVISE"}')


def test_a_credential_with_structured_false_gets_no_tool(serve):
    server = serve(Reply(200, message("VERDICT: APPROVED")))
    key = ProviderKey("proxy", SECRET, server.url, structured=False)
    reply = provider.create("claude-x", key).complete(REVIEW)
    assert (reply.text, reply.structured) == ("VERDICT: APPROVED", False)
    assert "tools" not in server.requests[0].body
    assert server.requests[0].body["system"] == "You review designs."


def test_a_503_then_a_reply_reports_the_retry(serve):
    server = serve(error(503, "overloaded_error", "Overloaded"), Reply(200, message("ok")))
    reply = call(server)
    assert (reply.text, reply.retries) == ("ok", ("HTTP 503",))
    assert len(server.requests) == 2


def test_the_default_output_cap_stays_within_each_models_own_limit() -> None:
    assert provider.default_max_tokens("claude-3-haiku-20240307") == 4096
    assert provider.default_max_tokens("claude-3-opus-latest") == 4096
    assert provider.default_max_tokens("claude-3-5-haiku-latest") == 8192
    assert provider.default_max_tokens("claude-3-5-sonnet-20241022") == 8192
    assert provider.default_max_tokens("claude-3-7-sonnet-latest") == 16384
    assert provider.default_max_tokens("claude-sonnet-4-5") == 16384


# ----------------------------------------------------------- rate-limit headers

def rfc3339(seconds_from_now: float) -> str:
    """A reset time as Anthropic writes it: `2025-05-01T12:00:30Z`."""
    when = datetime.fromtimestamp(time.time() + seconds_from_now, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def limit_headers(reset_in: float = 30) -> dict[str, str]:
    headers, reset = {}, rfc3339(reset_in)
    for name, (limit, remaining) in {"requests": (50, 49), "tokens": (100000, 90000),
                                     "input-tokens": (80000, 79000),
                                     "output-tokens": (16000, 15000)}.items():
        headers[f"anthropic-ratelimit-{name}-limit"] = str(limit)
        headers[f"anthropic-ratelimit-{name}-remaining"] = str(remaining)
        headers[f"anthropic-ratelimit-{name}-reset"] = reset
    return headers


def resets(info: RateInfo | None) -> list[float | None]:
    assert info is not None
    return [w.reset if w else None
            for w in (info.requests, info.tokens, info.input_tokens, info.output_tokens)]


def test_a_reply_carries_the_four_windows_with_resets_in_seconds(serve):
    headers = limit_headers(30)
    due = datetime.fromisoformat(headers["anthropic-ratelimit-tokens-reset"]).timestamp()
    before = time.time()
    reply = call(serve(Reply(200, message(), headers)))
    after = time.time()
    assert reply.limits is not None
    without_resets = dataclasses.replace(
        reply.limits, **{name: dataclasses.replace(getattr(reply.limits, name), reset=None)
                         for name in ("requests", "tokens", "input_tokens", "output_tokens")})
    assert without_resets == RateInfo(requests=Window(50, 49), tokens=Window(100000, 90000),
                                      input_tokens=Window(80000, 79000),
                                      output_tokens=Window(16000, 15000))
    # seconds from the moment the provider read them, however slow the call
    assert all(reset is not None and due - after - 0.01 <= reset <= due - before + 0.01
               for reset in resets(reply.limits))


def test_a_reply_without_rate_limit_headers_has_no_limits(serve):
    assert call(serve(Reply(200, message()))).limits is None


def test_a_429_carries_its_limits_and_prefers_retry_after_ms(serve):
    said = {"anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": rfc3339(-5),  # already past: 0
            "retry-after-ms": "2500", "retry-after": "17"}
    server = serve(error(429, "rate_limit_error", "Number of requests exceeded", said))
    with pytest.raises(RateLimited) as caught:
        call(server)
    assert caught.value.retry_after == 2.5
    assert caught.value.limits == RateInfo(requests=Window(50, 0, 0.0), retry_after=2.5)
    assert len(server.requests) == 1


def test_a_429_with_retry_after_only_has_just_that(serve):
    with pytest.raises(RateLimited) as caught:
        call(serve(error(429, "rate_limit_error", "slow down", {"retry-after": "17"})))
    assert caught.value.limits == RateInfo(retry_after=17)


def test_a_reset_far_ahead_is_clamped_to_a_day(serve):
    reply = call(serve(Reply(200, message(), limit_headers(10 * 86400))))
    assert resets(reply.limits) == [86400.0] * 4


@pytest.mark.parametrize("bad", ["garbage", "NaN", "inf", "1e300", "-5", "7" * 10_000,
                                 "2025-13-45T99:00:00Z"])
def test_hostile_rate_limit_headers_are_unknown_fields_never_a_failure(serve, bad: str):
    headers = {**limit_headers(), "anthropic-ratelimit-tokens-limit": bad,
               "anthropic-ratelimit-input-tokens-remaining": bad,
               "anthropic-ratelimit-output-tokens-reset": bad}
    reply = call(serve(Reply(200, message("ok"), headers)))
    assert reply.text == "ok" and reply.limits is not None
    assert reply.limits.tokens is not None and reply.limits.tokens.limit is None
    assert reply.limits.input_tokens is not None and reply.limits.input_tokens.remaining is None
    assert reply.limits.output_tokens == Window(16000, 15000, None)
    assert reply.limits.requests is not None and reply.limits.requests.limit == 50
    with pytest.raises(RateLimited) as caught:
        call(serve(error(429, "rate_limit_error", "slow", {"retry-after-ms": bad,
                                                           "retry-after": bad})))
    assert caught.value.retry_after == (86400.0 if bad == "1e300" else None)
