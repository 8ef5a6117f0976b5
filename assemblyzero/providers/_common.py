"""What every real provider shares: loading its SDK, Retry-After, bounded retries.

Provider modules turn their SDK's exceptions into RateLimited (429, with
Retry-After), AuthFailed (401/403) or a transient ProviderError (5xx,
timeouts, connection errors); `call_with_retries` retries only the
transient ones, a bounded number of times, and never a 429 or 401/403,
which the coordinator handles across keys. What it retried comes back in
`ModelReply.retries` ("HTTP 503", "timeout", "connection error").
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import ModuleType
from typing import Any, TypeVar

from assemblyzero.providers import AuthFailed, ModelReply, ProviderError, RateInfo, RateLimited
from assemblyzero.providers.ratelimits import parse_retry_after as parse_retry_after  # re-export

T = TypeVar("T")

CALL_RETRIES = 2  # a 5xx or timeout is retried twice (three tries in all)
RETRY_BASE = 1.0  # seconds before the first retry; doubles each time
ENV_CALL_TIMEOUT = "ASSEMBLYZERO_CALL_TIMEOUT"
DEFAULT_CALL_TIMEOUT = 300.0  # seconds one HTTP call may take


RETRY_TIMEOUT = "timeout"  # the words a retry is reported with (ModelReply.retries)
RETRY_CONNECTION = "connection error"


class Transient(ProviderError):
    """A failure worth retrying on the same key: 5xx, timeout, connection reset.

    `label` is how a retry of it is reported: "HTTP 503", "timeout", "connection error".
    """

    def __init__(self, message: str, label: str) -> None:
        super().__init__(message)
        self.label = label


def require(module: str, extra: str) -> ModuleType:
    """Import an optional SDK, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ProviderError(
            f"the {extra} provider needs its SDK: pip install \"assemblyzero[{extra}]\""
        ) from None


def call_timeout() -> float:
    raw = os.environ.get(ENV_CALL_TIMEOUT, "")
    try:
        return float(raw) if raw else DEFAULT_CALL_TIMEOUT
    except ValueError:
        raise ProviderError(f"{ENV_CALL_TIMEOUT}={raw!r} is not a number of seconds") from None


def call_with_retries(call: Callable[[], ModelReply], retries: int = CALL_RETRIES,
                      base: float | None = None,
                      sleep: Callable[[float], None] = time.sleep) -> ModelReply:
    """`call()`, retrying a Transient failure `retries` times with doubling pauses.

    The reply lists what was retried before it (`ModelReply.retries`, oldest first,
    after any the call itself reported); the last failure, when every try failed,
    is raised naming the number of tries. A call that fails in the end (every try,
    or a 429 after a 503) carries what was retried in the error's `retried`.
    """
    base = RETRY_BASE if base is None else base  # read now: tests shorten it
    retried: list[str] = []
    for attempt in range(retries + 1):
        try:
            reply = call()
        except Transient as exc:
            retried.append(exc.label)
            if attempt == retries:
                failed = ProviderError(f"{exc} (after {retries + 1} tries)")
                failed.retried = tuple(retried[:-1])  # the last try was not retried
                raise failed from exc
            sleep(base * 2**attempt)
        except ProviderError as exc:  # a 429 or 401/403 after a retried 5xx
            exc.retried = (*retried, *exc.retried)
            raise
        else:
            return replace(reply, retries=(*retried, *reply.retries)) if retried else reply
    raise AssertionError("unreachable")


DETAIL = 200  # characters of a server's error message kept in ours


def clean(text: str, secret: str) -> str:
    """One short line of server text, with the secret (should a server echo it) masked."""
    if secret:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= DETAIL else text[:DETAIL] + "..."


def status_error(provider: str, status: int, detail: str, secret: str,
                 limits: RateInfo | None = None) -> ProviderError:
    """The error for an HTTP status: 429 RateLimited (waiting `limits.retry_after`, and
    carrying `limits`), 401/403 AuthFailed, 5xx Transient."""
    message = f"{provider}: HTTP {status}: {clean(detail, secret)}"
    if status == 429:
        return RateLimited(message, limits.retry_after if limits else None, limits)
    if status in (401, 403):
        return AuthFailed(message)
    if status >= 500:
        return Transient(message, f"HTTP {status}")
    return ProviderError(message)


def stainless_call(provider: str, sdk: Any, base_error: type[Exception], call: Callable[[], T],
                   detail: Callable[[Any], str], timeout: float, secret: str,
                   limits: Callable[[Mapping[str, str]], RateInfo | None]) -> T:
    """`call()` on an SDK of the anthropic/openai family, its errors mapped to ours.

    Both SDKs raise APIStatusError (with the HTTP status and response),
    APITimeoutError and APIConnectionError, under one base error class. A 429
    carries what `limits` reads from its headers (ratelimits.openai_info, ...).
    """
    try:
        return call()
    except sdk.APIStatusError as exc:
        said = limits(exc.response.headers) if exc.status_code == 429 else None
        raise status_error(provider, exc.status_code, detail(exc), secret, said) from None
    except sdk.APITimeoutError:
        raise Transient(f"{provider}: no reply within {timeout:g}s "
                        f"({ENV_CALL_TIMEOUT})", RETRY_TIMEOUT) from None
    except sdk.APIConnectionError as exc:
        cause = type(exc.__cause__).__name__ if exc.__cause__ else "no detail"
        raise Transient(f"{provider}: connection error ({cause})", RETRY_CONNECTION) from None
    except base_error as exc:  # e.g. a reply the SDK could not read
        raise ProviderError(f"{provider}: {type(exc).__name__}: "
                            f"{clean(str(exc), secret)}") from None
