"""Credential leases (docs/json.md, leases): real processes, real filelock, real files.

Time is moved with the `clock` injection of LeaseStore, never by sleeping;
processes are synchronised on pipes and on a shared flock, never by sleeping.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import T0, Clock

from assemblyzero.constants import BACKOFF_CAP, BACKOFF_JITTER, LEASE_TTL
from assemblyzero.keys.lease_record import process_start
from assemblyzero.keys.leases import Busy, Lease, LeaseStore

NAME = "team-a"
TIMEOUT = 60



@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "state"



@pytest.fixture
def store(root: Path, clock: Clock) -> LeaseStore:
    return LeaseStore(root, clock=clock)


def lease_file(root: Path, name: str = NAME) -> Path:
    return root / "leases" / f"{name}.json"


def on_disk(root: Path, name: str = NAME) -> dict:  # type: ignore[type-arg]
    return json.loads(lease_file(root, name).read_text(encoding="utf-8"))


def write_record(root: Path, record: object, name: str = NAME) -> Path:
    path = lease_file(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def holder(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "token": "t-" + str(fields.get("pid", 0)), "pid": os.getpid(),
        "host": socket.gethostname(), "start": process_start(os.getpid()),
        "run_id": "other-run", "item": "7", "heartbeat": T0, "generation": 1,
    }
    return {**base, **fields}


def must_lease(got: Lease | Busy) -> Lease:
    assert isinstance(got, Lease), f"expected a lease, got {got!r}"
    return got


# A child that takes one lease (limit 1) and holds it until its stdin says so.
HOLDER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from assemblyzero.keys.leases import Lease, LeaseStore
    root, name, mode = sys.argv[1:]
    store = LeaseStore(Path(root))
    lease = store.acquire(name, 1, "child-run", "child-item")
    assert isinstance(lease, Lease), lease
    print("held", flush=True)
    sys.stdin.readline()
    if mode == "exit-holding":
        os._exit(0)
    store.release(lease)
""")


def start_holder(root: Path, mode: str = "release") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), NAME, mode],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "held\n":
        proc.kill()
        proc.wait()
        pytest.fail(f"holder child did not take its lease: {line!r}")
    return proc


# --------------------------------------------------------------------------- slots


def test_acquire_fills_limit_slots_then_busy_with_reason(store: LeaseStore) -> None:
    leases = [must_lease(store.acquire(NAME, 3, "run-1", str(n))) for n in range(3)]
    got = store.acquire(NAME, 3, "run-1", "extra")
    assert isinstance(got, Busy)
    assert got.name == NAME
    assert got.reason == "all 3 slot(s) held"
    assert got.until is None  # free again only when a holder releases
    assert len({lease.token for lease in leases}) == 3


def test_release_frees_a_slot(store: LeaseStore, root: Path) -> None:
    first = must_lease(store.acquire(NAME, 2, "run-1", "1"))
    must_lease(store.acquire(NAME, 2, "run-1", "2"))
    assert isinstance(store.acquire(NAME, 2, "run-1", "3"), Busy)
    store.release(first)
    assert [h["item"] for h in on_disk(root)["holders"]] == ["2"]
    third = must_lease(store.acquire(NAME, 2, "run-1", "3"))
    assert [h["token"] for h in on_disk(root)["holders"]][-1] == third.token


def test_generation_increases_on_each_acquire_and_is_recorded(
    store: LeaseStore, root: Path
) -> None:
    leases = [must_lease(store.acquire(NAME, 2, "run-1", str(n))) for n in range(2)]
    assert [lease.generation for lease in leases] == [1, 2]
    assert isinstance(store.acquire(NAME, 2, "run-1", "busy"), Busy)
    assert on_disk(root)["generation"] == 2  # a refusal takes no generation
    store.release(leases[0])
    again = must_lease(store.acquire(NAME, 2, "run-1", "again"))
    assert again.generation == 3
    record = on_disk(root)
    assert record["generation"] == 3
    assert {h["token"]: h["generation"] for h in record["holders"]} == {
        leases[1].token: 2, again.token: 3}


