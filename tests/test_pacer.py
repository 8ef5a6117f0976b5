"""The worker's pacer (keys/pacer.py) over the lease store's shared budget (keys/leases.py),
and where the rest of the tool meets it: the engine's call loop, Stop.pause, the result's
key_use, the pool's plan and the key gate.

Time is the `clock` injection of LeaseStore and SharedPacer (moved by hand); a wait is a
recording `pause` that moves that clock. Processes only where sharing across them is the
point (the concurrent reserve), synchronised on a common start event.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import T0, Clock, make_workspace
from test_engine import APPROVED, ITEM, Drafter, Reviewer, run, workflow

from assemblyzero.constants import BACKOFF_JITTER, COOLDOWN_MAX, EXIT_RATE_LIMITED, WAITS_MAX
from assemblyzero.keys import leases, pacer, pacing
from assemblyzero.keys.credentials import Credential, CredentialFile
from assemblyzero.keys.gate import KeyGate, Refusal
from assemblyzero.keys.leases import Lease, LeaseStore
from assemblyzero.keys.pacer import (
    RETRIES_429_MAX,
    SWITCH_COST,
    WAIT_429_MAX,
    KeyMoved,
    KeyPlan,
    Other,
    Pacer,
    SharedPacer,
    Ticket,
    Use,
)
from assemblyzero.keys.pacing import WINDOW, Limits, Need
from assemblyzero.keys.pool import Grant, Pool
from assemblyzero.providers import (
    ModelReply,
    ModelRequest,
    ProviderKey,
    RateInfo,
    RateLimited,
    Window,
)
from assemblyzero.results import Status, WorkerResult
from assemblyzero.workflow.interrupt import Interrupted, Stop
from assemblyzero.workspace import Workspace

KEY, OTHER = "team-a", "team-b"
ONE = Need(1, 0, 0)  # one request, no tokens


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(root: Path, clock: Clock) -> LeaseStore:
    return LeaseStore(root, clock=clock)


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 429's rest is exactly what the server asked (the 0-20 % spread off)."""
    monkeypatch.setattr(leases.random, "uniform", lambda low, high: 0.0)


def write_record(root: Path, name: str, pace: dict[str, Any], **more: Any) -> None:
    path = root / "leases" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"holders": [], "pace": pace, **more}), encoding="utf-8")


def grants(store: LeaseStore, limits: Limits, need: Need = ONE, most: int = 1000) -> int:
    """How many reserves are granted now, one after another."""
    n = 0
    while n < most and store.reserve(KEY, limits, need) == 0:
        n += 1
    return n


# --------------------------------------------------------------------------- LeaseStore


def test_two_stores_on_one_directory_share_one_budget(root: Path, clock: Clock) -> None:
    first, second = LeaseStore(root, clock=clock), LeaseStore(root, clock=clock)
    limits = Limits(rpm=4)
    assert [first.reserve(KEY, limits, ONE) for _ in range(2)] == [0, 0]
    assert [second.reserve(KEY, limits, ONE) for _ in range(2)] == [0, 0]
    assert first.reserve(KEY, limits, ONE) == pytest.approx(WINDOW / 4)
    assert second.reserve(KEY, limits, ONE) == pytest.approx(WINDOW / 4)
    clock.now += WINDOW / 4
    assert second.reserve(KEY, limits, ONE) == 0
    assert first.reserve(KEY, limits, ONE) > 0


def test_settle_gives_tokens_back_to_the_shared_budget(root: Path, clock: Clock) -> None:
    first, second = LeaseStore(root, clock=clock), LeaseStore(root, clock=clock)
    limits, need = Limits(tpm=1000), Need(1, 600, 300)  # admitted on its input
    assert first.reserve(KEY, limits, need) == 0
    assert second.reserve(KEY, limits, need) > 0  # 100 left of the 900 taken
    first.settle(KEY, limits, need, Need(1, 100, 0), "draft", None)
    assert second.reserve(KEY, limits, need) == 0
    assert second.peek(KEY)["pace"]["output_avg"] == {"draft": 0}


def test_settle_learns_the_headers_and_ends_the_429_streak(store: LeaseStore) -> None:
    store.refused(KEY, Limits(), None, 0.1)
    assert store.peek(KEY)["streak"] == 1
    info = RateInfo(requests=Window(limit=2, remaining=0))
    store.settle(KEY, Limits(rpm=60), ONE, Need(1, 0, 0), "draft", info)
    state = store.peek(KEY)
    assert state["streak"] == 0 and state["pace"]["learned"] == {"requests": 2}


