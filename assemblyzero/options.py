"""Turning flags, environment and `[tool.assemblyzero]` into checked settings.

Precedence (SPEC 4): flags > environment > the workspace's pyproject.toml >
defaults. Every bad value is a UsageError whose message names its source.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assemblyzero.constants import (
    DEFAULT_GRACE,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MODEL,
    DEFAULT_PARALLEL,
    DEFAULT_TIMEOUT,
    MAX_PARALLEL,
)
from assemblyzero.providers import check_spec

# setting -> (environment variable, default)
_SETTINGS: dict[str, tuple[str, Any]] = {
    "drafter": ("ASSEMBLYZERO_DRAFTER", DEFAULT_MODEL),
    "reviewer": ("ASSEMBLYZERO_REVIEWER", DEFAULT_MODEL),
    "max_iterations": ("ASSEMBLYZERO_MAX_ITERATIONS", DEFAULT_MAX_ITERATIONS),
    "timeout": ("ASSEMBLYZERO_TIMEOUT", DEFAULT_TIMEOUT),
    "grace": ("ASSEMBLYZERO_GRACE", DEFAULT_GRACE),
    "max_attempts": ("ASSEMBLYZERO_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS),
}


class UsageError(ValueError):
    """A flag or setting the user must fix (exit 2)."""


@dataclass(frozen=True)
class Parallel:
    workers: int
    warning: str = ""


def parse_parallel(value: bool | str | int | None) -> Parallel:
    """None: sequential; True (`--parallel` alone): 3; above 10: capped, warned."""
    if value is None or value is False:
        return Parallel(1)
    if value is True:
        return Parallel(DEFAULT_PARALLEL)
    n = parse_int(value, "--parallel")
    if n < 1:
        raise UsageError(f"--parallel must be at least 1 (got {n})")
    if n > MAX_PARALLEL:
        return Parallel(MAX_PARALLEL, f"--parallel={n} is above the cap; running "
                                      f"{MAX_PARALLEL} workers at most")
    return Parallel(n)


def parse_int(value: str | int, what: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):  # TOML true, 2.7, [..]
        raise UsageError(f"{what} must be a whole number (got {value!r})")
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"{what} must be a whole number (got {value!r})") from None
    if minimum is not None and n < minimum:
        raise UsageError(f"{what} must be at least {minimum} (got {n})")
    return n


def parse_seconds(value: str | float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UsageError(f"{what} must be a number of seconds (got {value!r})")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number of seconds (got {value!r})") from None
    if not seconds > 0:
        raise UsageError(f"{what} must be more than 0 seconds (got {value!r})")
    return seconds


def parse_ids(value: str | None) -> list[str] | None:
    """`--only=42,43`: the raw ids (validated later, each reported by name)."""
    if value is None:
        return None
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if not ids:
        raise UsageError(f"--only needs at least one id (got {value!r})")
    return ids


def resolve(repo: Path, flags: dict[str, Any]) -> dict[str, Any]:
    """The settings, each from the first source that has it."""
    config = _pyproject(repo)
    settings: dict[str, Any] = {}
    for name, (env, default) in _SETTINGS.items():
        if flags.get(name) not in (None, ""):
            value, source = flags[name], f"--{name.replace('_', '-')}"
        elif os.environ.get(env):
            value, source = os.environ[env], env
        elif name in config or name.replace("_", "-") in config:
            value = config.get(name, config.get(name.replace("_", "-")))
            source = f"[tool.assemblyzero] {name} in {repo / 'pyproject.toml'}"
        else:
            value, source = default, "default"
        settings[name] = _check(name, value, source)
    return settings


def _check(name: str, value: Any, source: str) -> Any:
    if name in ("drafter", "reviewer"):
        try:
            check_spec(str(value))
        except ValueError as exc:
            raise UsageError(f"{source}: {exc}") from None
        return str(value)
    if name == "max_iterations":
        return parse_int(value, source, minimum=0)
    if name == "max_attempts":
        return parse_int(value, source, minimum=1)
    return parse_seconds(value, source)


def _pyproject(repo: Path) -> dict[str, Any]:
    path = repo / "pyproject.toml"
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    tool = data.get("tool", {})
    section = tool.get("assemblyzero", {}) if isinstance(tool, dict) else None
    if not isinstance(section, dict):
        raise UsageError(f"{path}: [tool.assemblyzero] must be a table")
    return section
