"""The gemini provider: the real google-genai SDK against a scripted server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import email.utils
import importlib
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from http_fake import FakeServer, Reply

from assemblyzero.providers import (
    AuthFailed,
    ModelRequest,
    ProviderError,
    ProviderKey,
    RateInfo,
    RateLimited,
    Window,
    load_provider,
)
from assemblyzero.providers.gemini import GeminiProvider, create
from assemblyzero.workflow.verdict import VERDICT_SCHEMA

SECRET = "AIzaSy-test-secret-0123456789"
PATH = re.compile(r"^/v1(beta)?/models/gemini-x:generateContent$")
OK = {"candidates": [{"content": {"parts": [{"text": "# LLD\n\nhello"}], "role": "model"},
                      "finishReason": "STOP"}],
      "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5}}
REQUEST = ModelRequest(role="draft", kind="lld", item_id="42", title="t", source="s",
                       sections=("A",), prompt="Write the design for issue 42.")


def error(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"code": code, "status": status, "message": message,
                      "details": list(details)}}


RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
QUOTA = error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", RETRY_INFO)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("assemblyzero.providers._common.RETRY_BASE", 0.01)


@pytest.fixture(scope="module")
def shared() -> Iterator[FakeServer]:
    server = FakeServer([Reply(200, OK)])  # one server: each close() waits up to 0.5 s
    yield server
    server.close()


@pytest.fixture
def serve(shared: FakeServer) -> Any:
    def script(*replies: Reply) -> FakeServer:
        with shared._lock:
            shared.replies, shared.requests = list(replies), []
        return shared

    return script


def provider(server: FakeServer) -> GeminiProvider:
    return create("gemini-x", ProviderKey("team-g", SECRET, server.url))


def test_a_reply_brings_text_and_token_counts(serve: Any) -> None:
    server = serve(Reply(200, OK))
    reply = provider(server).complete(REQUEST)
    assert (reply.text, reply.input_tokens, reply.output_tokens) == ("# LLD\n\nhello", 12, 5)
    [seen] = server.requests
    assert seen.method == "POST" and PATH.match(seen.path)
    assert seen.headers["x-goog-api-key"] == SECRET
    assert seen.body["contents"][0]["parts"][0]["text"] == REQUEST.prompt


def test_the_registry_loads_it(serve: Any) -> None:
    server = serve(Reply(200, OK))
    loaded = load_provider("gemini:gemini-x", ProviderKey("team-g", SECRET, server.url))
    assert loaded.name == "gemini" and loaded.key and loaded.key.name == "team-g"
    assert loaded.complete(REQUEST).text.endswith("hello")


def test_429_with_retry_after_is_rate_limited_at_once(serve: Any) -> None:
    server = serve(Reply(429, QUOTA, {"Retry-After": "7"}), Reply(200, OK))
    with pytest.raises(RateLimited) as caught:
        provider(server).complete(REQUEST)
    assert caught.value.retry_after == 7
    assert len(server.requests) == 1  # neither the SDK nor we retried it


def test_429_with_an_http_date_retry_after(serve: Any) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server = serve(Reply(429, error(429, "RESOURCE_EXHAUSTED", "slow"), {"Retry-After": when}))
    with pytest.raises(RateLimited) as caught:
        provider(server).complete(REQUEST)
    assert caught.value.retry_after is not None and 25 <= caught.value.retry_after <= 31


def test_429_without_header_uses_retry_info(serve: Any) -> None:
    server = serve(Reply(429, QUOTA))
    with pytest.raises(RateLimited) as caught:
        provider(server).complete(REQUEST)
    assert caught.value.retry_after == 7 and len(server.requests) == 1


def test_429_with_nothing_to_go_by(serve: Any) -> None:
    server = serve(Reply(429, error(429, "RESOURCE_EXHAUSTED", "slow")))
    with pytest.raises(RateLimited) as caught:
        provider(server).complete(REQUEST)
    assert caught.value.retry_after is None


@pytest.mark.parametrize("code", [401, 403])
def test_401_and_403_are_auth_failures(serve: Any, code: int) -> None:
    server = serve(Reply(code, error(code, "PERMISSION_DENIED", "no")))
    with pytest.raises(AuthFailed, match=str(code)):
        provider(server).complete(REQUEST)
    assert len(server.requests) == 1


def test_a_bad_key_answered_with_400_is_an_auth_failure(serve: Any) -> None:
    info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
    server = serve(Reply(400, error(400, "INVALID_ARGUMENT",
                                    f"API key not valid: {SECRET}", info)))
    with pytest.raises(AuthFailed) as caught:
        provider(server).complete(REQUEST)
    assert SECRET not in str(caught.value) and "***" in str(caught.value)


def test_other_client_errors_fail_with_status_and_message(serve: Any) -> None:
    server = serve(Reply(404, error(404, "NOT_FOUND", "models/gemini-x is not found")))
    with pytest.raises(ProviderError) as caught:
        provider(server).complete(REQUEST)
    assert not isinstance(caught.value, (RateLimited, AuthFailed))
    assert "404" in str(caught.value) and "is not found" in str(caught.value)
    assert len(server.requests) == 1


def test_a_5xx_is_retried(serve: Any) -> None:
    server = serve(Reply(500, error(500, "INTERNAL", "oops")), Reply(200, OK))
    assert provider(server).complete(REQUEST).text.endswith("hello")
    assert len(server.requests) == 2


def test_5xx_three_times_fails(serve: Any) -> None:
    server = serve(Reply(503, error(503, "UNAVAILABLE", "overloaded")))
    with pytest.raises(ProviderError, match=r"503.*3 tries") as caught:
        provider(server).complete(REQUEST)
    assert type(caught.value) is ProviderError and len(server.requests) == 3


def test_a_slow_server_times_out_after_retries(serve: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSEMBLYZERO_CALL_TIMEOUT", "0.3")
    server = serve(Reply(200, OK, delay=1.0))
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"timed out after 0.3s.*3 tries"):
        provider(server).complete(REQUEST)
    assert time.monotonic() - started < 3 and len(server.requests) == 3


def test_a_refused_connection_fails_after_retries() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gemini = create("gemini-x", ProviderKey("team-g", SECRET, f"http://127.0.0.1:{port}"))
    with pytest.raises(ProviderError, match=r"connection failed.*3 tries"):
        gemini.complete(REQUEST)


def test_the_secret_is_in_no_message(serve: Any) -> None:
    server = serve(Reply(500, error(500, "INTERNAL", f"bad key {SECRET}")),
                   Reply(429, error(429, "RESOURCE_EXHAUSTED", f"key {SECRET} is over quota")))
    gemini = provider(server)
    assert SECRET not in repr(gemini.key)
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            gemini.complete(REQUEST)
        assert SECRET not in str(caught.value)
        assert SECRET not in str(caught.value.__cause__ or "")


def test_no_credential_asks_for_one() -> None:
    with pytest.raises(ProviderError, match="gemini provider needs a credential"):
        create("gemini-x", None)


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def no_genai(name: str, package: str | None = None) -> Any:
        if name.startswith("google.genai"):
            raise ImportError(f"No module named {name!r}")
        return real(name, package)

    monkeypatch.setattr("assemblyzero.providers._common.importlib.import_module", no_genai)
    with pytest.raises(ProviderError, match=re.escape('pip install "assemblyzero[gemini]"')):
        create("gemini-x", ProviderKey("team-g", SECRET))


# ----------------------------------------------------------- structured verdicts, limits, retries

SCHEMA = VERDICT_SCHEMA  # the review's schema, as the engine sends it
VERDICT = '{"verdict": "APPROVED", "rationale": "complete", "findings": []}'
REVIEW = dataclasses.replace(REQUEST, role="review", schema=SCHEMA,
                             system="You review designs.", max_output_tokens=900)


def answer(text: str, reason: str = "STOP") -> dict[str, Any]:
    parts = [{"text": text}] if text else []
    return {"candidates": [{"content": {"parts": parts, "role": "model"},
                            "finishReason": reason}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5}}


def test_a_schema_asks_for_json_with_the_schema_system_instruction_and_limit(serve: Any) -> None:
    server = serve(Reply(200, answer(VERDICT)))
    reply = provider(server).complete(REVIEW)
    assert (reply.text, reply.structured, reply.truncated, reply.retries) == (
        VERDICT, True, False, ())
    [seen] = server.requests
    config = seen.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA and "responseSchema" not in config
    assert config["maxOutputTokens"] == 900
    assert seen.body["systemInstruction"]["parts"] == [{"text": "You review designs."}]


def test_without_a_schema_system_or_limit_none_is_sent(serve: Any) -> None:
    server = serve(Reply(200, OK))
    reply = provider(server).complete(REQUEST)
    assert not reply.structured and not reply.truncated
    body = server.requests[0].body
    assert "systemInstruction" not in body
    config = body.get("generationConfig", {})
    assert not {"responseMimeType", "responseJsonSchema", "maxOutputTokens"} & set(config)


def test_finish_reason_max_tokens_is_a_truncated_reply(serve: Any) -> None:
    reply = provider(serve(Reply(200, answer("# LLD\n\nthe last sen", "MAX_TOKENS")))).complete(
        REQUEST)
    assert reply.truncated and reply.text == "# LLD\n\nthe last sen"


def test_a_reply_cut_before_any_text_is_empty_and_truncated_not_an_error(serve: Any) -> None:
    reply = provider(serve(Reply(200, answer("", "MAX_TOKENS")))).complete(REQUEST)
    assert (reply.text, reply.truncated) == ("", True)


def test_a_credential_with_structured_false_is_not_asked_for_json(serve: Any) -> None:
    server = serve(Reply(200, answer("VERDICT: APPROVED")))
    key = ProviderKey("team-g", SECRET, server.url, structured=False)
    reply = create("gemini-x", key).complete(REVIEW)
    assert (reply.text, reply.structured) == ("VERDICT: APPROVED", False)
    config = server.requests[0].body["generationConfig"]
    assert "responseJsonSchema" not in config and "responseMimeType" not in config


def test_a_503_then_a_reply_reports_the_retry(serve: Any) -> None:
    server = serve(Reply(503, error(503, "UNAVAILABLE", "overloaded")), Reply(200, OK))
    reply = provider(server).complete(REQUEST)
    assert reply.retries == ("HTTP 503",) and len(server.requests) == 2


def test_an_empty_reply_that_was_not_cut_still_fails_with_its_finish_reason(serve: Any) -> None:
    with pytest.raises(ProviderError, match=r"empty reply \(finish reason .*SAFETY"):
        provider(serve(Reply(200, answer("", "SAFETY")))).complete(REQUEST)


# ----------------------------------------------------------- rate limits

DAILY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"


def quota_failure(*quota_ids: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
        {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
         "quotaId": quota_id, "quotaDimensions": {"location": "global", "model": "gemini-x"},
         "quotaValue": "200"} for quota_id in quota_ids]}


def test_429_carries_retry_info_and_names_an_exhausted_daily_quota(serve: Any) -> None:
    body = error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota",
                 quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", DAILY),
                 {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.5s"})
    server = serve(Reply(429, body))
    with pytest.raises(RateLimited) as caught:
        provider(server).complete(REQUEST)
    assert caught.value.retry_after == 0.5
    assert caught.value.limits == RateInfo(retry_after=0.5, daily_quota=DAILY)
    assert f"(daily quota {DAILY} exhausted)" in str(caught.value)
    assert len(server.requests) == 1


def test_429_with_a_per_minute_quota_only_names_no_daily_quota(serve: Any) -> None:
    body = error(429, "RESOURCE_EXHAUSTED", "slow",
                 quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
                 RETRY_INFO)
    with pytest.raises(RateLimited) as caught:
        provider(serve(Reply(429, body))).complete(REQUEST)
    assert caught.value.limits == RateInfo(retry_after=7.0)
    assert "daily quota" not in str(caught.value)


def test_a_retry_after_ms_header_comes_before_retry_info(serve: Any) -> None:
    server = serve(Reply(429, QUOTA, {"Retry-After-Ms": "1500", "Retry-After": "9"}))
    with pytest.raises(RateLimited) as caught:
        provider(server).complete(REQUEST)
    assert caught.value.retry_after == 1.5 and caught.value.limits == RateInfo(retry_after=1.5)


def test_429_without_anything_has_no_limits(serve: Any) -> None:
    with pytest.raises(RateLimited) as caught:
        provider(serve(Reply(429, error(429, "RESOURCE_EXHAUSTED", "slow")))).complete(REQUEST)
    assert caught.value.limits is None


def test_the_key_is_scrubbed_from_a_daily_quota_id_that_echoes_it(serve: Any) -> None:
    body = error(429, "RESOURCE_EXHAUSTED", f"over quota for {SECRET}",
                 quota_failure(f"PerDay-{SECRET}"))
    with pytest.raises(RateLimited) as caught:
        provider(serve(Reply(429, body))).complete(REQUEST)
    assert SECRET not in str(caught.value) and "daily quota PerDay-***" in str(caught.value)
    assert caught.value.limits is not None and SECRET not in caught.value.limits.daily_quota


@pytest.mark.parametrize("bad", ["garbage", "NaN", "inf", "-5s", "1e300s", "7" * 10_000,
                                 "s", ""])
def test_a_hostile_retry_delay_and_header_are_unknown_never_a_failure(serve: Any,
                                                                      bad: str) -> None:
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": bad}
    body = error(429, "RESOURCE_EXHAUSTED", "slow", retry, quota_failure("x" * 10_000 + "PerDay"))
    server = serve(Reply(429, body, {"Retry-After": bad[:8_000] or "x"}))
    with pytest.raises(RateLimited) as caught:
        provider(server).complete(REQUEST)
    assert caught.value.retry_after is None
    assert caught.value.limits is not None and len(caught.value.limits.daily_quota) == 120


def test_a_reply_has_no_limits_unless_it_brings_rate_limit_headers(serve: Any) -> None:
    assert provider(serve(Reply(200, OK))).complete(REQUEST).limits is None
    headers = {"x-ratelimit-limit-requests": "15", "x-ratelimit-remaining-requests": "14",
               "x-ratelimit-reset-requests": "4s"}
    reply = provider(serve(Reply(200, OK, headers))).complete(REQUEST)
    assert reply.limits == RateInfo(requests=Window(15, 14, 4.0))
