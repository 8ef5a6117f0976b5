"""Rate-limit headers and bodies into RateInfo: real formats, and hostile values."""

from __future__ import annotations

import email.utils
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assemblyzero.providers import RateInfo, Window
from assemblyzero.providers import _common as common
from assemblyzero.providers.ratelimits import (
    COUNT_MAX,
    QUOTA_ID_MAX,
    WAIT_MAX,
    anthropic_info,
    gemini_info,
    google_details,
    openai_info,
    parse_count,
    parse_duration,
    parse_retry_after,
    parse_seconds,
    parse_timestamp,
)

NOW = 1_746_100_800.0  # 2025-05-01T12:00:00Z
HOSTILE = ["", "  ", "abc", "nan", "NaN", "inf", "-inf", "Infinity", "-1", "-0.5", "1e300",
           "12 apples", "0x10", "1,2", "6m0s-", "7" * 10_000, "x" * 10_000, "\x00", "☃"]


@pytest.mark.parametrize(("text", "seconds"), [
    ("6m0s", 360.0), ("1s", 1.0), ("12ms", 0.012), ("1h2m3.5s", 3723.5), ("0.5s", 0.5),
    ("59.123s", 59.123), ("2m59.56s", 179.56), ("0s", 0.0), ("100us", 1e-4), ("3µs", 3e-6),
    ("5ns", 5e-9), (" 20s ", 20.0), (".5s", 0.5), ("7", 7.0), ("1.5", 1.5),
    ("25h", WAIT_MAX), ("9999999999h", WAIT_MAX), ("86401s", WAIT_MAX), ("86400s", 86400.0),
])
def test_go_durations_are_seconds_and_at_most_a_day(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [*(t for t in HOSTILE if t != "1e300"), "1x", "s", "m5",
                                  "5 m", "1h-2m", "1e3s", "5S", "--1s", None, 60])
def test_anything_else_is_no_duration(text: object) -> None:
    assert parse_duration(text) is None


def test_counts_are_finite_non_negative_and_bounded() -> None:
    assert parse_count("60") == 60 and parse_count("149984") == 149984
    assert parse_count(str(int(COUNT_MAX))) == COUNT_MAX
    assert parse_count(str(int(COUNT_MAX) + 1)) is None
    assert parse_count("0") == 0.0
    assert all(parse_count(text) is None for text in HOSTILE)


def test_waits_in_seconds_or_milliseconds_clamp_at_a_day() -> None:
    assert parse_seconds("20") == 20 and parse_seconds("1500", 1e-3) == 1.5
    assert parse_seconds("1e300") == WAIT_MAX and parse_seconds("90000") == WAIT_MAX
    assert all(parse_seconds(text) is None for text in ("nan", "inf", "-1", "x", "7" * 100))


def test_retry_after_in_seconds_or_an_http_date() -> None:
    assert parse_retry_after("120") == 120
    when = email.utils.formatdate(NOW + 30, usegmt=True)
    assert parse_retry_after(when, lambda: NOW) == pytest.approx(30)
    past = email.utils.formatdate(NOW - 30, usegmt=True)
    assert parse_retry_after(past, lambda: NOW) == 0.0
    far = email.utils.formatdate(NOW + 10 * 86400, usegmt=True)
    assert parse_retry_after(far, lambda: NOW) == WAIT_MAX
    assert parse_retry_after("1e300") == WAIT_MAX
    for text in (*HOSTILE, None, "Mon, 99 Foo 2025 99:99:99 GMT"):
        assert parse_retry_after(text) is None or text == "1e300"
    assert common.parse_retry_after is parse_retry_after  # where the providers find it


def test_rfc3339_times_are_seconds_from_now() -> None:
    assert parse_timestamp("2025-05-01T12:00:30Z", NOW) == pytest.approx(30)
    assert parse_timestamp("2025-05-01T12:00:00.250Z", NOW) == pytest.approx(0.25)
    assert parse_timestamp("2025-05-01T14:00:30+02:00", NOW) == pytest.approx(30)
    assert parse_timestamp("2025-05-01T12:00:30", NOW) == pytest.approx(30)  # no zone: UTC
    assert parse_timestamp("2025-05-01T11:00:00Z", NOW) == 0.0  # already past
    assert parse_timestamp("2030-01-01T00:00:00Z", NOW) == WAIT_MAX
    for text in (*HOSTILE, "2025-13-01T00:00:00Z", "9999-12-31T23:59:59-23:59", None):
        assert parse_timestamp(text, NOW) is None or text.startswith("9999")


