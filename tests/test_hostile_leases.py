"""Hostile lease files (issue 12): every number range-checked, no record blocks a key for good.

The state directory is shared: a lease file may hold anything. Real files,
real processes (pid 1, our parent, a child), real flocks; time moves only
through the LeaseStore's clock.
"""

from __future__ import annotations

import json
import math
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import T0, Clock, cli, make_workspace, summary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assemblyzero.constants import (
    BACKOFF_CAP,
    BACKOFF_JITTER,
    COOLDOWN_MAX,
    LEASE_STREAK_MAX,
    LEASE_TTL,
)
from assemblyzero.keys.lease_record import process_start
from assemblyzero.keys.leases import Busy, Lease, LeaseStore

NAME = "team-a"
HOST = socket.gethostname()



@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "state"



@pytest.fixture
def store(root: Path, clock: Clock) -> LeaseStore:
    return LeaseStore(root, clock=clock)


def write(root: Path, text: str) -> Path:
    path = root / "leases" / f"{NAME}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def record(**fields: Any) -> str:
    return json.dumps({"holders": [], **fields})  # NaN and Infinity as json.loads reads them


def on_disk(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def holder(**fields: Any) -> dict[str, Any]:
    pid = fields.get("pid", os.getpid())
    return {"token": uuid.uuid4().hex, "pid": pid, "host": HOST, "start": process_start(pid),
            "run_id": "other-run", "item": "7", "heartbeat": T0, "generation": 1, **fields}


def warnings(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def one_warning(capsys: pytest.CaptureFixture[str], path: Path, *words: str) -> str:
    [line] = warnings(capsys)
    assert line.startswith(f"warning: lease file {path}: "), line
    assert all(word in line for word in words), line
    return line


# --------------------------------------------------------------------------- streak


@pytest.mark.parametrize("streak", [1024, 10**10, "1e308", -5, "NaN", "-Infinity"])
def test_an_out_of_range_streak_is_clamped_and_the_backoff_stays_capped(
        store: LeaseStore, root: Path, clock: Clock, streak: int | str,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write(root, f'{{"holders": [], "streak": {streak}}}')
    until = store.cool_down(NAME, None)  # 2 * 2 ** 1024 overflowed: the coordinator died
    one_warning(capsys, path, "streak")
    high = (isinstance(streak, int) and streak > 0) or streak == "1e308"
    base = BACKOFF_CAP if high else 2.0
    assert base <= until - clock.now <= base * (1 + BACKOFF_JITTER)
    assert on_disk(path)["streak"] == (LEASE_STREAK_MAX if high else 1)


def test_a_long_streak_in_range_is_capped_by_the_exponent_without_a_warning(
        store: LeaseStore, root: Path, clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(root, record(streak=LEASE_STREAK_MAX))
    until = store.cool_down(NAME, None)
    assert BACKOFF_CAP <= until - clock.now <= BACKOFF_CAP * (1 + BACKOFF_JITTER)
    assert on_disk(path)["streak"] == LEASE_STREAK_MAX  # counted no further
    assert warnings(capsys) == []


# --------------------------------------------------------------------------- cooldown


@pytest.mark.parametrize("until", ["1e18", "1e400", "Infinity", "NaN", str(T0 + COOLDOWN_MAX + 5),
                                   '"soon"', "[1]", "true"])
def test_a_cooldown_beyond_a_day_or_not_a_time_is_reset(
        store: LeaseStore, root: Path, until: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(root, f'{{"holders": [], "cooldown_until": {until}}}')
    assert store.peek(NAME)["cooldown_until"] == 0.0  # dry-run's view: no cooldown
    one_warning(capsys, path, "cooldown_until", "reset to 0")
    lease = store.acquire(NAME, 1, "run-1", "1")  # not paused for ever, no overflowing wait
    assert isinstance(lease, Lease)
    one_warning(capsys, path, "cooldown_until")
    assert on_disk(path)["cooldown_until"] == 0.0
    store.release(lease)
    assert warnings(capsys) == []  # the file was mended: warned once


def test_a_cooldown_within_a_day_is_kept(store: LeaseStore, root: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    write(root, record(cooldown_until=T0 + COOLDOWN_MAX))
    got = store.acquire(NAME, 1, "run-1", "1")
    assert isinstance(got, Busy) and got.until == T0 + COOLDOWN_MAX
    assert warnings(capsys) == []


@pytest.mark.parametrize("retry_after", [1e10, math.inf, 10**400, -5.0, math.nan])
def test_a_hostile_retry_after_rests_the_key_at_most_a_day(
        store: LeaseStore, clock: Clock, retry_after: float) -> None:
    until = store.cool_down(NAME, retry_after)
    assert math.isfinite(until) and clock.now <= until <= clock.now + COOLDOWN_MAX
    if retry_after > 0:
        assert until == clock.now + COOLDOWN_MAX
    else:  # nonsense: the backoff instead
        assert until <= clock.now + 2 * (1 + BACKOFF_JITTER)


# --------------------------------------------------------------------------- generation


@pytest.mark.parametrize("generation", ["3.5", "-1", str(2**60), "1e308", "NaN", '"7"'])
def test_a_bad_generation_is_reset(store: LeaseStore, root: Path, generation: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = write(root, f'{{"holders": [], "generation": {generation}}}')
    lease = store.acquire(NAME, 1, "run-1", "1")
    assert isinstance(lease, Lease) and lease.generation == 1
    one_warning(capsys, path, "generation", "set to 0")


# --------------------------------------------------------------------------- remote holders


@pytest.mark.parametrize("beat", [T0 + 10 * LEASE_TTL, T0 + 1e12, 1e300])
def test_a_remote_holder_with_a_heartbeat_in_the_future_is_reclaimed(
        store: LeaseStore, root: Path, beat: float, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(root, record(holders=[holder(host="elsewhere", pid=1, heartbeat=beat)]))
    assert isinstance(store.acquire(NAME, 1, "run-1", "1"), Lease)
    one_warning(capsys, path, "holder 1", "heartbeat", "in the future", "reclaimed")


def test_a_remote_holder_slightly_ahead_is_kept(store: LeaseStore, root: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    write(root, record(holders=[holder(host="elsewhere", pid=1, heartbeat=T0 + LEASE_TTL / 2)]))
    assert isinstance(store.acquire(NAME, 1, "run-1", "1"), Busy)  # clock skew: not stale
    assert warnings(capsys) == []


@pytest.mark.parametrize("beat", ["NaN", "Infinity", "-Infinity", "1e400", '"now"', "null"])
def test_a_holder_with_a_heartbeat_that_is_no_time_is_reclaimed(
        store: LeaseStore, root: Path, beat: str, capsys: pytest.CaptureFixture[str]) -> None:
    entry = json.dumps(holder(host="elsewhere", pid=1)).replace(f'"heartbeat": {T0}',
                                                                f'"heartbeat": {beat}')
    path = write(root, f'{{"holders": [{entry}]}}')
    assert isinstance(store.acquire(NAME, 1, "run-1", "1"), Lease)
    one_warning(capsys, path, "holder 1", "'heartbeat'")


# --------------------------------------------------------------------------- local holders


def test_a_live_process_that_holds_no_slot_is_reclaimed(
        store: LeaseStore, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pid 1 runs for ever, with its real start time: only the slot's flock tells."""
    path = write(root, record(holders=[holder(pid=1, slot=0)]))
    assert isinstance(store.acquire(NAME, 1, "run-1", "1"), Lease)
    one_warning(capsys, path, "holder 1 (pid 1) does not hold its slot", "reclaimed")


def test_a_live_process_recorded_without_a_slot_is_reclaimed(
        store: LeaseStore, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pid 1 with its real start time and no 'slot': no lease of ours looks like that."""
    path = write(root, record(holders=[holder(pid=1)]))
    assert isinstance(store.acquire(NAME, 1, "run-1", "1"), Lease)
    one_warning(capsys, path, "holder 1 (pid 1) records no slot ('slot')", "reclaimed")


def test_a_record_claiming_another_free_slot_is_reclaimed(
        store: LeaseStore, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(root, record(holders=[holder(pid=os.getppid(), slot=1)]))
    (root / "leases" / f"{NAME}.slot-1.lock").touch()  # the file exists; nobody locks it
    lease = store.acquire(NAME, 2, "run-1", "1")  # takes slot 0
    assert isinstance(lease, Lease)
    one_warning(capsys, path, "does not hold its slot ('slot' 1)")
    assert [h["token"] for h in store.peek(NAME)["holders"]] == [lease.token]


def test_a_record_claiming_the_slot_acquire_just_took_is_reclaimed(
        store: LeaseStore, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Acquire holds slot 0 itself while it reads: a probe would see it locked (by us)."""
    path = write(root, record(holders=[holder(pid=os.getppid(), slot=0)]))
    assert isinstance(store.acquire(NAME, 1, "run-1", "1"), Lease)
    one_warning(capsys, path, "does not hold its slot ('slot' 0)")


def test_a_lease_held_by_another_store_of_this_process_is_kept(
        root: Path, clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = LeaseStore(root, clock=clock), LeaseStore(root, clock=clock)
    lease = first.acquire(NAME, 2, "run-1", "1")
    assert isinstance(lease, Lease)
    assert [h["token"] for h in second.peek(NAME)["holders"]] == [lease.token]
    other = second.acquire(NAME, 2, "run-2", "2")
    assert isinstance(other, Lease)
    assert isinstance(second.acquire(NAME, 2, "run-2", "3"), Busy)
    assert sorted(h["token"] for h in first.peek(NAME)["holders"]) == sorted(
        [lease.token, other.token])
    assert warnings(capsys) == []


@pytest.mark.e2e
def test_a_lease_held_by_a_child_process_is_kept(store: LeaseStore, root: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess
    import sys
    code = ("import sys\nfrom pathlib import Path\n"
            "from assemblyzero.keys.leases import LeaseStore\n"
            "lease = LeaseStore(Path(sys.argv[1])).acquire('team-a', 2, 'child', 'c')\n"
            "print(lease.token, flush=True)\nsys.stdin.readline()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        token = proc.stdout.readline().strip()
        assert [h["token"] for h in store.peek(NAME)["holders"]] == [token]
        assert isinstance(store.acquire(NAME, 2, "run-1", "1"), Lease)  # slot 1
        assert isinstance(store.acquire(NAME, 2, "run-1", "2"), Busy)
    finally:
        proc.kill()
        proc.wait()
    assert warnings(capsys) == []


def test_a_recorded_start_of_question_mark_no_longer_keeps_a_live_pid(
        store: LeaseStore, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(root, record(holders=[holder(pid=1, start="?")]))  # /proc is readable here
    assert isinstance(store.acquire(NAME, 1, "run-1", "1"), Lease)
    one_warning(capsys, path, "holder 1 has no process start time ('start')")


@pytest.mark.parametrize("fields", [
    {"pid": 0}, {"pid": -1}, {"pid": 2**40}, {"pid": True}, {"pid": 1.0}, {"token": None},
    {"host": 5}, {"start": 123}, {"run_id": ["x"]}, {"item": {"a": 1}},
], ids=lambda f: "-".join(f"{k}={v!r}" for k, v in f.items()))
def test_a_malformed_holder_is_left_out_naming_the_field(
        store: LeaseStore, root: Path, fields: dict[str, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write(root, record(holders=[holder(pid=1, slot=0, **{
        k: v for k, v in fields.items() if k != "pid"}) | fields]))
    lease = store.acquire(NAME, 1, "run-1", "1")
    assert isinstance(lease, Lease)
    line = one_warning(capsys, path, "holder 1", f"'{next(iter(fields))}'", "rebuilding")
    assert "{" not in line.split(": ", 1)[1]  # the record itself is not quoted
    store.release(lease)  # no KeyError on the remaining holders either


def test_many_malformed_holders_are_warned_in_a_few_lines(
        store: LeaseStore, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(root, record(holders=[{"pid": n} for n in range(1000)]))
    assert isinstance(store.acquire(NAME, 1, "run-1", "1"), Lease)
    lines = warnings(capsys)
    assert len(lines) == 4 and all(line.startswith(f"warning: lease file {path}: ")
                                   for line in lines)
    assert lines[-1].endswith("997 more malformed holder(s); left out as well")


def test_deeply_nested_json_is_rebuilt(store: LeaseStore, root: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = write(root, "[" * 100_000)
    assert isinstance(store.acquire(NAME, 1, "run-1", "1"), Lease)
    one_warning(capsys, path, "unreadable", "rebuilding")


# --------------------------------------------------------------------------- whole runs


@pytest.mark.e2e
def test_dry_run_and_a_run_survive_a_hostile_lease_file(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["41", "42"])
    Path(os.environ["ASSEMBLYZERO_CREDENTIALS"]).write_text(json.dumps(
        {"credentials": [{"name": NAME, "provider": "offline", "max_concurrent": 2}]}))
    hostile = {"holders": [holder(pid=1, slot=0), holder(pid=1, slot=1)], "streak": 1024,
               "cooldown_until": 1e18, "generation": 1e308}
    path = write(Path(os.environ["ASSEMBLYZERO_STATE_DIR"]), json.dumps(hostile))
    plan = cli("dry-run", "--repo", str(ws))  # time.localtime(1e18) used to crash it
    assert plan.code == 0, plan.err
    assert f"warning: lease file {path}: cooldown_until" in plan.err
    assert "Traceback" not in plan.err
    run = cli("lld-all", "--parallel=2", "--repo", str(ws))
    assert run.code == 0, run.out + run.err
    assert "Traceback" not in run.err
    done = summary((ws / "logs/parallel/latest").resolve())
    assert [item["status"] for item in done["items"]] == ["done", "done"]


# --------------------------------------------------------------------------- any document

NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1024, 2**53, 1e18, 1e308, -1e308, T0, T0 + 1e6]),
    st.floats(T0 - 3 * LEASE_TTL, T0 + 3 * LEASE_TTL))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=6))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
PIDS = st.sampled_from([1, os.getpid(), os.getppid(), 0, -3, 2**31, 4_000_000])
HOLDERS = st.fixed_dictionaries({}, optional={
    "token": st.one_of(st.text(max_size=6), VALUES),
    "pid": st.one_of(PIDS, VALUES),
    "host": st.one_of(st.just(HOST), st.just("elsewhere"), VALUES),
    "start": st.one_of(st.sampled_from([process_start(1), process_start(os.getpid()),
                                        process_start(os.getppid()), "?", "1"]), VALUES),
    "heartbeat": st.one_of(NUMBERS, VALUES),
    "slot": st.one_of(st.integers(-1, 3), VALUES),
    "run_id": st.one_of(st.text(max_size=4), VALUES),
    "item": st.one_of(st.text(max_size=4), VALUES),
    "generation": VALUES,
})
FULL_HOLDERS = st.builds(lambda base, extra: {**base, **extra}, st.fixed_dictionaries({
    "token": st.text(min_size=1, max_size=6), "pid": PIDS,
    "host": st.sampled_from([HOST, "elsewhere"]),
    "start": st.sampled_from([process_start(1), process_start(os.getppid()), "?"]),
    "run_id": st.just("r"), "item": st.just("i"), "heartbeat": NUMBERS,
    "slot": st.integers(-1, 3)}), HOLDERS)
DOCUMENTS = st.one_of(VALUES, st.fixed_dictionaries({}, optional={
    "holders": st.one_of(st.lists(st.one_of(FULL_HOLDERS, HOLDERS, VALUES), max_size=4), VALUES),
    "generation": st.one_of(NUMBERS, VALUES),
    "streak": st.one_of(NUMBERS, VALUES),
    "cooldown_until": st.one_of(NUMBERS, VALUES),
    "version": VALUES,
    "name": VALUES,
}))


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(document=DOCUMENTS, limit=st.integers(1, 3), succeeded=st.booleans(),
       retry_after=st.one_of(st.none(), NUMBERS))
def test_any_lease_document_is_survived(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        document: Any, limit: int, succeeded: bool,
                                        retry_after: float | None) -> None:
    root = tmp_path / uuid.uuid4().hex
    path = write(root, json.dumps(document))
    clock = Clock()
    store = LeaseStore(root, clock=clock)
    seen = store.peek(NAME)
    assert isinstance(seen["holders"], list) and _in_a_day(seen["cooldown_until"], clock.now)
    got = store.acquire(NAME, limit, "run", "item")
    assert isinstance(got, (Lease, Busy))
    if isinstance(got, Busy):
        assert got.until is None or _in_a_day(got.until, clock.now)
    else:
        capsys.readouterr()
        store.heartbeat([got])
        assert capsys.readouterr().err == ""  # acquire mended the file: nothing left to warn
        store.release(got, succeeded=succeeded)
    until = store.cool_down(NAME, retry_after)
    assert _in_a_day(until, clock.now) and until >= clock.now
    again = store.acquire(NAME, limit, "run", "item")
    if until > clock.now:  # (a Retry-After of 0 rests it for no time at all)
        assert isinstance(again, Busy) and again.until == until
    elif isinstance(again, Lease):
        store.release(again)
    assert isinstance(on_disk(path)["holders"], list)


def _in_a_day(when: Any, now: float) -> bool:
    return isinstance(when, float) and math.isfinite(when) and when <= now + COOLDOWN_MAX
