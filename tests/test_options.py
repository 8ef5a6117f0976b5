"""Flags, environment and `[tool.assemblyzero]` turned into checked settings."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from assemblyzero.cli.options import (
    Parallel,
    Settings,
    UsageError,
    parse_ids,
    parse_int,
    parse_parallel,
    parse_seconds,
    resolve,
)
from assemblyzero.constants import (
    DEFAULT_GRACE,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    MAX_GRACE,
    MAX_PARALLEL,
    MAX_TIMEOUT,
)

DEFAULTS = Settings(drafter=DEFAULT_MODEL, reviewer=DEFAULT_MODEL,
                    max_iterations=DEFAULT_MAX_ITERATIONS, timeout=DEFAULT_TIMEOUT,
                    grace=DEFAULT_GRACE, max_attempts=DEFAULT_MAX_ATTEMPTS)
NO_FLAGS = {name: None for name in ("drafter", "reviewer", "max_iterations", "timeout",
                                    "grace", "max_attempts")}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


def pyproject(repo: Path, body: str) -> Path:
    path = repo / "pyproject.toml"
    path.write_text(f'[project]\nname = "x"\n\n[tool.assemblyzero]\n{body}', encoding="utf-8")
    return path


# --- parse_parallel --------------------------------------------------------------

@pytest.mark.parametrize(("value", "workers"), [(None, 1), (False, 1), (True, 3), ("1", 1),
                                                ("5", 5), (5, 5), ("10", 10)])
def test_parse_parallel_values(value, workers: int):
    assert parse_parallel(value) == Parallel(workers)


def test_parse_parallel_above_the_cap_is_capped_with_a_warning():
    parallel = parse_parallel("20")
    assert parallel.workers == MAX_PARALLEL == 10
    assert "--parallel=20" in parallel.warning and "10" in parallel.warning


@pytest.mark.parametrize("value", ["0", "-1", 0])
def test_parse_parallel_below_one_is_a_usage_error(value):
    with pytest.raises(UsageError, match="--parallel must be at least 1"):
        parse_parallel(value)


@pytest.mark.parametrize("value", ["abc", "", "2.5", "3x"])
def test_parse_parallel_not_a_number_is_a_usage_error(value: str):
    with pytest.raises(UsageError) as caught:
        parse_parallel(value)
    assert "--parallel must be a whole number" in str(caught.value)
    assert repr(value) in str(caught.value)


def test_usage_error_is_a_value_error():
    assert issubclass(UsageError, ValueError)


def test_parse_int_minimum_names_the_setting():
    assert parse_int("0", "--limit") == 0
    with pytest.raises(UsageError, match="--limit must be at least 1 \\(got 0\\)"):
        parse_int("0", "--limit", minimum=1)


@pytest.mark.parametrize("value", ["0", "-3", "nan", "soon", ""])
def test_parse_seconds_refuses_non_positive_and_non_numbers(value: str):
    with pytest.raises(UsageError, match="--timeout"):
        parse_seconds(value, "--timeout")


def test_parse_seconds_accepts_fractions():
    assert parse_seconds("0.5", "--grace") == 0.5


@pytest.mark.parametrize("value", ["inf", "1e400", "-inf", "nan", "NaN", float("inf"),
                                   float("nan")])
def test_parse_seconds_refuses_infinity_and_nan(value: str | float):
    with pytest.raises(UsageError, match="--timeout must be a finite number of seconds"):
        parse_seconds(value, "--timeout", maximum=MAX_TIMEOUT)


def test_parse_seconds_refuses_values_above_the_maximum_and_keeps_the_maximum():
    assert parse_seconds(str(MAX_TIMEOUT), "--timeout", maximum=MAX_TIMEOUT) == MAX_TIMEOUT
    with pytest.raises(UsageError, match=r"--timeout must be at most 604800 seconds "
                                         r"\(got '1e10'\); pass e.g. --timeout=1800"):
        parse_seconds("1e10", "--timeout", example=1800, maximum=MAX_TIMEOUT)


@pytest.mark.parametrize(("name", "value", "bound"), [
    ("timeout", "1e10", MAX_TIMEOUT), ("timeout", str(MAX_TIMEOUT + 1), MAX_TIMEOUT),
    ("grace", "3601", MAX_GRACE), ("grace", "1e308", MAX_GRACE)])
def test_timeout_and_grace_have_upper_bounds_from_every_source(
        repo: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, bound: float):
    expected = f"must be at most {bound:g} seconds"
    with pytest.raises(UsageError) as flag:
        resolve(repo, {name: value})
    assert str(flag.value).startswith(f"--{name} {expected}")
    path = pyproject(repo, f"{name} = {value}\n")
    with pytest.raises(UsageError) as config:
        resolve(repo, {})
    assert str(config.value).startswith(f"[tool.assemblyzero] {name} in {path} {expected}")
    assert expected in str(config.value) and f"write e.g. {name} = " in str(config.value)
    env = f"ASSEMBLYZERO_{name.upper()}"
    monkeypatch.setenv(env, value)
    with pytest.raises(UsageError) as variable:
        resolve(repo, {})
    assert str(variable.value).startswith(f"{env} {expected}")
    assert f"set e.g. {env}=" in str(variable.value)
    monkeypatch.setenv(env, str(bound))
    assert getattr(resolve(repo, {}), name) == bound  # the bound itself is fine


def test_inf_in_pyproject_is_refused(repo: Path):
    path = pyproject(repo, "timeout = inf\n")  # TOML has inf and nan literals
    with pytest.raises(UsageError, match="finite number of seconds") as caught:
        resolve(repo, {})
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(("raw", "ids"), [(None, None), ("42", ["42"]),
                                          (" 42, 43 ,,auth ", ["42", "43", "auth"])])
def test_parse_ids_splits_on_commas(raw, ids):
    assert parse_ids(raw) == ids


@pytest.mark.parametrize("raw", ["", ",", " , "])
def test_an_empty_only_is_a_usage_error_not_the_whole_backlog(raw):
    with pytest.raises(UsageError, match="--only needs at least one id"):
        parse_ids(raw)


# --- resolve: precedence ----------------------------------------------------------

def test_defaults_without_flags_env_or_pyproject(repo: Path):
    assert resolve(repo, {}) == DEFAULTS
    assert resolve(repo, NO_FLAGS) == DEFAULTS


def test_pyproject_overrides_defaults(repo: Path):
    pyproject(repo, 'drafter = "offline:big"\nmax_iterations = 5\ntimeout = 60\ngrace = 2.5\n')
    settings = resolve(repo, NO_FLAGS)
    assert settings == replace(DEFAULTS, drafter="offline:big", max_iterations=5,
                               timeout=60.0, grace=2.5)


def test_pyproject_accepts_the_dashed_spelling(repo: Path):
    pyproject(repo, 'max-iterations = 7\n')
    assert resolve(repo, {}).max_iterations == 7


def test_pyproject_underscore_spelling_wins_over_the_dashed_one(repo: Path):
    pyproject(repo, 'max_iterations = 4\nmax-iterations = 7\n')
    assert resolve(repo, {}).max_iterations == 4


def test_env_overrides_pyproject(repo: Path, monkeypatch: pytest.MonkeyPatch):
    pyproject(repo, 'drafter = "offline:from-pyproject"\nmax-iterations = 7\ntimeout = 60\n')
    monkeypatch.setenv("ASSEMBLYZERO_DRAFTER", "offline:from-env")
    monkeypatch.setenv("ASSEMBLYZERO_MAX_ITERATIONS", "2")
    monkeypatch.setenv("ASSEMBLYZERO_REVIEWER", "offline:reviewer-env")
    monkeypatch.setenv("ASSEMBLYZERO_GRACE", "1.5")
    settings = resolve(repo, NO_FLAGS)
    assert settings == Settings(drafter="offline:from-env", reviewer="offline:reviewer-env",
                                max_iterations=2, timeout=60.0, grace=1.5, max_attempts=5)


def test_flags_override_env_and_pyproject(repo: Path, monkeypatch: pytest.MonkeyPatch):
    pyproject(repo, 'drafter = "offline:from-pyproject"\nmax_iterations = 7\n')
    monkeypatch.setenv("ASSEMBLYZERO_DRAFTER", "offline:from-env")
    monkeypatch.setenv("ASSEMBLYZERO_MAX_ITERATIONS", "2")
    monkeypatch.setenv("ASSEMBLYZERO_TIMEOUT", "30")
    flags = {**NO_FLAGS, "drafter": "offline:from-flag", "max_iterations": "1"}
    settings = resolve(repo, flags)
    assert settings.drafter == "offline:from-flag"
    assert settings.max_iterations == 1
    assert settings.timeout == 30.0  # no flag: the environment
    assert settings.reviewer == DEFAULT_MODEL  # nowhere: the default


def test_empty_flag_and_empty_env_fall_through(repo: Path, monkeypatch: pytest.MonkeyPatch):
    pyproject(repo, 'max_iterations = 6\n')
    monkeypatch.setenv("ASSEMBLYZERO_MAX_ITERATIONS", "")
    assert resolve(repo, {"max_iterations": ""}).max_iterations == 6


def test_max_iterations_zero_is_allowed(repo: Path):
    assert resolve(repo, {"max_iterations": "0"}).max_iterations == 0


def test_pyproject_without_a_tool_assemblyzero_table_gives_defaults(repo: Path):
    (repo / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.ruff]\nline-length = 9\n')
    assert resolve(repo, {}) == DEFAULTS


# --- resolve: bad values name their source ------------------------------------------

@pytest.mark.parametrize(("env", "value", "expected"), [
    ("ASSEMBLYZERO_DRAFTER", "gpt4", "must look like 'provider:model'"),
    ("ASSEMBLYZERO_REVIEWER", "nosuch:model", "unknown provider 'nosuch'"),
    ("ASSEMBLYZERO_MAX_ITERATIONS", "three", "must be a whole number"),
    ("ASSEMBLYZERO_MAX_ITERATIONS", "-1", "must be at least 0"),
    ("ASSEMBLYZERO_TIMEOUT", "0", "must be more than 0 seconds"),
    ("ASSEMBLYZERO_GRACE", "later", "must be a number of seconds"),
])
def test_a_bad_env_value_names_the_variable(repo: Path, monkeypatch: pytest.MonkeyPatch,
                                            env: str, value: str, expected: str):
    monkeypatch.setenv(env, value)
    with pytest.raises(UsageError) as caught:
        resolve(repo, {})
    assert str(caught.value).startswith(env)
    assert expected in str(caught.value)


@pytest.mark.parametrize(("flag", "value", "shown"), [
    ("max_iterations", "x", "--max-iterations"),
    ("drafter", "offline", "--drafter"),
    ("timeout", "-5", "--timeout"),
])
def test_a_bad_flag_names_the_flag(repo: Path, flag: str, value: str, shown: str):
    with pytest.raises(UsageError) as caught:
        resolve(repo, {flag: value})
    assert str(caught.value).startswith(shown)


@pytest.mark.parametrize("body", ['max_iterations = "lots"\n', 'max-iterations = -2\n',
                                  'reviewer = "offline"\n', 'grace = 0\n'])
def test_a_bad_pyproject_value_names_the_file(repo: Path, body: str):
    path = pyproject(repo, body)
    with pytest.raises(UsageError) as caught:
        resolve(repo, {})
    assert "[tool.assemblyzero]" in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_bad_pyproject_value_is_ignored_when_env_overrides_it(
        repo: Path, monkeypatch: pytest.MonkeyPatch):
    pyproject(repo, 'max_iterations = "lots"\n')
    monkeypatch.setenv("ASSEMBLYZERO_MAX_ITERATIONS", "2")
    assert resolve(repo, {}).max_iterations == 2


def test_a_broken_pyproject_is_a_usage_error_naming_the_file(repo: Path):
    path = repo / "pyproject.toml"
    path.write_text("[tool.assemblyzero\nmax_iterations = \n", encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        resolve(repo, {})
    assert f"cannot read {path}" in str(caught.value)


def test_tool_assemblyzero_that_is_not_a_table_is_a_usage_error(repo: Path):
    path = repo / "pyproject.toml"
    path.write_text('[tool]\nassemblyzero = "yes"\n', encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        resolve(repo, {})
    assert str(path) in str(caught.value) and "must be a table" in str(caught.value)


@pytest.mark.parametrize("body", ["max_iterations = 2.7\n", "max_iterations = true\n"])
def test_a_non_integer_max_iterations_in_pyproject_is_refused(repo: Path, body: str):
    path = pyproject(repo, body)
    with pytest.raises(UsageError) as caught:
        resolve(repo, {})
    assert str(path) in str(caught.value)


def test_a_tool_key_that_is_not_a_table_is_a_usage_error(repo: Path):
    (repo / "pyproject.toml").write_text("tool = 1\n", encoding="utf-8")
    with pytest.raises(UsageError):
        resolve(repo, {})


def test_the_settings_defaults_are_the_documented_ones_and_are_floats_where_seconds():
    assert Settings() == DEFAULTS
    assert isinstance(Settings().timeout, float) and isinstance(Settings().grace, float)
    assert Settings(drafter="offline:a", reviewer="offline:b").models == ("offline:a",
                                                                          "offline:b")


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().timeout = 1.0  # type: ignore[misc]


def test_max_output_tokens_from_each_source_and_its_bounds(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve(repo, NO_FLAGS).max_output_tokens is None  # each provider's default
    pyproject(repo, "max-output-tokens = 8000\n")
    assert resolve(repo, NO_FLAGS).max_output_tokens == 8000
    monkeypatch.setenv("ASSEMBLYZERO_MAX_OUTPUT_TOKENS", "9000")
    assert resolve(repo, NO_FLAGS).max_output_tokens == 9000
    assert resolve(repo, {"max_output_tokens": "100"}).max_output_tokens == 100
    for bad, says in (("0", "must be at least 1 (got 0)"),
                      ("2000000", "must be at most 1000000 (got 2000000)"),
                      ("lots", "must be a whole number (got 'lots')")):
        with pytest.raises(UsageError, match=r"--max-output-tokens " + re.escape(says)):
            resolve(repo, {"max_output_tokens": bad})


def test_on_a_cluster_parallel_has_no_cap_and_defaults_to_every_slot():
    assert parse_parallel(None, cluster=True).workers == 0  # 0: as many as the cluster has
    assert parse_parallel("40", cluster=True, capped=False) == Parallel(40)
    assert parse_parallel("40").workers == 10  # one machine's cap stays


@pytest.mark.parametrize("value", ["local:2", "local:3x3", "tcp://10.0.0.5:8786",
                                   "tls://sched.example:8786"])
def test_cluster_addresses_are_taken_from_the_flag(repo: Path, value: str):
    assert resolve(repo, {"cluster": value}).cluster == value


@pytest.mark.parametrize("value", ["10.0.0.5:8786", "local:0", "local:999", "http://x",
                                   "tcp://", "local:2\x1b[2J"])
def test_a_bad_cluster_address_is_a_usage_error_naming_its_source(repo: Path, value: str):
    with pytest.raises(UsageError, match="--cluster") as caught:
        resolve(repo, {"cluster": value})
    assert "\x1b" not in str(caught.value)


def test_the_cluster_variable_is_read(repo: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ASSEMBLYZERO_CLUSTER", "local:1")
    assert resolve(repo, {}).cluster == "local:1"


def test_a_workspace_may_name_only_a_local_cluster(repo: Path):
    """The client unpickles what a scheduler sends: a cloned repository must not pick one,
    not even on 127.0.0.1 (another user of the machine may listen there)."""
    (repo / "pyproject.toml").write_text('[tool.assemblyzero]\ncluster = "local:2"\n')
    assert resolve(repo, {}).cluster == "local:2"
    for far in ("tcp://127.0.0.1:8786", "tcp://evil.example:8786"):
        (repo / "pyproject.toml").write_text(f'[tool.assemblyzero]\ncluster = "{far}"\n')
        with pytest.raises(UsageError, match="only a cluster on this machine"):
            resolve(repo, {})
    assert resolve(repo, {"cluster": "tcp://evil.example:8786"}).cluster  # the user's own


@pytest.mark.parametrize("value", ["local:2x20", "local:11", "local:4x3"])
def test_a_local_cluster_is_one_machine_and_keeps_its_cap(repo: Path, value: str):
    with pytest.raises(UsageError, match="above the 10 items a machine runs at once"):
        resolve(repo, {"cluster": value})
    assert parse_parallel("40", cluster=True, capped=True).workers == 10
