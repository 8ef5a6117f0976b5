"""The Anthropic provider: the official `anthropic` SDK, one user message per call (README, Models).

SDK-internal retries are off, so a 429 reaches the coordinator (which rests
the key); 5xx, timeouts and connection errors are retried here a bounded
number of times by `call_with_retries`. No message ever carries the key.

A request with a schema forces a tool whose input schema it is: the tool
call's input, as JSON, is the reply (`structured`), unless the credential
says `"structured": false`. `max_tokens` is the request's, else the model's
default (`default_max_tokens`); `stop_reason` "max_tokens" marks a cut reply.
Every reply, and a 429, carries what its `anthropic-ratelimit-*` and
retry-after(-ms) headers said (`ModelReply.limits`, `RateLimited.limits`).
"""

from __future__ import annotations

import json
from typing import Any

from assemblyzero.constants import ANTHROPIC_MAX_OUTPUT_TOKENS, ANTHROPIC_OLDER_MAX_OUTPUT_TOKENS
from assemblyzero.providers import (
    ModelReply,
    ModelRequest,
    ProviderError,
    ProviderKey,
    _common,
)
from assemblyzero.providers._common import call_timeout, clean, require, stainless_call
from assemblyzero.providers.ratelimits import anthropic_info

NAME = "anthropic"
TOOL = "verdict"  # the forced tool a structured reply comes through
TOOL_DESCRIPTION = "Record the review's verdict, its rationale and its findings."


def default_max_tokens(model: str) -> int:
    """The cap sent when none is set (the API requires one): within the model's own limit."""
    return next((n for prefix, n in ANTHROPIC_OLDER_MAX_OUTPUT_TOKENS.items()
                 if model.startswith(prefix)), ANTHROPIC_MAX_OUTPUT_TOKENS)


class AnthropicProvider:
    name = NAME

    def __init__(self, model: str, key: ProviderKey, sdk: Any) -> None:
        self.model, self.key, self._sdk = model, key, sdk
        self.timeout = call_timeout()
        try:  # base_url None: the SDK falls back to ANTHROPIC_BASE_URL, then its default
            self._client = sdk.Anthropic(api_key=key.secret, base_url=key.base_url,
                                         max_retries=0, timeout=self.timeout)
        except (sdk.AnthropicError, ValueError, TypeError) as exc:
            raise ProviderError(f"{NAME}: cannot set up the client: "
                                f"{clean(str(exc), key.secret)}") from None

    def complete(self, request: ModelRequest) -> ModelReply:
        return _common.call_with_retries(lambda: self._once(request))

    def _once(self, request: ModelRequest) -> ModelReply:
        arguments: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_output_tokens or default_max_tokens(self.model),
            "messages": [{"role": "user", "content": request.prompt}]}
        if request.system:
            arguments["system"] = request.system
        forced = request.schema is not None and self.key.structured
        if forced:
            arguments["tools"] = [{"name": TOOL, "description": TOOL_DESCRIPTION,
                                   "input_schema": dict(request.schema or {})}]
            arguments["tool_choice"] = {"type": "tool", "name": TOOL}

        def create() -> tuple[Any, Any]:
            raw = self._client.messages.with_raw_response.create(**arguments)
            return raw.headers, raw.parse()

        headers, message = stainless_call(
            NAME, self._sdk, self._sdk.AnthropicError, create,
            lambda exc: str(exc.api_message or exc.message), self.timeout, self.key.secret,
            anthropic_info)
        blocks = getattr(message, "content", None) or []
        used = [b for b in blocks if getattr(b, "type", None) == "tool_use"
                and getattr(b, "name", None) == TOOL]
        if forced and used:
            text, structured = json.dumps(getattr(used[0], "input", None) or {}), True
        else:  # no schema, or (should the tool not be called) whatever text came
            text = "".join(b.text for b in blocks if getattr(b, "type", None) == "text")
            structured = False
        usage = getattr(message, "usage", None)
        return ModelReply(text, getattr(usage, "input_tokens", None),
                          getattr(usage, "output_tokens", None),
                          truncated=getattr(message, "stop_reason", None) == "max_tokens",
                          structured=structured, limits=anthropic_info(headers))


def create(model: str, key: ProviderKey | None = None) -> AnthropicProvider:
    sdk = require("anthropic", "anthropic")
    if key is None or not key.secret:
        raise ProviderError(f"a credential for provider {NAME} is needed: list one with "
                            f"\"provider\": \"{NAME}\" in the credentials file")
    return AnthropicProvider(model, key, sdk)
