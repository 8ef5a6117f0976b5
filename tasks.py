"""invoke tasks of this checkout: the `assemblyzero` commands, plus the developer tasks.

`bench`, `test` and `lint` need the checkout (benchmarks/, tests/, the dev
extra), so they live here and not in the installed `assemblyzero` command.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from assemblyzero.cli.tasks import ns as user_commands

BENCH = Path(__file__).resolve().parent / "benchmarks" / "bench.py"


@task(auto_shortflags=False, help={
    "quick": "tiny sizes, one repeat: a fast look (and what the smoke test runs)",
    "only": "comma-separated figures to measure (see benchmarks/bench.py --help)"})
def bench(c: Context, quick: bool = False, only: str | None = None) -> None:
    """Measure the figures of README's Benchmarks table; print it, write logs/bench/<time>.json."""
    argv = [sys.executable, str(BENCH)] + (["--quick"] if quick else []) + (
        ["--only", only] if only else [])
    c.run(" ".join(shlex.quote(a) for a in argv), pty=False)


@task(auto_shortflags=False, help={"args": "extra arguments for pytest, e.g. --args='-k prefix'"})
def test(c: Context, args: str = "") -> None:
    """Run the test suite (pytest -n auto)."""
    c.run(f"{sys.executable} -m pytest -n auto {args}", pty=False)


@task
def lint(c: Context) -> None:
    """ruff check, then mypy --strict on the package."""
    c.run(f"{sys.executable} -m ruff check .")
    c.run(f"{sys.executable} -m mypy --strict assemblyzero")


ns = Collection(*user_commands.tasks.values(), bench, test, lint)