def test_release_twice_is_harmless(store: LeaseStore, root: Path) -> None:
    lease = must_lease(store.acquire(NAME, 1, "run-1", "1"))
    store.release(lease)
    store.release(lease)
    assert on_disk(root)["holders"] == []
    must_lease(store.acquire(NAME, 1, "run-1", "2"))


def test_holder_record_fields(store: LeaseStore, root: Path, clock: Clock) -> None:
    lease = must_lease(store.acquire(NAME, 1, "run-42", "item-7"))
    record = on_disk(root)
    assert record["name"] == NAME
    [entry] = record["holders"]
    assert entry["pid"] == os.getpid()
    assert entry["host"] == socket.gethostname()
    with open(f"/proc/{os.getpid()}/stat", "rb") as handle:
        start = handle.read().rsplit(b")", 1)[1].split()[19].decode()
    assert entry["start"] == start
    assert entry["run_id"] == "run-42"
    assert entry["item"] == "item-7"
    assert entry["heartbeat"] == T0
    assert entry["generation"] == lease.generation == 1
    assert entry["token"] == lease.token
    # and the file sits where docs/json.md says, next to its lock
    assert (root / "leases" / f"{NAME}.lock").exists()


def test_heartbeat_refreshes_the_holder(store: LeaseStore, root: Path, clock: Clock) -> None:
    lease = must_lease(store.acquire(NAME, 1, "run-1", "1"))
    clock.now = T0 + 45
    store.heartbeat([lease])
    assert on_disk(root)["holders"][0]["heartbeat"] == T0 + 45


# --------------------------------------------------------------------------- 429 cooldown


def test_cool_down_with_retry_after(store: LeaseStore, root: Path, clock: Clock) -> None:
    until = store.cool_down(NAME, 3)
    assert T0 + 3 <= until <= T0 + 3 * (1 + BACKOFF_JITTER)
    assert on_disk(root)["cooldown_until"] == until
    got = store.acquire(NAME, 1, "run-1", "1")
    assert isinstance(got, Busy)
    assert "429" in got.reason
    assert got.until == until
    clock.now = until - 0.01
    assert isinstance(store.acquire(NAME, 1, "run-1", "1"), Busy)
    clock.now = until + 0.01
    must_lease(store.acquire(NAME, 1, "run-1", "1"))


@pytest.mark.e2e
def test_cool_down_is_visible_to_another_process(tmp_path: Path, root: Path) -> None:
    until = LeaseStore(root).cool_down(NAME, 3)  # real clock: the child uses one too
    probe = (
        "import sys\nfrom pathlib import Path\nfrom assemblyzero.keys.leases import LeaseStore\n"
        "got = LeaseStore(Path(sys.argv[1])).acquire(sys.argv[2], 1, 'r', 'i')\n"
        "print(type(got).__name__, getattr(got, 'until', None))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(root), NAME], capture_output=True,
                         text=True, timeout=TIMEOUT, check=True).stdout.split()
    assert out == ["Busy", repr(until)]


def test_cool_down_jitter_is_zero_to_twenty_percent(root: Path, clock: Clock) -> None:
    store = LeaseStore(root, clock=clock)
    offsets = [store.cool_down(f"k{n}", 10) - T0 for n in range(30)]
    assert all(10 <= off <= 10 * (1 + BACKOFF_JITTER) for off in offsets), offsets
    assert len(set(offsets)) > 1  # jittered, not a constant


def test_cool_down_backoff_doubles_to_the_cap(store: LeaseStore, root: Path,
                                              clock: Clock) -> None:
    expected = [2, 4, 8, 16, 32, 60, 60]
    assert BACKOFF_CAP == 60
    for streak, base in enumerate(expected):
        clock.now += 1000  # past the previous cooldown
        until = store.cool_down(NAME, None)
        assert base <= until - clock.now <= base * (1 + BACKOFF_JITTER), (streak, until - clock.now)
        assert on_disk(root)["streak"] == streak + 1


