"""Turning flags, environment and `[tool.assemblyzero]` into checked settings.

Precedence (docs/user-guide.md, Models and settings): flags > environment >
the workspace's pyproject.toml > defaults. Every bad value is a UsageError
whose message names its source and how to fix it there.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from assemblyzero.constants import (
    DEFAULT_GRACE,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MODEL,
    DEFAULT_PARALLEL,
    DEFAULT_TIMEOUT,
    ENV_CLUSTER,
    ENV_DRAFTER,
    ENV_REVIEWER,
    MAX_BUDGET,
    MAX_GRACE,
    MAX_OUTPUT_EXAMPLE,
    MAX_OUTPUT_TOKENS,
    MAX_PARALLEL,
    MAX_TIMEOUT,
)
from assemblyzero.cost import Price, PriceError, Prices, parse_prices
from assemblyzero.fileio import inside
from assemblyzero.keys.redact import Redactor
from assemblyzero.providers import check_spec

# A model spec that works once its SDK and a credential are there, for messages.
_MODEL_EXAMPLE = "anthropic:claude-sonnet-4-5"

class UsageError(ValueError):
    """A flag or setting the user must fix (exit 2)."""


def fix_hint(what: str, example: object) -> str:
    """How to give `what` a good value, by where it came from (flag, variable, pyproject)."""
    if what.startswith("--"):
        return f"pass e.g. {what}={example}"
    if what.startswith("[tool.assemblyzero] "):  # "[tool.assemblyzero] KEY in PATH"
        shown = f'"{example}"' if isinstance(example, str) else example
        return f"write e.g. {what.split()[1]} = {shown} there"
    return f"set e.g. {what}={example}, or unset it"


@dataclass(frozen=True)
class Settings:
    """A run's checked settings, each from the first source that has it: flag,
    environment variable, `[tool.assemblyzero]` in the workspace's pyproject.toml,
    or the default here."""

    drafter: str = DEFAULT_MODEL  # the model that drafts and revises, as provider:model
    reviewer: str = DEFAULT_MODEL  # the model that reviews, as provider:model
    max_iterations: int = DEFAULT_MAX_ITERATIONS  # revisions allowed after the first draft
    timeout: float = DEFAULT_TIMEOUT  # seconds one workflow may take before its worker ends
    grace: float = DEFAULT_GRACE  # seconds a stopped worker gets to save before SIGKILL
    max_attempts: int = DEFAULT_MAX_ATTEMPTS  # attempts per item on a 429 or 401/403
    max_output_tokens: int | None = None  # a cap on one reply; None: each provider's default
    budget: float | None = None  # USD the run may spend; None: no limit
    prices: Prices = field(default_factory=Prices)  # built in, and [tool.assemblyzero.prices]
    pacing: bool = True  # pace each key's calls to its budget (False: --no-pacing)
    cluster: str | None = None  # a Dask cluster to run the workers on (cluster/connect.py)

    @property
    def models(self) -> tuple[str, str]:
        """The drafter's and the reviewer's model specs."""
        return self.drafter, self.reviewer

    @property
    def model_prices(self) -> tuple[Price | None, Price | None]:
        """The drafter's and the reviewer's prices (None: not known)."""
        return self.prices.of(self.drafter), self.prices.of(self.reviewer)


class Flags(TypedDict, total=False):
    """The settings' flags as the user typed them (None or "": not given)."""

    drafter: str | None
    reviewer: str | None
    max_iterations: str | None
    timeout: str | None
    grace: str | None
    max_attempts: str | None
    max_output_tokens: str | None
    budget: str | None
    no_pacing: bool
    cluster: str | None


_DEFAULTS = Settings()

# setting -> the environment variable that sets it
_ENV = {
    "drafter": ENV_DRAFTER,
    "reviewer": ENV_REVIEWER,
    "max_iterations": "ASSEMBLYZERO_MAX_ITERATIONS",
    "timeout": "ASSEMBLYZERO_TIMEOUT",
    "grace": "ASSEMBLYZERO_GRACE",
    "max_attempts": "ASSEMBLYZERO_MAX_ATTEMPTS",
    "max_output_tokens": "ASSEMBLYZERO_MAX_OUTPUT_TOKENS",
    "budget": "ASSEMBLYZERO_BUDGET",
    "cluster": ENV_CLUSTER,
}


@dataclass(frozen=True)
class Parallel:
    workers: int
    warning: str = ""


def parse_parallel(value: bool | str | int | None, cluster: bool = False,
                   capped: bool = True) -> Parallel:
    """None: sequential; True (`--parallel` alone): 3; above 10: capped (if `capped`),
    warned. On a cluster: None is 0 (every worker thread it has); a scheduler's cluster is
    not `capped` (local:N is: it is one machine)."""
    if (value is None or value is False) and cluster:
        return Parallel(0)
    if value is None or value is False:
        return Parallel(1)
    if value is True:
        return Parallel(DEFAULT_PARALLEL)
    n = parse_int(value, "--parallel", example=DEFAULT_PARALLEL)
    if n < 1:
        raise UsageError(f"--parallel must be at least 1 (got {n}); pass e.g. "
                         f"--parallel={DEFAULT_PARALLEL}, or leave it out to run one at a time")
    if n > MAX_PARALLEL and capped:  # one machine's rule
        return Parallel(MAX_PARALLEL, f"--parallel={n} is above the cap; running "
                                      f"{MAX_PARALLEL} workers at most")
    return Parallel(n)


