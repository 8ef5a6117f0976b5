"""The OpenAI provider: the official `openai` SDK, chat completions, one user message.

It also serves any OpenAI-compatible server (vLLM, Ollama, ...) through the
credential's `base_url` or the SDK's own OPENAI_BASE_URL; such a server may
need no key. SDK-internal retries are off, so a 429 reaches the coordinator;
5xx, timeouts and connection errors are retried by `call_with_retries`.
"""

from __future__ import annotations

import os
from typing import Any

from assemblyzero.providers import (
    ModelReply,
    ModelRequest,
    ProviderError,
    ProviderKey,
    _common,
)
from assemblyzero.providers._common import call_timeout, clean, require, stainless_call

NAME = "openai"
PLACEHOLDER_KEY = "unused"  # what a keyless OpenAI-compatible server is sent


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

    def complete(self, request: ModelRequest) -> ModelReply:
        return _common.call_with_retries(lambda: self._once(request))

    def _once(self, request: ModelRequest) -> ModelReply:
        completion = stainless_call(
            NAME, self._sdk, self._sdk.OpenAIError,
            lambda: self._client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": request.prompt}]),
            _detail, self.timeout, self._mask)
        choices = getattr(completion, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        if message is None:
            raise ProviderError(f"{NAME}: the reply has no choices")
        usage = getattr(completion, "usage", None)
        return ModelReply(getattr(message, "content", None) or "",
                          getattr(usage, "prompt_tokens", None),
                          getattr(usage, "completion_tokens", None))


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
