"""Per-key pacing math (keys/pacing.py) and the credentials' limit fields.

Pure functions over a lease record's `pace` dict: time is a number passed in, never slept.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import T0
from hypothesis import given, settings
from hypothesis import strategies as st

from assemblyzero.keys import credentials, pacing
from assemblyzero.keys.credentials import CredentialError
from assemblyzero.keys.pacing import LIMIT_MAX, WINDOW, Limits, Need
from assemblyzero.providers import RateInfo, Window

AHEAD = 120.0  # what lease_record passes as `ahead` (LEASE_TTL)


def fresh() -> dict[str, Any]:
    return pacing.fresh()


def held(pace: dict[str, Any], dimension: str, limits: Limits, now: float) -> float:
    return pacing.levels(pace, limits, now)[dimension][0]


# --------------------------------------------------------------------------- buckets


def test_a_fresh_bucket_is_full() -> None:
    limits = Limits(rpm=60, tpm=40_000)
    assert pacing.levels(fresh(), limits, T0) == {"requests": (60, 60), "tokens": (40_000, 40_000)}
    assert pacing.wait_for(fresh(), limits, Need(1, 30_000, 10_000), T0) == 0


def test_refill_is_continuous_at_limit_per_minute_and_capped_at_the_limit() -> None:
    pace, limits = fresh(), Limits(rpm=60)
    pace["buckets"]["requests"] = [0.0, T0]
    assert pacing.level(pace, "requests", 60, T0) == 0
    assert pacing.level(pace, "requests", 60, T0 + 0.5) == pytest.approx(0.5)
    assert pacing.level(pace, "requests", 60, T0 + 30) == pytest.approx(30)
    assert pacing.level(pace, "requests", 60, T0 + 600) == 60  # never above one minute's
    assert pacing.level(pace, "requests", 60, T0 - 5) == 0  # a clock behind: no refill
    assert held(pace, "requests", limits, T0 + 12) == pytest.approx(12)


def test_reserve_grants_and_debits_every_limited_dimension() -> None:
    pace = fresh()
    limits = Limits(rpm=10, tpm=1000, input_tpm=800, output_tpm=500)
    assert pacing.reserve(pace, limits, Need(1, 300, 200), T0) == 0
    assert pacing.levels(pace, limits, T0) == {
        "requests": (9, 10), "tokens": (500, 1000), "input": (500, 800), "output": (300, 500)}


def test_a_dimension_without_a_limit_is_not_counted() -> None:
    pace = fresh()
    assert pacing.reserve(pace, Limits(rpm=10), Need(1, 10**8, 10**8), T0) == 0
    assert set(pace["buckets"]) == {"requests"}
    assert pacing.reserve(pace, Limits(), Need(), T0) == 0  # unlimited: always granted


def test_reserve_answers_the_exact_wait_and_takes_nothing() -> None:
    pace, limits = fresh(), Limits(rpm=60, tpm=6000)
    pace["buckets"] = {"requests": [0.25, T0], "tokens": [1000.0, T0]}
    before = json.loads(json.dumps(pace))
    # requests: 0.75 short at 1/s -> 0.75 s; tokens: admitted on the input, 2000: 1000
    # short at 100/s -> 10 s (the output is spent as it is written)
    assert pacing.reserve(pace, limits, Need(1, 2000, 1000), T0) == pytest.approx(10)
    assert pace == before
    assert pacing.reserve(pace, limits, Need(1, 0, 0), T0) == pytest.approx(0.75)
    assert pace == before
    assert pacing.reserve(pace, limits, Need(1, 0, 0), T0 + 0.75) == 0


def test_a_need_above_the_limit_waits_for_a_full_bucket_not_for_ever() -> None:
    pace, limits = fresh(), Limits(tpm=1000)
    pace["buckets"]["tokens"] = [400.0, T0]
    wait = pacing.reserve(pace, limits, Need(1, 5000, 0), T0)
    assert wait == pytest.approx(600 * WINDOW / 1000)  # until full: 36 s, not 276 s
    assert pacing.reserve(pace, limits, Need(1, 5000, 0), T0 + wait) == 0
    assert held(pace, "tokens", limits, T0 + wait) == pytest.approx(-4000)  # a debt


def test_tokens_are_input_plus_output() -> None:
    assert Need(1, 300, 200).of("tokens") == 500
    pace, limits = fresh(), Limits(tpm=1000)
    assert pacing.reserve(pace, limits, Need(1, 300, 200), T0) == 0
    assert held(pace, "tokens", limits, T0) == 500


def test_settle_returns_what_was_reserved_but_not_used() -> None:
    pace, limits = fresh(), Limits(tpm=1000, output_tpm=1000)
    need = Need(1, 100, 800)
    pacing.reserve(pace, limits, need, T0)
    pacing.settle(pace, limits, need, Need(1, 100, 200), "draft", T0)
    assert held(pace, "tokens", limits, T0) == 700
    assert held(pace, "output", limits, T0) == 800


def test_settle_never_fills_a_bucket_above_its_limit() -> None:
    pace, limits = fresh(), Limits(tpm=1000)
    pacing.reserve(pace, limits, Need(1, 0, 100), T0)
    pacing.settle(pace, limits, Need(1, 0, 900), Need(1, 0, 0), "draft", T0)
    assert held(pace, "tokens", limits, T0) == 1000


def test_overuse_is_a_debt_that_delays_the_next_reserve_by_the_right_time() -> None:
    pace, limits = fresh(), Limits(tpm=600)  # 10 tokens a second
    need = Need(1, 100, 100)
    assert pacing.reserve(pace, limits, need, T0) == 0
    pacing.settle(pace, limits, need, Need(1, 100, 700), "draft", T0)  # 600 more than reserved
    assert held(pace, "tokens", limits, T0) == pytest.approx(-200)
    # the next is admitted on its 100 input tokens: 300 short at 10/s
    assert pacing.reserve(pace, limits, need, T0) == pytest.approx(30)
    assert pacing.reserve(pace, limits, need, T0 + 29.9) > 0
    assert pacing.reserve(pace, limits, need, T0 + 30) == 0


def test_settle_without_counts_changes_nothing() -> None:
    pace, limits = fresh(), Limits(tpm=1000)
    pacing.reserve(pace, limits, Need(1, 100, 100), T0)
    before = json.loads(json.dumps(pace))
    pacing.settle(pace, limits, Need(1, 100, 100), None, "draft", T0 + 5)
    assert pace == before


def test_the_output_average_is_kept_per_role_and_used_by_estimate() -> None:
    pace = fresh()
    assert pacing.estimate(4000, "review", pace) == Need(1, 1000, pacing.DEFAULT_OUTPUT["review"])
    pacing.settle(pace, Limits(), Need(), Need(1, 0, 1000), "draft", T0)
    assert pace["output_avg"] == {"draft": 1000}  # the first call is the average
    pacing.settle(pace, Limits(), Need(), Need(1, 0, 2000), "draft", T0)
    assert pace["output_avg"]["draft"] == pytest.approx(1000 + pacing.OUTPUT_AVG_WEIGHT * 1000)
    pacing.settle(pace, Limits(), Need(), Need(1, 0, 50), "review", T0)
    pacing.settle(pace, Limits(), Need(), Need(1, 0, 50), "not-a-role", T0)
    assert set(pace["output_avg"]) == {"draft", "review"}
    drafted = 1000 + pacing.OUTPUT_AVG_WEIGHT * 1000
    assert pacing.estimate(10, "draft", pace).output == pytest.approx(drafted)
    assert pacing.estimate(10, "revise", pace).output == pytest.approx(drafted)  # as drafts
    assert pacing.estimate(10, "review", pace).output == 50
    assert pacing.estimate(10, "draft", pace, max_output=100).output == 100  # the call's cap


# --------------------------------------------------------------------------- learn, empty


def test_a_learned_limit_tightens_a_configured_ceiling() -> None:
    pace = fresh()
    pacing.learn(pace, RateInfo(requests=Window(limit=30)), Limits(rpm=60), T0)
    assert pacing.limits_of(pace, Limits(rpm=60)).rpm == 30
    pacing.learn(pace, RateInfo(requests=Window(limit=500)), Limits(rpm=60), T0)
    assert pacing.limits_of(pace, Limits(rpm=60)).rpm == 60  # never loosens our ceiling


def test_a_learned_limit_is_used_alone_when_none_is_configured() -> None:
    pace = fresh()
    pacing.learn(pace, RateInfo(tokens=Window(limit=40_000), output_tokens=Window(limit=8000)),
                 Limits(), T0)
    assert pacing.limits_of(pace, Limits()) == Limits(tpm=40_000, output_tpm=8000)
    assert pacing.wait_for(pace, Limits(), Need(1, 0, 9000), T0) == 0  # full, capped need


@pytest.mark.parametrize("said", [0, -5, math.nan, math.inf, 1e300, True, "60"])
def test_a_limit_out_of_range_in_the_headers_is_not_learned(said: object) -> None:
    pace = fresh()
    pacing.learn(pace, RateInfo(requests=Window(limit=said)), Limits(), T0)  # type: ignore[arg-type]
    assert pace["learned"] == {}


def test_remaining_lowers_the_level_but_never_raises_it() -> None:
    pace, limits = fresh(), Limits(rpm=60)
    pacing.learn(pace, RateInfo(requests=Window(remaining=10)), limits, T0)
    assert held(pace, "requests", limits, T0) == 10
    pacing.learn(pace, RateInfo(requests=Window(remaining=50)), limits, T0)
    assert held(pace, "requests", limits, T0) == 10
    for hostile in (-1, math.nan, math.inf, "5", None):
        pacing.learn(pace, RateInfo(requests=Window(remaining=hostile)), limits, T0)  # type: ignore[arg-type]
        assert held(pace, "requests", limits, T0) == 10


def test_remaining_of_an_unlimited_dimension_sets_no_bucket() -> None:
    pace = fresh()
    pacing.learn(pace, RateInfo(tokens=Window(remaining=10)), Limits(rpm=60), T0)
    assert pace["buckets"] == {}
    pacing.learn(pace, None, Limits(rpm=60), T0)
    assert pace == fresh()


def test_empty_after_a_429_holds_one_request_when_the_rest_ends_and_keeps_a_debt() -> None:
    pace, limits = fresh(), Limits(rpm=60, tpm=1000)
    pacing.empty(pace, limits, T0, T0 + 5)  # rests 5 s: 1 request/s refill
    assert held(pace, "requests", limits, T0) == -4
    assert held(pace, "requests", limits, T0 + 5) == 1  # one call when the rest ends
    assert held(pace, "tokens", limits, T0) == 1000  # only the request bucket
    pace["buckets"]["requests"] = [-30.0, T0]
    pacing.empty(pace, limits, T0, T0 + 5)
    assert held(pace, "requests", limits, T0) == -30  # a deeper debt is kept
    unlimited = fresh()
    pacing.empty(unlimited, Limits(), T0, T0 + 5)
    assert unlimited == fresh()


# --------------------------------------------------------------------------- checked


def test_checked_keeps_a_good_record_as_it_is() -> None:
    raw = {"buckets": {"requests": [3.5, T0 - 10], "tokens": [-200.0, T0]},
           "learned": {"requests": 30.0}, "output_avg": {"draft": 1800.0, "review": 0}}
    pace, problems = pacing.checked(raw, T0, AHEAD)
    assert pace == raw
    assert problems == []
    assert pacing.checked(None, T0, AHEAD) == (fresh(), [])


@pytest.mark.parametrize("value", [
    [math.nan, T0], [math.inf, T0], [1e300, T0], [-1e300, T0], [10**400, T0], ["3", T0],
    [True, T0], [3.0], [3.0, T0, 1], [], "3", None, {"level": 3}, [3.0, T0 + AHEAD + 1],
    [3.0, math.nan], [3.0, math.inf], [3.0, "now"], [3.0, None],
])
def test_a_hostile_bucket_is_reset_with_a_message(value: object) -> None:
    pace, problems = pacing.checked({"buckets": {"requests": value}}, T0, AHEAD)
    assert pace["buckets"] == {}  # full again, as if new
    assert problems == ["pace bucket 'requests' is not [level, time] in range; reset"]


def test_a_bucket_time_far_in_the_future_would_never_refill_so_is_reset() -> None:
    pace, problems = pacing.checked({"buckets": {"requests": [-5.0, T0 + 10**9]}}, T0, AHEAD)
    assert pace["buckets"] == {} and len(problems) == 1
    assert pacing.wait_for(pace, Limits(rpm=60), Need(), T0) == 0


def test_unknown_buckets_learned_and_averages_out_of_range_are_dropped() -> None:
    raw = {"buckets": {"gpu": [1.0, T0]},
           "learned": {"requests": 0, "tokens": 1e300, "gpu": 5, "input": math.nan},
           "output_avg": {"draft": -1, "review": "600", "chat": 10, "revise": math.inf}}
    pace, problems = pacing.checked(raw, T0, AHEAD)
    assert pace == fresh()
    assert problems.count("pace has an unknown bucket; dropped") == 1
    assert problems.count("pace has a learned limit out of range; dropped") == 4
    assert problems.count("pace has an average output out of range; dropped") == 4


@pytest.mark.parametrize("raw", ["pace", 3, [1, 2], True])
def test_a_pace_that_is_no_object_is_reset(raw: object) -> None:
    assert pacing.checked(raw, T0, AHEAD) == (fresh(), ["pace is not an object; reset"])


@pytest.mark.parametrize("raw", [{"buckets": [1]}, {"learned": "x"}, {"output_avg": 5},
                                 {"buckets": None, "learned": None, "output_avg": None}])
def test_parts_that_are_no_objects_are_ignored(raw: dict[str, object]) -> None:
    pace, _ = pacing.checked(raw, T0, AHEAD)
    assert pace == fresh()


json_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from([*pacing.DIMENSIONS, *pacing.ROLES, "buckets", "learned",
                         "output_avg", "x"]), inner, max_size=5),
    max_leaves=20)


@settings(max_examples=120, deadline=None)
@given(raw=json_ish, now=st.floats(min_value=0, max_value=4e9))
def test_checked_never_raises_and_its_result_is_in_range(raw: object, now: float) -> None:
    pace, problems = pacing.checked(raw, now, AHEAD)
    assert all(isinstance(p, str) for p in problems)
    for dimension, (level, at) in pace["buckets"].items():
        assert dimension in pacing.DIMENSIONS
        assert math.isfinite(level) and abs(level) <= LIMIT_MAX
        assert math.isfinite(at) and at <= now + AHEAD
    assert all(0 < v <= LIMIT_MAX for v in pace["learned"].values())
    assert all(0 <= v <= LIMIT_MAX and r in pacing.ROLES for r, v in pace["output_avg"].items())
    # whatever survived can be paced on without an error or a non-finite wait
    limits = Limits(rpm=1, tpm=LIMIT_MAX, input_tpm=7, output_tpm=1e6)
    wait = pacing.wait_for(pace, limits, pacing.estimate(100, "draft", pace), now)
    assert math.isfinite(wait) and wait >= 0
    pacing.reserve(pace, limits, Need(1, 5, 5), now)
    json.dumps(pace, allow_nan=False)


# --------------------------------------------------------------------------- Limits


def test_limits_under_takes_the_tighter_of_each_dimension() -> None:
    ours = Limits(rpm=60, tpm=40_000)
    said = Limits(rpm=30, tpm=90_000, output_tpm=8000)
    assert ours.under(said) == Limits(rpm=30, tpm=40_000, output_tpm=8000)
    assert said.under(ours) == ours.under(said)
    assert Limits().under(Limits()) == Limits()
    assert not Limits() and Limits(input_tpm=1)


def test_limits_from_json_leaves_out_what_is_no_limit() -> None:
    raw = {"rpm": 50, "tpm": 0, "input_tpm": "1000", "output_tpm": math.inf, "other": 3}
    assert Limits.from_json(raw) == Limits(rpm=50)
    assert Limits.from_json({"rpm": True, "tpm": 1e300}) == Limits()
    assert Limits.from_json([50]) == Limits()
    assert Limits.from_json(None) == Limits()
    limits = Limits(rpm=60, tpm=40_000, input_tpm=0.5, output_tpm=8000)
    assert Limits.from_json(json.loads(json.dumps(limits.to_json()))) == limits


def test_limits_describe() -> None:
    assert Limits(rpm=60, tpm=40_000).describe() == "60 rpm, 40,000 tpm"
    assert Limits(input_tpm=2.5, output_tpm=1e6).describe() == "2.5 input tpm, 1,000,000 output tpm"
    assert Limits().describe() == ""


def test_shown_floors_each_bucket_and_shows_a_debt_as_zero() -> None:
    found = {"requests": (12.9, 60.0), "tokens": (-300.0, 40_000.0), "output": (5.0, 8000.0)}
    assert pacing.shown(found) == "12/60 requests, 0/40,000 tokens, 5/8,000 output tokens"


# --------------------------------------------------------------------------- credentials

ENV = "AZ_TEST_PACE_KEY"
SECRET = "sk-ant-api03-" + "Q" * 40


def write(path: Path, entries: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps({"credentials": entries}), encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def creds_path(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV, SECRET)
    return isolated_home / "credentials.json"


def entry(**more: object) -> dict[str, object]:
    return {"name": "team-a", "provider": "anthropic", "key_env": ENV, **more}


@pytest.mark.parametrize("field", pacing.PACE_FIELDS)
@pytest.mark.parametrize("value", [1, 0.5, 50, 40_000.0, LIMIT_MAX])
def test_each_limit_field_accepts_a_positive_number(creds_path: Path, field: str,
                                                    value: float) -> None:
    write(creds_path, [entry(**{field: value})])
    cred = credentials.load(creds_path).entries[0]
    assert cred.limits == Limits(**{field: float(value)})
    assert isinstance(getattr(cred.limits, field), float)


def test_limits_are_absent_unless_given(creds_path: Path) -> None:
    write(creds_path, [entry(), entry(name="team-b", rpm=60, tpm=40_000)])
    first, second = credentials.load(creds_path).entries
    assert first.limits == Limits() and not first.limits
    assert second.limits == Limits(rpm=60, tpm=40_000)


@pytest.mark.parametrize("field", pacing.PACE_FIELDS)
@pytest.mark.parametrize("value", [0, -1, -0.5, True, False, "60", SECRET, [60], {"n": 60},
                                   1e9 + 1, 1e300, pytest.param(10**400, id="huge-int")])
def test_each_limit_field_refuses_what_is_no_positive_count(creds_path: Path, field: str,
                                                            value: object) -> None:
    """Named by entry and field; never quoting a secret (the entry's own, or one pasted
    as the value)."""
    literal = {"name": "team-b", "provider": "anthropic", "key": SECRET, field: value}
    write(creds_path, [entry(), literal])
    with pytest.raises(CredentialError) as caught:
        credentials.load(creds_path)
    message = str(caught.value)
    assert "entry 2" in message and f"'{field}'" in message
    assert SECRET not in message and "QQQQ" not in message


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinite_limits_are_refused(creds_path: Path, text: str) -> None:
    creds_path.write_text('{"credentials": [{"name": "team-a", "provider": "anthropic", '
                          f'"key_env": "{ENV}", "tpm": {text}}}]}}', encoding="utf-8")
    with pytest.raises(CredentialError, match=r"entry 1: 'tpm' must be a number from 0.01"):
        credentials.load(creds_path)


def test_a_call_is_admitted_while_its_output_bucket_is_not_in_debt() -> None:
    pace, limits = fresh(), Limits(output_tpm=600)  # 10 tokens a second
    pace["buckets"]["output"] = [5.0, T0]
    assert pacing.reserve(pace, limits, Need(1, 0, 2000), T0) == 0  # a 2000 estimate
    assert held(pace, "output", limits, T0) == pytest.approx(-1995)  # taken all the same
    assert pacing.reserve(pace, limits, Need(1, 0, 10), T0) == pytest.approx(199.6)
