"""Soak test: Ctrl+C at a random moment, N times; after each rerun every item is done once.

    python benchmarks/soak_interrupt.py --runs 20 --items 6

Each round copies a fresh workspace, starts `assemblyzero lld-all --parallel=3`
with slow offline calls, sends SIGINT after a random delay, checks the exit
code (130, or 0 if it had already finished), then reruns to completion and
checks, from every run's logs, that each item was finalized exactly once and
that no completed model call was ever made twice. Prints one JSON line;
exits 1 if any round failed. Uses its own temp home: never the real one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CALLS_PER_ITEM = 4  # draft, review (REVISE), revise, review (APPROVED) with the defaults


def workspace(root: Path, items: int) -> Path:
    for n in range(1, items + 1):
        path = root / "docs/issues/active" / f"{n}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Item {n}\n\n## Objective\nDo thing {n}.\n\n## Requirements\n"
                        f"- Requirement {n}.\n")
    return root


def run(ws: Path, env: dict[str, str], interrupt_after: float | None) -> int:
    argv = [sys.executable, "-m", "assemblyzero", "lld-all", "--parallel=3", "--repo", str(ws)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    if interrupt_after is not None:
        try:
            proc.wait(timeout=interrupt_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=120)


def check(ws: Path, items: int) -> list[str]:
    """Problems found in all the runs' logs of `ws`."""
    finalized = {str(n): 0 for n in range(1, items + 1)}
    replies = {str(n): 0 for n in range(1, items + 1)}
    runs = [d for d in (ws / "logs/parallel").iterdir() if d.is_dir() and not d.is_symlink()]
    for log in (log for d in runs for log in d.glob("lld-*.log")):
        item = log.stem.split("-", 1)[1]
        text = log.read_text()
        finalized[item] += text.count("finalize: wrote")
        replies[item] += len(re.findall(r"^(draft|review|revise): reply in", text, re.M))
    problems = [f"item {i} finalized {n} times" for i, n in finalized.items() if n != 1]
    problems += [f"item {i}: {n} completed model calls, expected {CALLS_PER_ITEM}"
                 for i, n in replies.items() if n != CALLS_PER_ITEM]
    llds = len(list((ws / "docs/lld/active").glob("LLD-*.md")))
    if llds != items:
        problems.append(f"{llds} LLDs for {items} items")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--items", type=int, default=6)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    failures: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="az-soak-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "ASSEMBLYZERO_STATE_DIR": str(home / "state"),
               "ASSEMBLYZERO_CREDENTIALS": str(home / "none.json"),
               "ASSEMBLYZERO_OFFLINE_LATENCY": str(args.latency)}
        for n in range(args.runs):
            ws = workspace(Path(tmp) / f"ws{n}", args.items)
            delay = rng.uniform(0.05, args.latency * 8)
            code = run(ws, env, interrupt_after=delay)
            if code not in (0, 130):
                failures.append(f"round {n}: interrupted run exited {code}")
            code = run(ws, env, interrupt_after=None)
            if code != 0:
                failures.append(f"round {n}: rerun exited {code}")
            failures += [f"round {n} (SIGINT after {delay:.2f}s): {problem}"
                         for problem in check(ws, args.items)]
    print(json.dumps({"runs": args.runs, "items": args.items, "failures": len(failures),
                      "details": failures[:20],
                      "seconds": round(time.monotonic() - started, 1)}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
