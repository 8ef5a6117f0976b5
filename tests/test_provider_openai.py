"""The openai provider against a loopback server speaking chat completions."""

from __future__ import annotations

import dataclasses
import email.utils
import importlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from http_fake import FakeServer, Reply

from assemblyzero.keys.gate import KeyGate
from assemblyzero.keys.leases import LeaseStore
from assemblyzero.keys.pool import Grant, Pool
from assemblyzero.providers import (
    AuthFailed,
    ModelReply,
    ModelRequest,
    ProviderError,
    ProviderKey,
    RateInfo,
    RateLimited,
    Window,
    _common,
    load_provider,
)
from assemblyzero.providers import openai as provider
from assemblyzero.worker import read_keys
from assemblyzero.workflow.verdict import VERDICT_SCHEMA

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
    before = time.time()
    with pytest.raises(RateLimited) as caught:
        call(server)
    due = email.utils.parsedate_to_datetime(when).timestamp()  # the date's whole second
    # seconds from the moment the provider read it, however slow the call
    assert due - time.time() - 0.01 <= caught.value.retry_after <= due - before + 0.01
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
    assert caught.value.retried == ("HTTP 503", "HTTP 503")  # said and counted as it fails


def test_a_429_after_a_retried_503_carries_the_retry(serve):
    server = serve(error(503, "overloaded"), error(429, "slow down", {"Retry-After": "1"}))
    with pytest.raises(RateLimited) as caught:
        call(server)
    assert caught.value.retried == ("HTTP 503",)


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


# ----------------------------------------------------------- structured verdicts, limits, retries

SCHEMA = VERDICT_SCHEMA  # the review's schema, as the engine sends it
VERDICT = '{"verdict": "APPROVED", "rationale": "complete", "findings": []}'
REVIEW = dataclasses.replace(REQUEST, role="review", schema=SCHEMA,
                             system="You review designs.", max_output_tokens=900)
