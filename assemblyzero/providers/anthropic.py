"""The Anthropic provider: the official `anthropic` SDK, one user message per call (README, Models).

SDK-internal retries are off, so a 429 reaches the coordinator (which rests
the key); 5xx, timeouts and connection errors are retried here a bounded
number of times by `call_with_retries`. No message ever carries the key.
"""

from __future__ import annotations

from typing import Any

from assemblyzero.providers import (
    ModelReply,
    ModelRequest,
    ProviderError,
    ProviderKey,
    _common,
)
from assemblyzero.providers._common import call_timeout, clean, require, stainless_call

NAME = "anthropic"
MAX_TOKENS = 4096


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
        message = stainless_call(
            NAME, self._sdk, self._sdk.AnthropicError,
            lambda: self._client.messages.create(
                model=self.model, max_tokens=MAX_TOKENS,
                messages=[{"role": "user", "content": request.prompt}]),
            lambda exc: str(exc.api_message or exc.message), self.timeout, self.key.secret)
        blocks = getattr(message, "content", None) or []
        text = "".join(b.text for b in blocks if getattr(b, "type", None) == "text")
        usage = getattr(message, "usage", None)
        return ModelReply(text, getattr(usage, "input_tokens", None),
                          getattr(usage, "output_tokens", None))


def create(model: str, key: ProviderKey | None = None) -> AnthropicProvider:
    sdk = require("anthropic", "anthropic")
    if key is None or not key.secret:
        raise ProviderError(f"a credential for provider {NAME} is needed: list one with "
                            f"\"provider\": \"{NAME}\" in the credentials file")
    return AnthropicProvider(model, key, sdk)
