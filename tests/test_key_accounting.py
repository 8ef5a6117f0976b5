"""Per-key token accounting: each leased key is charged the tokens of its own calls only."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import cli, latest_run, make_workspace, summary, worker_id

from assemblyzero import worker
from assemblyzero.backlog import scan
from assemblyzero.ids import Kind
from assemblyzero.keys import credentials
from assemblyzero.keys.pool import Pool
from assemblyzero.providers import ProviderKey
from assemblyzero.results import Status, WorkerResult
from assemblyzero.run.coordinator import Coordinator
from assemblyzero.run.jobs import RunOptions
from assemblyzero.ui.console import Console
from assemblyzero.workflow.checkpoint import Checkpoint
from assemblyzero.workflow.interrupt import Stop
from assemblyzero.workflow.state import state_problem
from assemblyzero.workspace import Workspace

APPROVE = "import sys\nsys.stdin.read()\nprint('VERDICT: APPROVED')\nprint('Looks complete.')\n"


def write_credentials(*entries: dict[str, object]) -> None:
    path = Path(os.environ["ASSEMBLYZERO_CREDENTIALS"])
    path.write_text(json.dumps({"credentials": list(entries)}))
    path.chmod(0o600)


def entry(name: str, provider: str) -> dict[str, object]:
    return {"name": name, "provider": provider, "max_concurrent": 1}


@pytest.mark.e2e
def test_drafter_and_reviewer_on_two_providers_each_key_gets_only_its_own_tokens(
        tmp_path: Path) -> None:
    """Real workers: an offline drafter (counts words) and a cmd reviewer (counts none)."""
    ws = make_workspace(tmp_path / "ws", issues=["1", "2"])
    write_credentials(entry("off-a", "offline"), entry("cmd-a", "cmd"))
    reviewer = tmp_path / "approve.py"
    reviewer.write_text(APPROVE)
    run = cli("lld-all", "--repo", str(ws), f"--reviewer=cmd:{sys.executable} {reviewer}",
              env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0"})
    assert run.code == 0, run.out + run.err
    run_dir = latest_run(ws)
    data = summary(run_dir)
    assert [i["status"] for i in data["items"]] == ["done", "done"]
    assert {i["credential"] for i in data["items"]} == {"off-a,cmd-a"}  # both keys leased
    per_item = [tuple(i["tokens"]) for i in data["items"]]
    assert all(t[0] > 0 and t[1] > 0 for t in per_item)
    total = [sum(t[0] for t in per_item), sum(t[1] for t in per_item)]
    keys = {k["name"]: k for k in data["credentials"]}
    assert keys["off-a"]["tokens"] == total  # the drafter made every counted call
    assert keys["cmd-a"]["tokens"] == [0, 0]  # before the fix: the total, charged twice
    for n, item in (("1", data["items"][0]), ("2", data["items"][1])):
        result = json.loads((run_dir / f"results/lld-{n}.json").read_text())
        assert result["tokens"] == item["tokens"]
        assert result["tokens_by_key"] == {"off-a": item["tokens"], "cmd-a": [0, 0]}
    # the per-key table: KEY PROVIDER STARTS (REQUESTS) TOKENS
    table = [line.split()[1:4] + line.split()[5:6] for line in run.out.splitlines()]
    assert ["off-a", "offline", "2", f"{total[0]}/{total[1]}"] in table
    assert ["cmd-a", "cmd", "2", "0/0"] in table


# --- the coordinator's arithmetic, with results written by a fake spawn --------------------

class FakeProc:
    """A finished 'worker' with a given exit code (no process is started)."""

    def __init__(self, pid: int, code: int) -> None:
        self.pid, self.code = pid, code

    def wait(self) -> int:
        return self.code


def run_with_results(tmp_path: Path, attempts: list[tuple[int, dict[str, Any]]],
                     specs: tuple[str, str]) -> tuple[dict[str, Any], list[list[str]]]:
    """Run one item whose attempts end with these (exit code, result JSON); the summary and
    the keys each attempt was granted."""
    ws = Workspace.at(make_workspace(tmp_path / "ws", issues=["1"]))
    pool = Pool.for_models(specs, creds=credentials.load())
    assert pool is not None
    granted: list[list[str]] = []

    def spawn(argv: list[str], env: Mapping[str, str], fds: tuple[int, ...]) -> FakeProc:
        code, result = attempts[len(granted)]
        granted.append(env["ASSEMBLYZERO_CREDENTIAL"].split(","))
        path = Path(env["ASSEMBLYZERO_RUN_DIR"]) / "results" / f"lld-{worker_id(argv)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": "lld", "id": "1", **result}))
        return FakeProc(pid=10**9, code=code)

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        coordinator = Coordinator(ws, RunOptions(drafter=specs[0], reviewer=specs[1]),
                                  Console(fd=devnull), spawn=spawn, pool=pool)
        code = coordinator.run(scan(ws, Kind.LLD).items, "lld-all")
    finally:
        os.close(devnull)
    assert code == 0
    return summary(latest_run(ws.root)), granted


def key_tokens(data: dict[str, Any]) -> dict[str, list[int]]:
    return {k["name"]: k["tokens"] for k in data["credentials"]}


def test_a_retry_on_another_key_charges_each_key_its_own_delta(tmp_path: Path) -> None:
    write_credentials(entry("off-a", "offline"), entry("off-b", "offline"), entry("cmd-a", "cmd"))
    limited = {"kind": "rate_limited", "credential": "off-a", "retry_after": 0.0}
    attempts = [  # running totals for the item, as a worker reports them
        (75, {"status": "failed", "tokens": [10, 5], "retry": limited,
              "tokens_by_key": {"off-a": [10, 5], "cmd-a": [0, 0]}}),
        (0, {"status": "done", "tokens": [30, 12],
             "tokens_by_key": {"off-a": [10, 5], "off-b": [20, 7], "cmd-a": [0, 0]}}),
    ]
    data, granted = run_with_results(tmp_path, attempts, ("offline:x", "cmd:approve"))
    assert granted == [["off-a", "cmd-a"], ["off-b", "cmd-a"]]
    assert data["items"][0]["attempts"] == 2 and data["items"][0]["tokens"] == [30, 12]
    # Before the fix: off-a [10, 5], off-b [20, 7], and cmd-a both attempts, [30, 12].
    assert key_tokens(data) == {"off-a": [10, 5], "off-b": [20, 7], "cmd-a": [0, 0]}


def test_tokens_from_an_earlier_run_on_a_key_not_granted_now_are_not_charged(
        tmp_path: Path) -> None:
    write_credentials(entry("off-a", "offline"), entry("off-b", "offline"))
    attempts = [(0, {"status": "done", "tokens": [9, 4],
                     "tokens_by_key": {"off-b": [5, 2], "off-a": [4, 2]}})]
    data, granted = run_with_results(tmp_path, attempts, ("offline:x", "offline:x"))
    assert granted == [["off-a"]]
    assert key_tokens(data) == {"off-a": [4, 2], "off-b": [0, 0]}


def test_a_result_of_an_older_worker_charges_its_one_key_as_before(tmp_path: Path) -> None:
    write_credentials(entry("off-a", "offline"), entry("off-b", "offline"))
    limited = {"kind": "rate_limited", "credential": "off-a", "retry_after": 0.0}
    attempts = [(75, {"status": "failed", "tokens": [10, 5], "retry": limited}),
                (0, {"status": "done", "tokens": [30, 12]})]  # no tokens_by_key at all
    data, granted = run_with_results(tmp_path, attempts, ("offline:x", "offline:x"))
    assert granted == [["off-a"], ["off-b"]]
    assert key_tokens(data) == {"off-a": [10, 5], "off-b": [20, 7]}


def test_a_result_of_an_older_worker_on_several_keys_charges_none_of_them(
        tmp_path: Path) -> None:
    write_credentials(entry("off-a", "offline"), entry("cmd-a", "cmd"))
    data, granted = run_with_results(
        tmp_path, [(0, {"status": "done", "tokens": [30, 12]})], ("offline:x", "cmd:approve"))
    assert granted == [["off-a", "cmd-a"]]
    assert data["items"][0]["tokens"] == [30, 12]  # the item's own total stays
    assert key_tokens(data) == {"off-a": [0, 0], "cmd-a": [0, 0]}


@pytest.mark.parametrize("value", [[1, 2], "x", {"a": [1]}, {"a": [1, -2]}, {"a": "1,2"}])
def test_a_malformed_tokens_by_key_in_a_result_reads_as_unknown(
        tmp_path: Path, value: object) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"kind": "lld", "id": "1", "status": "done", "tokens": [3, 4],
                                "tokens_by_key": value}))
    result = WorkerResult.read(path)
    assert result is not None and result.tokens == [3, 4] and result.tokens_by_key is None


# --- the worker: counted per key, checkpointed, resumed -------------------------------------

def test_tokens_by_key_survive_a_resume_and_calls_without_a_key_count_only_in_the_total(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ASSEMBLYZERO_OFFLINE_LATENCY", "0")
    monkeypatch.setenv("ASSEMBLYZERO_OFFLINE_APPROVE_AT", "1")
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    space = Workspace.at(ws)
    args = worker.parse_args(["--kind", "lld", "--id", "41", "--repo", str(ws), "--run-dir",
                              str(ws / "run"), "--drafter=offline:a", "--reviewer=offline:a"])

    def attempt(keys: dict[str, ProviderKey]) -> WorkerResult:
        cp = Checkpoint(space.checkpoint(Kind.LLD, "41"), "lld-41")
        return worker.run_item(args, space, Kind.LLD, "41", cp, Stop(), keys)

    monkeypatch.setenv("ASSEMBLYZERO_SIMULATE_FAIL", "41:review")
    first = attempt({"offline": ProviderKey("off-a", "")})  # the draft, then a failed review
    assert first.status is Status.FAILED and first.model_calls == 1
    assert first.tokens_by_key == {"off-a": first.tokens} and first.tokens[0] > 0
    monkeypatch.delenv("ASSEMBLYZERO_SIMULATE_FAIL")
    second = attempt({})  # resumed at the review, which runs without a key
    assert "resuming at step 'review'" in capsys.readouterr().out
    assert second.status is Status.DONE and second.model_calls == 2
    assert second.tokens_by_key == {"off-a": first.tokens}  # kept from the checkpoint
    assert second.tokens[0] > first.tokens[0]  # the keyless review counts in the total only
    assert second.to_json()["tokens_by_key"] == {"off-a": first.tokens}


def test_a_checkpoint_with_or_without_tokens_by_key_resumes_and_a_bad_one_is_named() -> None:
    state: dict[str, Any] = {"next": "draft", "iteration": 0, "model_calls": 0, "history": [],
                             "source": "# x\n", "title": "x"}
    assert state_problem(state) is None  # an older release's checkpoint: no such key
    assert state_problem({**state, "tokens_by_key": {}}) is None
    assert state_problem({**state, "tokens_by_key": {"off-a": [3, 4], "b": [0, 0]}}) is None
    for bad in ([1, 2], {"off-a": [1]}, {"off-a": [1, -1]}, {"off-a": [1, True]},
                {"\ud800": [1, 2]}, "x"):
        problem = state_problem({**state, "tokens_by_key": bad})
        assert problem and problem.startswith("tokens_by_key is "), bad
