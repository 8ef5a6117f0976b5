"""The OpenAI provider: the official `openai` SDK, chat completions.

It also serves any OpenAI-compatible server (vLLM, Ollama, ...) through the
credential's `base_url` or the SDK's own OPENAI_BASE_URL; such a server may
need no key. SDK-internal retries are off, so a 429 reaches the coordinator;
5xx, timeouts and connection errors are retried by `call_with_retries`.

A request with a schema asks for `response_format` json_schema (strict). A
server that refuses it (a 400 naming response_format or json_schema) is asked
again without it, and never again by this provider object; a credential with
`"structured": false` is never asked, and a reply is structured only when it
is the JSON object itself (a server may ignore response_format). An output cap
is sent only when the request sets one (`max_completion_tokens` to OpenAI's own
API, which every current OpenAI model takes; `max_tokens` to another server):
otherwise the model's own limit applies. Every reply, and a 429, carries what
its `x-ratelimit-*` and retry-after(-ms) headers said (`ModelReply.limits`,
`RateLimited.limits`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from assemblyzero.providers import (
    ModelReply,
    ModelRequest,
    ProviderError,
    ProviderKey,
    _common,
)
from assemblyzero.providers._common import call_timeout, clean, require, stainless_call
from assemblyzero.providers.ratelimits import openai_info

NAME = "openai"
PLACEHOLDER_KEY = "unused"  # what a keyless OpenAI-compatible server is sent
OFFICIAL_HOST = "api.openai.com"
SCHEMA_NAME = "verdict"
# A 400 (or 422) whose error names one of these refuses the structured-output request.
REFUSAL_WORDS = ("response_format", "json_schema", "response format")
REFUSED = "HTTP {status} (response_format refused)"  # how that retry is reported


class _Refused(Exception):
    """The server refused `response_format` (passes through stainless_call unmapped)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class OpenAIProvider:
    name = NAME

    def __init__(self, model: str, key: ProviderKey | None, secret: str, sdk: Any) -> None:
        self.model, self.key, self._secret, self._sdk = model, key, secret, sdk
        self._mask = "" if secret == PLACEHOLDER_KEY else secret  # masked in messages
        self.timeout = call_timeout()
        base_url = key.base_url if key else None  # None: the SDK reads OPENAI_BASE_URL
        try:
            self._client = sdk.OpenAI(api_key=secret, base_url=base_url, max_retries=0,
                                      timeout=self.timeout)
        except (sdk.OpenAIError, ValueError, TypeError) as exc:
            raise ProviderError(f"{NAME}: cannot set up the client: "
                                f"{clean(str(exc), secret)}") from None
        self.structured = key.structured if key else True  # False once a server refused it
        self.official = getattr(self._client.base_url, "host", None) == OFFICIAL_HOST

    def complete(self, request: ModelRequest) -> ModelReply:
        schema = request.schema if self.structured else None
        if schema is None:
            return _common.call_with_retries(lambda: self._once(request, None))
        try:
            return _common.call_with_retries(lambda: self._once(request, schema))
        except _Refused as refused:
            self.structured = False  # for the rest of this provider's life
            reply = _common.call_with_retries(lambda: self._once(request, None))
            return replace(reply, retries=(REFUSED.format(status=refused.status),
                                           *reply.retries))

    def _once(self, request: ModelRequest, schema: Mapping[str, Any] | None) -> ModelReply:
        arguments = self._arguments(request, schema)

        def create() -> tuple[Any, Any]:
            try:
                raw = self._client.chat.completions.with_raw_response.create(**arguments)
            except (self._sdk.BadRequestError, self._sdk.UnprocessableEntityError) as exc:
                if schema is not None and _refuses_schema(exc):
                    raise _Refused(exc.status_code) from None
                raise
            return raw.headers, raw.parse()

        headers, completion = stainless_call(NAME, self._sdk, self._sdk.OpenAIError, create,
                                             _detail, self.timeout, self._mask, openai_info)
        choices = getattr(completion, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        if message is None:
            raise ProviderError(f"{NAME}: the reply has no choices")
        text = getattr(message, "content", None) or ""
        refusal = getattr(message, "refusal", None)
        if not text and isinstance(refusal, str) and refusal:  # the model declined the schema
            text, schema = refusal, None
        usage = getattr(completion, "usage", None)
        return ModelReply(text, getattr(usage, "prompt_tokens", None),
                          getattr(usage, "completion_tokens", None),
                          truncated=getattr(choices[0], "finish_reason", None) == "length",
                          # Servers that ignore response_format answer in text: structured
                          # only when the whole reply is the JSON object asked for.
                          structured=schema is not None and _is_json_object(text),
                          limits=openai_info(headers))

    def _arguments(self, request: ModelRequest,
                   schema: Mapping[str, Any] | None) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages.append({"role": "user", "content": request.prompt})
        arguments: dict[str, Any] = {"model": self.model, "messages": messages}
        if request.max_output_tokens:  # else the model's own limit (models differ widely)
            key = "max_completion_tokens" if self.official else "max_tokens"
            arguments[key] = request.max_output_tokens
        if schema is not None:
            arguments["response_format"] = {"type": "json_schema", "json_schema": {
                "name": SCHEMA_NAME, "schema": dict(schema), "strict": True}}
        return arguments


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def create(model: str, key: ProviderKey | None = None) -> OpenAIProvider:
    sdk = require("openai", "openai")
    return OpenAIProvider(model, key, _secret(key), sdk)


def _secret(key: ProviderKey | None) -> str:
    """The key to call with: the leased one, OPENAI_API_KEY, or a placeholder for a local server."""
    if key is not None and key.secret:
        return key.secret
    if os.environ.get("OPENAI_API_KEY"):
        return os.environ["OPENAI_API_KEY"]
    if (key is not None and key.base_url) or os.environ.get("OPENAI_BASE_URL"):
        return PLACEHOLDER_KEY
    raise ProviderError(f"a credential for provider {NAME} is needed: list one with "
                        f"\"provider\": \"{NAME}\" in the credentials file, or set "
                        "OPENAI_BASE_URL for a local OpenAI-compatible server that needs none")


def _detail(exc: Any) -> str:
    """The server's message: the SDK hands over the body's "error" object when there is one."""
    body = exc.body
    detail = body.get("message") if isinstance(body, dict) else None
    return str(detail or exc.message)


def _refuses_schema(exc: Any) -> bool:
    """A 400/422 whose error names the structured-output parameter."""
    said = f"{exc.message} {exc.body}".lower()
    return any(word in said for word in REFUSAL_WORDS)