def test_success_resets_the_backoff_streak(store: LeaseStore, root: Path,
                                           clock: Clock) -> None:
    for _ in range(3):  # 2 s, 4 s, 8 s
        clock.now += 1000
        store.cool_down(NAME, None)
    clock.now += 1000
    failed = must_lease(store.acquire(NAME, 1, "run-1", "1"))
    store.release(failed, succeeded=False)
    assert on_disk(root)["streak"] == 3  # a failure keeps the streak
    until = store.cool_down(NAME, None)
    assert 16 <= until - clock.now <= 16 * (1 + BACKOFF_JITTER)
    clock.now += 1000
    ok = must_lease(store.acquire(NAME, 1, "run-1", "2"))
    store.release(ok, succeeded=True)
    assert on_disk(root)["streak"] == 0
    until = store.cool_down(NAME, None)
    assert 2 <= until - clock.now <= 2 * (1 + BACKOFF_JITTER)


def test_retry_after_also_counts_in_the_streak(store: LeaseStore, clock: Clock) -> None:
    store.cool_down(NAME, 1)
    clock.now += 1000
    until = store.cool_down(NAME, None)
    assert 4 <= until - clock.now <= 4 * (1 + BACKOFF_JITTER)


# --------------------------------------------------------------------------- corrupt files

