"""Google Gemini through the official `google-genai` SDK (README, Models).

The SDK's own retries are off (its default is already "no retries"; we say
so explicitly where the SDK knows the option) so that a 429 reaches the
coordinator at once; 5xx, timeouts and connection errors are retried here by
`call_with_retries`. The key travels in the `x-goog-api-key` header and is
scrubbed from every message we build.

A request with a schema asks for `application/json` with that schema as
`response_json_schema` (plain JSON Schema, passed through as is), unless the
credential says `"structured": false`. The system message goes in
`system_instruction`; `max_output_tokens` only when the request sets one (the
API's default is the model's own limit, thinking included); finish reason
MAX_TOKENS marks a cut reply, which may be empty (thinking used the budget).
A 429 carries its body's RetryInfo and per-day QuotaFailure (`RateLimited.limits`,
ratelimits.gemini_info), its message naming a daily quota that ran out; a reply
carries `x-ratelimit-*` headers should a server send them (Gemini's own does not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from assemblyzero.providers import (
    AuthFailed,
    ModelReply,
    ModelRequest,
    ProviderError,
    ProviderKey,
    RateInfo,
    RateLimited,
    _common,
)
from assemblyzero.providers._common import (
    RETRY_CONNECTION,
    RETRY_TIMEOUT,
    Transient,
    call_timeout,
    call_with_retries,
    require,
)
from assemblyzero.providers.ratelimits import (
    gemini_info,
    google_details,
    lower,
    openai_info,
    retry_after,
)


class GeminiProvider:
    name = "gemini"

    def __init__(self, model: str, key: ProviderKey | None) -> None:
        genai = require("google.genai", "gemini")
        self.errors: Any = require("google.genai.errors", "gemini")
        if key is None:
            raise ProviderError("the gemini provider needs a credential: add an entry with "
                                "\"provider\": \"gemini\" to the credentials file")
        self.model, self.key, self.types = model, key, genai.types
        self.timeout = call_timeout()
        options: dict[str, Any] = {"timeout": max(1, round(self.timeout * 1000))}  # ms
        if key.base_url:
            options["base_url"] = key.base_url
        if "retry_options" in genai.types.HttpOptions.model_fields:
            options["retry_options"] = genai.types.HttpRetryOptions(attempts=1)
        try:
            self.client: Any = genai.Client(api_key=key.secret, vertexai=False,
                                            http_options=genai.types.HttpOptions(**options))
        except ValueError as exc:  # e.g. an empty key
            raise ProviderError(self._scrub(f"gemini: cannot set up the client: {exc}")) from None

    def complete(self, request: ModelRequest) -> ModelReply:
        # RETRY_BASE is read now: call_with_retries's default was bound at import
        return call_with_retries(lambda: self._once(request), base=_common.RETRY_BASE)

    def _once(self, request: ModelRequest) -> ModelReply:
        structured = request.schema is not None and self.key is not None and self.key.structured
        config: dict[str, Any] = {}
        if request.system:
            config["system_instruction"] = request.system
        if request.max_output_tokens:
            config["max_output_tokens"] = request.max_output_tokens
        if structured:
            config["response_mime_type"] = "application/json"
            config["response_json_schema"] = dict(request.schema or {})
        try:
            response = self.client.models.generate_content(
                model=self.model, contents=request.prompt,
                config=self.types.GenerateContentConfig(**config) if config else None)
        except self.errors.APIError as exc:
            raise self._api_error(exc) from None
        except Exception as exc:
            if _is_transport_error(exc):
                raise self._transport_error(exc) from None
            raise ProviderError(self._scrub(f"gemini {self.model}: {type(exc).__name__}: "
                                            f"{exc}")) from None
        text = response.text or ""
        truncated = _stopped_at_limit(response)
        if not text and not truncated:
            reason = _finish_reason(response)
            raise ProviderError(f"gemini {self.model}: empty reply ({reason})")
        return ModelReply(text, *_usage(response.usage_metadata), truncated=truncated,
                          structured=structured, limits=openai_info(_headers(response)))

    def _api_error(self, exc: Any) -> ProviderError:
        code = int(exc.code or 0)
        detail = self._scrub(f"HTTP {code} {exc.status or ''}: {exc.message or ''}".strip())
        message = f"gemini {self.model}: {detail}"
        if code == 429:
            limits = _limits(exc)
            if limits is not None and limits.daily_quota:
                limits = replace(limits, daily_quota=self._scrub(limits.daily_quota))
                message += f" (daily quota {limits.daily_quota} exhausted)"
            return RateLimited(self._scrub(message), limits.retry_after if limits else None,
                               limits)
        if code in (401, 403) or _error_reason(exc.details) == "API_KEY_INVALID":
            return AuthFailed(message)
        if code == 408 or code >= 500:
            return Transient(message, f"HTTP {code}")
        return ProviderError(message)

    def _transport_error(self, exc: Exception) -> Transient:
        if "Timeout" in type(exc).__name__:
            return Transient(f"gemini {self.model}: timed out after {self.timeout:g}s",
                             RETRY_TIMEOUT)
        return Transient(self._scrub(f"gemini {self.model}: connection failed: "
                                     f"{type(exc).__name__}: {exc}"), RETRY_CONNECTION)

    def _scrub(self, text: str) -> str:
        secret = self.key.secret if self.key else ""
        return text.replace(secret, "***") if secret else text


def create(model: str, key: ProviderKey | None = None) -> GeminiProvider:
    return GeminiProvider(model, key)


def _is_transport_error(exc: Exception) -> bool:
    """An httpx/httpx2 TransportError (timeouts, refused or reset connections)."""
    return any(cls.__name__ == "TransportError" and cls.__module__.startswith("httpx")
               for cls in type(exc).__mro__)


def _limits(exc: Any) -> RateInfo | None:
    """What a 429 said: its body's RetryInfo and QuotaFailure (gemini_info), the wait of a
    retry-after(-ms) header, when there is one, before RetryInfo's `retryDelay`."""
    info = gemini_info(exc.details)
    said = retry_after(_headers(exc))
    return info if said is None else replace(info or RateInfo(), retry_after=said)


