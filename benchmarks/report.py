"""The cost of drawing report.html for a big run: a run folder of N items written the way
the coordinator writes one (journal.jsonl, summary.json, a log per item), then
`assemblyzero report --run=ID` timed as a user runs it (a process, its start-up
included), and `assemblyzero.report.write` in this process.

The run is made up, not run (1,000 real items take minutes): 10 slots, items of
1-60 s, every 7th waits for its key's budget inside its attempt, every 25th ends on
a 429 (its key rests 20 s) and runs again, every 40th fails (its log tail is shown),
with pool pauses. Usage: python benchmarks/report.py [ITEMS] (prints JSON).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assemblyzero import report  # noqa: E402

SLOTS = 10
T0 = 1_796_000_000.0


def make_run(root: Path, items: int, seed: int = 7) -> Path:
    """A run folder of `items` items under `root`/logs/parallel; its path."""
    rng = random.Random(seed)
    run_id = "20261202-120000-lld-all-4242"
    run_dir = root / "logs/parallel" / run_id
    run_dir.mkdir(parents=True)
    tags = [f"LLD-{n:04d}" for n in range(items)]
    events: list[dict[str, Any]] = [{"event": "run-start", "ts": T0, "label": "lld-all",
                                     "items": tags, "ids": [t[4:] for t in tags],
                                     "parallel": SLOTS, "pid": 1, "pid_start": "1"}]
    free = [T0] * SLOTS
    outcomes = []
    queue = [(tag, 1) for tag in tags]
    while queue:
        tag, attempt = queue.pop(0)
        slot = min(range(SLOTS), key=lambda s: free[s])
        begin = free[slot] + rng.uniform(0.001, 0.05)
        length = rng.uniform(1, 60)
        key = f"key-{slot % 3}"
        events.append({"event": "start", "ts": begin, "item": tag, "pid": 100 + slot,
                       "attempt": attempt, "credentials": [key]})
        n = int(tag[4:])
        if n % 7 == 0:
            events.append({"event": "wait", "ts": begin + length, "item": tag,
                           "credential": key, "why": "budget", "from": begin + length / 3,
                           "seconds": length / 5})
        retried = n % 25 == 0 and attempt == 1
        status = "failed" if retried or n % 40 == 0 else "done"
        code = 75 if retried else (1 if status == "failed" else 0)
        finish = begin + length
        events.append({"event": "end", "ts": finish, "item": tag, "status": status,
                       "exit_code": code, "duration": round(length, 3)})
        if retried:
            events.append({"event": "retry", "ts": finish, "item": tag, "credential": key,
                           "kind": "rate_limited", "rest": 20.0})
            queue.append((tag, 2))
        else:
            outcomes.append({"kind": "lld", "id": tag[4:], "tag": tag, "status": status,
                             "duration": round(length, 3), "iterations": 2,
                             "model_calls": 4, "tokens": [5000, 2000], "attempts": attempt,
                             "rate_limited": attempt - 1, "credential": key,
                             "reason": "worker exited with code 1" if code else "",
                             "log": str(run_dir / f"lld-{tag[4:]}.log"), "retries": {},
                             "cost": {"usd": 0.01, "priced_usd": 0.01, "unpriced_calls": 0},
                             "host": None})
            (run_dir / f"lld-{tag[4:]}.log").write_text(
                "".join(f"step {i}: a line of the worker's output\n" for i in range(40)),
                encoding="utf-8")
        free[slot] = finish
        if n % 100 == 50:
            events.append({"event": "pause", "ts": finish, "reason": "every key is held"})
            events.append({"event": "resume", "ts": finish + 5})
    events.sort(key=lambda e: e["ts"])
    end = max(free)
    events.append({"event": "run-end", "ts": end, "exit_code": 1,
                   "wall_seconds": round(end - T0, 3)})
    (run_dir / "journal.jsonl").write_text(
        "".join(json.dumps(e, sort_keys=True) + "\n" for e in events), encoding="utf-8")
    summary = {"version": 1, "run_id": run_id, "label": "lld-all", "repo": str(root),
               "started": "2026-12-02T12:00:00+0000", "wall_seconds": round(end - T0, 3),
               "parallel": SLOTS, "drafter": "offline:default", "reviewer": "offline:default",
               "exit_code": 1, "counts": {}, "worker_seconds": 0, "retries": {},
               "cost": {"usd": 10.0, "priced_usd": 10.0, "unpriced_calls": 0},
               "items": outcomes,
               "credentials": [{"name": f"key-{k}", "provider": "offline", "attempts": 1,
                                "requests": 1, "waited_seconds": 1.0, "rate_limited": 0,
                                "tokens": [1, 1], "cost": {"usd": 0, "priced_usd": 0,
                                                           "unpriced_calls": 0},
                                "cooldown_seconds": 0.0, "disabled": ""} for k in range(3)]}
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run_dir


def measure(items: int = 1000, repeat: int = 5) -> dict[str, Any]:
    """Seconds of `assemblyzero report` (a process) and of report.write (in process),
    `repeat` times each, and the page's size."""
    with tempfile.TemporaryDirectory(prefix="az-bench-report-") as tmp:
        root = Path(tmp)
        run_dir = make_run(root, items)
        command, in_process = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "assemblyzero", "report", "--repo", str(root),
                            f"--run={run_dir.name}"], check=True, capture_output=True,
                           stdin=subprocess.DEVNULL, cwd=root)
            command.append(time.perf_counter() - started)
            started = time.perf_counter()
            report.write(run_dir, root)
            in_process.append(time.perf_counter() - started)
        page = (run_dir / "report.html").read_text(encoding="utf-8")
        return {"items": items, "command_s": command, "in_process_s": in_process,
                "bytes": len(page.encode()), "bars": page.count('class="bar')}


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1000), indent=2))