OPENAI = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59",
          "x-ratelimit-reset-requests": "1s", "x-ratelimit-limit-tokens": "150000",
          "x-ratelimit-remaining-tokens": "149984", "x-ratelimit-reset-tokens": "6m0s"}


def test_openais_headers_give_requests_and_tokens_windows() -> None:
    assert openai_info(OPENAI, NOW) == RateInfo(requests=Window(60, 59, 1.0),
                                                tokens=Window(150000, 149984, 360.0))


def test_header_names_are_read_in_any_case() -> None:
    shouted = {name.upper(): value for name, value in OPENAI.items()}
    assert openai_info(shouted, NOW) == openai_info(OPENAI, NOW)
    assert openai_info({"Retry-After-Ms": "250"}, NOW) == RateInfo(retry_after=0.25)


def test_retry_after_ms_is_preferred_then_retry_after() -> None:
    both = {"retry-after-ms": "1500", "retry-after": "7"}
    assert openai_info(both, NOW) == RateInfo(retry_after=1.5)
    assert openai_info({"retry-after-ms": "nan", "retry-after": "7"}, NOW) == RateInfo(
        retry_after=7)
    assert anthropic_info({"retry-after": "17"}, NOW) == RateInfo(retry_after=17)


def test_no_rate_limit_header_is_no_info() -> None:
    assert openai_info({}, NOW) is None and anthropic_info({}, NOW) is None
    assert openai_info({"content-type": "application/json"}, NOW) is None
    assert openai_info(dict.fromkeys(OPENAI, "garbage"), NOW) is None


def test_some_windows_known_others_not() -> None:
    info = openai_info({"x-ratelimit-remaining-tokens": "10"}, NOW)
    assert info == RateInfo(tokens=Window(remaining=10))


ANTHROPIC = {
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "49",
    "anthropic-ratelimit-requests-reset": "2025-05-01T12:00:01Z",
    "anthropic-ratelimit-tokens-limit": "100000",
    "anthropic-ratelimit-tokens-remaining": "90000",
    "anthropic-ratelimit-tokens-reset": "2025-05-01T12:00:06Z",
    "anthropic-ratelimit-input-tokens-limit": "80000",
    "anthropic-ratelimit-input-tokens-remaining": "79000",
    "anthropic-ratelimit-input-tokens-reset": "2025-05-01T12:00:02.500Z",
    "anthropic-ratelimit-output-tokens-limit": "16000",
    "anthropic-ratelimit-output-tokens-remaining": "15000",
    "anthropic-ratelimit-output-tokens-reset": "2025-05-01T12:00:04Z",
}


def test_anthropics_headers_give_four_windows_with_resets_from_now() -> None:
    assert anthropic_info(ANTHROPIC, NOW) == RateInfo(
        requests=Window(50, 49, 1.0), tokens=Window(100000, 90000, 6.0),
        input_tokens=Window(80000, 79000, 2.5), output_tokens=Window(16000, 15000, 4.0))


@pytest.mark.parametrize("bad", HOSTILE)
def test_a_hostile_value_is_an_unknown_field_and_the_rest_stands(bad: str) -> None:
    openai = openai_info({**OPENAI, "x-ratelimit-limit-requests": bad,
                          "x-ratelimit-reset-tokens": bad, "retry-after": bad,
                          "retry-after-ms": bad}, NOW)
    assert openai is not None and openai.requests == Window(None, 59, 1.0)
    assert openai.tokens is not None and openai.tokens.limit == 150000
    assert openai.tokens.reset in (None, WAIT_MAX)  # "1e300" (bare seconds): a day
    assert openai.retry_after in (None, WAIT_MAX)
    anthropic = anthropic_info({**ANTHROPIC, "anthropic-ratelimit-tokens-remaining": bad,
                                "anthropic-ratelimit-output-tokens-reset": bad}, NOW)
    assert anthropic is not None and anthropic.tokens == Window(100000, None, 6.0)
    assert anthropic.output_tokens == Window(16000, 15000, None)


