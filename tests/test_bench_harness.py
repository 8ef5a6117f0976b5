"""benchmarks/bench.py runs its fast figures, prints them and records them as JSON.

A smoke test of the harness only: the figures themselves are measured by
`invoke bench`, never asserted here (no timing assertions).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench.py"
FAST = "first_worker,dry_run,rss,lease"
ROWS = ["first_worker", "first_worker.python_bare", "first_worker.import_cli",
        "first_worker.worker_help", "first_worker.tee_alone", "first_worker.line",
        "dry_run_1000", "rss_worker", "rss_coordinator", "lease_rate", "lease.floor",
        "lease_double"]


# The quick sizes, smaller still: the harness runs every step of each figure, on less.
SMOKE_SIZES = {"first_worker_items": 1, "startup_runs": 1, "rss_run_items": 2,
               "lease_procs": 3, "lease_seconds": 0.2, "dry_run_items": 100}
SMOKE = """import dataclasses, importlib.util, sys
spec = importlib.util.spec_from_file_location("bench", {bench!r})
bench = importlib.util.module_from_spec(spec)
sys.modules["bench"] = bench  # registered, as its dataclasses need
spec.loader.exec_module(bench)
bench.QUICK = dataclasses.replace(bench.QUICK, **{sizes!r})
sys.argv[0] = {bench!r}
sys.exit(bench.main())
"""


def load(name: str) -> ModuleType:
    """A module of benchmarks/ (registered, as its dataclasses need), loaded once."""
    if f"bench_{name}" in sys.modules:
        return sys.modules[f"bench_{name}"]
    spec = importlib.util.spec_from_file_location(f"bench_{name}",
                                                  ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.e2e  # starts real processes
def test_quick_bench_records_every_figure(tmp_path: Path, isolated_home: Path) -> None:
    out = tmp_path / "bench.json"
    smoke = tmp_path / "smoke_bench.py"  # bench.py's main, on SMOKE_SIZES
    smoke.write_text(SMOKE.format(bench=str(BENCH), sizes=SMOKE_SIZES))
    proc = subprocess.run([sys.executable, str(smoke), "--quick", "--only", FAST,
                           "--json-out", str(out)], capture_output=True, text=True,
                          timeout=90, stdin=subprocess.DEVNULL, cwd=tmp_path, check=False)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["repeat"] == 1
    assert all(data["sizes"][name] == value for name, value in SMOKE_SIZES.items())
    assert data["errors"] == {}
    assert set(data["figures"]) == set(ROWS)
    for name in ROWS:
        figure = data["figures"][name]
        assert isinstance(figure["measured"], (int, float)), (name, figure)
        assert figure["samples"] and all(isinstance(s, (int, float)) for s in figure["samples"])
        assert figure["result"] in ("PASS", "FAIL", "info"), (name, figure)
        assert name in proc.stdout
    for name in ("first_worker", "dry_run_1000", "rss_worker", "lease_rate", "lease_double"):
        assert data["figures"][name]["goal"], name  # these have a goal to pass or fail
    # The two ratios to a floor of the same run keep their own figure and the floor's.
    first, rate = data["figures"]["first_worker"], data["figures"]["lease_rate"]
    assert first["unit"] == "x" and first["absolute"]["unit"] == "s"
    assert len(first["absolute"]["samples"]) == len(first["details"]["floor_s"]) == 1
    assert first["samples"][0] == pytest.approx(
        first["absolute"]["samples"][0] / first["details"]["floor_s"][0], rel=1e-3)
    assert rate["unit"] == "%" and rate["absolute"]["unit"] == "/s"
    floor = data["figures"]["lease.floor"]
    assert rate["samples"][0] == pytest.approx(
        100 * rate["absolute"]["samples"][0] / floor["samples"][0], rel=1e-3)
    assert floor["details"]["runs"][0]["mode"] == "floor"
    assert rate["details"]["runs"][0]["mode"] == "ours"
    machine = data["machine"]
    assert machine["cores"] >= 1 and machine["python"] and machine["platform"]
    assert data["date"]
    # the bench kept to its sandbox: the test's home is untouched
    assert not (isolated_home / ".assemblyzero").exists()
    assert not Path(os.environ["ASSEMBLYZERO_STATE_DIR"]).exists()


@pytest.mark.e2e
def test_unknown_figure_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--only", "no_such_figure",
                           "--json-out", str(tmp_path / "x.json")], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 2
    assert "no_such_figure" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_a_ratio_row_is_judged_on_the_ratio_and_shows_its_own_figure_beside_it() -> None:
    bench = load("bench")
    row = bench.Row("first_worker", "t", "x", goal=("<=", 12.0), samples=[8.0, 9.0, 13.0],
                    absolute=[0.2, 0.22, 0.4], absolute_unit="s")
    assert row.result() == "PASS"  # the median ratio, 9x; never the seconds
    assert row.shown() == "9.000x (0.220 s)"
    data = row.to_json()
    assert data["absolute"] == {"unit": "s", "measured": 0.22, "samples": [0.2, 0.22, 0.4]}
    assert "absolute" not in bench.Row("dry_run", "t", "s", samples=[1.0]).to_json()
    assert bench.parse_only("sdk_start.openai,lease.floor") == ["lease", "sdk_start"]


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_sdk_server_answers_each_wire_format_and_stamps_the_first_call() -> None:
    server = load("sdk_server").SdkServer()
    try:
        assert post(server.url_for("openai") + "/files", {})[0] == 404  # not a model call
        assert server.first_call() is None and len(server.calls) == 1
        code, got = post(server.url_for("openai") + "/chat/completions",
                         {"model": "m", "messages": [{"role": "user", "content": "Write"}]})
        assert code == 200 and "## Risks" in got["choices"][0]["message"]["content"]
        code, got = post(server.url_for("anthropic") + "/v1/messages",
                         {"model": "m", "tools": [{"name": "verdict"}], "messages": []})
        assert code == 200 and got["content"][0]["type"] == "tool_use"
        assert got["content"][0]["input"]["verdict"] == "APPROVED"
        code, got = post(server.url_for("gemini") + "/v1beta/models/m:generateContent",
                         {"contents": [{"parts": [{"text": "VERDICT please"}]}]})
        assert code == 200 and got["candidates"][0]["content"]["parts"][0]["text"].startswith(
            "VERDICT: APPROVED")
        first = server.first_call()
        assert first is not None and first.wire == "openai" and not first.review
        assert [c.review for c in server.calls[1:]] == [False, True, True]
        server.reset()
        assert server.calls == [] and server.first_call() is None
    finally:
        server.close()


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_each_sdk_accepts_the_sdk_servers_draft_and_native_verdict(provider: str) -> None:
    """What `invoke bench --only sdk_start` relies on: the real SDK, through our provider."""
    from assemblyzero.providers import SDKS, ModelRequest, ProviderKey, load_provider
    from assemblyzero.workflow.verdict import VERDICT_SCHEMA

    pytest.importorskip(SDKS[provider])
    sdk_server = load("sdk_server")
    server = sdk_server.SdkServer()
    try:
        made = load_provider(f"{provider}:bench-model",
                             ProviderKey("k", "bench-secret-0123456789", server.url_for(provider)))
        ask = ModelRequest(role="draft", kind="lld", item_id="1", title="t", source="s",
                           sections=("A",), prompt="Write the design.")
        assert made.complete(ask).text == sdk_server.DRAFT
        verdict = made.complete(ModelRequest(**{**ask.__dict__, "role": "review",
                                                "prompt": "Review it.",
                                                "schema": VERDICT_SCHEMA}))
        assert verdict.structured and json.loads(verdict.text) == sdk_server.APPROVE
        assert [c.wire for c in server.calls] == [provider, provider]
    finally:
        server.close()
