"""The providers' rate-limit headers and bodies, read into `RateInfo` (pure: no SDK here).

    openai_info(headers)     x-ratelimit-{limit,remaining,reset}-{requests,tokens}
    anthropic_info(headers)  anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-*
    gemini_info(body)        a 429 body's google.rpc.RetryInfo and QuotaFailure

all with `retry-after-ms` (milliseconds, preferred) or `retry-after` (seconds or an HTTP
date). Every value is untrusted: one that is not a number, not finite, negative or longer
than VALUE_MAX characters is unknown (None), never an exception. A count (limit,
remaining) above COUNT_MAX is unknown too; a wait (reset, retry-after) above WAIT_MAX is
WAIT_MAX: the server asked for a long rest, and a day is the longest we believe.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from assemblyzero.providers import RateInfo, Window

COUNT_MAX = 1e12  # requests or tokens: a larger limit or remainder is nonsense
WAIT_MAX = 86400.0  # seconds: a longer reset or retry-after is clamped to one day
VALUE_MAX = 64  # characters: a longer header value is not read at all
QUOTA_ID_MAX = 120  # characters of a Gemini quota id kept
# One Go duration part, as OpenAI writes its resets ("6m0s", "1h2m3.5s", "12ms").
_PART = r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)"
_DURATION = re.compile(f"(?:{_PART})+")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
# The windows each provider states, by the header's middle part.
OPENAI_WINDOWS = {"requests": "requests", "tokens": "tokens"}
ANTHROPIC_WINDOWS = {"requests": "requests", "tokens": "tokens",
                     "input-tokens": "input_tokens", "output-tokens": "output_tokens"}


def parse_count(text: object) -> float | None:
    """A limit or remainder: a number in 0..COUNT_MAX, else None."""
    value = _number(text)
    return value if value is not None and value <= COUNT_MAX else None


def parse_seconds(text: object, scale: float = 1.0) -> float | None:
    """A wait in seconds (`text` times `scale`): >= 0, at most WAIT_MAX; None if bad."""
    value = _number(text)
    return None if value is None else min(WAIT_MAX, value * scale)


def parse_duration(text: object) -> float | None:
    """Seconds in a Go duration as OpenAI sends resets: `6m0s`, `1s`, `12ms`, `1h2m3.5s`,
    `0.5s` (a bare number is seconds). At most WAIT_MAX; None for anything else."""
    if not isinstance(text, str) or len(text) > VALUE_MAX:
        return None
    text = text.strip()
    if not _DURATION.fullmatch(text):
        return parse_seconds(text)
    total = sum(float(amount) * _UNIT[unit] for amount, unit in re.findall(_PART, text))
    return min(WAIT_MAX, total) if math.isfinite(total) else None


def parse_retry_after(value: object, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header: `120` or an HTTP date (a past one is 0);
    at most WAIT_MAX; None if absent or bad."""
    if not isinstance(value, str) or not value.strip() or len(value) > VALUE_MAX:
        return None
    seconds = parse_seconds(value)
    if seconds is not None or _number_like(value):
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
        return _until(when, now())
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def parse_timestamp(text: object, now: float) -> float | None:
    """Seconds from `now` until an RFC 3339 time (`2025-05-01T12:00:30Z`; no zone: UTC),
    0 if past, at most WAIT_MAX; None if bad."""
    if not isinstance(text, str) or len(text) > VALUE_MAX:
        return None
    try:
        return _until(datetime.fromisoformat(text.strip()), now)
    except (ValueError, OverflowError):
        return None


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """`retry-after-ms` when it is readable, else `retry-after` (lower-cased names)."""
    waited = parse_seconds(headers.get("retry-after-ms"), 1e-3)
    if waited is not None:
        return waited
    at = time.time() if now is None else now
    return parse_retry_after(headers.get("retry-after"), lambda: at)


def openai_info(headers: Mapping[str, str], now: float | None = None) -> RateInfo | None:
    """OpenAI's `x-ratelimit-*` (tokens: input and output together) and retry-after(-ms);
    None when none of them says anything readable. `now`: epoch seconds (default: now)."""
    found = lower(headers)
    windows = {field: _window(found.get(f"x-ratelimit-limit-{name}"),
                              found.get(f"x-ratelimit-remaining-{name}"),
                              parse_duration(found.get(f"x-ratelimit-reset-{name}")))
               for name, field in OPENAI_WINDOWS.items()}
    return _info(windows, retry_after(found, now))


