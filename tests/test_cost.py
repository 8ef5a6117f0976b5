"""Prices, spend, the estimate, and --budget / [tool.assemblyzero.prices] as settings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from assemblyzero.cli.options import UsageError, resolve
from assemblyzero.cost import (
    BUILTIN_PRICES,
    DRAFT_TOKENS,
    PROMPT_TOKENS,
    REVIEW_TOKENS,
    Price,
    PriceError,
    Prices,
    Spend,
    estimate_item,
    money,
    parse_prices,
)
from assemblyzero.run.budget import Budget


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


def pyproject(repo: Path, body: str) -> None:
    (repo / "pyproject.toml").write_text(f"[tool.assemblyzero]\n{body}", encoding="utf-8")


# --- prices -------------------------------------------------------------------------------

def test_a_call_costs_its_tokens_at_the_price_per_million():
    assert Price(3.0, 15.0).of(1_000_000, 0) == 3.0
    assert Price(3.0, 15.0).of(2_000, 1_000) == pytest.approx(0.006 + 0.015)


def test_a_call_without_token_counts_has_no_cost_unless_it_is_free():
    assert Price(2.5, 10.0).of(None, 100) is None
    assert Price(2.5, 10.0).of(100, None) is None
    assert Price(0.0, 0.0).of(None, None) == 0.0


def test_the_built_in_table_prices_the_readme_models_and_offline_is_free():
    prices = Prices()
    assert prices.of("anthropic:claude-sonnet-4-5") == Price(3.0, 15.0)
    assert prices.of("openai:gpt-4o") == Price(2.5, 10.0)
    assert prices.of("gemini:gemini-2.5-pro") == Price(1.25, 10.0)
    assert prices.of("offline:default") == Price(0.0, 0.0)
    assert {"anthropic:claude-sonnet-4-5", "openai:gpt-4o",
            "gemini:gemini-2.5-pro"} <= set(BUILTIN_PRICES)


def test_a_dated_model_id_has_its_own_price_and_an_unknown_one_nothing_known():
    prices = Prices()
    assert prices.of("anthropic:claude-sonnet-4-5-20250929") == Price(3.0, 15.0)
    assert prices.of("openai:gpt-4o-2024-08-06") == Price(2.5, 10.0)
    assert prices.of("openai:gpt-4o-2024-05-13") == Price(5.0, 15.0)  # not the alias's
    assert prices.of("openai:gpt-4o-2099-01-01") is None  # a snapshot nobody priced
    assert prices.of("openai:local-model") is None
    assert prices.of("openai:gpt-4o-mini") is None  # not a date: another model
    assert prices.of("cmd:llm -m x") is None


def test_workspace_prices_add_to_and_override_the_built_in_ones():
    prices = Prices(parse_prices({"openai:gpt-4o": {"input": 1, "output": 2},
                                  "openai:local-model": {"input": 0, "output": 0.5},
                                  "offline:default": {"input": 7, "output": 8}}, "src"))
    assert prices.of("openai:gpt-4o") == Price(1.0, 2.0)
    assert prices.of("openai:local-model") == Price(0.0, 0.5)
    assert prices.of("offline:default") == Price(7.0, 8.0)  # even the free one
    assert prices.of("anthropic:claude-sonnet-4-5") == Price(3.0, 15.0)


@pytest.mark.parametrize(("table", "says"), [
    ([1, 2], "must be a table"),
    ({"gpt-4o": {"input": 1, "output": 2}}, "price key 'gpt-4o' must be a model spec"),
    ({"openai:": {"input": 1, "output": 2}}, "must be a model spec"),
    ({"openai:x\x1b[2J": {"input": 1, "output": 2}}, "printable"),
    ({"openai:" + "x" * 300: {"input": 1, "output": 2}}, "at most 200"),
    ({"openai:x": 2.5}, "must be { input = USD, output = USD }"),
    ({"openai:x": {"input": 1}}, "nothing else"),
    ({"openai:x": {"input": 1, "output": 2, "cache": 3}}, "nothing else"),
    ({"openai:x": {"input": -1, "output": 2}}, "input price of 'openai:x' must be a number"),
    ({"openai:x": {"input": 1, "output": math.inf}}, "from 0 to 10000"),
    ({"openai:x": {"input": 1, "output": math.nan}}, "output price"),
    ({"openai:x": {"input": 1e9, "output": 2}}, "got 1000000000.0"),
    ({"openai:x": {"input": True, "output": 2}}, "got True"),
    ({"openai:x": {"input": "1", "output": 2}}, "got '1'"),
])
def test_a_bad_price_entry_is_refused_naming_it(table: object, says: str):
    with pytest.raises(PriceError, match=r"^src: ") as caught:
        parse_prices(table, "src")
    assert says in str(caught.value)
    assert "\x1b" not in str(caught.value)


# --- spend --------------------------------------------------------------------------------

def test_spend_with_an_unknown_call_is_never_shown_or_stored_as_zero():
    spend = Spend().call(0.25).call(None)
    assert spend == Spend(0.25, 1) and not spend.known
    assert spend.shown() == "$0.25+unknown"
    assert Spend().call(None).shown() == "unknown"
    assert spend.to_json() == {"usd": None, "priced_usd": 0.25, "unpriced_calls": 1}
    assert Spend(0.000123).to_json() == {"usd": 0.000123, "priced_usd": 0.000123,
                                         "unpriced_calls": 0}


@pytest.mark.parametrize(("usd", "shown"), [(0, "$0"), (0.000123, "$0.0001"),
                                            (0.0123, "$0.01"), (12.345, "$12.35")])
def test_money_shows_cents_and_four_decimals_below_a_cent(usd: float, shown: str):
    assert money(usd) == shown


@pytest.mark.parametrize("stored", [None, "1", [1], [1, 2, 3], [-1, 0], [math.inf, 0],
                                    [1e12, 0], [True, 0], [1, -1], [1, 1.5], [1, True],
                                    [0.1, 10**9]])
def test_a_stored_spend_that_is_not_ours_is_refused(stored: object):
    assert Spend.read(stored) is None


def test_a_stored_spend_reads_back():
    assert Spend.read(Spend(0.5, 2).pair()) == Spend(0.5, 2)
    assert Spend.read([0, 0]) == Spend()


# --- the estimate -------------------------------------------------------------------------

def test_the_estimate_is_draft_review_revise_review_at_the_models_prices():
    drafter, reviewer = Price(1.0, 0.0), Price(0.0, 1.0)  # input only / output only
    draft_in = PROMPT_TOKENS + 400 // 4
    expected = (draft_in + draft_in + DRAFT_TOKENS + REVIEW_TOKENS) / 1e6 + (
        2 * REVIEW_TOKENS) / 1e6
    assert estimate_item(drafter, reviewer, 400) == pytest.approx(expected)
    assert estimate_item(None, reviewer, 400) is None
    assert estimate_item(Price(0, 0), Price(0, 0), 10**9) == 0.0


# --- the budget's state -------------------------------------------------------------------

def test_the_budget_reserves_each_running_items_estimate_until_one_is_done():
    budget = Budget(10.0, priors={"a": 3.0, "b": 3.0, "c": 3.0, "d": 3.0})
    for key in "abc":
        assert budget.admits()
        budget.started(key)
    assert budget.committed() == 9.0 and budget.admits()  # 9 < 10: one more may start
    budget.started("d")
    assert not budget.admits()
    budget.spending("a", Spend(5.0))  # more than its estimate: it counts what it has
    assert budget.committed() == 14.0
    budget.ended("a", Spend(5.0), done=True)  # the estimate is now the mean done cost: 5
    assert budget.committed() == 5.0 + 3 * 5.0
    assert not budget.check()  # 5 spent: not reached
    budget.spending("b", Spend(4.0))
    budget.spending("b", Spend(1.0))  # never less than it said before
    budget.spending("c", Spend(1.0))
    assert budget.check() and budget.reached_at == 10.0
    assert not budget.check()  # reached once
    assert not budget.admits()


# --- --budget and [tool.assemblyzero.prices] as settings ------------------------------------

@pytest.mark.parametrize(("raw", "usd"), [("5", 5.0), ("2.50", 2.5), ("$5", 5.0),
                                          (" $0.01 ", 0.01)])
def test_a_budget_is_an_amount_of_usd(repo: Path, raw: str, usd: float):
    assert resolve(repo, {"budget": raw}).budget == usd


@pytest.mark.parametrize("raw", ["0", "-1", "five", "inf", "nan", "1e7", "$"])
def test_a_budget_that_is_not_a_positive_amount_is_refused(repo: Path, raw: str):
    with pytest.raises(UsageError, match=r"^--budget must be"):
        resolve(repo, {"budget": raw})


def test_a_budget_from_the_environment_and_from_pyproject(repo: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    pyproject(repo, "budget = 7\n")
    assert resolve(repo, {}).budget == 7.0
    monkeypatch.setenv("ASSEMBLYZERO_BUDGET", "3")
    assert resolve(repo, {}).budget == 3.0
    pyproject(repo, "budget = true\n")
    monkeypatch.delenv("ASSEMBLYZERO_BUDGET")
    with pytest.raises(UsageError, match=r"\[tool.assemblyzero\] budget .* must be an amount"):
        resolve(repo, {})


def test_a_budget_needs_a_price_for_both_models(repo: Path):
    with pytest.raises(UsageError, match="the reviewer openai:local-model has no price") as e:
        resolve(repo, {"budget": "5", "reviewer": "openai:local-model"})
    assert '"openai:local-model" = { input = 2.5, output = 10.0 }' in str(e.value)
    pyproject(repo, '[tool.assemblyzero.prices]\n"openai:local-model" = '
                    '{ input = 0.1, output = 0.2 }\n')
    settings = resolve(repo, {"budget": "5", "reviewer": "openai:local-model"})
    assert settings.model_prices == (Price(0.0, 0.0), Price(0.1, 0.2))


def test_a_budget_refuses_a_cmd_model_without_echoing_its_command(repo: Path):
    with pytest.raises(UsageError, match="the drafter is a cmd: model") as e:
        resolve(repo, {"budget": "5", "drafter": "cmd:tool --key sk-secret-123"})
    assert "sk-secret-123" not in str(e.value)


def test_a_bad_price_in_pyproject_is_a_usage_error_naming_the_file(repo: Path):
    pyproject(repo, '[tool.assemblyzero.prices]\n"openai:gpt-4o" = { input = -2 }\n')
    with pytest.raises(UsageError, match=r"\[tool.assemblyzero.prices\] in .*pyproject.toml: "
                                         r"the price of 'openai:gpt-4o'"):
        resolve(repo, {})


def test_a_call_of_unknown_cost_counts_against_the_budget_at_a_calls_estimate():
    budget = Budget(10.0, priors={"a": 8.0, "b": 2.0})
    budget.started("a")
    budget.ended("a", Spend(1.0, 2), done=False)  # two unknown calls: 8 / 4 each
    assert budget.spent == 5.0


@pytest.mark.parametrize(("usd", "shown"), [(5, "$5.00"), (2.5, "$2.50"), (0.015, "$0.015"),
                                            (0.123456, "$0.123456")])
def test_a_limit_is_shown_with_every_decimal_given(usd: float, shown: str):
    assert money(usd, exact=True) == shown


def test_a_tiny_known_cost_is_not_shown_as_zero():
    assert money(0.00001) == "<$0.0001"


def test_a_key_inside_a_model_spec_is_never_echoed(repo: Path):
    from assemblyzero.cli.plan import cost_estimate

    spec = "openai:sk-proj-AAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    with pytest.raises(UsageError) as caught:
        resolve(repo, {"budget": "3", "reviewer": spec})
    assert "sk-proj-AAAA" not in str(caught.value)
    estimate = cost_estimate(resolve(repo, {"reviewer": spec}), [100])
    assert estimate["total_usd"] is None
    assert not any("sk-proj-AAAA" in m for m in estimate["unpriced_models"])
    with pytest.raises(PriceError) as bad:
        parse_prices({spec: {"input": -1, "output": 0}}, "src")
    assert "sk-proj-AAAA" not in str(bad.value)


def test_a_spend_file_that_is_a_fifo_or_a_symlink_is_not_read(tmp_path: Path):
    import os

    from assemblyzero import spendfiles

    fifo = tmp_path / "lld-1.json"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer holds it open
    try:
        assert spendfiles.read(fifo) is None
    finally:
        os.close(fd)
    real = tmp_path / "elsewhere.json"
    spendfiles.write(real, Spend(9.0))
    (tmp_path / "lld-2.json").symlink_to(real)
    assert spendfiles.read(tmp_path / "lld-2.json") is None
    assert spendfiles.total(tmp_path) == 9.0  # the real file counts once, the link not


def test_gemini_thinking_is_billed_as_output():
    from types import SimpleNamespace

    from assemblyzero.providers.gemini import _usage

    usage = SimpleNamespace(prompt_token_count=100, candidates_token_count=50,
                            thoughts_token_count=400)
    assert _usage(usage) == (100, 450)
    assert _usage(SimpleNamespace(prompt_token_count=100, candidates_token_count=50,
                                  thoughts_token_count=None)) == (100, 50)
    assert _usage(None) == (None, None)
