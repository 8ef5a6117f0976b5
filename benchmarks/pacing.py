"""Pacing under rate limits: the real CLI against benchmarks/rate_server.py, both wire formats.

    python benchmarks/pacing.py [--quick] [--json-out PATH]

Per wire format (OpenAI, Anthropic), with two keys of `max_concurrent` 3 whose
per-minute limits (credential fields rpm, tpm, input_tpm, output_tpm) are the
server's, `lld-all --parallel=6` runs

  paced       a workspace of ITEMS items, pacing on (the default)
  no-pacing   the same with --no-pacing (skipped, saying so, where the flag is unknown)
  shared      two concurrent runs on two workspaces of SHARED_ITEMS items each, sharing
              the two keys (one state directory: the lease records are shared)

each with a fresh server (full buckets) and a fresh state directory. The limits,
not the latency, bound the wall time: ITEMS x CALLS_PER_ITEM requests on two keys
whose buckets hold less than that. The floor is what the limits allow: the time by
which the server could have admitted the last accepted request had requests arrived
optimally (per dimension: what must be debited before it, less the buckets' contents,
over the keys' combined refill rate; the tightest dimension counts, with the server's
own token counts), plus the latency of that call, and at least one item's chain
(CALLS_PER_ITEM x latency); it counts the accepted calls, so a run that lost items
has a lower one. The limits bear from the first call on; what comes before it is the
tool's start-up (processes, SDK imports: bench.py's first_worker and sdk_start rows), so
the ratio judged is the time from the first call reaching the server to the runs' exit
against the floor, with the whole wall and the start-up beside it. Reported per
scenario: wall, start-up, from the first call, floor, ratio, calls, calls answered 429
(and %), whether the accepted traffic exceeded a limit (replayed through fresh
buckets), and items lost (no docs/lld/active/LLD-*.md).

Everything runs under the work directory (HOME, ASSEMBLYZERO_STATE_DIR,
ASSEMBLYZERO_CREDENTIALS point into it); only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from rate_server import CALLS_PER_ITEM, DIMENSIONS, WINDOW, Call, Limits, RateServer  # noqa: E402

LATENCY = 0.3  # seconds per accepted call at the server
PARALLEL = 6
MAX_CONCURRENT = 3  # per key; two keys: the 6 workers all run
RUN_TIMEOUT = 150.0  # seconds one CLI run may take before it is killed
CALL_TIMEOUT = "30"  # ASSEMBLYZERO_CALL_TIMEOUT of the workers
ITEMS, SHARED_ITEMS = 12, 6  # the paced / no-pacing workspace; each of the shared two
QUICK_ITEMS, QUICK_SHARED_ITEMS = 8, 4
# Per item the server counts 3,023 input and 906 output tokens (drafts 401 in / 420 out,
# reviews 881 in, revision 860 in). OpenAI: requests bind: 12 items x 4 calls = 48
# requests on 2 keys of 18 rpm: the buckets (36) drain, then 0.6 requests/s (floor
# ~20 s against ~5 s of latency). Anthropic: input tokens bind (36.3k on 2 x 15k,
# then 500/s: ~13 s), output tokens nearly (10.9k on 2 x 4.5k: ~10 s).
LIMITS = {"openai": Limits(rpm=18, tpm=60_000),
          "anthropic": Limits(rpm=30, tpm=24_000, input_tpm=15_000, output_tpm=4_500)}
# 8 items: 32 requests on 2 x 14 rpm (floor ~9 s).
QUICK_LIMITS = {"openai": Limits(rpm=14, tpm=60_000)}
WIRES = ("openai", "anthropic")
KEYS = ("a", "b")
SCRUBBED = ("ASSEMBLYZERO_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_")  # not inherited
NO_SUCH_OPTION = ("No idea what", "no such option", "unrecognized arguments")

ISSUE = """# Feature {n}

## User Story
As a house-share member I want feature {n} so that settling up takes minutes, not an evening.

## Objective
Ship feature {n} behind the existing group page.

## Requirements
1. Store each entry{n} in SQLite with its group id and amount in integer cents.
2. Expose `GET /api/groups/<id>/entry{n}s` returning JSON.
3. Reject amounts above 1,000,000 cents with HTTP 400.

## Acceptance Criteria
- An entry{n} created through the API appears in the list within one request.
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    wire: str
    pacing: bool
    workspaces: int  # concurrent runs, one workspace each
    items: int  # per workspace


def scenarios(quick: bool) -> list[Scenario]:
    items, shared = (QUICK_ITEMS, QUICK_SHARED_ITEMS) if quick else (ITEMS, SHARED_ITEMS)
    wires = WIRES[:1] if quick else WIRES
    return [s for wire in wires for s in (
        Scenario(f"{wire} paced", wire, True, 1, items),
        Scenario(f"{wire} no-pacing", wire, False, 1, items),
        Scenario(f"{wire} shared", wire, True, 2, shared))
        if not (quick and s.workspaces > 1)]


