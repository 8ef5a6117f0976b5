"""The cluster backend on a real Dask cluster on 127.0.0.1: a LocalCluster of worker
processes for most tests, the real `dask scheduler` / `dask worker` commands for one.

Runs go through the CLI as a user's would (`--cluster=tcp://127.0.0.1:PORT`), so the
coordinator is a process of its own, and the Dask workers run the real worker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, cli, journal, latest_run, make_workspace, summary
from test_json_schemas import assert_valid

pytestmark = pytest.mark.e2e


def dask() -> Any:
    """distributed, imported when a test needs it (collecting the unit tier imports none)."""
    return pytest.importorskip("distributed")

KEY = "sk-clustertest-0123456789abcdef"  # the offline key the cluster's hosts hold
OTHER_KEY = "sk-otherteam-0123456789abcdef"  # a key of another credential, also on the hosts


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Two worker processes of 3 threads; their environment holds the test key."""
    home = tmp_path_factory.mktemp("cluster-home")
    env = {"HOME": str(home), "ASSEMBLYZERO_STATE_DIR": str(home / "state"),
           "ASSEMBLYZERO_CREDENTIALS": str(home / "none.json"), "AZ_CLUSTER_KEY": KEY,
           "AZ_OTHER_KEY": OTHER_KEY}
    # `env`: also the environment of a worker its nanny restarts (after a kill)
    local = dask().LocalCluster(n_workers=2, threads_per_worker=3, processes=True,
                                     dashboard_address=":0", silence_logs=40, env=env)
    client = dask().Client(local)
    try:
        yield client
    finally:
        client.close()
        local.close()


def address(client: object) -> str:
    return str(client.scheduler.address)  # type: ignore[attr-defined]


def credentials(home: Path, max_concurrent: int, variable: str = "AZ_CLUSTER_KEY") -> None:
    (home / "credentials.json").write_text(json.dumps({"credentials": [
        {"name": "team-a", "provider": "offline", "key_env": variable,
         "max_concurrent": max_concurrent}]}))


def tree(root: Path) -> dict[str, str]:
    """Every output file's text (the LLD index without its times)."""
    out = {}
    for path in sorted((root / "docs").rglob("*")):
        if path.is_file():
            text = path.read_text()
            if path.name == "status.json":
                text = re.sub(r'"updated": "[^"]*"', "", text)
            out[str(path.relative_to(root))] = text
    return out


def test_a_cluster_run_writes_the_same_files_as_a_local_run_with_prefixed_lines(
        cluster: object, tmp_path: Path):
    local = make_workspace(tmp_path / "local", issues=["41", "42", "43", "44"])
    remote = make_workspace(tmp_path / "remote", issues=["41", "42", "43", "44"])
    env = {"ASSEMBLYZERO_OFFLINE_LATENCY": "0"}
    assert cli("lld-all", "--parallel=3", "--repo", str(local), env=env).code == 0
    run = cli("lld-all", f"--cluster={address(cluster)}", "--repo", str(remote), env=env)
    assert run.code == 0, run.out + run.err
    assert tree(remote) == tree(local)
    assert not list((remote / ".assemblyzero/checkpoints").glob("*.db"))
    lines = run.out.splitlines()
    assert any(line.startswith("[LLD-041]") and "finalize: wrote" in line for line in lines)
    assert all(re.match(r"\[(LLD-04[1-4]|COORDINATOR)\] ", line) for line in lines), lines
    assert "slot(s)" in run.out and "6 item(s) at a time" in run.out
    data = summary(latest_run(remote))
    assert_valid("summary", data)
    assert {item["host"] for item in data["items"]} == {socket.gethostname()}
    assert "HOST" in run.out
    log = (latest_run(remote) / "lld-41.log").read_text()
    assert "finalize: wrote docs/lld/active/LLD-041.md" in log  # written by the coordinator

    def left(dask_scheduler: object) -> list[str]:  # what the run left on the scheduler
        topics = list(dask_scheduler._broker._topics)  # type: ignore[attr-defined]
        return [str(k) for k in [*topics, *dask_scheduler.task_metadata]  # type: ignore[attr-defined]
                if str(k).startswith(f"assemblyzero-{latest_run(remote).name}")]

    assert cluster.run_on_scheduler(left) == []  # type: ignore[attr-defined]