RESPONSE_FORMAT = {"type": "json_schema",
                   "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True}}


def finished(text: str, reason: str) -> dict:  # type: ignore[type-arg]
    body = completion(text)
    body["choices"][0]["finish_reason"] = reason
    return body


def test_a_schema_asks_for_a_strict_json_schema_reply_with_the_system_message_and_limit(serve):
    server = serve(Reply(200, completion(VERDICT)))
    reply = provider.create("gpt-x", ProviderKey("team-a", SECRET, server.url)).complete(REVIEW)
    assert (reply.text, reply.structured, reply.truncated, reply.retries) == (
        VERDICT, True, False, ())
    [seen] = server.requests
    assert seen.body["response_format"] == RESPONSE_FORMAT
    assert seen.body["messages"] == [{"role": "system", "content": "You review designs."},
                                     {"role": "user", "content": PROMPT}]
    assert seen.body["max_tokens"] == 900 and "max_completion_tokens" not in seen.body


def test_without_a_schema_system_or_limit_the_body_has_none_of_them(serve):
    server = serve(Reply(200, completion()))
    reply = call(server)
    assert not reply.structured and not reply.truncated
    body = server.requests[0].body
    assert not {"response_format", "max_tokens", "max_completion_tokens"} & set(body)
    assert [m["role"] for m in body["messages"]] == ["user"]


def test_openais_own_api_gets_max_completion_tokens_only_when_a_cap_is_set(serve):
    """No default cap: the model's own limit applies (gpt-4-turbo allows 4096, gpt-4o 16384;
    a default above a model's limit is refused on every call)."""
    official = provider.create("gpt-x", ProviderKey("team-a", SECRET, "https://api.openai.com/v1"))
    assert official.official
    arguments = official._arguments(REQUEST, None)
    assert "max_completion_tokens" not in arguments and "max_tokens" not in arguments
    assert official._arguments(REVIEW, SCHEMA)["max_completion_tokens"] == 900
    assert "max_tokens" not in official._arguments(REVIEW, SCHEMA)


def test_a_text_reply_to_a_schema_request_is_not_taken_as_structured(serve):
    """A server that ignores response_format answers in text, maybe quoting JSON in it."""
    text = ('VERDICT: REVISE\n\n1. Interfaces: the sample below is wrong\n```json\n'
            '{"verdict": "APPROVED", "rationale": "", "findings": []}\n```')
    reply = call_review(serve(Reply(200, completion(text))))
    assert reply.text == text and not reply.structured
    whole = '{"verdict": "REVISE", "rationale": "r", "findings": []}'
    assert call_review(serve(Reply(200, completion(whole)))).structured


def test_finish_reason_length_is_a_truncated_reply(serve):
    reply = call(serve(Reply(200, finished("# Design\n\nthe last sen", "length"))))
    assert reply.truncated and reply.text == "# Design\n\nthe last sen"


def test_a_400_refusing_response_format_is_asked_again_without_it_and_remembered(serve):
    refusal = "Invalid parameter: 'response_format' of type 'json_schema' is not supported."
    server = serve(Reply(400, {"error": {"message": refusal, "type": "invalid_request_error",
                                         "param": "response_format", "code": None}}),
                   Reply(200, completion("VERDICT: APPROVED")))
    openai = provider.create("gpt-x", ProviderKey("team-a", SECRET, server.url))
    reply = openai.complete(REVIEW)
    assert (reply.text, reply.structured) == ("VERDICT: APPROVED", False)
    assert reply.retries == ("HTTP 400 (response_format refused)",)
    first, second = server.requests
    assert first.body["response_format"] == RESPONSE_FORMAT
    assert "response_format" not in second.body
    assert second.body["messages"] == first.body["messages"]
    again = openai.complete(REVIEW)  # the same provider asks no more
    assert len(server.requests) == 3 and "response_format" not in server.requests[2].body
    assert (again.structured, again.retries) == (False, ())


def test_a_400_naming_json_schema_in_its_message_only_is_a_refusal_too(serve):
    server = serve(error(400, "json_schema is not supported by this server"),
                   Reply(200, completion("VERDICT: REVISE")))
    reply = call_review(server)
    assert not reply.structured and len(server.requests) == 2


def test_another_400_with_a_schema_fails_without_asking_again(serve):
    server = serve(error(400, "This model's maximum context length is 8192 tokens"))
    with pytest.raises(ProviderError, match="HTTP 400"):
        call_review(server)
    assert len(server.requests) == 1


def test_a_credential_with_structured_false_is_never_asked_for_json(serve):
    server = serve(Reply(200, completion("VERDICT: APPROVED")))
    key = ProviderKey("local", "", server.url, structured=False)
    reply = provider.create("llama3", key).complete(REVIEW)
    assert not reply.structured and "response_format" not in server.requests[0].body


def test_structured_false_in_the_credentials_file_reaches_the_provider(
        serve, tmp_path, monkeypatch):
    server = serve(Reply(200, completion("VERDICT: APPROVED")))
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"credentials": [
        {"name": "vllm", "provider": "openai", "key_env": "AZ_TEST_VLLM_KEY",
         "base_url": server.url, "structured": False},
        {"name": "cloud", "provider": "openai", "key_env": "AZ_TEST_VLLM_KEY",
         "base_url": server.url}]}))
    monkeypatch.setenv("ASSEMBLYZERO_CREDENTIALS", str(path))
    monkeypatch.setenv("AZ_TEST_VLLM_KEY", SECRET)
    gate = KeyGate(Pool.for_models(("openai:llama3",), store=LeaseStore(tmp_path / "leases")))
    sent = []
    for _ in range(2):
        grant = gate.take("LLD-1")
        assert isinstance(grant, Grant)
        read, write = os.pipe()
        with os.fdopen(write, "w") as pipe:  # what the coordinator writes on the secrets pipe
            json.dump(gate.secrets(grant), pipe)
        monkeypatch.setenv("ASSEMBLYZERO_CREDENTIAL", ",".join(grant.names))
        monkeypatch.setenv("ASSEMBLYZERO_SECRET_FD", str(read))
        keys, *_ = read_keys()
        sent.append((keys["openai"].name, keys["openai"].structured))
        provider.create("llama3", keys["openai"]).complete(REVIEW)
    assert sorted(sent) == [("cloud", True), ("vllm", False)]
    asked = {name: "response_format" in seen.body
             for (name, _), seen in zip(sent, server.requests, strict=True)}
    assert asked == {"vllm": False, "cloud": True}


def test_a_refusal_instead_of_json_is_its_text_unstructured(serve):
    body = completion(None)
    body["choices"][0]["message"]["refusal"] = "I cannot review this."
    reply = call_review(serve(Reply(200, body)))
    assert (reply.text, reply.structured) == ("I cannot review this.", False)