def parse_int(value: object, what: str, minimum: int | None = None,
              example: int | None = None) -> int:
    """A whole number from a flag, a variable or pyproject (any TOML value); `what`
    names that source (`--limit`, ...)."""
    fix = fix_hint(what, example if example is not None else max(minimum or 0, 1))
    if isinstance(value, bool) or not isinstance(value, (int, str)):  # TOML true, 2.7, [..]
        raise UsageError(f"{what} must be a whole number (got {value!r}); {fix}")
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"{what} must be a whole number (got {value!r}); {fix}") from None
    if minimum is not None and n < minimum:
        raise UsageError(f"{what} must be at least {minimum} (got {n}); {fix}")
    return n


def parse_seconds(value: object, what: str, example: float = 60,
                  maximum: float | None = None) -> float:
    """A finite number of seconds above 0 (and at most `maximum`); `what` names its source."""
    fix = fix_hint(what, int(example) if float(example).is_integer() else example)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UsageError(f"{what} must be a number of seconds (got {value!r}); {fix}")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number of seconds (got {value!r}); {fix}") from None
    if not math.isfinite(seconds):
        raise UsageError(f"{what} must be a finite number of seconds (got {value!r}); {fix}")
    if not seconds > 0:
        raise UsageError(f"{what} must be more than 0 seconds (got {value!r}); {fix}")
    if maximum is not None and seconds > maximum:
        raise UsageError(f"{what} must be at most {maximum:g} seconds (got {value!r}); {fix}")
    return seconds


def parse_ids(value: str | None) -> list[str] | None:
    """`--only=42,43`: the raw ids (validated later, each reported by name)."""
    if value is None:
        return None
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if not ids:
        raise UsageError(f"--only needs at least one id (got {value!r}); pass e.g. "
                         "--only=101,103, or leave it out for every pending item")
    return ids


def resolve(repo: Path, flags: Flags) -> Settings:
    """The settings, each checked, from the first source that has it."""
    config = _pyproject(repo)

    def given(name: str) -> tuple[object, str]:
        return _given(name, flags, config, repo)

    # Checked in this order: the first bad one is the error.
    settings = Settings(
        drafter=_model("drafter", *given("drafter")),
        reviewer=_model("reviewer", *given("reviewer")),
        max_iterations=parse_int(*given("max_iterations"), minimum=0,
                                 example=_DEFAULTS.max_iterations),
        # The upper bounds: a day-long grace is a typo; a huge timeout overflows the waits.
        timeout=parse_seconds(*given("timeout"), example=_DEFAULTS.timeout, maximum=MAX_TIMEOUT),
        grace=parse_seconds(*given("grace"), example=_DEFAULTS.grace, maximum=MAX_GRACE),
        max_attempts=parse_int(*given("max_attempts"), minimum=1,
                               example=_DEFAULTS.max_attempts),
        max_output_tokens=_tokens(*given("max_output_tokens")),
        budget=_budget(*given("budget")),
        prices=_prices(config, repo),
        pacing=not flags.get("no_pacing"),
        cluster=_cluster(*given("cluster")),
    )
    if settings.budget is not None:
        _check_budget(settings, given("budget")[1])
    return settings


def cluster_setting(repo: Path, flag: str | None) -> str | None:
    """The cluster alone (for `status`), from the flag, the variable or pyproject."""
    return _cluster(*_given("cluster", {"cluster": flag}, _pyproject(repo), repo))


def _cluster(value: object, source: str) -> str | None:
    """A cluster address (`tcp://HOST:8786`, `local:2`), or None: run on this machine.

    A workspace's pyproject.toml may name only `local:N`: the client unpickles what the
    scheduler sends, so a scheduler (even on 127.0.0.1, where another user may listen) must
    be the user's own choice (the flag or the variable), as a cmd: model is. local:N is
    one machine: at most MAX_PARALLEL threads in all."""
    if value in (None, ""):
        return None
    from assemblyzero.cluster.connect import ClusterError, parse

    try:
        address = parse(str(value), source)
    except ClusterError as exc:
        raise UsageError(str(exc)) from None
    if address.local and address.local_workers * address.local_threads > MAX_PARALLEL:
        raise UsageError(f"{source}={address.text}: {address.local_workers} x "
                         f"{address.local_threads} threads is above the {MAX_PARALLEL} items a "
                         f"machine runs at once; pass e.g. {source}=local:2 (2 processes x 3 "
                         "threads), or a scheduler's address for more")
    if source.startswith("[tool.assemblyzero] ") and not address.local:
        raise UsageError(f"{source}: a workspace's pyproject.toml may name only a cluster on "
                         f"this machine (local:N); pass a scheduler yourself as "
                         f"--cluster={address.text} or {ENV_CLUSTER}=..., or remove it there")
    return address.text



