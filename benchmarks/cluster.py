"""The cluster backend against local workers, and what the Dask scheduler costs us.

    python benchmarks/cluster.py [--quick] [--json-out PATH]

One `distributed.LocalCluster` (2 worker processes x 3 threads, this machine) is started
once, its start-up timed apart; every run below reaches it as `--cluster=tcp://127.0.0.1:
PORT`, so that start-up is not counted in any run (a run's own connect to the scheduler
is). Then:

  run         ITEMS items (generated from examples/workspace's six issues), LATENCY s per
              offline model call: `lld-all --parallel=6` (local workers) and `lld-all
              --cluster=tcp://...` (its default --parallel: the cluster's 6 threads), each
              on a fresh copy of the same workspace; wall time of each, the ratio cluster
              over local (the goal: <= 1.15x), the floor (rounds x calls per item x latency),
              the concurrency the journals show, and whether both wrote the same LLDs.
  attempt     one zero-latency item, cluster against local, ATTEMPT_REPEAT times each
              (alternating): the per-attempt overhead (a Dask task, the scratch workspace,
              the events), as the walls' ratio and difference, and each item's duration
              from its journal (start to end, without the CLI's start and connect).
  tasks       the scheduler's rate for tasks submitted as ours are, one `client.submit(...,
              pure=False)` each: TASKS trivial tasks (and the same carrying a 4 KB spec), from
              the first submit to the last result; tasks per second.
  events      `client.log_event(topic, msg)` from inside a task, a ~100-byte message like
              our `out` events, a subscriber attached here: the call's round trip (median
              and p95 of EVENT_SINGLE calls, one at a time, in ms), the rate one task's
              client pushes back to back (EVENT_BURST calls), the delivery to the subscriber
              (latency, all arrived, in order), and how long the control calls a task makes
              before it starts (Event.is_set/set, Variable.get) take.
  scheduler   what the scheduler still holds after the ITEMS run: the run's topic (events
              retained, their bytes), Variables, Events, topics.

Everything runs under a temp dir (HOME, ASSEMBLYZERO_STATE_DIR and ASSEMBLYZERO_CREDENTIALS
point into it, so do the Dask workers', which inherit this process's environment); only
127.0.0.1 is contacted. bench.py's `cluster` group calls `measure`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from journals import latest_events

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXAMPLES = ROOT / "examples" / "workspace" / "docs" / "issues" / "active"

WORKERS, THREADS = 2, 3  # the LocalCluster: processes x threads each
PARALLEL = WORKERS * THREADS  # the local run's --parallel, the cluster's default
CALLS_PER_ITEM = 4  # offline: draft, review, revise, review (approved at iteration 2)
GOAL_X = 1.15  # cluster wall over local wall
RUN_TIMEOUT = 300.0  # seconds one CLI run may take before it counts as broken
MESSAGE_BYTES = 100  # the event message, pickled, about


@dataclass(frozen=True)
class Sizes:
    items: int
    latency: float
    attempt_repeat: int
    tasks: int
    event_single: int
    event_burst: int


DEFAULT = Sizes(items=48, latency=1.0, attempt_repeat=3, tasks=500, event_single=300,
                event_burst=3000)
QUICK = Sizes(items=12, latency=0.2, attempt_repeat=1, tasks=200, event_single=100,
              event_burst=1000)


class Broken(Exception):
    """A measurement could not be taken (a run failed, outputs are wrong)."""


# --- workspaces and runs ------------------------------------------------------------------

def workspace(root: Path, items: int) -> Path:
    """A workspace of `items` issues, 101.., each one of the example issues (retitled)."""
    examples = sorted(EXAMPLES.glob("*.md"))
    if not examples:
        raise Broken(f"no example issues in {EXAMPLES}")
    issues = root / "docs" / "issues" / "active"
    issues.mkdir(parents=True)
    for n in range(items):
        text = examples[n % len(examples)].read_text(encoding="utf-8")
        title, _, body = text.partition("\n")
        (issues / f"{101 + n}.md").write_text(f"{title} ({n + 1})\n{body}", encoding="utf-8")
    return root


def fresh_copy(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


def az(*args: str) -> list[str]:
    return [sys.executable, "-m", "assemblyzero", *args]


def lld_all(ws: Path, flags: list[str], env: Mapping[str, str], what: str,
            timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    """One `lld-all` run (its output into a file next to the workspace): wall, exit code."""
    out = ws.parent / f"{ws.name}.out"
    os.sync()
    began = time.perf_counter()
    launched = time.time()
    with open(out, "wb") as sink:
        proc = subprocess.Popen(az("lld-all", *flags, "--repo", str(ws)), env=dict(env),
                                cwd=ws.parent, stdin=subprocess.DEVNULL, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise Broken(f"{what}: still running after {timeout:g}s; output: "
                         f"{tail(out)}") from None
    wall = time.perf_counter() - began
    if code != 0:
        raise Broken(f"{what}: exit code {code}; output: {tail(out)}")
    return {"wall_s": wall, "launched": launched, "output": str(out)}


def tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(none)"
    return " | ".join(text[-lines:])


def llds(ws: Path) -> dict[str, bytes]:
    folder = ws / "docs" / "lld" / "active"
    return {p.name: p.read_bytes() for p in sorted(folder.glob("LLD-*.md"))} \
        if folder.is_dir() else {}


def journal(ws: Path, launched: float, wall: float) -> dict[str, Any]:
    """What the run's journal says: its --parallel, the attempts, the peak concurrency,
    the first start after launch, the busy share of the slots, the items' statuses."""
    events = latest_events(ws)
    if events is None:
        return {}
    head: dict[str, Any] = next((e for e in events if e.get("event") == "run-start"), {})
    starts = [e for e in events if e.get("event") == "start"]
    ends = [e for e in events if e.get("event") == "end" and "duration" in e]
    moments = sorted([(e["ts"], 1) for e in starts] + [(e["ts"], -1) for e in ends])
    running = peak = 0
    for _, step in moments:
        running += step
        peak = max(peak, running)
    work = sum(e["duration"] for e in ends)
    slots = int(head.get("parallel") or 1)
    statuses: dict[str, int] = {}
    for e in events:
        if e.get("event") == "end":
            statuses[e["status"]] = statuses.get(e["status"], 0) + 1
    return {"parallel": head.get("parallel"), "attempts": len(starts), "peak_running": peak,
            "first_start_s": round(min(e["ts"] for e in starts) - launched, 3) if starts
            else None,
            "last_end_to_exit_s": round(launched + wall - max(e["ts"] for e in ends), 3)
            if ends else None,
            "item_s_mean": round(work / len(ends), 4) if ends else None,
            "item_s": [round(e["duration"], 4) for e in ends],
            "busy": round(work / (wall * slots), 4) if ends else None,
            "statuses": statuses, "retries": sum(e.get("event") == "retry" for e in events)}


