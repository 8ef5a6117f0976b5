"""What reading past runs loads: `status` and `retry-failed`'s reading of runs import
nothing of the scheduler (assemblyzero.run). Checked in a fresh interpreter, as this
test process has imported everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # each test starts a Python process

# Prints the assemblyzero.run modules loaded, as JSON, on the last line of stderr.
_REPORT = ("print(json.dumps(sorted(n for n in sys.modules if n == 'assemblyzero.run' "
           "or n.startswith('assemblyzero.run.'))), file=sys.stderr)")


def _scheduler_modules(code: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", f"import json, sys\n{code}\n{_REPORT}"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded: list[str] = json.loads(proc.stderr.splitlines()[-1])
    return loaded


def test_importing_history_imports_nothing_of_the_scheduler() -> None:
    assert _scheduler_modules("import assemblyzero.cli.history") == []


def test_the_status_command_imports_nothing_of_the_scheduler(ws: Path) -> None:
    code = ("from assemblyzero.cli.tasks import program\n"
            f"program.run(['assemblyzero', 'status', '--repo', {str(ws)!r}], exit=False)")
    assert _scheduler_modules(code) == []


def test_the_check_sees_the_scheduler_when_it_is_imported() -> None:
    assert "assemblyzero.run.coordinator" in _scheduler_modules(
        "import assemblyzero.run.coordinator")


def test_a_run_on_this_machine_never_imports_dask(ws: Path) -> None:
    """dask is imported only when a cluster is asked for (the `cluster` extra is optional)."""
    code = ("import os\nos.environ['ASSEMBLYZERO_OFFLINE_LATENCY'] = '0'\n"
            "from assemblyzero.cli.tasks import program\n"
            f"program.run(['assemblyzero', 'lld-all', '--only=41', '--repo', {str(ws)!r}], "
            "exit=False)\n"
            "assert (os.path.exists(os.path.join(" + repr(str(ws)) + ", 'docs/lld/active/"
            "LLD-041.md')))\n"
            "print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] in "
            "('dask', 'distributed') or n.startswith('assemblyzero.cluster.'))), "
            "file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", f"import json, sys\n{code}"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stderr.splitlines()[-1]) == []