def anthropic_info(headers: Mapping[str, str], now: float | None = None) -> RateInfo | None:
    """Anthropic's `anthropic-ratelimit-*` (resets are RFC 3339 times, given here as
    seconds from `now`) and retry-after(-ms); None when nothing readable is there."""
    found = lower(headers)
    at = time.time() if now is None else now
    prefix = "anthropic-ratelimit-"
    windows = {field: _window(found.get(f"{prefix}{name}-limit"),
                              found.get(f"{prefix}{name}-remaining"),
                              parse_timestamp(found.get(f"{prefix}{name}-reset"), at))
               for name, field in ANTHROPIC_WINDOWS.items()}
    return _info(windows, retry_after(found, at))


def gemini_info(body: object) -> RateInfo | None:
    """A Gemini 429 body: RetryInfo's `retryDelay` ("7s") as retry_after, and the first
    QuotaFailure violation whose quotaId (or quotaMetric) is a per-day quota as
    daily_quota (its id, only `[A-Za-z0-9_.:/@-]`, at most QUOTA_ID_MAX characters)."""
    delay: float | None = None
    daily = ""
    for detail in google_details(body):
        kind = str(detail.get("@type", ""))
        if kind.endswith("RetryInfo") and delay is None:
            delay = _delay(detail.get("retryDelay"))
        elif kind.endswith("QuotaFailure") and not daily:
            daily = _daily_quota(detail.get("violations"))
    if delay is None and not daily:
        return None
    return RateInfo(retry_after=delay, daily_quota=daily)


def google_details(body: object) -> list[dict[str, Any]]:
    """The `details` of a Google error body (`{"error": {...}}` or the error itself)."""
    error = body.get("error", body) if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def lower(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers with lower-cased names (httpx's are case-insensitive, a dict's are not)."""
    return {str(name).lower(): value for name, value in headers.items()
            if isinstance(value, str)}


def _window(limit: object, remaining: object, reset: float | None) -> Window | None:
    window = Window(parse_count(limit), parse_count(remaining), reset)
    return window if window != Window() else None


def _info(windows: dict[str, Window | None], wait: float | None) -> RateInfo | None:
    if wait is None and not any(windows.values()):
        return None
    return RateInfo(requests=windows.get("requests"), tokens=windows.get("tokens"),
                    input_tokens=windows.get("input_tokens"),
                    output_tokens=windows.get("output_tokens"), retry_after=wait)


def _number(text: object) -> float | None:
    """A finite number >= 0 written in at most VALUE_MAX characters, else None."""
    if not isinstance(text, str) or len(text) > VALUE_MAX:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _number_like(text: str) -> bool:
    """Written as a number (so not an HTTP date), whether or not a usable one."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _until(when: datetime, now: float) -> float:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(WAIT_MAX, max(0.0, when.timestamp() - now))


def _delay(value: object) -> float | None:
    """A protobuf Duration: JSON's "7s" / "0.5s", or {"seconds": 7, "nanos": 0}."""
    if isinstance(value, dict):
        seconds, nanos = value.get("seconds", 0), value.get("nanos", 0)
        if isinstance(seconds, (int, float, str)) and isinstance(nanos, (int, float)):
            whole = parse_seconds(str(seconds))
            part = parse_seconds(str(nanos), 1e-9)
            return None if whole is None or part is None else min(WAIT_MAX, whole + part)
        return None
    return parse_duration(value)


def _daily_quota(violations: object) -> str:
    if not isinstance(violations, list):
        return ""
    for violation in violations:
        if not isinstance(violation, dict):
            continue
        for field in ("quotaId", "quotaMetric"):
            name = violation.get(field)
            if isinstance(name, str) and "perday" in re.sub(r"[_\W]", "", name.lower()):
                return re.sub(r"[^A-Za-z0-9_.:/@-]", "", name)[:QUOTA_ID_MAX]
    return ""