# --- the floor ------------------------------------------------------------------------------

def floor(calls: Iterable[Call], limits: Mapping[str, Limits], latency: float,
          chain: int = CALLS_PER_ITEM) -> tuple[float, str]:
    """(seconds, the dimension that sets them): the earliest the accepted `calls` could all
    have been answered under the keys' `limits`, given the server's latency."""
    accepted = [c for c in calls if c.accepted]
    if not accepted:
        return 0.0, ""
    outputs = sorted(c.output_tokens for c in accepted)
    total_in, total_out = sum(c.input_tokens for c in accepted), sum(outputs)
    last_out = outputs[-1]  # the largest output is best left to the last call
    before_last = {"requests": len(accepted), "input": total_in,
                   "tokens": total_in + total_out - last_out, "output": total_out - last_out}
    best, bound = 0.0, "latency"
    for dimension in DIMENSIONS:
        caps = [lim.of(dimension) for lim in limits.values()]
        if not caps or any(cap is None for cap in caps):
            continue  # a key without this limit absorbs whatever the others cannot
        capacity = sum(cap for cap in caps if cap is not None)
        needed = max(0.0, (before_last[dimension] - capacity) / (capacity / WINDOW))
        if needed > best:
            best, bound = needed, dimension
    admitted_last = best + latency
    if admitted_last < chain * latency:
        return chain * latency, "latency"
    return admitted_last, bound


# --- the runs -------------------------------------------------------------------------------

def workspace(root: Path, items: int, first: int = 1) -> Path:
    issues = root / "docs" / "issues" / "active"
    issues.mkdir(parents=True)
    for n in range(first, first + items):
        (issues / f"{n}.md").write_text(ISSUE.format(n=n), encoding="utf-8")
    return root


def secret(wire: str, name: str) -> str:
    return f"sk-bench-{wire}-{name}-{'0' * 24}"


def credentials(path: Path, wire: str, url: str, limits: Limits) -> None:
    entries = [{"name": f"bench-{name}", "provider": wire, "key": secret(wire, name),
                "base_url": url, "max_concurrent": MAX_CONCURRENT,
                **{field: value for field, value in (("rpm", limits.rpm), ("tpm", limits.tpm),
                                                     ("input_tpm", limits.input_tpm),
                                                     ("output_tpm", limits.output_tpm))
                   if value is not None}} for name in KEYS]
    path.write_text(json.dumps({"credentials": entries}, indent=1), encoding="utf-8")
    path.chmod(0o600)


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED)}
    env.update({"HOME": str(home), "ASSEMBLYZERO_STATE_DIR": str(home / "state"),
                "ASSEMBLYZERO_CREDENTIALS": str(home / "credentials.json"),
                "ASSEMBLYZERO_CALL_TIMEOUT": CALL_TIMEOUT, "NO_PROXY": "127.0.0.1",
                "no_proxy": "127.0.0.1", "NO_COLOR": "1"})
    return env


def command(ws: Path, wire: str, pacing: bool) -> list[str]:
    spec = f"{wire}:bench-model"
    return [sys.executable, "-m", "assemblyzero", "lld-all", f"--parallel={PARALLEL}",
            "--repo", str(ws), f"--drafter={spec}", f"--reviewer={spec}",
            *([] if pacing else ["--no-pacing"])]


def run_all(argvs: list[list[str]], env: dict[str, str], logs: list[Path]
            ) -> tuple[float, list[int]]:
    """Start every run at once; (wall seconds until the last exits, their exit codes)."""
    began = time.perf_counter()
    procs = []
    try:
        for argv, log in zip(argvs, logs, strict=True):
            with open(log, "wb") as out:
                procs.append(subprocess.Popen(argv, env=env, cwd=log.parent,
                                              stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=subprocess.STDOUT, start_new_session=True))
        deadline = began + RUN_TIMEOUT
        codes = [proc.wait(timeout=max(0.1, deadline - time.perf_counter())) for proc in procs]
    except subprocess.TimeoutExpired:
        codes = [-1] * len(procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return time.perf_counter() - began, codes


def llds(ws: Path) -> int:
    return len(list((ws / "docs" / "lld" / "active").glob("LLD-*.md")))


def client_429s(ws: Path) -> int | None:
    """The 429s the run's summary counted (None: no summary)."""
    summary = ws / "logs" / "parallel" / "latest" / "summary.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return sum(int(i.get("rate_limited", 0))
                   for i in json.loads(summary.read_text())["items"])
    return None