def test_a_cooldown_makes_reserve_answer_at_least_the_rest(store: LeaseStore,
                                                           clock: Clock) -> None:
    until = store.cool_down(KEY, 10)
    rest = until - clock.now
    assert 10 <= rest <= 12
    assert store.reserve(KEY, Limits(rpm=60), ONE) == pytest.approx(rest)
    assert store.reserve(KEY, Limits(), ONE) == pytest.approx(rest)  # unlimited: the rest still
    clock.now = until
    assert store.reserve(KEY, Limits(rpm=60), ONE) == 0


def test_a_rest_shorter_than_the_bucket_refill_answers_the_refill(store: LeaseStore,
                                                                  clock: Clock) -> None:
    limits = Limits(rpm=6)
    assert grants(store, limits) == 6
    until = store.cool_down(KEY, 2)  # the bucket needs 10 s, the rest ends before
    assert store.reserve(KEY, limits, ONE) == pytest.approx(10)
    clock.now = until
    assert store.reserve(KEY, limits, ONE) == pytest.approx(10 - (until - T0))


def test_refused_rests_the_key_for_every_process(root: Path, clock: Clock) -> None:
    first, second = LeaseStore(root, clock=clock), LeaseStore(root, clock=clock)
    until = first.refused(KEY, Limits(rpm=60), None, 5)
    assert 5 <= until - clock.now <= 6
    assert second.reserve(KEY, Limits(rpm=60), ONE) >= 5
    assert second.peek(KEY)["streak"] == 1


def test_after_a_429_the_calls_go_one_at_a_time_at_the_refill_rate(store: LeaseStore,
                                                                   clock: Clock,
                                                                   no_jitter: None) -> None:
    limits = Limits(rpm=6)  # one request every 10 s
    until = store.refused(KEY, limits, None, 4)
    assert until == pytest.approx(clock.now + 4)
    clock.now = until
    assert grants(store, limits) == 1  # the rest's end: one, not a refilled bucket
    assert store.reserve(KEY, limits, ONE) == pytest.approx(10)
    clock.now += 10
    assert grants(store, limits) == 1


def test_after_a_429_with_its_rest_spread_the_calls_still_go_one_at_a_time(
        store: LeaseStore, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leases.random, "uniform", lambda low, high: high)
    limits = Limits(rpm=60)
    until = store.refused(KEY, limits, None, 10)
    assert until == pytest.approx(clock.now + 10 * (1 + BACKOFF_JITTER))
    clock.now = until
    assert grants(store, limits) == 1


def test_after_a_429_without_retry_after_the_calls_go_one_at_a_time(
        store: LeaseStore, root: Path, clock: Clock, no_jitter: None) -> None:
    write_record(root, KEY, pacing.fresh(), streak=5)  # the backoff is at its 60 s cap
    limits = Limits(rpm=60)
    until = store.refused(KEY, limits, None, None)
    assert until == pytest.approx(clock.now + 60)
    clock.now = until
    assert grants(store, limits) <= 2


def test_a_huge_retry_after_never_delays_the_key_beyond_a_days_rest(store: LeaseStore,
                                                                    clock: Clock) -> None:
    until = store.refused(KEY, Limits(rpm=60), None, 1e6)
    assert until <= clock.now + COOLDOWN_MAX
    assert store.reserve(KEY, Limits(rpm=60), ONE) <= COOLDOWN_MAX + WINDOW