def test_a_503_then_a_reply_reports_the_retry(serve):
    server = serve(error(503, "overloaded"), Reply(200, completion("ok")))
    reply = call(server)
    assert (reply.text, reply.retries) == ("ok", ("HTTP 503",))


def test_a_timeout_then_a_5xx_then_a_reply_reports_both_oldest_first(serve, monkeypatch):
    monkeypatch.setenv("ASSEMBLYZERO_CALL_TIMEOUT", "0.3")
    server = serve(Reply(200, completion(), delay=2), error(502, "bad gateway"),
                   Reply(200, completion("ok")))
    assert call(server).retries == ("timeout", "HTTP 502")


def call_review(server: FakeServer) -> ModelReply:
    return provider.create("gpt-x", ProviderKey("team-a", SECRET, server.url)).complete(REVIEW)


# ----------------------------------------------------------- rate-limit headers

LIMITS = {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
          "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "30000",
          "x-ratelimit-remaining-tokens": "29950", "x-ratelimit-reset-tokens": "6m0s"}


def test_a_reply_carries_the_rate_limit_headers(serve):
    reply = call(serve(Reply(200, completion(), LIMITS)))
    assert reply.limits == RateInfo(requests=Window(500, 499, 0.12),
                                    tokens=Window(30000, 29950, 360.0))


def test_a_reply_without_rate_limit_headers_has_no_limits(serve):
    assert call(serve(Reply(200, completion()))).limits is None


def test_a_429_carries_its_limits_and_prefers_retry_after_ms(serve):
    said = {"X-RateLimit-Limit-Requests": "500", "X-RateLimit-Remaining-Requests": "0",
            "X-RateLimit-Reset-Requests": "1m30s", "Retry-After-Ms": "1500", "Retry-After": "7"}
    server = serve(error(429, "Rate limit reached for requests", said))
    with pytest.raises(RateLimited) as caught:
        call(server)
    assert caught.value.retry_after == 1.5
    assert caught.value.limits == RateInfo(requests=Window(500, 0, 90.0), retry_after=1.5)
    assert len(server.requests) == 1


def test_a_429_with_a_bad_retry_after_ms_falls_back_to_retry_after(serve):
    with pytest.raises(RateLimited) as caught:
        call(serve(error(429, "slow down", {"retry-after-ms": "NaN", "retry-after": "3"})))
    assert caught.value.retry_after == 3 and caught.value.limits == RateInfo(retry_after=3)


def test_a_429_with_no_headers_has_no_limits(serve):
    with pytest.raises(RateLimited) as caught:
        call(serve(error(429, "slow down")))
    assert (caught.value.retry_after, caught.value.limits) == (None, None)


@pytest.mark.parametrize("bad", ["garbage", "NaN", "inf", "1e300", "-5", "7" * 10_000])
def test_hostile_rate_limit_headers_are_unknown_fields_never_a_failure(serve, bad: str):
    headers = {**LIMITS, "x-ratelimit-limit-requests": bad, "x-ratelimit-remaining-tokens": bad,
               "x-ratelimit-reset-tokens": "6m0s" if bad == "1e300" else bad}
    reply = call(serve(Reply(200, completion("ok"), headers)))
    assert reply.text == "ok"
    assert reply.limits == RateInfo(requests=Window(None, 499, 0.12),
                                    tokens=Window(30000, None, 360.0 if bad == "1e300" else None))
    with pytest.raises(RateLimited) as caught:
        call(serve(error(429, "slow down", {"retry-after-ms": bad, "retry-after": bad})))
    assert caught.value.retry_after == (86400.0 if bad == "1e300" else None)


def test_the_reply_after_a_refused_schema_and_a_503_carries_its_own_limits(serve):
    refusal = error(400, "response_format is not supported", {"x-ratelimit-limit-requests": "1"})
    server = serve(refusal, error(503, "overloaded", {"x-ratelimit-limit-requests": "2"}),
                   Reply(200, completion("VERDICT: APPROVED"), LIMITS))
    reply = call_review(server)
    assert reply.retries == ("HTTP 400 (response_format refused)", "HTTP 503")
    assert reply.limits is not None and reply.limits.requests == Window(500, 499, 0.12)
