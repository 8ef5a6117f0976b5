"""Lease throughput: N processes contend for one key (max_concurrent=1).

    python benchmarks/lease_rate.py [--procs 10] [--seconds 3] [--state-dir DIR] [--floor]

Every process waits for a common start signal (a shared flock on a start
file that this script holds until all are ready), then loops acquire +
release on the same key for the given seconds. While holding, it appends
"+pid" and "-pid" to a shared O_APPEND log; two "+" without a "-" between
them is a double lease. Prints one JSON line

    {"procs": 10, "seconds": 3.01, "cycles": 612, "per_second": 203.3, "double_leases": 0}

where `seconds` is the measured contention window (the longest loop of any
process) and `per_second` is cycles / seconds. Exits 1 on any double lease.

`--floor` measures, the same way, the bare minimum of a file-lease store
instead of ours: each cycle takes an exclusive `flock` on one lock file
(its fd kept open), writes a small JSON record to a temp file, fsyncs it,
`os.replace`s it over the record and unlocks; the holder log is written
inside the lock as above. Its JSON line says `"mode": "floor"` (ours:
`"ours"`). One cycle of ours (acquire + release) rewrites the record twice
(the holder added, then removed), each time like one floor cycle, and takes
a slot lock besides: ours can reach at most about half the floor's rate.
The lease state lives in --state-dir, by default a fresh temp dir (removed
afterwards): the real ~/.assemblyzero is never touched.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from assemblyzero.keys.leases import Lease, LeaseStore
except ImportError:  # a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from assemblyzero.keys.leases import Lease, LeaseStore

KEY = "bench-key"


def child(state_dir: Path, start: Path, log: Path, seconds: float) -> None:
    """One contender: print ready, wait for the start signal, loop; print its counts."""
    store = LeaseStore(state_dir)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    pid = os.getpid()
    enter, leave = f"+{pid}\n".encode(), f"-{pid}\n".encode()
    print("ready", flush=True)
    with open(start) as gate:
        fcntl.flock(gate, fcntl.LOCK_SH)
    began = time.monotonic()
    deadline = began + seconds
    cycles = busy = 0
    while time.monotonic() < deadline:
        lease = store.acquire(KEY, 1, "bench", str(pid), wait=True)
        if not isinstance(lease, Lease):
            busy += 1
            continue
        os.write(fd, enter)
        os.write(fd, leave)
        store.release(lease)
        cycles += 1
    os.close(fd)
    print(json.dumps({"cycles": cycles, "busy": busy, "elapsed": time.monotonic() - began}),
          flush=True)


def floor_child(state_dir: Path, start: Path, log: Path, seconds: float) -> None:
    """A contender of `--floor`: lock, durable record write, unlock; nothing else."""
    state_dir.mkdir(parents=True, exist_ok=True)
    record, lock = state_dir / f"{KEY}.json", os.open(state_dir / f"{KEY}.lock",
                                                      os.O_RDWR | os.O_CREAT, 0o600)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    pid = os.getpid()
    tmp = state_dir / f"{KEY}.json.{pid}.tmp"
    enter, leave = f"+{pid}\n".encode(), f"-{pid}\n".encode()
    print("ready", flush=True)
    with open(start) as gate:
        fcntl.flock(gate, fcntl.LOCK_SH)
    began = time.monotonic()
    deadline = began + seconds
    cycles = 0
    while time.monotonic() < deadline:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.write(fd, enter)
        data = json.dumps({"holders": [{"pid": pid, "since": time.time()}],
                           "generation": cycles}).encode()
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(out, data)
            os.fsync(out)
        finally:
            os.close(out)
        os.replace(tmp, record)
        os.write(fd, leave)
        fcntl.flock(lock, fcntl.LOCK_UN)
        cycles += 1
    os.close(fd)
    os.close(lock)
    print(json.dumps({"cycles": cycles, "busy": 0, "elapsed": time.monotonic() - began}),
          flush=True)


def double_leases(log: Path) -> int:
    """How often a holder entered while another one was inside."""
    inside: str | None = None
    doubles = 0
    for line in log.read_text().splitlines():
        sign, pid = line[:1], line[1:]
        if sign == "+":
            doubles += inside is not None
            inside = pid
        elif inside == pid:
            inside = None
    return doubles


def run(procs: int, seconds: float, state_dir: Path, work: Path,
        floor: bool = False) -> dict[str, object]:
    """`procs` contenders for `seconds`, ours (or with `floor`, the bare floor's)."""
    start, log = work / "start", work / "holders.log"
    start.write_text("")
    log.write_text("")
    env = {**os.environ, "ASSEMBLYZERO_STATE_DIR": str(state_dir)}
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--state-dir",
            str(state_dir), "--seconds", str(seconds), "--work", str(work),
            *(["--floor"] if floor else [])]
    children: list[subprocess.Popen[str]] = []
    try:
        with open(start) as gate:
            fcntl.flock(gate, fcntl.LOCK_EX)
            try:
                for _ in range(procs):
                    children.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                                                     env=env))
                for proc in children:
                    assert proc.stdout is not None
                    if proc.stdout.readline() != "ready\n":
                        raise SystemExit(f"lease_rate: child {proc.pid} did not start")
            finally:
                fcntl.flock(gate, fcntl.LOCK_UN)
        reports = []
        for proc in children:
            out, _ = proc.communicate(timeout=seconds + 120)
            if proc.returncode != 0:
                raise SystemExit(f"lease_rate: child {proc.pid} failed ({proc.returncode})")
            reports.append(json.loads(out.splitlines()[-1]))
    finally:
        for proc in children:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    cycles = sum(r["cycles"] for r in reports)
    window = max(r["elapsed"] for r in reports)
    return {"mode": "floor" if floor else "ours", "procs": procs, "seconds": round(window, 3),
            "cycles": cycles, "per_second": round(cycles / window, 1),
            "double_leases": double_leases(log)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="lease state (default: a temp dir, removed afterwards)")
    parser.add_argument("--floor", action="store_true",
                        help="measure the bare floor (flock, temp file, fsync, os.replace, "
                             "unlock) instead of the lease store")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.procs < 1 or not args.seconds > 0:
        parser.error("--procs must be >= 1 and --seconds > 0")
    if args.child:
        loop = floor_child if args.floor else child
        loop(args.state_dir, args.work / "start", args.work / "holders.log", args.seconds)
        return 0
    work = Path(tempfile.mkdtemp(prefix="lease_rate-"))
    try:
        state_dir = args.state_dir or work / "state"
        result = run(args.procs, args.seconds, state_dir, work, args.floor)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 1 if result["double_leases"] else 0


if __name__ == "__main__":
    sys.exit(main())