# --- the cluster ----------------------------------------------------------------------------

def start_cluster() -> tuple[Any, float]:
    """The LocalCluster, started once (not counted in any run): it, and its start-up in s."""
    import distributed

    began = time.perf_counter()
    with warnings.catch_warnings():  # its HTTP server (no dashboard) finds 8787 taken: fine
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=THREADS,
                                           processes=True, dashboard_address=None,
                                           silence_logs=logging.ERROR)
    try:
        with distributed.Client(cluster.scheduler_address, timeout=30) as client:
            client.wait_for_workers(WORKERS, timeout=60)
    except BaseException:
        cluster.close()
        raise
    return cluster, time.perf_counter() - began


def _trivial(n: int, payload: Any = None) -> int:
    return n


def task_rate(client: Any, n: int, payload: Any = None) -> dict[str, Any]:
    """`n` tasks submitted one by one (pure=False, as the backend submits each attempt),
    from the first submit to the last result."""
    import distributed

    began = time.perf_counter()
    futures = [client.submit(_trivial, k, payload, pure=False) for k in range(n)]
    submitted = time.perf_counter() - began
    distributed.wait(futures, timeout=120)
    done = time.perf_counter() - began
    if sorted(client.gather(futures)) != list(range(n)):
        raise Broken("tasks: wrong results")
    del futures
    return {"tasks": n, "seconds": round(done, 4), "submit_s": round(submitted, 4),
            "per_s": n / done}