def test_a_killed_dask_worker_costs_only_the_call_in_flight(cluster: object, tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["51"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", f"--cluster={address(cluster)}",
         "--repo", str(ws)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "0.6"})
    log = ws / "logs/parallel/latest/lld-51.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (  # the draft is done: the review is in flight
            log.exists() and "review: calling" in log.read_text()):
        time.sleep(0.02)
    assert "draft: reply in" in log.read_text()
    running = {addr: keys for addr, keys in cluster.processing().items() if keys}  # type: ignore[attr-defined]
    assert len(running) == 1
    pids = cluster.run(os.getpid)  # type: ignore[attr-defined]
    os.kill(pids[next(iter(running))], signal.SIGKILL)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    assert "was lost mid-item; resuming from its checkpoint" in out
    completed = _completed_calls((latest_run(ws) / "lld-51.log").read_text())
    assert completed.count(("draft", "1")) == 1  # done before the kill, never again
    assert len(completed) == len(set(completed)), completed  # no completed call twice
    data = summary(latest_run(ws))
    assert data["items"][0]["status"] == "done" and data["items"][0]["attempts"] == 2
    assert (ws / "docs/lld/active/LLD-051.md").exists()
    events = journal(latest_run(ws))
    assert [e["kind"] for e in events if e["event"] == "retry"] == ["lost"]
    # Each attempt journals when it began on its Dask worker's host, and its end names it.
    assert [(e["event"], e.get("host")) for e in events if e["event"] in ("began", "end")] \
        == [("began", socket.gethostname()), ("end", socket.gethostname())] * 2
    for event in events:  # a cluster run's records are the documented formats
        assert_valid("journal-event", event)
    assert_valid("summary", data)


def _completed_calls(log: str) -> list[tuple[str, str]]:
    """(role, iteration) of every call whose reply came, in the order made."""
    done, pending = [], None
    for line in log.splitlines():
        if m := re.search(r"(\w+): calling .*\(iteration (\d+)\)", line):
            pending = (m.group(1), m.group(2))
        elif pending and re.search(rf"{pending[0]}: reply in", line):
            done.append(pending)
            pending = None
    return done


def test_two_concurrent_runs_never_exceed_a_keys_max_concurrent(
        cluster: object, tmp_path: Path, isolated_home: Path):
    credentials(isolated_home, max_concurrent=2)
    env = {"ASSEMBLYZERO_OFFLINE_LATENCY": "0.1", "AZ_CLUSTER_KEY": KEY}
    spaces = [make_workspace(tmp_path / f"ws{n}", issues=[str(60 + n * 5 + k) for k in range(4)])
              for n in range(2)]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", f"--cluster={address(cluster)}",
         "--parallel=4", "--repo", str(ws)], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env={**os.environ, **env}) for ws in spaces]
    outs = [p.communicate(timeout=90)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    spans = []
    for ws in spaces:
        started = {}
        for event in journal(latest_run(ws)):
            if event["event"] == "start":
                started[event["item"]] = event["ts"]
            elif event["event"] == "end" and event["item"] in started:
                spans.append((started.pop(event["item"]), event["ts"]))
    peak = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert peak == 2  # the key's two slots were used, never a third, across both runs
    assert KEY not in "".join(outs)


def test_ctrl_c_stops_the_tasks_keeps_checkpoints_and_exits_130(cluster: object,
                                                                tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["71", "72"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", f"--cluster={address(cluster)}",
         "--repo", str(ws), "--grace=5"], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "1.5"})
    checkpoints = [ws / f".assemblyzero/checkpoints/lld-{n}.db" for n in (71, 72)]
    deadline = time.monotonic() + 60
    while not all(p.exists() for p in checkpoints) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert all(p.exists() for p in checkpoints)
    assert {i["status"] for i in summary(latest_run(ws))["items"]} == {"interrupted"}
    time.sleep(0.5)
    assert not any(cluster.processing().values())  # type: ignore[attr-defined]


def test_a_host_without_the_key_fails_the_item_naming_host_and_variable(
        cluster: object, tmp_path: Path, isolated_home: Path):
    credentials(isolated_home, max_concurrent=2, variable="AZ_NOT_ON_THE_HOSTS")
    ws = make_workspace(tmp_path / "ws", issues=["81"])
    run = cli("lld-all", f"--cluster={address(cluster)}", "--repo", str(ws),
              env={"AZ_NOT_ON_THE_HOSTS": "sk-only-here-0123456789abcdef"})
    assert run.code == 1
    item = summary(latest_run(ws))["items"][0]
    assert item["status"] == "failed"
    assert "AZ_NOT_ON_THE_HOSTS is not set" in item["reason"]
    assert socket.gethostname() in item["reason"]
    assert "sk-only-here" not in run.out + run.err


