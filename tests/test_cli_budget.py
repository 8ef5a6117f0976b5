"""Prices and --budget through the real CLI: real workers, real spend and stop files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import cli, latest_run, make_workspace, summary

PRICES = '[tool.assemblyzero.prices]\n"offline:default" = { input = 100, output = 200 }\n'


def priced_workspace(tmp_path: Path, issues: list[str]) -> Path:
    ws = make_workspace(tmp_path / "ws", issues=issues)
    (ws / "pyproject.toml").write_text(PRICES, encoding="utf-8")
    return ws


def logged_costs(log: str) -> list[float]:
    return [float(usd) for usd in re.findall(r"reply in .*, cost \$([0-9.]+)$", log, re.M)]


@pytest.mark.e2e
def test_a_budget_stops_the_run_after_a_step_and_a_rerun_resumes_exactly(tmp_path: Path):
    ws = priced_workspace(tmp_path, ["1", "2", "3"])
    # Each call costs about $0.05-0.25 here: the first reply already spends the $0.01
    # budget, so the worker stops before its next call (the spend files say so).
    run = cli("lld-all", "--budget=0.01", "--repo", str(ws),
              env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0.3"})
    assert run.code == 1, run.out + run.err
    assert "budget $0.01: about $" in run.out and "(an estimate)" in run.out
    assert "budget reached: $" in run.out
    first = summary(latest_run(ws))
    items = {i["id"]: i for i in first["items"]}
    assert items["1"]["status"] == "interrupted" and items["1"]["stopped_by_budget"] is True
    assert items["1"]["reason"].startswith("stopped after step '")
    assert "the run's budget ($0.01) was reached" in items["1"]["reason"]
    assert [items[n]["reason"] for n in "23"] == ["not started: the budget was reached"] * 2
    assert first["budget"]["reached"] is True and first["budget"]["not_started"] == 2
    # The item's cost is its tokens at the workspace's prices, and what its log said.
    tokens_in, tokens_out = items["1"]["tokens"]
    assert items["1"]["cost"]["usd"] == pytest.approx((tokens_in * 100 + tokens_out * 200) / 1e6)
    log = (latest_run(ws) / "lld-1.log").read_text()
    assert len(logged_costs(log)) == 1  # stopped before its second call
    assert sum(logged_costs(log)) == pytest.approx(items["1"]["cost"]["usd"], abs=0.01)
    assert first["cost"] == items["1"]["cost"]
    assert (ws / ".assemblyzero/checkpoints/lld-1.db").exists()
    assert not (ws / "docs/lld/active/LLD-001.md").exists()

    again = cli("retry-failed", "--budget=100", "--repo", str(ws),
                env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0"})
    assert again.code == 0, again.out + again.err
    resumed = (latest_run(ws) / "lld-1.log").read_text()
    assert "resuming at step '" in resumed
    assert "draft: calling" not in resumed  # the paid draft is not repeated
    second = summary(latest_run(ws))
    assert {i["id"]: i["status"] for i in second["items"]} == dict.fromkeys("123", "done")
    assert second["budget"]["reached"] is False
    assert second["cost"]["usd"] == pytest.approx(sum(i["cost"]["usd"] for i in second["items"]))
    assert "budget $100.00: $" in again.out


@pytest.mark.e2e
def test_dry_run_shows_the_estimate_marked_as_one_and_a_budget_needs_prices(tmp_path: Path):
    ws = priced_workspace(tmp_path, ["1", "2"])
    plan = cli("dry-run", "--kind=lld", "--budget=3", "--repo", str(ws))
    assert plan.code == 0, plan.out + plan.err
    assert re.search(r"^cost: about \$[0-9.]+ for 2 item\(s\), \$[0-9.]+ each \(an estimate: ",
                     plan.out, re.M), plan.out
    assert "budget $3.00" in plan.out
    data = json.loads(cli("dry-run", "--json", "--kind=lld", "--repo", str(ws)).out)
    assert data["cost"]["estimate"] is True and data["cost"]["total_usd"] > 0

    refused = cli("lld-all", "--budget=3", "--reviewer=openai:local-model", "--repo", str(ws))
    assert refused.code == 2
    assert "the reviewer openai:local-model has no price" in refused.err + refused.out
    assert not (ws / "logs/parallel").exists()  # refused before anything ran