def _push_events(topic: str, single: int, burst: int, token: str) -> dict[str, Any]:
    """In a task: `single` log_event calls one at a time (each timed), then `burst` back
    to back; and the control calls an attempt makes before it starts."""
    from distributed import Event, get_client

    from assemblyzero.cluster.task import _command

    client = get_client()
    data = b"x" * 30  # the message, msgpack'd as log_event sends it: about MESSAGE_BYTES
    calls = []
    for seq in range(single):
        message = {"kind": "out", "token": token, "seq": seq, "at": time.time(), "data": data}
        t0 = time.perf_counter()
        client.log_event(topic, message)
        calls.append(time.perf_counter() - t0)
    began = time.perf_counter()
    for seq in range(single, single + burst):
        client.log_event(topic, {"kind": "out", "token": token, "seq": seq, "at": time.time(),
                                 "data": data})
    pushed = time.perf_counter() - began
    control = []
    for k in range(20):  # run_attempt's claim check and its first look for a word
        t0 = time.perf_counter()
        claim = Event(f"{token}-{k}-claim", client=client)
        claim.is_set()
        claim.set()
        _command(client, f"{token}-words", f"{token}-{k}")
        control.append(time.perf_counter() - t0)
        claim.clear()
    return {"call_s": calls, "burst_s": pushed, "control_s": control}


def events(client: Any, topic: str, single: int, burst: int) -> dict[str, Any]:
    import msgpack  # type: ignore[import-untyped]

    got: list[tuple[float, int, float]] = []  # (received, seq, sent)
    arrived = threading.Event()
    total = single + burst

    def handler(event: tuple[float, Any]) -> None:
        message = event[1]
        got.append((time.time(), int(message["seq"]), float(message["at"])))
        if len(got) >= total:
            arrived.set()

    client.subscribe_topic(topic, handler)
    try:
        time.sleep(0.2)  # the subscription reaches the scheduler
        token = "assemblyzero-bench-events-1"
        size = len(msgpack.packb({"kind": "out", "token": token, "seq": 1000,
                                  "at": time.time(), "data": b"x" * 30}))
        result = client.submit(_push_events, topic, single, burst, token,
                               pure=False).result(timeout=300)
        arrived.wait(30)
    finally:
        client.unsubscribe_topic(topic)
    calls = sorted(result["call_s"])
    seqs = [s for _, s, _ in got]
    delivery = sorted(r - a for r, s, a in got if s < single)
    burst_got = [(r, s) for r, s, _ in got if s >= single]
    first_sent = min((a for _, s, a in got if s == single), default=None)
    return {
        "message_bytes_msgpack": size,
        "round_trip_ms_median": 1000 * statistics.median(calls),
        "round_trip_ms_p95": 1000 * calls[int(0.95 * (len(calls) - 1))],
        "round_trip_ms_max": 1000 * calls[-1],
        "pushed_per_s": burst / result["burst_s"],
        "delivered": len(got), "sent": total, "in_order": seqs == sorted(seqs),
        "delivery_ms_median": 1000 * statistics.median(delivery) if delivery else None,
        "delivered_per_s": (len(burst_got) / (max(r for r, _ in burst_got) - first_sent))
        if burst_got and first_sent is not None else None,
        "control_ms_median": 1000 * statistics.median(result["control_s"]),
    }


def scheduler_state(client: Any, topics: list[str]) -> dict[str, Any]:
    """What the scheduler holds after the runs: topics, the runs' retained events, ..."""

    def look(dask_scheduler: Any, topics: list[str]) -> dict[str, Any]:
        import pickle

        broker = dask_scheduler._broker
        out: dict[str, Any] = {"topics": len(broker._topics), "runs": {}}
        for name in topics:
            topic = broker._topics.get(name)
            if topic is None:
                continue
            out["runs"][name] = {"published": topic.count, "retained": len(topic.events),
                                 "retained_bytes_pickled": sum(len(pickle.dumps(e))
                                                       for e in topic.events),
                                 "subscribers": len(topic.subscribers)}
        ext = dask_scheduler.extensions
        with contextlib.suppress(Exception):
            out["variables"] = len(ext["variables"].variables)
        with contextlib.suppress(Exception):
            out["events"] = len(ext["events"]._events)
        with contextlib.suppress(Exception):
            out["semaphores"] = len(ext["semaphores"].max_leases)
        out["tasks"] = len(dask_scheduler.tasks)
        return out

    try:
        return dict(client.run_on_scheduler(look, topics=topics))
    except Exception as exc:  # private attributes of distributed: for information only
        return {"error": f"{type(exc).__name__}: {exc}"}


def run_topics(ws: Path) -> list[str]:
    runs = ws / "logs" / "parallel"
    return [f"assemblyzero-{d.name}" for d in sorted(runs.iterdir())
            if d.is_dir() and not d.is_symlink()] if runs.is_dir() else []


