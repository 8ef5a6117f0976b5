"""The one small interface every model provider implements.

A provider turns a ModelRequest into a ModelReply or raises one of the
errors below. Real providers use `request.prompt`; the offline provider
uses the structured fields. Providers are imported lazily by name, so a
worker loads only the one it uses.
"""

from __future__ import annotations

import importlib
import importlib.util
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# provider name -> module that defines `create(model: str) -> Provider`
REGISTRY: dict[str, str] = {
    "offline": "assemblyzero.providers.offline",
    "anthropic": "assemblyzero.providers.anthropic",
    "openai": "assemblyzero.providers.openai",
    "gemini": "assemblyzero.providers.gemini",
    "cmd": "assemblyzero.providers.cmd",
}
# provider name -> the SDK it needs (the extra of the same name installs it)
SDKS: dict[str, str] = {"anthropic": "anthropic", "openai": "openai", "gemini": "google.genai"}
# Providers that run without an API key unless the credentials file lists some.
KEYLESS = {"offline", "cmd"}


@dataclass(frozen=True)
class ModelRequest:
    role: str  # "draft", "review" or "revise"
    kind: str  # "lld" or "issue"
    item_id: str
    title: str
    source: str  # the input document
    sections: tuple[str, ...]  # required sections, in order
    prompt: str  # the full instruction text for a real model
    draft: str = ""  # the document under review / revision
    findings: tuple[str, ...] = ()  # what the reviewer asked to change
    iteration: int = 1  # 1 = first draft
    # A JSON schema the reply must follow (the review's verdict): a provider that can asks
    # for it natively (OpenAI response_format, an Anthropic tool, Gemini's response schema)
    # and says so in ModelReply.structured; one that cannot answers in text as before.
    schema: Mapping[str, Any] | None = None
    system: str = ""  # the role's system message ("" = none)
    max_output_tokens: int | None = None  # None: the provider's own default


@dataclass(frozen=True)
class Window:
    """One rate limit as the provider's headers state it; any field may be unknown."""

    limit: float | None = None  # requests or tokens the window allows (per minute)
    remaining: float | None = None  # left now
    reset: float | None = None  # seconds until it is full again


@dataclass(frozen=True)
class RateInfo:
    """What a reply (or a 429) said of the key's limits: OpenAI `x-ratelimit-*`, Anthropic
    `anthropic-ratelimit-*`, `retry-after-ms` / `retry-after`, Gemini `RetryInfo` /
    `QuotaFailure`. The pacer refines its shared buckets with it (keys/pacing.py)."""

    requests: Window | None = None
    tokens: Window | None = None  # input and output together (OpenAI's, Anthropic's "tokens")
    input_tokens: Window | None = None
    output_tokens: Window | None = None
    retry_after: float | None = None  # seconds, when the server said
    # A quota that does not refill within minutes (Gemini's per-day ones): its id as the
    # server names it ("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), else "".
    daily_quota: str = ""


@dataclass(frozen=True)
class ModelReply:
    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    # The model stopped at the output-token limit (OpenAI finish_reason "length",
    # Anthropic stop_reason "max_tokens", Gemini finish_reason MAX_TOKENS): `text` is cut.
    truncated: bool = False
    structured: bool = False  # `text` is the JSON that `schema` asked for, natively
    # What the provider retried before this reply ("HTTP 503", "timeout", ...), oldest
    # first: each becomes a line in the item's log and a count in the summary.
    retries: tuple[str, ...] = ()
    limits: RateInfo | None = None  # the rate-limit headers of the reply, when it had some


@dataclass(frozen=True)
class ProviderKey:
    """The leased credential a provider calls with (the secret never leaves the worker)."""

    name: str
    secret: str = field(repr=False)
    base_url: str | None = None
    # False: never ask for a structured reply natively (a server that rejects it; the
    # credentials file's "structured": false); the reply is text, as without a schema.
    structured: bool = True


class Provider(Protocol):
    name: str
    key: ProviderKey | None

    def complete(self, request: ModelRequest) -> ModelReply: ...