def test_an_unreachable_scheduler_is_a_usage_error_before_any_item(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["91"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = cli("lld-all", f"--cluster=tcp://127.0.0.1:{port}", "--repo", str(ws),
              env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
    assert run.code == 2
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in run.err
    assert "Traceback" not in run.err
    assert not (ws / "logs").exists()


def test_without_the_extra_cluster_is_a_clear_usage_error(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["92"])
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "distributed.py").write_text("raise ImportError('not installed')\n")
    run = cli("dry-run", "--cluster=local:1", "--repo", str(ws),
              env={"PYTHONPATH": str(hide)})
    assert run.code == 2
    assert "pip install 'assemblyzero[cluster]'" in run.err


def test_the_real_dask_cli_runs_every_item_and_dry_run_counts_its_slots(tmp_path: Path):
    """`dask scheduler` and two `dask worker` processes, started as an operator would."""
    dask = shutil.which("dask", path=str(Path(sys.executable).parent))
    assert dask
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        for n in range(2):
            procs.append(subprocess.Popen(
                [dask, "worker", url, "--nthreads", "2", "--no-dashboard", "--name", f"w{n}",
                 "--local-directory", str(tmp_path / f"w{n}")], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ws = make_workspace(tmp_path / "ws", issues=["101", "102", "103"])
        plan = _until_ready(ws, url)
        assert_valid("plan", plan)
        assert plan["cluster"]["workers"] == 2 and plan["cluster"]["slots"] == 4
        assert plan["parallel"] == 4
        run = cli("lld-all", f"--cluster={url}", "--repo", str(ws),
                  env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0"})
        assert run.code == 0, run.out + run.err
        assert sorted(p.name for p in (ws / "docs/lld/active").iterdir()) == [
            "LLD-101.md", "LLD-102.md", "LLD-103.md"]
        status = cli("status", f"--cluster={url}", "--repo", str(ws))
        assert status.code == 0 and "2 worker(s)" in status.out
        as_json = cli("status", "--json", f"--cluster={url}", "--repo", str(ws))
        assert_valid("status", json.loads(as_json.out))
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _until_ready(ws: Path, url: str) -> dict:  # type: ignore[type-arg]
    """The plan, once both workers have joined (they start in a few seconds)."""
    client = dask().Client(url, timeout=30, set_as_default=False)
    try:
        client.wait_for_workers(2, timeout=60)
    finally:
        client.close()
    run = cli("dry-run", "--json", f"--cluster={url}", "--repo", str(ws), "--kind=lld")
    assert run.code == 0, run.err
    return json.loads(run.out)  # type: ignore[no-any-return]


def test_tasks_stop_their_workers_once_the_coordinator_is_gone(cluster: object,
                                                               tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["95"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", f"--cluster={address(cluster)}",
         "--repo", str(ws)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "5"})
    deadline = time.monotonic() + 60
    while not _workers_on(cluster) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _workers_on(cluster)
    proc.kill()  # SIGKILL: nothing of ours runs on after it
    proc.wait()
    deadline = time.monotonic() + 30
    while _workers_on(cluster) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _workers_on(cluster)  # the task saw no heartbeat, and stopped its worker


def _workers_on(cluster: object) -> list[int]:
    """The pids of our worker processes the cluster's Dask workers have started."""

    def ours() -> list[int]:
        import psutil

        found = []
        for child in psutil.Process().children(recursive=True):
            try:  # a zombie has ended: only its exit status is left to collect
                if (child.status() != psutil.STATUS_ZOMBIE
                        and "assemblyzero.worker" in " ".join(child.cmdline())):
                    found.append(child.pid)
            except psutil.Error:  # gone meanwhile
                continue
        return found

    found = cluster.run(ours)  # type: ignore[attr-defined]
    return [pid for pids in found.values() for pid in pids]


def test_the_cluster_store_shares_slots_rests_and_budgets_between_clients(cluster: object):
    from assemblyzero.cluster.store import PREFIX, ClusterStore, SlotsDiffer
    from assemblyzero.keys.leases import Busy, Lease
    from assemblyzero.keys.pacing import Limits, Need

    other = dask().Client(address(cluster), set_as_default=False)
    try:
        a, b = ClusterStore(cluster), ClusterStore(other)  # type: ignore[arg-type]
        name = f"share-{os.getpid()}"
        leases = [a.acquire(name, 2, "run-a", "x"), a.acquire(name, 2, "run-a", "y")]
        assert all(isinstance(lease, Lease) for lease in leases)
        assert isinstance(b.acquire(name, 2, "run-b", "z"), Busy)  # the other run's too
        assert len(b.peek(name)["holders"]) == 2
        a.release(leases[0])  # type: ignore[arg-type]
        taken = b.acquire(name, 2, "run-b", "z")
        assert isinstance(taken, Lease)
        b.release(taken)
        a.release(leases[1])  # type: ignore[arg-type]
        with pytest.raises(SlotsDiffer, match="another max_concurrent than this run's 3"):
            b.acquire(name, 3, "run-b", "z")  # another run's file says 3: said, not a crash
        limits = Limits(rpm=2)
        assert a.reserve(name, limits, Need()) == 0 and b.reserve(name, limits, Need()) == 0
        assert a.reserve(name, limits, Need()) > 0  # the minute's two requests are spent
        until = b.cool_down(name, 30.0, jitter=False)
        assert a.peek(name)["cooldown_until"] == pytest.approx(until)
        busy = a.acquire(name, 2, "run-a", "w")
        assert isinstance(busy, Busy) and "cooling down" in busy.reason
        # a record another (older, hostile) run wrote: reset, never believed
        cluster.set_metadata([PREFIX, name], '{"cooldown_until": 1e300, "streak": "x"')  # type: ignore[attr-defined]
        assert a.peek(name)["cooldown_until"] == 0.0
        cluster.set_metadata([PREFIX, name], json.dumps({"cooldown_until": 1e300}))  # type: ignore[attr-defined]
        assert a.peek(name)["cooldown_until"] < time.time() + 86400 * 2
    finally:
        other.close()


def test_output_folders_that_are_links_inside_the_workspace_get_the_files(
        cluster: object, tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["96"])
    (ws / "generated/lld").mkdir(parents=True)
    (ws / "docs/lld").symlink_to(ws / "generated/lld")
    run = cli("lld-all", f"--cluster={address(cluster)}", "--repo", str(ws),
              env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0"})
    assert run.code == 0, run.out + run.err
    assert (ws / "generated/lld/active/LLD-096.md").is_file()
    assert "approved" in (ws / "generated/lld/status.json").read_text()


def test_local_n_survives_a_terminal_ctrl_c_and_keeps_the_checkpoints(tmp_path: Path):
    """local:N's worker processes share the terminal's process group: Ctrl+C there must
    reach the coordinator only, which stops them in order."""
    ws = make_workspace(tmp_path / "ws", issues=["97", "98"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", "--cluster=local:1x2",
         "--repo", str(ws)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
        env={**os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "1.5"})
    checkpoints = [ws / f".assemblyzero/checkpoints/lld-{n}.db" for n in (97, 98)]
    deadline = time.monotonic() + 90
    while not all(p.exists() for p in checkpoints) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl+C: the whole group
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 130, out
    assert "KeyboardInterrupt" not in out and "Traceback" not in out
    assert all(p.exists() for p in checkpoints)
    assert {i["status"] for i in summary(latest_run(ws))["items"]} == {"interrupted"}


def test_the_worker_on_a_host_sees_no_credential_variable_of_the_run(
        cluster: object, tmp_path: Path, isolated_home: Path):
    """Its key arrives on the secrets pipe; the host's variables of every credential listed
    (leased or not) are kept out of its environment, as a local worker's are."""
    (isolated_home / "credentials.json").write_text(json.dumps({"credentials": [
        # names of their own: a key's slots on the shared cluster keep their max_concurrent
        {"name": "env-a", "provider": "offline", "key_env": "AZ_CLUSTER_KEY"},
        {"name": "env-b", "provider": "openai", "key_env": "AZ_OTHER_KEY"}]}))
    ws = make_workspace(tmp_path / "ws", issues=["99"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", f"--cluster={address(cluster)}",
         "--repo", str(ws)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "0.5",
                        "AZ_CLUSTER_KEY": KEY})
    environs: list[bytes] = []
    deadline = time.monotonic() + 60
    while not environs and time.monotonic() < deadline:
        time.sleep(0.1)
        environs = [e for found in cluster.run(_environs).values() for e in found]  # type: ignore[attr-defined]
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert environs
    for environ in environs:
        assert b"AZ_CLUSTER_KEY=" not in environ and b"AZ_OTHER_KEY=" not in environ
        assert KEY.encode() not in environ and OTHER_KEY.encode() not in environ


def _environs() -> list[bytes]:
    """The environments of our worker processes under this Dask worker."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "assemblyzero.worker" in " ".join(child.cmdline()):
                found.append(Path(f"/proc/{child.pid}/environ").read_bytes())
        except (psutil.Error, OSError):
            continue
    return found