# --- all of it ------------------------------------------------------------------------------

def measure(workdir: Path, quick: bool, log: Callable[[str], None],
            env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every measurement above; `env` is the runs' environment (default: this one's)."""
    import cloudpickle  # type: ignore[import-untyped]
    import distributed

    if __name__ != "__main__":  # the tasks below go by value: the workers need not find us
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    sizes = QUICK if quick else DEFAULT
    base = {k: v for k, v in (env or os.environ).items()
            if not k.startswith(("ASSEMBLYZERO_OFFLINE_", "ASSEMBLYZERO_CLUSTER"))}
    slow = {**base, "ASSEMBLYZERO_OFFLINE_LATENCY": f"{sizes.latency:g}"}
    fast = {**base, "ASSEMBLYZERO_OFFLINE_LATENCY": "0"}
    template = workspace(workdir / "template", sizes.items)
    single = workspace(workdir / "template-1", 1)
    result: dict[str, Any] = {"quick": quick, "items": sizes.items, "latency_s": sizes.latency,
                              "workers": WORKERS, "threads": THREADS, "parallel": PARALLEL,
                              "calls_per_item": CALLS_PER_ITEM}
    rounds = -(-sizes.items // PARALLEL)
    result["floor_s"] = rounds * CALLS_PER_ITEM * sizes.latency

    # the local run first, with no cluster on the machine yet
    log(f"cluster: {sizes.items} items at {sizes.latency:g}s/call, local --parallel={PARALLEL}")
    ws_local = fresh_copy(template, workdir / "run-local")
    local = lld_all(ws_local, [f"--parallel={PARALLEL}"], slow,
                    f"lld-all --parallel={PARALLEL} ({sizes.items} items)")
    local["journal"] = journal(ws_local, local["launched"], local["wall_s"])
    log(f"cluster: local {local['wall_s']:.2f}s")

    cluster, startup = start_cluster()
    result["startup_s"] = startup
    address = cluster.scheduler_address
    result["address"] = address
    log(f"cluster: LocalCluster({WORKERS}x{THREADS}) up in {startup:.2f}s at {address}")
    try:
        ws_cluster = fresh_copy(template, workdir / "run-cluster")
        remote = lld_all(ws_cluster, [f"--cluster={address}"], slow,
                         f"lld-all --cluster={address} ({sizes.items} items)")
        remote["journal"] = journal(ws_cluster, remote["launched"], remote["wall_s"])
        log(f"cluster: cluster {remote['wall_s']:.2f}s")
        result["local"], result["cluster"] = local, remote
        result["ratio"] = remote["wall_s"] / local["wall_s"]
        ours, theirs = llds(ws_cluster), llds(ws_local)
        differ = sorted(n for n in set(ours) | set(theirs) if ours.get(n) != theirs.get(n))
        result["outputs"] = {"local_llds": len(theirs), "cluster_llds": len(ours),
                             "identical": not differ, "differing": differ[:10]}
        if len(ours) != sizes.items or len(theirs) != sizes.items:
            raise Broken(f"LLDs written: cluster {len(ours)}, local {len(theirs)}, of "
                         f"{sizes.items}")
        with distributed.Client(address, timeout=30) as client:
            result["scheduler_after_run"] = scheduler_state(client, run_topics(ws_cluster))

            # one zero-latency item, cluster against local, alternating
            attempts: dict[str, list[dict[str, Any]]] = {"cluster": [], "local": []}
            for i in range(sizes.attempt_repeat):
                for how in (["cluster", "local"] if i % 2 == 0 else ["local", "cluster"]):
                    ws = fresh_copy(single, workdir / f"attempt-{how}-{i}")
                    flags = [f"--cluster={address}"] if how == "cluster" else []
                    run = lld_all(ws, flags, fast, f"lld-all {' '.join(flags)} (1 item)")
                    if len(llds(ws)) != 1:
                        raise Broken(f"attempt ({how}): no LLD written")
                    j = journal(ws, run["launched"], run["wall_s"])
                    attempts[how].append({"wall_s": run["wall_s"],
                                          "item_s": j.get("item_s_mean"),
                                          "first_start_s": j.get("first_start_s")})
            walls = {h: statistics.median(r["wall_s"] for r in rs) for h, rs in attempts.items()}
            items = {h: statistics.median(r["item_s"] for r in rs if r["item_s"] is not None)
                     for h, rs in attempts.items()}
            result["attempt"] = {"runs": attempts, "cluster_wall_s": walls["cluster"],
                                 "local_wall_s": walls["local"],
                                 "ratio": walls["cluster"] / walls["local"],
                                 "extra_ms": 1000 * (walls["cluster"] - walls["local"]),
                                 "cluster_item_s": items["cluster"],
                                 "local_item_s": items["local"],
                                 "item_extra_ms": 1000 * (items["cluster"] - items["local"])}
            log(f"cluster: one zero-latency item: cluster {walls['cluster']:.3f}s, local "
                f"{walls['local']:.3f}s (item {items['cluster']:.3f}s / {items['local']:.3f}s)")

            task_rate(client, 50)  # warm: the function's pickle, the workers' first tasks
            rates = [task_rate(client, sizes.tasks) for _ in range(3)]
            spec = {"files": {"docs/issues/active/101.md": b"y" * 2000}, "args": ["x" * 40] * 20,
                    "env": {"ASSEMBLYZERO_OFFLINE_LATENCY": "1"}, "pace": None}
            loaded = [task_rate(client, sizes.tasks, spec) for _ in range(3)]
            result["tasks"] = {
                "per_s": statistics.median(r["per_s"] for r in rates), "runs": rates,
                "with_4kb_spec_per_s": statistics.median(r["per_s"] for r in loaded),
                "with_4kb_spec_runs": loaded}
            log(f"cluster: tasks {result['tasks']['per_s']:.0f}/s "
                f"({result['tasks']['with_4kb_spec_per_s']:.0f}/s with a 4 KB argument)")

            result["events"] = events(client, f"assemblyzero-bench-{os.getpid()}",
                                      sizes.event_single, sizes.event_burst)
            ev = result["events"]
            log(f"cluster: log_event {ev['round_trip_ms_median']:.2f} ms (p95 "
                f"{ev['round_trip_ms_p95']:.2f}), {ev['pushed_per_s']:.0f}/s pushed, "
                f"{ev['delivered']}/{ev['sent']} delivered")
            if ev["delivered"] != ev["sent"] or not ev["in_order"]:
                raise Broken(f"events: {ev['delivered']} of {ev['sent']} delivered, in order: "
                             f"{ev['in_order']}")
    finally:
        cluster.close()
    return result


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def report(r: Mapping[str, Any]) -> str:
    a, t, e = r["attempt"], r["tasks"], r["events"]
    return "\n".join([
        f"{r['items']} items at {r['latency_s']:g}s/call: cluster {r['cluster']['wall_s']:.2f}s, "
        f"local --parallel={r['parallel']} {r['local']['wall_s']:.2f}s: {r['ratio']:.3f}x "
        f"(goal <= {GOAL_X}x; floor {r['floor_s']:g}s); LocalCluster start-up "
        f"{r['startup_s']:.2f}s (not counted); same LLDs: {r['outputs']['identical']}",
        f"one zero-latency item: cluster {a['cluster_wall_s']:.3f}s, local "
        f"{a['local_wall_s']:.3f}s ({a['ratio']:.2f}x, +{a['extra_ms']:.0f} ms; the item "
        f"itself +{a['item_extra_ms']:.0f} ms)",
        f"scheduler: {t['per_s']:.0f} tasks/s ({t['with_4kb_spec_per_s']:.0f}/s with a 4 KB "
        "argument)",
        f"log_event from a task: {e['round_trip_ms_median']:.2f} ms (p95 "
        f"{e['round_trip_ms_p95']:.2f} ms), {e['pushed_per_s']:.0f}/s pushed by one client, "
        f"{e['delivered']}/{e['sent']} delivered in order, delivery "
        f"{e['delivery_ms_median']:.2f} ms",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12 items at 0.2 s per call")
    parser.add_argument("--json-out", type=Path, default=None, help="write the result here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="az-cluster-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        for name in [n for n in os.environ if n.startswith("ASSEMBLYZERO_")]:
            del os.environ[name]
        os.environ.update({"HOME": str(home), "ASSEMBLYZERO_STATE_DIR": str(home / "state"),
                           "ASSEMBLYZERO_CREDENTIALS": str(home / "credentials.json")})
        began = time.perf_counter()
        result = measure(Path(tmp), args.quick,
                         lambda text: print(text, file=sys.stderr, flush=True))
        result["seconds"] = round(time.perf_counter() - began, 1)
    print(report(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(rounded(result), indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