def test_a_huge_number_is_no_count_and_a_day_of_waiting() -> None:
    info = openai_info({"x-ratelimit-limit-requests": "1e300", "retry-after": "1e300"}, NOW)
    assert info == RateInfo(retry_after=WAIT_MAX)


def test_values_that_are_not_strings_are_ignored() -> None:
    odd: dict[str, object] = {"x-ratelimit-limit-requests": 60, "retry-after": None}
    assert openai_info(odd, NOW) is None  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from([*OPENAI, *ANTHROPIC, "retry-after", "retry-after-ms"]),
                       st.one_of(st.text(max_size=80), st.floats().map(str),
                                 st.integers().map(str))))
def test_no_header_value_raises_and_every_number_is_in_range(headers: dict[str, str]) -> None:
    for info in (openai_info(headers, NOW), anthropic_info(headers, NOW)):
        if info is None:
            continue
        for window in (info.requests, info.tokens, info.input_tokens, info.output_tokens):
            for count in (window.limit, window.remaining) if window else ():
                assert count is None or 0 <= count <= COUNT_MAX
            assert window is None or window.reset is None or 0 <= window.reset <= WAIT_MAX
        assert info.retry_after is None or 0 <= info.retry_after <= WAIT_MAX
        assert info.retry_after is None or not math.isnan(info.retry_after)


DAILY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"


def quota_error(*details: object) -> dict[str, object]:
    return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded",
                      "details": list(details)}}


def retry_info(delay: object) -> dict[str, object]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def quota_failure(*violations: object) -> dict[str, object]:
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": list(violations)}


def test_gemini_retry_info_is_the_retry_after() -> None:
    assert gemini_info(quota_error(retry_info("7s"))) == RateInfo(retry_after=7.0)
    assert gemini_info(quota_error(retry_info("0.5s"))) == RateInfo(retry_after=0.5)
    assert gemini_info(quota_error(retry_info("44.081337s"))) == RateInfo(retry_after=44.081337)
    assert gemini_info(quota_error(retry_info({"seconds": 3, "nanos": 5e8}))) == RateInfo(
        retry_after=3.5)


def test_a_per_day_quota_failure_names_the_daily_quota() -> None:
    body = quota_error(
        quota_failure({"quotaMetric": "generativelanguage.googleapis.com/"
                                      "generate_content_free_tier_requests",
                       "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                       "quotaValue": "15"},
                      {"quotaMetric": "generativelanguage.googleapis.com/"
                                      "generate_content_free_tier_requests",
                       "quotaId": DAILY, "quotaValue": "200"}),
        retry_info("23s"))
    assert gemini_info(body) == RateInfo(retry_after=23.0, daily_quota=DAILY)
    by_metric = quota_error(quota_failure({"quotaMetric": "requests_per_day"}))
    assert gemini_info(by_metric) == RateInfo(daily_quota="requests_per_day")


def test_a_per_minute_quota_failure_is_no_daily_quota() -> None:
    minute = quota_failure({"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"})
    assert gemini_info(quota_error(minute)) is None


def test_the_daily_quota_id_is_printable_and_bounded() -> None:
    hostile = "PerDay\x1b[31m\n" + "A" * 10_000 + " secret"
    info = gemini_info(quota_error(quota_failure({"quotaId": hostile})))
    assert info is not None and info.daily_quota.startswith("PerDay31mA")
    assert len(info.daily_quota) == QUOTA_ID_MAX and info.daily_quota.isprintable()


@pytest.mark.parametrize("body", [
    None, [], "text", {"error": "x"}, {"error": {"details": "x"}}, {"error": {"details": [1]}},
    quota_error(retry_info("forever")), quota_error(retry_info("-5s")),
    quota_error(retry_info(["7s"])), quota_error(retry_info({"seconds": "x"})),
    quota_error(quota_failure("x", {"quotaId": 7})), quota_error(quota_failure()),
    quota_error({"@type": 5}),
])
def test_a_body_without_usable_details_is_no_info(body: object) -> None:
    assert gemini_info(body) is None


def test_details_are_read_from_the_error_or_the_body_itself() -> None:
    inner = quota_error(retry_info("7s"))["error"]
    assert google_details(inner) == google_details(quota_error(retry_info("7s")))
    assert gemini_info(inner) == RateInfo(retry_after=7.0)
