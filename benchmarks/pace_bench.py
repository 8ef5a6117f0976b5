"""Pacing under enforced rate limits: `python benchmarks/pace_bench.py [--quick]`.

For each wire format, a `LimitedAPI` (benchmarks/limited_api.py) on 127.0.0.1 enforces
per-key limits, and the real CLI runs `lld-all --parallel=6` on ITEMS items (4 calls
each) with two keys of 3 slots:

  openai     19 requests per minute per key, known to the tool only from the server's
             x-ratelimit-* headers (the credentials set no limit)
  anthropic  11,000 output tokens per minute per key (50 requests), set as `output_tpm`
             in the credentials too, refined by the anthropic-ratelimit-* headers

Scenarios, each on a fresh server and state directory: `paced` (the default),
`unpaced` (`--no-pacing`, with attempts enough to finish), and `two runs`: two
workspaces of ITEMS/2 items run at once (`--parallel=3` each) on the same two keys.

The floor is what the limits allow: a bucket holds a minute's allowance and refills at
limit/60 per second, so a demand D over two keys of limit L takes (D - 2L) / (2L/60)
seconds beyond the first burst (0 when it fits in the burst), in the tightest of the
limited dimensions, with D what the server admitted in that scenario; plus one call's
latency, and never less than the items' own chain (ceil(items / 6) x 4 calls x latency).
The limits bear from the first call on: what comes before it is the tool's start-up
(processes, SDK imports: the first_worker and sdk_start rows measure it), so the ratio
is the time from the first call reaching the server to the run's exit against the
floor; the whole wall and the start-up are reported beside it. Reported per scenario:
wall, start-up, from the first call, floor, ratio, calls, calls answered 429 and their
share, and items not done (lost). The goal (SPEC section 8): paced wall <= 1.15x the
floor, <= 2 % of calls answered 429, the two runs together within the limits (<= 2 %).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from limited_api import LimitedAPI, Limits  # noqa: E402

ITEMS = 12
LATENCY = 0.2  # seconds the server takes per call
PARALLEL = 6
CALLS_PER_ITEM = 4
RUN_TIMEOUT = 600.0
WIRES: dict[str, dict[str, Any]] = {
    "openai": {"server": Limits(rpm=19), "credential": {}},
    "anthropic": {"server": Limits(rpm=50, output_tpm=11_000),
                  "credential": {"output_tpm": 11_000}},
}
SECRETS = ("sk-bench-key-a-0123456789", "sk-bench-key-b-0123456789")


def workspace(path: Path, ids: list[str]) -> Path:
    active = path / "docs" / "issues" / "active"
    active.mkdir(parents=True)
    (path / "docs" / "lld" / "active").mkdir(parents=True)
    for item in ids:
        (active / f"{item}.md").write_text(
            f"# Feature {item}\n\n## Objective\nShip feature {item} behind the group page.\n\n"
            "## Requirements\n1. Store it in SQLite.\n2. Expose it as JSON.\n", encoding="utf-8")
    return path


def done(ws: Path) -> int:
    return len(list((ws / "docs" / "lld" / "active").glob("LLD-*.md")))


def floor(api: LimitedAPI, limits: Limits, items: int) -> tuple[float, str]:
    """The seconds the limits allow for what the server admitted, and the binding one."""
    demand, keys = api.demand(), len(SECRETS)
    per_key = {"requests": limits.rpm, "tokens": limits.tpm, "input": limits.input_tpm,
               "output": limits.output_tpm}
    best, why = 0.0, "latency"
    for dimension, limit in per_key.items():
        if not limit:
            continue
        capacity = keys * limit
        seconds = max(0.0, (demand[dimension] - capacity) / (capacity / 60.0))
        if seconds > best:
            best, why = seconds, dimension
    chain = math.ceil(items / PARALLEL) * CALLS_PER_ITEM * LATENCY
    return max(best + LATENCY, chain), why


def run_scenario(root: Path, wire: str, how: str, log: Callable[[str], None]) -> dict[str, Any]:
    setup = WIRES[wire]
    box = root / f"{wire}-{how.replace(' ', '-')}"
    shutil.rmtree(box, ignore_errors=True)
    box.mkdir(parents=True)
    with LimitedAPI({s: setup["server"] for s in SECRETS}, latency=LATENCY) as api:
        url = api.url + ("/v1" if wire == "openai" else "")
        creds = box / "credentials.json"
        creds.write_text(json.dumps({"credentials": [
            {"name": f"key-{n}", "provider": wire, "key": secret, "base_url": url,
             "max_concurrent": 3, **setup["credential"]}
            for n, secret in zip("ab", SECRETS, strict=True)]}), encoding="utf-8")
        creds.chmod(0o600)
        env = {**os.environ, "HOME": str(box), "ASSEMBLYZERO_STATE_DIR": str(box / "state"),
               "ASSEMBLYZERO_CREDENTIALS": str(creds), "CI": "true"}
        for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY",
                     "ANTHROPIC_API_KEY"):
            env.pop(name, None)
        ids = [f"b{n:02d}" for n in range(1, ITEMS + 1)]
        groups = [ids[: ITEMS // 2], ids[ITEMS // 2:]] if how == "two runs" else [ids]
        flags = ["--no-pacing", "--max-attempts=100"] if how == "unpaced" else []
        parallel = PARALLEL // len(groups)
        spaces = [workspace(box / f"ws{n}", group) for n, group in enumerate(groups)]
        started = time.monotonic()
        procs = [subprocess.Popen(
            [sys.executable, "-m", "assemblyzero", "lld-all", f"--parallel={parallel}",
             "--repo", str(ws), f"--drafter={wire}:bench-model",
             f"--reviewer={wire}:bench-model", *flags],
            env=env, cwd=box, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for ws in spaces]
        outputs = [p.communicate(timeout=RUN_TIMEOUT)[0] for p in procs]
        ended = time.monotonic()
        wall = ended - started
        first = min((r.t for r in api.records), default=ended)  # the server's clock is ours
        for ws, out in zip(spaces, outputs, strict=True):
            (ws / "run.log").write_text(out, encoding="utf-8")
        least, why = floor(api, setup["server"], ITEMS)
        calls, refused = api.calls(), api.refused()
    lost = ITEMS - sum(done(ws) for ws in spaces)
    paced = ended - first  # from the first call: what the limits bear on
    result = {"wire": wire, "scenario": how, "wall": round(wall, 2),
              "startup": round(first - started, 2), "from_first_call": round(paced, 2),
              "floor": round(least, 2), "binding": why, "ratio": round(paced / least, 3),
              "calls": calls,
              "rate_limited": refused, "rate_limited_pct": round(100.0 * refused / calls, 2)
              if calls else 0.0, "lost": lost,
              "exit_codes": [p.returncode for p in procs]}
    log(f"pacing {wire} {how}: wall {wall:.1f}s ({paced:.1f}s from the first call), "
        f"floor {least:.1f}s ({why}), "
        f"{refused}/{calls} calls answered 429, {lost} lost")
    return result


def measure(workdir: Path, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Every scenario (quick: the paced and two-run ones of the openai wire only)."""
    wires = ["openai"] if quick else list(WIRES)
    scenarios = ["paced", "two runs"] if quick else ["paced", "unpaced", "two runs"]
    runs = [run_scenario(workdir, wire, how, log) for wire in wires for how in scenarios]
    return {"items": ITEMS, "latency": LATENCY, "parallel": PARALLEL, "runs": runs}


def table(data: dict[str, Any]) -> str:
    rows = [("wire", "scenario", "wall", "from 1st call", "floor", "ratio", "calls", "429s",
             "lost")]
    rows += [(r["wire"], r["scenario"], f"{r['wall']:.1f}s", f"{r['from_first_call']:.1f}s",
              f"{r['floor']:.1f}s ({r['binding']})",
              f"{r['ratio']:.2f}x", str(r["calls"]),
              f"{r['rate_limited']} ({r['rate_limited_pct']:.1f} %)", str(r["lost"]))
             for r in data["runs"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the openai wire only, no unpaced")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="az-pace-") as tmp:
        data = measure(Path(tmp), args.quick, lambda line: print(line, file=sys.stderr))
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