GARBAGE = b"\x00\xff{not json at all"
CORRUPT = {
    "garbage-bytes": GARBAGE,
    "empty-file": b"",
    "json-list": b'[{"holders": []}]',
    "holders-not-a-list": b'{"holders": {"pid": 1}, "generation": 3}',
    "holder-pid-abc": json.dumps({"holders": [holder(pid="abc")], "generation": 1}).encode(),
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_lease_file_is_rebuilt(store: LeaseStore, root: Path, content: bytes) -> None:
    path = lease_file(root)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    lease = must_lease(store.acquire(NAME, 1, "run-1", "1"))
    record = on_disk(root)
    assert isinstance(record, dict)
    assert [h["token"] for h in record["holders"]] == [lease.token]
    store.release(lease)
    assert on_disk(root)["holders"] == []


@pytest.mark.parametrize("content", [
    pytest.param(v, id=k) for k, v in CORRUPT.items()])
def test_corrupt_lease_file_is_reported_on_stderr(
    store: LeaseStore, root: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    path = lease_file(root)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    must_lease(store.acquire(NAME, 1, "run-1", "1"))
    err = capsys.readouterr().err
    assert str(path) in err
    assert "rebuilding" in err


@pytest.mark.parametrize("record", [
    {"holders": [], "cooldown_until": None},
    {"holders": [], "generation": "7"},
    {"holders": [], "streak": None},
    {"holders": [], "streak": True},
], ids=["cooldown-null", "generation-string", "streak-null", "streak-bool"])
def test_lease_file_with_wrong_typed_fields_is_reported_and_reset(
    store: LeaseStore, root: Path, clock: Clock, record: dict,  # type: ignore[type-arg]
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_record(root, record)
    until = store.cool_down(NAME, None)
    assert 2 <= until - clock.now <= 2 * (1 + BACKOFF_JITTER)  # streak back to 0
    assert str(path) in capsys.readouterr().err
    clock.now += 1000
    lease = must_lease(store.acquire(NAME, 1, "run-1", "1"))
    assert lease.generation == 1
    fixed = on_disk(root)
    assert (fixed["generation"], fixed["streak"]) == (1, 1)
    assert fixed["cooldown_until"] == until


# --------------------------------------------------------------------------- dead and live holders


@pytest.mark.e2e
def test_kill_9_holder_is_reclaimed(store: LeaseStore, root: Path) -> None:
    proc = start_holder(root)
    try:
        assert [h["pid"] for h in on_disk(root)["holders"]] == [proc.pid]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
    assert [h["pid"] for h in on_disk(root)["holders"]] == [proc.pid]  # still listed...
    lease = must_lease(store.acquire(NAME, 1, "run-1", "1"))  # ...but reclaimed
    assert lease.generation == 2
    assert [h["pid"] for h in on_disk(root)["holders"]] == [os.getpid()]


@pytest.mark.e2e
def test_live_holder_is_never_evicted(store: LeaseStore, root: Path, clock: Clock) -> None:
    proc = start_holder(root)
    try:
        clock.now += 10 * LEASE_TTL  # a stale heartbeat does not matter for a local live pid
        got = store.acquire(NAME, 1, "run-1", "1")
        assert isinstance(got, Busy)
        assert got.reason == "all 1 slot(s) held"
        assert [h["pid"] for h in store.peek(NAME)["holders"]] == [proc.pid]
        assert proc.poll() is None
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the child releases and exits
        assert proc.wait(timeout=TIMEOUT) == 0
    must_lease(store.acquire(NAME, 1, "run-1", "1"))


@pytest.mark.e2e
def test_zombie_holder_is_reclaimed(store: LeaseStore, root: Path) -> None:
    proc = start_holder(root, mode="exit-holding")
    try:
        assert proc.stdin is not None
        proc.stdin.close()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
        assert Path(f"/proc/{proc.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z"
        must_lease(store.acquire(NAME, 1, "run-1", "1"))
    finally:
        proc.wait(timeout=TIMEOUT)


def test_holder_whose_pid_was_reused_is_reclaimed(store: LeaseStore, root: Path) -> None:
    # Our own pid, but another process start time: the original holder is gone.
    write_record(root, {"holders": [holder(start="1")], "generation": 1})
    lease = must_lease(store.acquire(NAME, 1, "run-1", "1"))
    assert lease.generation == 2


def test_live_local_holder_written_by_hand_is_kept(store: LeaseStore, root: Path) -> None:
    """Alive: its process runs and its slot's flock is held (here by this test)."""
    parent = os.getppid()
    write_record(root, {"holders": [holder(pid=parent, start=process_start(parent), slot=0)],
                        "generation": 1})
    fd = os.open(root / "leases" / f"{NAME}.slot-0.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert isinstance(store.acquire(NAME, 1, "run-1", "1"), Busy)
        assert [h["pid"] for h in store.peek(NAME)["holders"]] == [parent]
    finally:
        os.close(fd)


def test_remote_holder_kept_while_fresh_then_reclaimed(store: LeaseStore, root: Path,
                                                       clock: Clock) -> None:
    write_record(root, {"holders": [holder(host="elsewhere", pid=1, start="5",
                                           heartbeat=T0)], "generation": 1})
    clock.now = T0 + LEASE_TTL - 1
    got = store.acquire(NAME, 1, "run-1", "1")
    assert isinstance(got, Busy)
    assert [h["host"] for h in store.peek(NAME)["holders"]] == ["elsewhere"]
    clock.now = T0 + LEASE_TTL + 1
    assert store.peek(NAME)["holders"] == []
    lease = must_lease(store.acquire(NAME, 1, "run-1", "1"))
    assert [h["token"] for h in on_disk(root)["holders"]] == [lease.token]


# --------------------------------------------------------------------------- peek


def test_peek_of_unknown_name_writes_nothing(store: LeaseStore, root: Path) -> None:
    state = store.peek("nobody")
    assert state["holders"] == []
    assert state["generation"] == 0
    assert not (root / "leases").exists()
    assert not root.exists()


def test_peek_leaves_stale_holders_out_but_does_not_write(store: LeaseStore, root: Path) -> None:
    path = write_record(root, {"holders": [holder(start="1")], "generation": 1})
    before = path.read_bytes()
    assert store.peek(NAME)["holders"] == []
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no lock file either


# --------------------------------------------------------------------------- stress

STRESS_CHILD = textwrap.dedent("""
    import fcntl, json, os, sys, time
    from pathlib import Path
    from assemblyzero.keys.leases import Lease, LeaseStore
    root, start, log, counter, cycles, waits = sys.argv[1:]
    store = LeaseStore(Path(root))
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    pid = os.getpid()
    print("ready", flush=True)
    with open(start) as gate:
        fcntl.flock(gate, fcntl.LOCK_SH)  # blocks until the parent lets everyone go
    for n in range(int(cycles)):
        # Half block in the kernel for the slot, half try and retry (as the coordinator
        # does) a millisecond later: both paths contend, no process spins a core.
        while not isinstance(lease := store.acquire("shared", 1, "stress", f"{pid}-{n}",
                                                    wait=waits == "1"), Lease):
            time.sleep(0.001)
        os.write(fd, f"+{pid}\\n".encode())
        with open(counter) as handle:
            value = json.load(handle)["count"]
        with open(counter, "w") as handle:
            json.dump({"count": value + 1}, handle)
        os.write(fd, f"-{pid}\\n".encode())
        store.release(lease)
""")


@pytest.mark.e2e
def test_stress_one_key_never_double_leased(tmp_path: Path, root: Path) -> None:
    procs_n, cycles = 10, 60
    script = tmp_path / "stress_child.py"
    script.write_text(STRESS_CHILD)
    start, log, counter = tmp_path / "start", tmp_path / "holders.log", tmp_path / "count.json"
    start.write_text("")
    log.write_text("")
    counter.write_text(json.dumps({"count": 0}))
    with open(start) as gate:
        fcntl.flock(gate, fcntl.LOCK_EX)
        procs = [subprocess.Popen(
            [sys.executable, str(script), str(root), str(start), str(log), str(counter),
             str(cycles), str(k % 2)], stdout=subprocess.PIPE, text=True)
            for k in range(procs_n)]
        try:
            for proc in procs:
                assert proc.stdout is not None
                assert proc.stdout.readline() == "ready\n"
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)  # go (or let the children finish on failure)
    codes = [proc.wait(timeout=TIMEOUT) for proc in procs]
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.close()
    assert codes == [0] * procs_n

    inside: str | None = None
    entries: dict[str, int] = {}
    for number, line in enumerate(log.read_text().splitlines(), 1):
        sign, pid = line[0], line[1:]
        if sign == "+":
            assert inside is None, f"line {number}: {pid} entered while {inside} held the key"
            inside = pid
            entries[pid] = entries.get(pid, 0) + 1
        else:
            assert (sign, inside) == ("-", pid), f"line {number}: {line!r} while {inside} held"
            inside = None
    assert inside is None
    assert sorted(entries) == sorted(str(p.pid) for p in procs)
    assert set(entries.values()) == {cycles}
    assert json.loads(counter.read_text()) == {"count": procs_n * cycles}
    record = on_disk(root, "shared")
    assert record["holders"] == []
    assert record["generation"] == procs_n * cycles


@pytest.mark.e2e
def test_a_lost_lease_file_still_keeps_holders_apart(store: LeaseStore, root: Path) -> None:
    """The slot flock, not only the JSON record, guards a held lease."""
    proc = start_holder(root)
    try:
        lease_file(root).unlink()  # the record is gone (deleted, or rebuilt after corruption)
        got = store.acquire(NAME, 1, "run-1", "1")
        assert isinstance(got, Busy) and got.reason == "all 1 slot(s) held"
    finally:
        proc.kill()
        proc.wait()
    must_lease(store.acquire(NAME, 1, "run-1", "1"))  # the kernel freed the dead holder's slot


@pytest.mark.e2e
def test_acquire_with_wait_gets_the_lease_once_the_holder_releases(
        store: LeaseStore, root: Path) -> None:
    proc = start_holder(root)
    assert proc.stdin is not None
    proc.stdin.write("go\n")  # the holder releases once it reads this
    proc.stdin.flush()
    lease = must_lease(store.acquire(NAME, 1, "run-1", "1", wait=True))
    assert proc.wait(timeout=TIMEOUT) == 0
    assert [h["token"] for h in on_disk(root)["holders"]] == [lease.token]
