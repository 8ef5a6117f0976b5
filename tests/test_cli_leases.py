"""Credential leases seen from the command line: pauses, 429s, 401s, and secrets that never leak."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    cli,
    driver,
    journal,
    latest_run,
    make_workspace,
    max_concurrency,
    started_groups,
    summary,
)

pytestmark = pytest.mark.e2e  # every test here starts real processes

SECRET_ENV = "sk-ant-envsecret-0123456789abcdef"
SECRET_LITERAL = "literal-secret-value-4242"


def credentials(*entries: dict[str, object], private: bool = True) -> Path:
    path = Path(os.environ["ASSEMBLYZERO_CREDENTIALS"])
    path.write_text(json.dumps({"credentials": list(entries)}))
    path.chmod(0o600 if private else 0o644)
    return path


def key(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "provider": "offline", "max_concurrent": 1, **extra}


def lease_file(name: str) -> dict:  # type: ignore[type-arg]
    state = Path(os.environ["ASSEMBLYZERO_STATE_DIR"]) / "leases" / f"{name}.json"
    return json.loads(state.read_text())


def test_040_two_keys_six_items_pause_and_never_more_than_two_at_once(ws: Path):
    credentials(key("key-a"), key("key-b"))
    run = cli("lld-all", "--parallel=3", "--repo", str(ws),
              env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0.05"})
    assert run.code == 0, run.out + run.err
    # One pause for as long as items wait for a key, not one per item that waited.
    assert run.out.count("[COORDINATOR] Credential pool exhausted. Pausing...") == 1
    assert run.out.count("[COORDINATOR] a credential is free again; resuming") == 1
    assert run.out.index("Pausing...") < run.out.index("free again; resuming")
    run_dir = latest_run(ws)
    assert [e["event"] for e in journal(run_dir) if e["event"] in ("pause", "resume")] == [
        "pause", "resume"]
    assert summary(run_dir)["counts"]["done"] == 6
    assert max_concurrency(run_dir) == 2
    used = {item["credential"] for item in summary(run_dir)["items"]}
    assert used == {"key-a", "key-b"}
    assert not lease_file("key-a")["holders"] and not lease_file("key-b")["holders"]


def test_050_a_429_rests_that_key_and_the_item_finishes_on_the_other(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["7"])
    credentials(key("key-a"), key("key-b"))
    run = cli("lld-all", "--repo", str(ws),
              env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0", "ASSEMBLYZERO_SIMULATE_429": "key-a:1:2"})
    assert run.code == 0, run.out + run.err
    assert "LLD-007 got a 429 on key-a" in run.out
    run_dir = latest_run(ws)
    item = summary(run_dir)["items"][0]
    assert item["status"] == "done" and item["credential"] == "key-b"
    assert item["rate_limited"] == 1 and item["attempts"] == 2
    # The 429 came after the first attempt started; the key rests 2 s from then (whether
    # the worker's pacer rested it at the 429 or the coordinator at the attempt's end).
    first_start = next(e for e in journal(run_dir) if e["event"] == "start")
    assert lease_file("key-a")["cooldown_until"] >= first_start["ts"] + 2
    keys = {k["name"]: k for k in summary(run_dir)["credentials"]}
    assert keys["key-a"]["rate_limited"] == 1 and keys["key-b"]["rate_limited"] == 0
    log = (run_dir / "lld-7.log").read_text()
    assert log.count("resuming at step") == 1  # the second attempt resumed its checkpoint


def test_a_429_on_every_attempt_fails_the_item_after_max_attempts(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["7"])
    credentials(key("key-a"))
    run = cli("lld-all", "--repo", str(ws), "--max-attempts=2", "--no-pacing",  # reactive
              env={"ASSEMBLYZERO_SIMULATE_429": "key-a:99:0.01"})
    assert run.code == 1, run.out + run.err
    item = summary(latest_run(ws))["items"][0]
    assert item["status"] == "failed" and item["attempts"] == 2 and item["rate_limited"] == 2
    assert "no attempts left (2)" in run.out
    # Paced, each attempt first waits out 1 + RETRIES_429_MAX 429s on its key in the worker.
    paced = cli("lld-all", "--repo", str(ws), "--max-attempts=2",
                env={"ASSEMBLYZERO_SIMULATE_429": "key-a:99:0.01"})
    assert paced.code == 1, paced.out + paced.err
    item = summary(latest_run(ws))["items"][0]
    assert item["attempts"] == 2 and item["rate_limited"] == 18
    assert "9 429s in a row on key-a" in paced.out


def test_a_401_disables_the_key_for_the_run_and_the_item_moves_on(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["7", "8"])
    credentials(key("key-a"), key("key-b"))
    run = cli("lld-all", "--repo", str(ws), env={"ASSEMBLYZERO_SIMULATE_401": "key-a"})
    assert run.code == 0, run.out + run.err
    data = summary(latest_run(ws))
    assert {i["credential"] for i in data["items"]} == {"key-b"}
    keys = {k["name"]: k for k in data["credentials"]}
    assert keys["key-a"]["disabled"] and keys["key-a"]["attempts"] == 1
    assert "now disabled for this run" in run.out


def test_a_pause_that_ends_with_every_key_refused_never_says_resuming(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["7", "8"])
    credentials(key("key-a"))  # one slot: item 8 waits while 7 runs, then the key is refused
    run = cli("lld-all", "--parallel=2", "--repo", str(ws),
              env={"ASSEMBLYZERO_SIMULATE_401": "key-a", "ASSEMBLYZERO_OFFLINE_LATENCY": "0.2"})
    assert run.code == 1, run.out + run.err
    assert "Credential pool exhausted. Pausing..." in run.out
    assert "no usable offline credential left" in run.out
    assert "resuming" not in run.out.replace("resuming from its checkpoint", "")
    assert "resume" not in [e["event"] for e in journal(latest_run(ws))]


def test_a_pause_ended_by_ctrl_c_never_says_resuming(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["7", "8", "9"])
    credentials(key("key-a"))
    proc = subprocess.Popen([sys.executable, "-m", "assemblyzero", "lld-all", "--parallel=3",
                             "--repo", str(ws)], stdout=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL,
                            env={**os.environ, "ASSEMBLYZERO_OFFLINE_LATENCY": "30"})
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # the first item is in its model call, the others wait
        seen.append(line)
        if "draft: calling" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    out = "".join(seen) + rest
    assert proc.returncode == 130, out
    assert "Pausing..." in out and "free again; resuming" not in out
    assert "resume" not in [e["event"] for e in journal(latest_run(ws))]


def test_no_usable_credential_exits_75_before_any_worker_starts(ws: Path):
    credentials(key("key-a", enabled=False), key("key-b", key_env="UNSET_KEY_VAR"))
    run = cli("lld-all", "--parallel=3", "--repo", str(ws))
    assert run.code == 75, run.out + run.err
    assert "no usable credential for provider 'offline'" in run.err
    assert "UNSET_KEY_VAR is not set" in run.err and "disabled" in run.err
    assert not (ws / "logs").exists()


def test_a_dry_run_of_a_run_that_would_exit_75_shows_why_and_exits_75(ws: Path):
    credentials(key("key-a", enabled=False), key("key-b", key_env="UNSET_KEY_VAR"))
    run = cli("dry-run", "--repo", str(ws))
    assert run.code == 75, run.out + run.err
    assert "lld: 6 pending" in run.out  # the plan is still shown
    assert ("the run would stop before its first item (exit 75): no usable credential for "
            "provider 'offline'") in run.out
    plan = cli("dry-run", "--json", "--repo", str(ws))
    assert plan.code == 75
    blocked = json.loads(plan.out)["blocked"]
    assert blocked["exit_code"] == 75 and "UNSET_KEY_VAR is not set" in blocked["reason"]
    assert not (ws / "logs").exists()
    assert not (Path(os.environ["ASSEMBLYZERO_STATE_DIR"]) / "leases").exists()
    credentials(key("key-a"))
    fine = cli("dry-run", "--json", "--repo", str(ws))
    assert fine.code == 0 and json.loads(fine.out)["blocked"] is None


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not valid JSON"),
    ('{"credentials": [{"name": "a", "provider": "offline"}, '
     '{"name": "a", "provider": "offline"}]}', "entries 1 and 2 have the same name"),
])
def test_a_broken_credentials_file_is_a_usage_error_naming_it(ws: Path, content: str,
                                                              message: str):
    path = Path(os.environ["ASSEMBLYZERO_CREDENTIALS"])
    path.write_text(content)
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 2 and message in run.err and str(path) in run.err
    assert "Traceback" not in run.err


def test_literal_keys_in_a_readable_file_are_refused_with_the_fix(ws: Path):
    path = credentials(key("key-a", key=SECRET_LITERAL), private=False)
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 2 and f"chmod 600 {path}" in run.err
    assert SECRET_LITERAL not in run.err + run.out


def test_dry_run_shows_each_credential_state(ws: Path):
    credentials(key("key-a"), key("key-b", key_env="UNSET_KEY_VAR"))
    run = cli("dry-run", "--repo", str(ws))
    assert run.code == 0, run.err
    assert "key-a (offline): free (1 slot(s))" in run.out
    assert "key-b (offline): unusable: its secret is not set" in run.out
    data = json.loads(cli("dry-run", "--repo", str(ws), "--json").out)
    assert [c["name"] for c in data["credentials"]] == ["key-a", "key-b"]
    assert not (Path(os.environ["ASSEMBLYZERO_STATE_DIR"]) / "leases").exists()


def test_secrets_reach_no_file_no_terminal_no_argv_no_worker_environment(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["1", "2"])
    issue = ws / "docs/issues/active/1.md"  # someone pasted both keys into an issue
    issue.write_text(issue.read_text() + f"\nTry {SECRET_ENV} or {SECRET_LITERAL}.\n")
    credentials(key("env-key", key_env="TEAM_KEY"), key("lit-key", key=SECRET_LITERAL))
    env = {**os.environ, "TEAM_KEY": SECRET_ENV, "ASSEMBLYZERO_OFFLINE_LATENCY": "0.3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", "--parallel=2", "--repo", str(ws)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    seen, inspected = "", 0
    while inspected < 2:  # while both workers run, look at their argv and environment
        line = proc.stdout.readline().decode()
        assert line, seen
        seen += line
        if "draft: calling" in line:
            inspected += 1
    for pgid in started_groups(latest_run(ws)):
        for pid in _group_members(pgid):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            for secret in (SECRET_ENV, SECRET_LITERAL):
                assert secret.encode() not in argv + environ
            assert b"TEAM_KEY=" not in environ
    ps = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    assert SECRET_ENV not in ps and SECRET_LITERAL not in ps
    seen += proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, seen
    assert SECRET_ENV not in seen and SECRET_LITERAL not in seen
    state = Path(os.environ["ASSEMBLYZERO_STATE_DIR"])
    for root in (ws, state):
        for path in root.rglob("*"):
            if path.is_file() and path != issue:  # every file but the user's own input
                data = path.read_bytes()
                assert SECRET_ENV.encode() not in data, path
                assert SECRET_LITERAL.encode() not in data, path
    assert "***" in (ws / "docs/lld/active/LLD-001.md").read_text()


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


FAKE = (
    "import os, sys, time\n"
    "from pathlib import Path\n"
    "cred = os.environ['ASSEMBLYZERO_CREDENTIAL']\n"
    "fd = os.open(os.environ['MARKS'], os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
    "os.write(fd, f'+{cred}\\n'.encode())\n"
    "time.sleep(0.05)  # the work\n"
    # The other run is after the keys too: it has journaled a worker start or a pause (for
    # at most a minute). So neither run can do all its work before the other is under way.
    "other, deadline = Path(os.environ['OTHER_RUN']), time.monotonic() + 60\n"
    "while time.monotonic() < deadline and not any(\n"
    "        '\"event\": \"start\"' in t or '\"event\": \"pause\"' in t\n"
    "        for t in (j.read_text() for j in other.glob('logs/parallel/*/journal.jsonl'))):\n"
    "    time.sleep(0.01)\n"
    "os.write(fd, f'-{cred}\\n'.encode())\n"
)


def contending(events: list[dict]) -> list[float]:  # type: ignore[type-arg]
    """When a run started a worker or waited for a key, from its journal."""
    return [e["ts"] for e in events if e["event"] in ("start", "pause")]


def test_two_concurrent_runs_sharing_two_keys_never_exceed_them(tmp_path: Path):
    credentials(key("key-a"), key("key-b"))
    marks = tmp_path / "marks.log"
    runs, spaces = [], [tmp_path / "ws1", tmp_path / "ws2"]
    for n, ws, other in ((1, *spaces), (2, *reversed(spaces))):
        make_workspace(ws, issues=[str(i) for i in range(1, 7)])
        script = driver(tmp_path, ws, FAKE, parallel=3, name=f"run{n}")
        runs.append(subprocess.Popen([sys.executable, str(script)], env={
            **os.environ, "MARKS": str(marks), "OTHER_RUN": str(other)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    outputs = [p.communicate(timeout=120)[0].decode() for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outputs
    one, two = (journal(latest_run(ws)) for ws in spaces)
    ends = [[e["ts"] for e in events if e["event"] == "end"] for events in (one, two)]
    # The runs competed: each started a worker or waited for a key before the other's last
    # worker ended (so the check below is about two runs at once, not one after the other).
    assert min(contending(one)) < max(ends[1]) and min(contending(two)) < max(ends[0]), outputs
    holding: dict[str, int] = {"key-a": 0, "key-b": 0}
    lines = marks.read_text().split()
    assert len(lines) == 24  # 12 items, each marked in and out
    for line in lines:
        holding[line[1:]] += 1 if line[0] == "+" else -1
        assert all(0 <= n <= 1 for n in holding.values()), lines


def test_tokens_are_counted_per_item_and_per_key(tmp_path: Path):
    # Two keys of one provider (drafter and reviewer both offline: each item leases one key,
    # and the pool takes them in turn), three items: one key serves two items, one key one.
    ws = make_workspace(tmp_path / "ws", issues=["1", "2", "3"])
    credentials(key("key-a"), key("key-b"))
    run = cli("lld-all", "--repo", str(ws), env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0"})
    assert run.code == 0, run.out + run.err
    data = summary(latest_run(ws))
    per_item = [tuple(i["tokens"]) for i in data["items"]]
    assert all(t[0] > 0 and t[1] > 0 for t in per_item)  # offline reports word counts
    by_key: dict[str, list[int]] = {}
    for item in data["items"]:
        spent = by_key.setdefault(item["credential"], [0, 0])
        spent[0], spent[1] = spent[0] + item["tokens"][0], spent[1] + item["tokens"][1]
    assert sorted(by_key) == ["key-a", "key-b"]  # both keys served items
    assert {k["name"]: k["tokens"] for k in data["credentials"]} == by_key
    assert sorted(k["attempts"] for k in data["credentials"]) == [1, 2]
    log = (latest_run(ws) / "lld-1.log").read_text()
    assert " in / " in log and "out tokens" in log


def test_credential_variables_never_reach_workers_even_when_no_lease_is_needed(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["1"])
    credentials({"name": "team", "provider": "anthropic", "key_env": "TEAM_ANTHROPIC"})
    env = {**os.environ, "TEAM_ANTHROPIC": SECRET_ENV, "ASSEMBLYZERO_OFFLINE_LATENCY": "30"}
    proc = subprocess.Popen(  # offline models: no lease, but the variable is still hidden
        [sys.executable, "-m", "assemblyzero", "lld-all", "--repo", str(ws)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        while ": calling " not in proc.stdout.readline().decode():
            pass
        members = [pid for g in started_groups(latest_run(ws)) for pid in _group_members(g)]
        assert len(members) == 2  # the tee and the worker
        for pid in members:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert b"TEAM_ANTHROPIC" not in environ and SECRET_ENV.encode() not in environ
    finally:
        proc.send_signal(subprocess.signal.SIGINT)
        proc.communicate(timeout=30)


def test_a_key_pasted_into_key_env_is_refused_without_echoing_it(ws: Path):
    credentials({"name": "team", "provider": "offline", "key_env": SECRET_ENV})
    run = cli("lld-all", "--repo", str(ws))
    assert run.code == 2 and "must be the name of an environment variable" in run.err
    assert SECRET_ENV not in run.out + run.err


def test_a_key_without_its_variable_is_reported_only_when_its_provider_is_used(ws: Path):
    credentials(key("solo"), {"name": "team-a", "provider": "anthropic",
                              "key_env": "UNSET_ANTHROPIC_VAR"})
    env = {"ASSEMBLYZERO_OFFLINE_LATENCY": "0"}
    offline = cli("lld-all", "--only=41", "--repo", str(ws), env=env)
    assert offline.code == 0, offline.err
    assert "UNSET_ANTHROPIC_VAR" not in offline.out + offline.err  # the run never needs it
    used = cli("lld-all", "--only=42", "--drafter=anthropic:claude-x", "--repo", str(ws),
               env=env)
    assert used.code == 75
    assert "UNSET_ANTHROPIC_VAR is not set" in used.out + used.err