def scenario(root: Path, case: Scenario, limits: Limits, latency: float) -> dict[str, Any]:
    home = root / "home"
    (home / "state").mkdir(parents=True)
    keys = {secret(case.wire, name): limits for name in KEYS}
    with RateServer(keys=keys, latency=latency) as server:
        credentials(home / "credentials.json", case.wire, server.base_url(case.wire), limits)
        spaces = [workspace(root / f"ws{n}", case.items, first=100 * n + 1)
                  for n in range(case.workspaces)]
        logs = [root / f"run{n}.log" for n in range(case.workspaces)]
        wall, codes = run_all([command(ws, case.wire, case.pacing) for ws in spaces],
                              environment(home), logs)
        ended = time.monotonic()  # the server's clock
        records = server.records()
        violations = server.violations()
    output = "\n".join(log.read_text(errors="replace") for log in logs)
    row: dict[str, Any] = {"scenario": case.name, "wire": case.wire, "pacing": case.pacing,
                           "runs": case.workspaces, "items": case.workspaces * case.items,
                           "limits": shown(limits), "exit_codes": codes, "skipped": None}
    if not case.pacing and any(c not in (0, 1) for c in codes) and "--no-pacing" in output \
            and any(word in output for word in NO_SUCH_OPTION):
        row["skipped"] = "the CLI has no --no-pacing yet"
        return row
    calls = [c for c in records if c.status != 401]
    limited = sum(c.status == 429 for c in calls)
    floor_s, bound = floor(records, keys, latency)
    first = min((c.at for c in records), default=ended)
    paced = max(0.0, ended - first)  # from the first call on: what the limits bear on
    done = sum(llds(ws) for ws in spaces)
    seen = [client_429s(ws) for ws in spaces]
    row.update({
        "wall_s": round(wall, 2), "startup_s": round(max(0.0, wall - paced), 2),
        "from_first_call_s": round(paced, 2),
        "floor_s": round(floor_s, 2), "floor_bound": bound,
        "wall_over_floor": round(paced / floor_s, 2) if floor_s else None,
        "calls": len(calls), "accepted": len(calls) - limited, "rate_limited": limited,
        "input_tokens": sum(c.input_tokens for c in calls if c.accepted),
        "output_tokens": sum(c.output_tokens for c in calls),
        "rate_limited_pct": round(100 * limited / len(calls), 1) if calls else 0.0,
        "client_429s": None if None in seen else sum(s for s in seen if s is not None),
        "exceeded": bool(violations), "violations": violations[:5],
        "items_done": done, "items_lost": case.workspaces * case.items - done})
    return row


def measure(workdir: Path, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Every scenario (quick: the OpenAI paced and no-pacing runs, fewer items)."""
    limits = QUICK_LIMITS if quick else LIMITS
    rows = []
    for n, case in enumerate(scenarios(quick), 1):
        root = workdir / f"{n:02d}-{case.name.replace(' ', '-')}"
        root.mkdir(parents=True)
        log(f"pacing: {case.name}: {case.workspaces} run(s) of {case.items} item(s)")
        row = scenario(root, case, limits[case.wire], LATENCY)
        log(f"pacing: {case.name}: " + (f"skipped ({row['skipped']})" if row["skipped"] else
            f"wall {row['wall_s']}s, floor {row['floor_s']}s ({row['floor_bound']}), "
            f"{row['rate_limited']}/{row['calls']} calls 429, lost {row['items_lost']}"))
        rows.append(row)
    return {"quick": quick, "latency_s": LATENCY, "parallel": PARALLEL,
            "keys": len(KEYS), "max_concurrent": MAX_CONCURRENT,
            "limits_per_key": {wire: shown(lim) for wire, lim in limits.items()},
            "calls_per_item": CALLS_PER_ITEM, "scenarios": rows}


def shown(limits: Limits) -> dict[str, float]:
    return {name: value for name, value in vars(limits).items() if value is not None}


def table(result: Mapping[str, Any]) -> str:
    head = ("scenario", "wall", "from 1st call", "floor", "ratio", "calls", "429s", "429 %",
            "exceeded", "lost")
    lines = [head]
    for r in result["scenarios"]:
        if r["skipped"]:
            lines.append((r["scenario"], f"skipped: {r['skipped']}", "", "", "", "", "", "", "",
                          ""))
            continue
        lines.append((r["scenario"], f"{r['wall_s']:.1f}s", f"{r['from_first_call_s']:.1f}s",
                      f"{r['floor_s']:.1f}s",
                      f"{r['wall_over_floor']:.2f}x", str(r["calls"]), str(r["rate_limited"]),
                      f"{r['rate_limited_pct']:.1f}", "yes" if r["exceeded"] else "no",
                      str(r["items_lost"])))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="OpenAI only, fewer items")
    parser.add_argument("--json-out", type=Path, default=None, help="write the result here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="az-pacing-") as tmp:
        began = time.perf_counter()
        result = measure(Path(tmp), args.quick, lambda text: print(text, file=sys.stderr,
                                                                   flush=True))
        result["seconds"] = round(time.perf_counter() - began, 1)
    for wire, limits in result["limits_per_key"].items():
        print(f"{wire}: {result['keys']} keys of "
              + ", ".join(f"{v:g} {k}" for k, v in limits.items()) + " each")
    print(f"{result['latency_s']}s per call; --parallel={result['parallel']}; "
          f"{result['seconds']}s in all")
    print(table(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