def test_a_hostile_pace_record_is_reset_with_a_warning_and_paced_as_new(
        store: LeaseStore, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_record(root, KEY, {"buckets": {"requests": [-1e300, T0 + 10**9], "gpu": [1, 2]},
                             "learned": {"requests": float("nan")}, "output_avg": "x"})
    assert store.reserve(KEY, Limits(rpm=60), ONE) == 0
    err = capsys.readouterr().err
    assert "pace bucket 'requests'" in err and "unknown bucket" in err
    assert store.peek(KEY)["pace"]["learned"] == {}


# --------------------------------------------------------------------------- processes

PROCESSES, RPM, RUN_FOR = 6, 30, 0.3


def _reserve_until(root: str, start: Any, deadline: Any, out: Any) -> None:
    """A child: reserve one request from KEY until `deadline`; put the time of each grant."""
    seen = [0.0]

    def clock() -> float:
        seen[0] = time.time()
        return seen[0]

    store = LeaseStore(Path(root), clock=clock)
    start.wait()
    granted = []
    while time.time() < deadline.value:
        wait = store.reserve(KEY, Limits(rpm=RPM), ONE)
        if wait == 0:
            granted.append(seen[0])  # the time the bucket was read at, under the lock
        else:
            assert wait > 0
            time.sleep(min(wait, 0.01))
    out.put(granted)


@pytest.mark.e2e
def test_processes_reserving_at_once_never_take_more_than_the_budget(root: Path) -> None:
    context = multiprocessing.get_context("fork")
    start, out, deadline = context.Event(), context.Queue(), context.Value("d", 0.0)
    children = [context.Process(target=_reserve_until, args=(str(root), start, deadline, out))
                for _ in range(PROCESSES)]
    for child in children:
        child.start()
    deadline.value = time.time() + RUN_FOR  # the children's start-up is not counted
    start.set()
    times = sorted(t for _ in children for t in out.get(timeout=30))
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    assert len(times) >= RPM  # the full bucket was granted, none lost
    first = times[0]
    for n, at in enumerate(times, 1):  # the n-th grant: within the bucket plus its refill
        assert n <= RPM + (at - first) * RPM / WINDOW + 1e-3


# --------------------------------------------------------------------------- SharedPacer


class Recorder:
    """A pause that records each wait and moves the fake clock by it."""

    def __init__(self, clock: Clock, part: float = 1.0) -> None:
        self.clock, self.part, self.waits = clock, part, list[float]()

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.now += seconds * self.part


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    """The pacer measures its waits on time.monotonic: the fake clock's too."""
    monkeypatch.setattr(pacer, "time", SimpleNamespace(monotonic=clock, time=clock,
                                                       sleep=time.sleep))


def shared(store: LeaseStore, clock: Clock, limits: Limits, *others: Other,
           part: float = 1.0) -> tuple[SharedPacer, Recorder, list[str]]:
    lines: list[str] = []
    pause = Recorder(clock, part)
    paced = SharedPacer(store=store, plans={KEY: KeyPlan(KEY, limits, others)}, pause=pause,
                        say=lines.append, clock=clock)
    return paced, pause, lines


def test_before_waits_the_computed_time_and_counts_it(store: LeaseStore, clock: Clock,
                                                      fake_time: None) -> None:
    paced, pause, lines = shared(store, clock, Limits(rpm=60))
    assert grants(store, Limits(rpm=60)) == 60
    ticket = paced.before(KEY, "draft", 400)
    assert pause.waits == [pytest.approx(1.0)]
    assert paced.use[KEY] == Use(requests=1, waited=pytest.approx(1.0))
    assert lines == []  # a wait of 1 s is not said
    assert ticket.key == KEY and ticket.sent == clock.now
    assert ticket.need == Need(1, 100, pacing.DEFAULT_OUTPUT["draft"])
    paced.before(KEY, "draft", 400)
    assert paced.use_json() == {KEY: {"requests": 2, "waited": 2.0, "rate_limited": 0}}


def test_a_wait_above_a_second_is_said_once(store: LeaseStore, clock: Clock,
                                            fake_time: None) -> None:
    limits = Limits(rpm=6)
    paced, pause, lines = shared(store, clock, limits, part=0.5)  # each pause ends halfway
    assert grants(store, limits) == 6
    paced.before(KEY, "review", 0)
    assert len(pause.waits) > 1 and pause.waits[0] == pytest.approx(10)
    assert paced.use[KEY].waited == pytest.approx(10, abs=0.01)
    assert len(lines) == 1
    assert lines[0].startswith(f"review: waiting 10.0s for {KEY}'s budget (0/6 requests")


def test_a_wait_longer_than_the_429_limit_ends_the_attempt_to_move(store: LeaseStore,
                                                                  root: Path, clock: Clock,
                                                                  fake_time: None) -> None:
    write_record(root, KEY, pacing.fresh(), cooldown_until=T0 + WAIT_429_MAX * 2.5)
    paced, pause, _ = shared(store, clock, Limits(rpm=60))
    with pytest.raises(KeyMoved) as moved:
        paced.before(KEY, "draft", 0)
    assert pause.waits == [] and moved.value.credential == KEY
    assert paced.rested and "longer than 300s" in str(moved.value)
    assert paced.use_json()[KEY]["rate_limited"] == 0  # a move, not a 429


def test_after_settles_the_real_usage_and_learns_the_headers(store: LeaseStore,
                                                             clock: Clock) -> None:
    limits = Limits(tpm=10_000)
    paced, _, _ = shared(store, clock, limits)
    ticket = paced.before(KEY, "draft", 4000)  # 1000 in + 2000 out reserved
    info = RateInfo(tokens=Window(limit=9000))
    paced.after(ticket, ModelReply("ok", input_tokens=1000, output_tokens=500, limits=info))
    pace = store.peek(KEY)["pace"]
    assert pace["learned"] == {"tokens": 9000}
    assert pace["output_avg"] == {"draft": 500}
    # 3000 reserved, 1500 used: 1500 back, under the learned 9000
    assert pacing.levels(pace, limits, clock.now)["tokens"] == (8500, 9000)


def refusal(retry_after: float | None = 5, **info: Any) -> RateLimited:
    return RateLimited("HTTP 429", retry_after, RateInfo(**info) if info else None)


def test_a_429_is_waited_out_on_the_same_key_when_no_other_is_free_sooner(
        store: LeaseStore, clock: Clock) -> None:
    paced, _, lines = shared(store, clock, Limits(rpm=60))
    ticket = paced.before(KEY, "draft", 0)
    assert paced.refused(ticket, refusal(5)) is True
    assert paced.use[KEY].rate_limited == 1
    assert lines[-1].startswith(f"draft: 429 on {KEY}; waiting ")
    assert store.reserve(KEY, Limits(rpm=60), ONE) >= 5  # rested for every process


def test_a_429_moves_to_another_key_with_a_free_slot_and_budget_sooner(
        store: LeaseStore, clock: Clock, no_jitter: None) -> None:
    paced, _, lines = shared(store, clock, Limits(rpm=60), Other(OTHER, 1, Limits(rpm=60)))
    ticket = paced.before(KEY, "draft", 0)
    assert paced.refused(ticket, refusal(5)) is False
    assert lines[-1] == f"draft: 429 on {KEY}, which rests 5.0s; {OTHER} is free sooner, " \
                        "so the item moves there"


@pytest.mark.parametrize(("ready", "moves"), [(5 - SWITCH_COST - 0.1, True),
                                              (5 - SWITCH_COST + 0.1, False)])
def test_the_other_keys_budget_must_be_ready_sooner_than_the_rest_less_the_switch(
        store: LeaseStore, root: Path, clock: Clock, no_jitter: None, ready: float,
        moves: bool) -> None:
    # OTHER at rpm=60 refills 1 request a second: a level of 1 - ready is ready in `ready` s
    write_record(root, OTHER, {"buckets": {"requests": [1 - ready, T0]}})
    paced, _, _ = shared(store, clock, Limits(rpm=60), Other(OTHER, 1, Limits(rpm=60)))
    assert paced.refused(paced.before(KEY, "draft", 0), refusal(5)) is not moves


def test_an_other_key_resting_longer_is_no_move(store: LeaseStore, root: Path, clock: Clock,
                                                no_jitter: None) -> None:
    write_record(root, OTHER, pacing.fresh(), cooldown_until=T0 + 30)
    paced, _, _ = shared(store, clock, Limits(rpm=60), Other(OTHER, 1, Limits()))
    assert paced.refused(paced.before(KEY, "draft", 0), refusal(5)) is True


def test_an_other_key_with_every_slot_held_is_no_move(root: Path, clock: Clock) -> None:
    holding = LeaseStore(root, clock=clock)
    lease = holding.acquire(OTHER, 1, "run", "7")
    assert isinstance(lease, Lease)
    store = LeaseStore(root, clock=clock)
    paced, _, _ = shared(store, clock, Limits(rpm=60), Other(OTHER, 1, Limits()))
    assert paced.refused(paced.before(KEY, "draft", 0), refusal(5)) is True
    holding.release(lease)
    assert paced.refused(Ticket(KEY, "draft", Need(), clock.now), refusal(5)) is False
    with pytest.raises(KeyMoved):  # and a wait for the rest moves too, the other being free
        paced.before(KEY, "draft", 0)


def test_a_daily_quota_ends_the_attempt_and_rests_the_key_until_its_reset(
        store: LeaseStore, clock: Clock) -> None:
    paced, _, lines = shared(store, clock, Limits(rpm=60))
    ticket = paced.before(KEY, "draft", 0)
    assert paced.refused(ticket, refusal(10, daily_quota="RequestsPerDay")) is False
    rest = store.peek(KEY)["cooldown_until"] - clock.now
    assert rest == pytest.approx(min(pacing.daily_reset(clock.now), COOLDOWN_MAX))
    assert "daily quota RequestsPerDay is used up" in lines[-1]


def test_more_than_the_retries_in_a_row_end_the_attempt(store: LeaseStore,
                                                        clock: Clock) -> None:
    paced, _, lines = shared(store, clock, Limits(rpm=60))
    ticket = paced.before(KEY, "draft", 0)
    answers = [paced.refused(ticket, refusal(0.1)) for _ in range(RETRIES_429_MAX + 1)]
    assert answers == [True] * RETRIES_429_MAX + [False]
    assert f"{RETRIES_429_MAX + 1} 429s in a row" in lines[-1]
    assert paced.use[KEY].rate_limited == RETRIES_429_MAX + 1


def test_an_answered_call_starts_the_count_of_429s_in_a_row_again(store: LeaseStore,
                                                                  clock: Clock) -> None:
    paced, _, _ = shared(store, clock, Limits(rpm=60))
    ticket = paced.before(KEY, "draft", 0)
    assert all(paced.refused(ticket, refusal(0.1)) for _ in range(RETRIES_429_MAX))
    paced.after(ticket, ModelReply("ok"))
    assert all(paced.refused(ticket, refusal(0.1)) for _ in range(RETRIES_429_MAX))


def test_a_rest_longer_than_the_wait_limit_ends_the_attempt(store: LeaseStore,
                                                            clock: Clock) -> None:
    paced, _, lines = shared(store, clock, Limits(rpm=60))
    ticket = paced.before(KEY, "draft", 0)
    assert paced.refused(ticket, refusal(WAIT_429_MAX + 1)) is False
    assert f"longer than {WAIT_429_MAX:.0f}s" in lines[-1]


def test_a_key_without_a_plan_is_only_counted(store: LeaseStore, clock: Clock) -> None:
    paced, pause, _ = shared(store, clock, Limits(rpm=1))
    ticket = paced.before("unplanned", "draft", 0)
    assert paced.refused(ticket, refusal(1)) is False
    assert paced.before(None, "draft", 0).key is None
    assert paced.use_json() == {"unplanned": {"requests": 1, "waited": 0.0, "rate_limited": 0}}
    assert pause.waits == [] and not (store.dir / "unplanned.json").exists()


def test_the_base_pacer_counts_requests_and_never_retries() -> None:
    base = Pacer()
    ticket = base.before(KEY, "draft", 100)
    base.before(KEY, "review", 100)
    base.before(None, "draft", 100)
    base.after(ticket, ModelReply("ok"))
    assert base.refused(ticket, refusal(0.1)) is False
    assert base.use_json() == {KEY: {"requests": 2, "waited": 0.0, "rate_limited": 0}}


def test_a_plan_travels_as_json_and_hostile_others_are_left_out() -> None:
    plan = KeyPlan(KEY, Limits(rpm=60), (Other(OTHER, 2, Limits(tpm=1000)),))
    assert KeyPlan.from_json(KEY, json.loads(json.dumps(plan.to_json()))) == plan
    raw = {"limits": {"rpm": -1}, "others": [{"name": 3, "max_concurrent": 1},
                                             {"name": "x", "max_concurrent": "2"},
                                             {"name": "y", "max_concurrent": -4}, "z"]}
    assert KeyPlan.from_json(KEY, raw) == KeyPlan(KEY, Limits(), (Other("y", 1, Limits()),))
    assert KeyPlan.from_json(KEY, "nonsense") == KeyPlan(KEY, Limits())


# --------------------------------------------------------------------------- Stop.pause


def test_pause_returns_after_the_time() -> None:
    started = time.monotonic()
    Stop().pause(0.1)
    assert 0.1 <= time.monotonic() - started < 5
    Stop().pause(-3)  # nothing to wait


def test_pause_ends_at_once_on_a_signal() -> None:
    stop = Stop()
    timer = threading.Timer(0.05, stop.trigger, args=(15,))
    timer.start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        stop.pause(30)
    assert time.monotonic() - started < 5
    timer.join()
    with pytest.raises(Interrupted):  # a signal before the pause: no sleep at all
        stop.pause(30)


# --------------------------------------------------------------------------- the engine


class RateLimitedOnce(Drafter):
    """A keyed drafter whose first call is refused with a 429."""

    key = ProviderKey(KEY, "secret")

    def complete(self, request: ModelRequest) -> ModelReply:
        if not self.requests:
            self.requests.append(request)
            raise RateLimited("HTTP 429", 0.1)
        return super().complete(request)


class Retrying(Pacer):
    def refused(self, ticket: Any, exc: RateLimited) -> bool:
        return True


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.at(make_workspace(tmp_path / "ws", issues=[ITEM]))


def test_a_429_the_pacer_waits_out_sends_the_call_again_and_is_counted(
        ws: Workspace, tmp_path: Path) -> None:
    drafter = RateLimitedOnce()
    flow = workflow(ws, drafter, Reviewer(lambda r: APPROVED), tmp_path / "cp.db")
    flow.pacer = Retrying()
    result = run(flow)
    assert result.status is Status.DONE
    assert len(drafter.requests) == 2 and drafter.requests[0] == drafter.requests[1]
    assert result.retries == {"HTTP 429": 1}
    assert result.model_calls == 2  # the draft and the review: a refused call is none
    assert flow.pacer.use_json()[KEY]["requests"] == 2


def test_a_429_the_shared_pacer_waits_out_on_the_same_key(ws: Workspace, tmp_path: Path,
                                                          store: LeaseStore,
                                                          clock: Clock) -> None:
    drafter = RateLimitedOnce()
    flow = workflow(ws, drafter, Reviewer(lambda r: APPROVED), tmp_path / "cp.db")
    flow.pacer, pause, _ = shared(store, clock, Limits(rpm=60))
    result = run(flow)
    assert result.retries == {"HTTP 429": 1}
    assert len(pause.waits) == 1 and 0.1 <= pause.waits[0] <= 0.12  # the rest, then again
    assert flow.pacer.use_json()[KEY] == {"requests": 2, "waited": pytest.approx(0, abs=1),
                                          "rate_limited": 1}


def test_with_the_base_pacer_a_429_ends_the_attempt(ws: Workspace, tmp_path: Path) -> None:
    drafter = RateLimitedOnce()
    flow = workflow(ws, drafter, Reviewer(lambda r: APPROVED), tmp_path / "cp.db")
    with pytest.raises(RateLimited) as caught:
        run(flow)
    assert caught.value.credential == KEY
    assert len(drafter.requests) == 1
    assert "HTTP 429" not in flow.state.get("retries", {})


# --------------------------------------------------------------------------- key_use


def test_a_results_key_use_keeps_only_well_formed_entries(tmp_path: Path) -> None:
    good = {"requests": 3, "waited": 1.5, "rate_limited": 1}
    key_use = {"good": good, "negative": {**good, "requests": -1},
               "nan": {**good, "waited": float("nan")}, "bool": {**good, "rate_limited": True},
               "text": {**good, "requests": "3"}, "huge": {**good, "waited": 1e300},
               "missing": {"requests": 3, "waited": 1.5}, "list": [3, 1.5, 1], "zero":
               {"requests": 0, "waited": 0, "rate_limited": 0}}
    data = WorkerResult("lld", "1", Status.DONE).to_json()
    path = tmp_path / "result.json"
    for value, expected in ((key_use, {"good": good, "zero": key_use["zero"]}),
                            ("nonsense", {}), (None, {})):
        path.write_text(json.dumps({**data, "key_use": value}), encoding="utf-8")
        read = WorkerResult.read(path)
        assert read is not None and read.key_use == expected
    del data["key_use"]  # a result of an older release
    path.write_text(json.dumps(data), encoding="utf-8")
    assert WorkerResult.read(path).key_use == {}  # type: ignore[union-attr]


# --------------------------------------------------------------------------- waits


def test_each_wait_for_a_keys_budget_is_kept_with_its_start_and_length(
        store: LeaseStore, clock: Clock, fake_time: None) -> None:
    paced, _, _ = shared(store, clock, Limits(rpm=60))
    assert grants(store, Limits(rpm=60)) == 60
    paced.before(KEY, "draft", 0)
    assert paced.waits_json() == [{"credential": KEY, "why": "budget", "from": T0,
                                   "seconds": 1.0}]
    clock.now += 4.5  # the budget refills 4.5 requests: the next 4 go out without a wait
    for _ in range(5):
        paced.before(KEY, "review", 0)
    (first, second) = paced.waits_json()
    assert first["from"] == T0 and second["from"] == pytest.approx(T0 + 5.5)
    assert second["seconds"] == pytest.approx(0.5) and second["why"] == "budget"


def test_a_wait_cut_into_pauses_is_kept_as_one_period(store: LeaseStore, clock: Clock,
                                                     fake_time: None) -> None:
    limits = Limits(rpm=6)
    paced, pause, _ = shared(store, clock, limits, part=0.5)  # each pause ends halfway
    assert grants(store, limits) == 6
    paced.before(KEY, "review", 0)
    assert len(pause.waits) > 3
    (period,) = paced.waits_json()
    assert period["from"] == T0 and period["seconds"] == pytest.approx(10, abs=0.01)


def test_the_wait_after_a_429_is_kept_as_a_rest(store: LeaseStore, clock: Clock,
                                               fake_time: None, no_jitter: None) -> None:
    paced, _, _ = shared(store, clock, Limits(rpm=60))
    ticket = paced.before(KEY, "draft", 0)
    assert paced.waits_json() == []  # the budget was free
    assert paced.refused(ticket, refusal(5)) is True
    paced.before(KEY, "draft", 0)  # the same call again, after its rest
    (rest,) = paced.waits_json()
    assert rest["why"] == "rest" and rest["from"] == T0
    assert rest["seconds"] == pytest.approx(5, abs=0.01)


def test_an_attempt_keeps_at_most_the_cap_of_wait_periods(store: LeaseStore, clock: Clock,
                                                          fake_time: None) -> None:
    paced, _, _ = shared(store, clock, Limits(rpm=60))
    assert grants(store, Limits(rpm=60)) == 60
    for _ in range(WAITS_MAX + 20):
        paced.before(KEY, "draft", 0)  # waits 1 s, then a gap: a period of its own
        clock.now += 0.5
    assert len(paced.waits_json()) == WAITS_MAX
    assert paced.use[KEY].waited == pytest.approx(0.5 * (WAITS_MAX + 20) + 0.5, abs=0.01)


def test_a_results_waits_keep_only_well_formed_entries(tmp_path: Path) -> None:
    good = {"credential": "team-a", "why": "rest", "from": T0, "seconds": 2.5}
    bad = [{**good, "seconds": -1}, {**good, "seconds": float("nan")},
           {**good, "from": float("inf")}, {**good, "from": True}, {**good, "seconds": 1e300},
           {**good, "from": 10**400},  # valid JSON; too big for a float
           {**good, "why": "<script>"}, {**good, "credential": 7}, {**good, "credential": ""},
           {**good, "credential": "k" * 201}, {"credential": "team-a"}, "text", [1, 2], None]
    data = WorkerResult("lld", "1", Status.DONE).to_json()
    path = tmp_path / "result.json"
    for value, expected in (([good, *bad, {**good, "why": "budget"}],
                             [good, {**good, "why": "budget"}]),
                            ([good] * 10_000, [good] * WAITS_MAX),
                            ({"a": good}, []), ("nonsense", []), (None, [])):
        path.write_text(json.dumps({**data, "waits": value}), encoding="utf-8")
        read = WorkerResult.read(path)
        assert read is not None and read.waits == expected
    del data["waits"]  # a result of an older release
    path.write_text(json.dumps(data), encoding="utf-8")
    assert WorkerResult.read(path).waits == []  # type: ignore[union-attr]


# --------------------------------------------------------------------------- pool and gate


def cred(name: str, provider: str = "anthropic", **more: Any) -> Credential:
    return Credential(name, provider, key_env="X", **more)


@pytest.fixture
def pool(tmp_path: Path, store: LeaseStore, clock: Clock) -> Pool:
    entries = (cred(KEY, limits=Limits(rpm=60)),
               cred(OTHER, max_concurrent=2, limits=Limits(tpm=40_000)),
               cred("team-off", enabled=False), cred("team-nosecret"),
               cred("team-openai", "openai"), cred("team-refused"))
    secrets = {c.name: f"secret-{c.name}" for c in entries if c.name != "team-nosecret"}
    creds = CredentialFile(tmp_path / "credentials.json", entries, secrets)
    made = Pool.for_models(("anthropic:m",), store=store, creds=creds)
    assert made is not None
    made.clock = clock
    made.disable("team-refused", "refused (401/403)")
    return made


def test_a_plan_lists_the_other_usable_keys_of_the_same_provider(pool: Pool) -> None:
    assert pool.plan(KEY) == KeyPlan(KEY, Limits(rpm=60), (Other(OTHER, 2, Limits(tpm=40_000)),))
    assert pool.plan(OTHER) == KeyPlan(OTHER, Limits(tpm=40_000), (Other(KEY, 1, Limits(rpm=60)),))


def take(pool: Pool) -> Grant:
    grant = pool.take("7")
    assert isinstance(grant, Grant)
    return grant


def test_the_secrets_carry_the_plan_only_when_pacing(pool: Pool, clock: Clock) -> None:
    grant = take(pool)
    paced = KeyGate(pool, clock, pacing=True).secrets(grant)
    unpaced = KeyGate(pool, clock, pacing=False).secrets(grant)
    assert paced is not None and unpaced is not None
    name = grant.names[0]
    assert paced["pace"] == {name: pool.plan(name).to_json()}
    assert "pace" not in unpaced
    assert {k: v for k, v in paced.items() if k != "pace"} == unpaced
    assert "secret" not in json.dumps(paced["pace"])


def rate_limited(name: str, rested: bool | None) -> WorkerResult:
    retry: dict[str, Any] = {"kind": "rate_limited", "credential": name, "retry_after": 30}
    if rested is not None:
        retry["rested"] = rested
    return WorkerResult("lld", "7", Status.FAILED, retry=retry)


def test_a_429_rested_by_the_worker_is_not_rested_or_counted_again(pool: Pool, clock: Clock,
                                                                   store: LeaseStore) -> None:
    grant = take(pool)
    name = grant.names[0]
    until = store.refused(name, Limits(), None, 5)  # what the worker's pacer did
    before = store.peek(name)
    refusal = KeyGate(pool, clock).refused(grant, rate_limited(name, True), EXIT_RATE_LIMITED)
    assert refusal is not None and refusal.counted is True
    assert refusal.rest == pytest.approx(until - clock.now)
    after = store.peek(name)
    assert after["cooldown_until"] == before["cooldown_until"]
    assert after["streak"] == before["streak"]
    assert pool.stats[name].rate_limited == 0  # the worker's key_use counts it


def test_a_move_before_a_call_says_so_instead_of_a_429_and_rests_nothing(
        pool: Pool, clock: Clock, store: LeaseStore) -> None:
    grant = take(pool)
    name = grant.names[0]
    moved = rate_limited(name, True)
    assert moved.retry is not None
    moved.retry["moved"] = True
    refusal = KeyGate(pool, clock).refused(grant, moved, EXIT_RATE_LIMITED)
    assert refusal is not None and refusal.moved and refusal.counted
    assert refusal.describe().startswith(f"left {name} before its call")
    assert "429" not in refusal.describe()
    assert store.peek(name)["streak"] == 0 and pool.stats[name].rate_limited == 0
    assert "got a 429" in Refusal("rate_limited", name, 1.0).describe()  # a 429 still is


@pytest.mark.parametrize("rested", [None, False, "true", 1])
def test_a_429_not_rested_by_the_worker_rests_the_key_and_is_counted(
        pool: Pool, clock: Clock, store: LeaseStore, rested: Any) -> None:
    grant = take(pool)
    name = grant.names[0]
    refusal = KeyGate(pool, clock).refused(grant, rate_limited(name, rested), EXIT_RATE_LIMITED)
    assert refusal is not None and refusal.counted is False
    assert 30 <= refusal.rest <= 36
    assert store.peek(name)["streak"] == 1
    assert pool.stats[name].rate_limited == 1


def test_charge_adds_each_keys_use_of_this_attempt(pool: Pool, clock: Clock) -> None:
    grant = take(pool)
    name = grant.names[0]
    use = {"requests": 4, "waited": 2.5, "rate_limited": 1}
    result = WorkerResult("lld", "7", Status.DONE,
                          key_use={name: use, "not-held": use, "team-refused": use})
    gate = KeyGate(pool, clock)
    gate.charge("7", grant, result)
    gate.charge("7", grant, result)  # key_use is an attempt's own: added each time
    stats = pool.stats[name]
    assert (stats.requests, stats.waited_seconds, stats.rate_limited) == (8, 5.0, 2)
    assert pool.stats["team-refused"].requests == 0