def _budget(value: object, source: str) -> float | None:
    """USD the run may spend (`5`, `2.50`, `$5`), or None (not given: no limit)."""
    if value is None:
        return None
    fix = fix_hint(source, 5)
    text = value.strip().removeprefix("$") if isinstance(value, str) else value
    if isinstance(text, bool) or not isinstance(text, (int, float, str)):
        raise UsageError(f"{source} must be an amount of USD (got {value!r}); {fix}")
    try:
        usd = float(text)
    except ValueError:
        raise UsageError(f"{source} must be an amount of USD (got {value!r}); {fix}") from None
    if not math.isfinite(usd) or not 0 < usd <= MAX_BUDGET:
        raise UsageError(f"{source} must be more than 0 and at most {MAX_BUDGET:,.0f} USD "
                         f"(got {value!r}); {fix}")
    return usd


def _prices(config: Mapping[str, object], repo: Path) -> Prices:
    """The price table: built in, with the workspace's [tool.assemblyzero.prices] over it."""
    if "prices" not in config:
        return Prices()
    source = f"[tool.assemblyzero.prices] in {repo / 'pyproject.toml'}"
    try:
        return Prices(parse_prices(config["prices"], source))
    except PriceError as exc:
        raise UsageError(str(exc)) from None


def _check_budget(settings: Settings, source: str) -> None:
    """A budget needs every call's cost: each model priced, and able to count tokens."""
    for role, spec, price in zip(("drafter", "reviewer"), settings.models,
                                 settings.model_prices, strict=True):
        if spec.startswith("cmd:"):  # the spec may hold a key: not echoed
            raise UsageError(f"{source}: the {role} is a cmd: model, whose replies carry no "
                             "token counts, so what it spends cannot be counted; run it "
                             "without a budget")
        if price is None:
            shown = Redactor()(spec)  # a spec may carry a key
            raise UsageError(
                f"{source}: the {role} {shown} has no price, so what it spends cannot be "
                f"counted; add it to [tool.assemblyzero.prices] in the workspace's "
                f"pyproject.toml, e.g. \"{shown}\" = {{ input = 2.5, output = 10.0 }} (USD "
                f"per million tokens), or run without a budget")


def _tokens(value: object, source: str) -> int | None:
    """A cap on one reply's output tokens, or None (not given: each provider's default)."""
    if value is None:
        return None
    n = parse_int(value, source, minimum=1, example=MAX_OUTPUT_EXAMPLE)
    if n > MAX_OUTPUT_TOKENS:
        raise UsageError(f"{source} must be at most {MAX_OUTPUT_TOKENS} (got {n}); "
                         f"{fix_hint(source, MAX_OUTPUT_EXAMPLE)}")
    return n


def _given(name: str, flags: Mapping[str, object], config: Mapping[str, object],
           repo: Path) -> tuple[object, str]:
    """A setting's raw value, and its source as messages name it."""
    dashed = name.replace("_", "-")
    if flags.get(name) not in (None, ""):
        return flags[name], f"--{dashed}"
    if os.environ.get(_ENV[name]):
        return os.environ[_ENV[name]], _ENV[name]
    for key in (name, dashed):  # the underscore spelling wins
        if key in config:
            return config[key], f"[tool.assemblyzero] {key} in {repo / 'pyproject.toml'}"
    return getattr(_DEFAULTS, name), "default"


def _model(name: str, value: object, source: str) -> str:
    """A model spec; a workspace's pyproject.toml may not choose a cmd: model."""
    try:
        provider = check_spec(str(value), fix=f"; {fix_hint(source, _MODEL_EXAMPLE)}")
    except ValueError as exc:
        raise UsageError(f"{source}: {exc}") from None
    if provider == "cmd" and source.startswith("[tool.assemblyzero] "):
        # The workspace is untrusted (a cloned repository): its file must not pick a
        # command for us to run. The user's own flag or variable may.
        raise UsageError(f"{source}: a cmd: model runs a command, and a workspace's "
                         f"pyproject.toml may not choose one; pass it yourself as "
                         f"--{name}=cmd:... or {_ENV[name]}=cmd:..., or remove it there")
    return str(value)


def _pyproject(repo: Path) -> dict[str, Any]:
    path = repo / "pyproject.toml"
    if os.path.lexists(path) and not inside(repo, path):  # a link out of the workspace
        raise UsageError(f"{path} leads outside the workspace (to {os.path.realpath(path)}); "
                         "settings are read only from inside it: replace the symlink with "
                         "the file itself")
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"cannot read {path}: {exc}; fix the TOML there, then run again") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UsageError(f"cannot read {path}: {why}; make it a readable UTF-8 file, "
                         "then run again") from None
    tool = data.get("tool", {})
    section = tool.get("assemblyzero", {}) if isinstance(tool, dict) else None
    if not isinstance(section, dict):
        raise UsageError(f"{path}: [tool.assemblyzero] must be a table; write it as a "
                         "[tool.assemblyzero] section of key = value lines")
    return section