def _headers(carrier: Any) -> dict[str, str]:
    """The HTTP headers of an APIError's `response` or a reply's `sdk_http_response`."""
    for name in ("response", "sdk_http_response"):
        headers = getattr(getattr(carrier, name, None), "headers", None)
        if isinstance(headers, Mapping):
            return lower(headers)
    return {}


def _error_reason(body: Any) -> str | None:
    """The ErrorInfo reason: Gemini answers a bad key with 400 API_KEY_INVALID."""
    for detail in google_details(body):
        if str(detail.get("@type", "")).endswith("ErrorInfo"):
            return str(detail.get("reason", "")) or None
    return None


def _finish_reason(response: Any) -> str:
    feedback = getattr(response, "prompt_feedback", None)
    if feedback is not None and getattr(feedback, "block_reason", None):
        return f"prompt blocked: {feedback.block_reason}"
    candidates = getattr(response, "candidates", None) or []
    reason = getattr(candidates[0], "finish_reason", None) if candidates else None
    return f"finish reason {reason}" if reason else "no candidates"


def _stopped_at_limit(response: Any) -> bool:
    """The first candidate ended at the output-token limit (finish reason MAX_TOKENS)."""
    candidates = getattr(response, "candidates", None) or []
    reason = getattr(candidates[0], "finish_reason", None) if candidates else None
    return str(getattr(reason, "value", reason)) == "MAX_TOKENS"


def _usage(usage: Any) -> tuple[int | None, int | None]:
    """Input and output tokens as billed: thinking is billed as output, so it counts there
    (`candidates_token_count` alone leaves it out)."""
    if usage is None or usage.candidates_token_count is None:
        return (usage.prompt_token_count if usage else None), None
    return usage.prompt_token_count, (usage.candidates_token_count
                                      + (getattr(usage, "thoughts_token_count", None) or 0))