class ProviderError(Exception):
    """A model call failed; the item fails with this message.

    `credential` names the key the call was made with (set by the engine).
    """

    credential: str | None = None
    retried: tuple[str, ...] = ()  # what was retried before this failure ("HTTP 503", ...)


class RateLimited(ProviderError):
    """HTTP 429 or equivalent; `retry_after` seconds if the server said."""

    def __init__(self, message: str, retry_after: float | None = None,
                 limits: RateInfo | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limits = limits  # what the 429's headers or body said of the limits


class AuthFailed(ProviderError):
    """HTTP 401/403: the credential is not usable."""


def check_spec(spec: str, fix: str = "") -> str:
    """Validate `provider:model` without importing anything; return the provider.

    `fix` ends the error message: the caller's next step (`; pass e.g. ...`).
    """
    from assemblyzero.keys.redact import Redactor  # a spec may carry a key: never echo one

    provider, sep, model = spec.partition(":")
    shown = Redactor()(repr(spec))
    if not sep or not model:
        raise ValueError(f"model spec {shown} must look like 'provider:model'{fix}")
    if provider not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"unknown provider {Redactor()(repr(provider))} in {shown} "
                         f"(known: {known}){fix}")
    if provider == "cmd":  # found here, not by every worker
        try:
            argv = shlex.split(model)
        except ValueError as exc:
            raise ValueError(f"model spec {shown}: cannot parse the command line ({exc}): "
                             f"close the quote{fix}") from None
        if not argv:
            raise ValueError(f"model spec {shown} names no command, e.g. cmd:claude -p{fix}")
    return provider


def missing_sdk(specs: tuple[str, ...]) -> str | None:
    """The message for the first model whose SDK is not installed here, else None.

    Looks for the module without importing it, so the coordinator stays lean.
    """
    for provider in dict.fromkeys(spec.partition(":")[0] for spec in specs):
        module = SDKS.get(provider)
        if module is None:
            continue
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package missing (google for google.genai)
            found = False
        if not found:
            return (f"the {provider} provider needs its SDK, which is not installed in "
                    f"this Python: pip install \"assemblyzero[{provider}]\", then run again")
    return None


def prefetch(specs: tuple[str, ...]) -> None:
    """Start importing the SDKs these models need, in a background thread: a worker reads
    its secrets, arguments and checkpoint (and may wait for its key's budget) meanwhile,
    instead of after (`import anthropic` alone takes a second or more). An import that
    fails here fails again, with its message, where the provider is created."""
    import contextlib
    import threading

    modules = [SDKS[p] for p in dict.fromkeys(s.partition(":")[0] for s in specs) if p in SDKS]
    if not modules:
        return

    def load() -> None:
        for module in modules:
            # ImportError, or an SDK broken here: reported where the provider is created
            with contextlib.suppress(Exception):
                importlib.import_module(module)

    threading.Thread(target=load, name="sdk-import", daemon=True).start()


class LazyProvider:
    """A provider created at its first call, so that a worker that needs none (resumed
    after its last model call, or failing before one) never imports its SDK, and one
    that does imports it while it starts up (`prefetch`). Creation errors (a missing SDK
    or credential) are raised by that first call, as the provider's own."""

    def __init__(self, spec: str, key: ProviderKey | None = None) -> None:
        self.name = check_spec(spec)
        self.spec, self.key = spec, key
        self._made: Provider | None = None

    def ensure(self) -> None:
        """Create the provider now (before a call reserves its key's budget)."""
        if self._made is None:
            self._made = load_provider(self.spec, self.key)

    def complete(self, request: ModelRequest) -> ModelReply:
        self.ensure()
        assert self._made is not None
        return self._made.complete(request)


def load_provider(spec: str, key: ProviderKey | None = None) -> Provider:
    """Instantiate the provider named by `provider:model`, calling with `key`."""
    provider = check_spec(spec)
    module = importlib.import_module(REGISTRY[provider])
    created: Provider = module.create(spec.partition(":")[2], key)
    return created
